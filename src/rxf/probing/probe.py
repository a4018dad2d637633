"""Linear probes on frozen features, with scikit-learn.

A probe is a linear model on standardised features (StandardScaler, then):

* classification: ``LogisticRegressionCV`` (L2, lbfgs), the inverse regularisation ``C`` chosen
  from ``c_grid`` by stratified ``cv_folds``-fold cross-validation on the probe's training set,
  scored by log-loss (a proper scoring rule, so the choice does not depend on the task metric);
* regression (STS-B): ``RidgeCV``, ``alpha`` chosen from ``alpha_grid`` by efficient
  leave-one-out cross-validation on the probe's training set.

The probe is then scored on the task's dev split with the task's own metric (GLUE: accuracy,
MCC, F1/accuracy, Pearson/Spearman). The paper trains its linear layer with Adam on a frozen
RoBERTa; a convex probe solved to convergence removes the optimiser's settings from the
comparison.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rxf.errors import RxfError
from rxf.config import check_fields, describe_setting
from rxf.methods.base import check_number, check_seed


@dataclass
class ProbeConfig:
    """The linear probe and the data it is trained and scored on."""

    c_grid: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])  # LogisticRegression C
    alpha_grid: list[float] = field(default_factory=lambda: [0.1, 1.0, 10.0, 100.0, 1000.0])  # Ridge alpha
    cv_folds: int = 3
    max_iter: int = 2000
    max_train_samples: int | None = 2000  # probe training examples per task (random subset); None: all
    max_eval_samples: int | None = None  # dev examples per task; None: the whole dev split
    data_seed: int = 0  # which subset; fixed across methods and seeds so every probe sees the same data

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("c_grid", "alpha_grid"):
            grid = getattr(self, name)
            if not grid:
                raise RxfError(f"{describe_setting(name, grid)} must be a non-empty list of numbers")
            for value in grid:
                check_number(name, value, positive=True)
        check_number("cv_folds", self.cv_folds, integer=True, minimum=2)
        check_number("max_iter", self.max_iter, integer=True, positive=True)
        check_seed("data_seed", self.data_seed)
        for name in ("max_train_samples", "max_eval_samples"):
            check_number(name, getattr(self, name), integer=True, positive=True, optional=True)

    def describe(self) -> str:
        return (
            f"StandardScaler + LogisticRegressionCV (L2, lbfgs, max_iter {self.max_iter}, C in {self.c_grid} "
            f"by {self.cv_folds}-fold stratified CV on log-loss) for classification; StandardScaler + RidgeCV "
            f"(alpha in {self.alpha_grid}, leave-one-out) for regression; probe train set: "
            f"{self.max_train_samples or 'all'} examples of the task's train split (seed {self.data_seed}), "
            f"scored on {self.max_eval_samples or 'all'} examples of its dev split"
        )


@dataclass
class ProbeFit:
    """A fitted probe's dev predictions and the regularisation it chose."""

    predictions: np.ndarray  # class probabilities (N, C), or scores (N,) for regression
    regularization: dict[str, float]  # {"C": ...} or {"alpha": ...}
    train_score: float  # accuracy or R² on the probe's own training set


def fit_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    eval_x: np.ndarray,
    *,
    regression: bool,
    config: ProbeConfig,
) -> ProbeFit:
    """Fit a linear probe on (train_x, train_y) and predict eval_x."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, RidgeCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_x = np.asarray(train_x, dtype=np.float64)
    eval_x = np.asarray(eval_x, dtype=np.float64)
    train_y = np.asarray(train_y)
    if train_x.ndim != 2 or eval_x.ndim != 2 or train_x.shape[1] != eval_x.shape[1]:
        raise RxfError(f"probe features must be 2-D with equal widths, got {train_x.shape} and {eval_x.shape}")
    if len(train_x) != len(train_y):
        raise RxfError(f"probe has {len(train_x)} feature rows but {len(train_y)} labels")

    if regression:
        probe = make_pipeline(StandardScaler(), RidgeCV(alphas=config.alpha_grid))
        probe.fit(train_x, train_y.astype(np.float64))
        return ProbeFit(
            predictions=probe.predict(eval_x),
            regularization={"alpha": float(probe[-1].alpha_)},
            train_score=float(probe.score(train_x, train_y)),
        )

    classes, counts = np.unique(train_y, return_counts=True)
    if len(classes) < 2:
        raise RxfError(f"the probe's training set has a single class ({classes[0]!r}): use more probe training examples")
    folds = min(config.cv_folds, int(counts.min()))
    if folds >= 2:
        classifier: Any = LogisticRegressionCV(
            Cs=config.c_grid, cv=StratifiedKFold(folds, shuffle=True, random_state=0),
            scoring="neg_log_loss", max_iter=config.max_iter,
        )
    else:  # a class too rare to cross-validate: the middle of the grid
        classifier = LogisticRegression(C=float(np.median(config.c_grid)), max_iter=config.max_iter)
    probe = make_pipeline(StandardScaler(), classifier)
    with warnings.catch_warnings():  # scikit-learn 1.8+ announces changes to LogisticRegressionCV's defaults
        warnings.simplefilter("ignore", FutureWarning)
        probe.fit(train_x, train_y)
    chosen = np.ravel(probe[-1].C_)[0] if hasattr(probe[-1], "C_") else probe[-1].C
    # Probabilities for every class id 0..max seen, so argmax gives class ids even if a class is absent.
    probabilities = np.zeros((len(eval_x), int(classes.max()) + 1))
    probabilities[:, classes] = probe.predict_proba(eval_x)
    return ProbeFit(
        predictions=probabilities,
        regularization={"C": float(chosen)},
        train_score=float(probe.score(train_x, train_y)),
    )
