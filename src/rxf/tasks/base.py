"""The :class:`TextTask` every loader returns, and the split/subsample helpers they share."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np

from rxf import metrics
from rxf.errors import RxfError

# Seed of every fixed train/eval split (packaged tasks, held-out 10% of a train file). It is
# deliberately independent of the training seed so that the evaluation set never changes.
SPLIT_SEED = 2008

TEXT, TEXT_PAIR, LABEL = "text", "text_pair", "label"


@dataclass
class Origin:
    """Where a split's rows come from, to name a row in an error message."""

    source: str  # e.g. "train.csv", "hub dataset imdb, split 'train'"
    where: Callable[[int], str]  # row index -> e.g. "train.csv, line 7"


@dataclass
class TextTask:
    """A text classification, regression or multi-label task: datasets with columns text[, text_pair], label."""

    name: str
    train: datasets.Dataset | None
    eval: dict[str, datasets.Dataset]
    label_names: list[str] | None  # class names in id order; None for regression
    main_metric: str  # key of compute_metrics' output used for model selection
    metric_set: str | None = None  # a key of rxf.metrics.METRIC_SETS; defaults to main_metric
    multi_label: bool = False  # labels are multi-hot rows over label_names (any number of classes per example)
    origins: dict[str, Origin] = field(default_factory=dict, repr=False)  # split ("train", ...) -> where its rows are

    @property
    def num_labels(self) -> int:
        """Number of classes, or 1 for regression."""
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def is_regression(self) -> bool:
        """True when labels are real-valued scores (e.g. STS-B)."""
        return self.label_names is None

    @property
    def has_text_pair(self) -> bool:
        """True when examples are sentence pairs (column ``text_pair``)."""
        splits = [self.train, *self.eval.values()]
        return any(ds is not None and TEXT_PAIR in ds.column_names for ds in splits)

    def compute_metrics(self, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Metrics of this task for logits (N, C), class ids (N,) or regression scores (N,)/(N, 1)."""
        return metrics.compute(self.metric_set or self.main_metric, predictions, labels)


def make_dataset(
    texts: Sequence[str],
    labels: Sequence[int] | Sequence[float],
    text_pairs: Sequence[str] | None = None,
    *,
    regression: bool = False,
    multi_label: bool = False,
) -> datasets.Dataset:
    """A dataset with the standard columns: text, [text_pair,] label (int64; float32 for regression;
    a float32 0/1 row per example for multi-label)."""
    columns: dict[str, list] = {TEXT: list(texts)}
    features = {TEXT: datasets.Value("string")}
    if text_pairs is not None:
        columns[TEXT_PAIR] = list(text_pairs)
        features[TEXT_PAIR] = datasets.Value("string")
    columns[LABEL] = list(labels)
    if multi_label:
        features[LABEL] = datasets.List(datasets.Value("float32"))
    else:
        features[LABEL] = datasets.Value("float32" if regression else "int64")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def stratified_split(
    labels: Sequence, eval_fraction: float, seed: int = SPLIT_SEED, groups: Sequence | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, eval) with about ``eval_fraction`` of each class in eval.

    With ``groups`` (e.g. the texts), rows of the same group land on the same side, so that
    duplicated examples cannot leak from train into eval; a group is stratified by its first label.
    Constant labels (e.g. ``[0] * n``) give an unstratified split.
    """
    labels = list(labels)
    if groups is None:
        representative = list(range(len(labels)))
        group_of = representative
    else:
        first: dict = {}
        group_of = [first.setdefault(g, i) for i, g in enumerate(groups)]
        representative = sorted(first.values())
    by_class: dict = {}
    for i in representative:
        by_class.setdefault(labels[i], []).append(i)
    rng = np.random.default_rng(seed)
    eval_groups: set[int] = set()
    for label in sorted(by_class, key=repr):
        members = np.array(by_class[label])
        n_eval = int(round(eval_fraction * len(members)))
        eval_groups.update(rng.permutation(members)[:n_eval].tolist())
    in_eval = np.array([g in eval_groups for g in group_of], dtype=bool)
    return np.flatnonzero(~in_eval), np.flatnonzero(in_eval)


def check_max_samples(value: int | None, option: str) -> None:
    """Reject a non-positive or non-integer sample limit."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise RxfError(f"{option} must be a positive integer or None, got {value!r}")


def subsample(ds: datasets.Dataset, n: int | None, seed: int) -> datasets.Dataset:
    """A deterministic random subset of ``n`` rows (the whole dataset if ``n`` is None or larger)."""
    if n is None or n >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(n))


def limit(task: TextTask, max_train_samples: int | None, max_eval_samples: int | None, seed: int) -> TextTask:
    """The task with train and every eval split subsampled (shuffle with ``seed``, take n)."""
    if task.train is not None:
        task.train = subsample(task.train, max_train_samples, seed)
    task.eval = {split: subsample(ds, max_eval_samples, seed) for split, ds in task.eval.items()}
    return task


# ---------------------------------------------------------------------------------------------
# Checks every loader's result goes through (rxf.tasks.load_task), so that data a model cannot
# learn from is refused when it is read, whichever reader read it.


def origin(task: TextTask, split: str) -> Origin:
    """Where ``split``'s rows come from (the loader's, else the task name and the row index)."""
    return task.origins.get(split) or Origin(f"{task.name} {split} split", lambda i: f"{task.name} {split} split, row {i + 1}")


def _splits(task: TextTask) -> dict[str, datasets.Dataset]:
    return {**({"train": task.train} if task.train is not None else {}), **task.eval}


def check_labels(task: TextTask) -> None:
    """Every label of every split is one the model can take: a class id in range, a finite score,
    a 0/1 row of the right width (multi-label). RxfError naming the row."""
    for split, ds in _splits(task).items():
        if len(ds) == 0:
            raise RxfError(f"{origin(task, split).source} has no rows")
        labels = ds[LABEL]
        for i, value in enumerate(labels):
            if task.multi_label:
                good = isinstance(value, list) and len(value) == task.num_labels and all(v in (0, 1) for v in value)
                expected = f"a 0/1 row of {task.num_labels} values"
            elif task.is_regression:
                good = isinstance(value, (int, float)) and bool(np.isfinite(value))
                expected = "a finite number (a score to regress on)"
            else:
                good = isinstance(value, int) and 0 <= value < task.num_labels
                expected = f"one of the {task.num_labels} classes"
            if not good:
                raise RxfError(f"{origin(task, split).where(i)}: label {value!r} is not {expected}: fix or remove this row")


def check_trainable(task: TextTask, subset: str = "") -> None:
    """The training labels vary: two classes or more, scores that are not all the same. ``subset`` names
    what picked the rows (e.g. "max_train_samples=2"), for the message."""
    if task.train is None or task.multi_label:
        return
    picked = f" (the {len(task.train)} rows kept by {subset})" if subset else ""
    source = origin(task, "train").source
    labels = task.train[LABEL]
    if task.is_regression:
        if len(set(labels)) == 1:
            raise RxfError(
                f"{source}{picked}: every training score is {labels[0]!r}: there is nothing to learn; "
                "check label_column and the data"
            )
        return
    classes = sorted(set(labels))
    if task.num_labels < 2 or len(classes) < 2:
        only = task.label_names[classes[0]] if task.label_names and classes else "?"
        raise RxfError(
            f"{source}{picked}: every training row has the label {only!r}: a classifier needs examples of at least "
            "two classes; check label_column and the data"
            + ("" if not subset else f", or keep more rows ({subset})")
        )


def fingerprint(task: TextTask) -> str:
    """A SHA-256 of the task's data as loaded (every split's texts and labels, in order) and of its label names.

    Two runs with the same fingerprint trained and evaluated on the same examples (rxf.rundir).
    """
    return fingerprint_splits(_splits(task), {"labels": task.label_names, "multi_label": task.multi_label})


def fingerprint_splits(splits: dict[str, datasets.Dataset], header: dict[str, Any] | None = None) -> str:
    """A SHA-256 of named datasets (every column, every row, in order) and of ``header``: any task's fingerprint."""
    digest = hashlib.sha256(json.dumps(header or {}, sort_keys=True).encode())
    for split, ds in splits.items():
        digest.update(f"\0split {split} {len(ds)}\0".encode())
        for column in sorted(ds.column_names):
            digest.update(f"\0column {column}\0".encode())
            for start in range(0, len(ds), 10_000):
                values = ds[start : start + 10_000][column]
                digest.update(json.dumps(values, ensure_ascii=False, default=str).encode())
    return digest.hexdigest()
