"""Evaluation metrics for text classification and regression tasks.

Plain functions over numpy arrays (``accuracy``, ``f1``, ``macro_f1``, ``mcc``, ``pearson``,
``spearman``, ``mse``) and named *metric sets* that bundle them the way GLUE reports them:

===================  =====================================================  ==================
metric set           keys returned                                          used by
===================  =====================================================  ==================
``accuracy``         accuracy                                               SST-2, MNLI, QNLI, RTE, WNLI
``mcc``              mcc                                                    CoLA
``f1_accuracy``      accuracy, f1, f1_accuracy (their mean)                 MRPC, QQP
``pearson_spearman`` pearson, spearman, pearson_spearman (their mean)       STS-B
``classification``   accuracy, macro_f1                                     packaged/file/hub classification
``regression``       pearson, spearman, pearson_spearman, mse               file/hub regression
``multi_label``      micro_f1, macro_f1, exact_match                        file/hub multi-label
===================  =====================================================  ==================

Predictions may be logits ``(N, C)`` or already-argmaxed class ids ``(N,)`` for classification,
scores ``(N,)`` or ``(N, 1)`` for regression, and logits or 0/1 rows ``(N, C)`` for multi-label
(a label is predicted when its logit is > 0, i.e. its probability > 0.5). Every value is returned as a Python float.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, mean_squared_error

from rxf.errors import RxfError, closest

# GLUE task (hub config name) -> metric set; the set's name is also the task's main metric.
GLUE_METRICS: dict[str, str] = {
    "cola": "mcc",
    "sst2": "accuracy",
    "mrpc": "f1_accuracy",
    "stsb": "pearson_spearman",
    "qqp": "f1_accuracy",
    "mnli": "accuracy",
    "qnli": "accuracy",
    "rte": "accuracy",
    "wnli": "accuracy",
}

REGRESSION_SETS = frozenset({"pearson_spearman", "regression"})


def _first(predictions):
    """Model outputs may come as a tuple (logits, hidden states, ...): keep the logits."""
    if isinstance(predictions, tuple) and predictions and hasattr(predictions[0], "shape"):
        return predictions[0]
    return predictions


def to_class_ids(predictions) -> np.ndarray:
    """Class ids from logits ``(N, C)`` (argmax) or from ids ``(N,)`` / ``(N, 1)`` (as given)."""
    preds = np.asarray(_first(predictions))
    if preds.ndim == 2 and preds.shape[1] > 1:
        return preds.argmax(axis=-1)
    preds = preds.reshape(-1) if preds.ndim == 2 else preds
    if preds.ndim != 1:
        raise RxfError(f"predictions have shape {preds.shape}: expected logits (N, C) or class ids (N,)")
    if preds.dtype.kind == "f":
        if not np.all(np.isfinite(preds)) or not np.all(preds == np.round(preds)):
            raise RxfError(
                "1-D predictions for a classification task must be class ids: pass logits of shape (N, C) "
                "to have them argmaxed"
            )
        preds = preds.astype(np.int64)
    return preds


def to_scores(predictions) -> np.ndarray:
    """Regression scores from ``(N,)`` or ``(N, 1)`` predictions, as float64."""
    preds = np.asarray(_first(predictions), dtype=np.float64)
    if preds.ndim == 2 and preds.shape[1] == 1:
        preds = preds[:, 0]
    if preds.ndim != 1:
        raise RxfError(f"regression predictions have shape {preds.shape}: expected (N,) or (N, 1)")
    return preds


def to_multi_hot(predictions) -> np.ndarray:
    """0/1 rows ``(N, C)`` from multi-label logits (> 0) or from 0/1 rows (as given)."""
    preds = np.asarray(_first(predictions))
    if preds.ndim != 2:
        raise RxfError(f"multi-label predictions have shape {preds.shape}: expected logits (N, C)")
    if np.isin(preds, (0, 1)).all():
        return preds.astype(np.int64)
    return (preds > 0).astype(np.int64)


def _check(preds: np.ndarray, labels: np.ndarray) -> None:
    if len(preds) != len(labels):
        raise RxfError(f"{len(preds)} predictions for {len(labels)} labels: they must be the same length")
    if len(labels) == 0:
        raise RxfError("no predictions to score: the evaluation set is empty")


def accuracy(predictions, labels) -> float:
    """Fraction of examples whose predicted class (argmax of logits, or the id) equals the label."""
    preds, labels = to_class_ids(predictions), np.asarray(labels).reshape(-1)
    _check(preds, labels)
    return float(accuracy_score(labels, preds))


def f1(predictions, labels) -> float:
    """Binary F1 of the positive class 1 (GLUE MRPC/QQP)."""
    preds, labels = to_class_ids(predictions), np.asarray(labels).reshape(-1)
    _check(preds, labels)
    return float(f1_score(labels, preds, average="binary", pos_label=1, zero_division=0))


def macro_f1(predictions, labels) -> float:
    """Unweighted mean of the per-class F1 over the classes present in labels or predictions."""
    preds, labels = to_class_ids(predictions), np.asarray(labels).reshape(-1)
    _check(preds, labels)
    return float(f1_score(labels, preds, average="macro", zero_division=0))


def mcc(predictions, labels) -> float:
    """Matthews correlation coefficient (GLUE CoLA); 0.0 when either side is constant."""
    preds, labels = to_class_ids(predictions), np.asarray(labels).reshape(-1)
    _check(preds, labels)
    return float(matthews_corrcoef(labels, preds))


def _correlation(fn: Callable, predictions, labels) -> float:
    preds, labels = to_scores(predictions), np.asarray(labels, dtype=np.float64).reshape(-1)
    _check(preds, labels)
    # A constant side (e.g. a model that has collapsed to one value) has no defined correlation;
    # report 0.0 rather than NaN so that model selection keeps working.
    if len(preds) < 2 or np.ptp(preds) == 0 or np.ptp(labels) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(fn(preds, labels)[0])
    return value if np.isfinite(value) else 0.0


def pearson(predictions, labels) -> float:
    """Pearson correlation of regression scores with the labels (0.0 if either is constant)."""
    return _correlation(pearsonr, predictions, labels)


def spearman(predictions, labels) -> float:
    """Spearman rank correlation of regression scores with the labels (0.0 if either is constant)."""
    return _correlation(spearmanr, predictions, labels)


def mse(predictions, labels) -> float:
    """Mean squared error of regression scores."""
    preds, labels = to_scores(predictions), np.asarray(labels, dtype=np.float64).reshape(-1)
    _check(preds, labels)
    return float(mean_squared_error(labels, preds))


def _multi_label_set(p, y) -> dict[str, float]:
    preds, labels = to_multi_hot(p), np.asarray(y).round().astype(np.int64)
    _check(preds, labels)
    if preds.shape != labels.shape:
        raise RxfError(f"multi-label predictions have shape {preds.shape} but labels {labels.shape}")
    return {
        "micro_f1": float(f1_score(labels, preds, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(labels, preds, average="macro", zero_division=0)),
        "exact_match": float(accuracy_score(labels, preds)),  # every label of the row right
    }


def _accuracy_set(p, y) -> dict[str, float]:
    return {"accuracy": accuracy(p, y)}


def _mcc_set(p, y) -> dict[str, float]:
    return {"mcc": mcc(p, y)}


def _f1_accuracy_set(p, y) -> dict[str, float]:
    acc, f = accuracy(p, y), f1(p, y)
    return {"accuracy": acc, "f1": f, "f1_accuracy": (acc + f) / 2}


def _pearson_spearman_set(p, y) -> dict[str, float]:
    r, rho = pearson(p, y), spearman(p, y)
    return {"pearson": r, "spearman": rho, "pearson_spearman": (r + rho) / 2}


def _classification_set(p, y) -> dict[str, float]:
    return {"accuracy": accuracy(p, y), "macro_f1": macro_f1(p, y)}


def _regression_set(p, y) -> dict[str, float]:
    return {**_pearson_spearman_set(p, y), "mse": mse(p, y)}


METRIC_SETS: dict[str, Callable[..., dict[str, float]]] = {
    "accuracy": _accuracy_set,
    "mcc": _mcc_set,
    "f1_accuracy": _f1_accuracy_set,
    "pearson_spearman": _pearson_spearman_set,
    "classification": _classification_set,
    "regression": _regression_set,
    "multi_label": _multi_label_set,
}


def compute(metric_set: str, predictions, labels) -> dict[str, float]:
    """The metrics of ``metric_set`` (a key of :data:`METRIC_SETS`) for these predictions."""
    if metric_set not in METRIC_SETS:
        raise RxfError(
            f"unknown metric set {metric_set!r}{closest(metric_set, METRIC_SETS)}: "
            f"choose one of {', '.join(METRIC_SETS)}"
        )
    return METRIC_SETS[metric_set](predictions, labels)


def glue_metrics(task: str, predictions, labels) -> dict[str, float]:
    """GLUE's metrics for ``task`` ("rte", "glue/rte", "STS-B", ...)."""
    key = task.lower().removeprefix("glue/").replace("-", "")
    if key not in GLUE_METRICS:
        raise RxfError(
            f"unknown GLUE task {task!r}{closest(key, GLUE_METRICS)}: choose one of {', '.join(GLUE_METRICS)}"
        )
    return compute(GLUE_METRICS[key], predictions, labels)
