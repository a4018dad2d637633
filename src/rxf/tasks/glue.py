"""GLUE tasks, read offline from the official TSVs or downloaded from the Hugging Face hub.

``GLUE`` is the one table describing every task: its folder in a GLUE root, which TSV columns hold
the text(s) and label, the label strings in id order, and the hub column names. Label ids follow
the conventional GLUE order (the one of the ``nyu-mll/glue`` hub dataset), so models trained
from either source agree.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from rxf import hub, metrics
from rxf.errors import RxfError, closest
from rxf.io import iter_lines, os_cause
from rxf.tasks.base import LABEL, TEXT, TEXT_PAIR, Origin, TextTask, make_dataset

HUB_GLUE = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueSpec:
    """Where a GLUE task's data is and how to read it."""

    dir: str  # folder in a GLUE root, e.g. "SST-2"
    text: str | int  # TSV column (header name, or index for header-less files) of the first text
    text_pair: str | int | None  # ... of the second text, for sentence-pair tasks
    label: str | int  # ... of the label
    label_values: tuple[str, ...] | None  # label strings as written in the TSV, in id order; None: float score
    label_names: tuple[str, ...] | None  # class names in id order; None for regression
    hub_text: str  # column names in the hub dataset
    hub_text_pair: str | None
    header: bool = True
    num_fields: int | None = None  # fields per row of a header-less file
    eval_files: dict[str, str] = field(default_factory=lambda: {"validation": "dev.tsv"})


_NLI2 = ("entailment", "not_entailment")
_BINARY = ("0", "1")

# Task key (hub config name) -> spec.
GLUE: dict[str, GlueSpec] = {
    # CoLA has no header: source, label, original acceptability mark, sentence.
    "cola": GlueSpec("CoLA", 3, None, 1, _BINARY, ("unacceptable", "acceptable"), "sentence", None,
                     header=False, num_fields=4),
    "sst2": GlueSpec("SST-2", "sentence", None, "label", _BINARY, ("negative", "positive"), "sentence", None),
    "mrpc": GlueSpec("MRPC", "#1 String", "#2 String", "Quality", _BINARY, ("not_equivalent", "equivalent"),
                     "sentence1", "sentence2"),
    "stsb": GlueSpec("STS-B", "sentence1", "sentence2", "score", None, None, "sentence1", "sentence2"),
    "qqp": GlueSpec("QQP", "question1", "question2", "is_duplicate", _BINARY, ("not_duplicate", "duplicate"),
                    "question1", "question2"),
    "mnli": GlueSpec("MNLI", "sentence1", "sentence2", "gold_label", ("entailment", "neutral", "contradiction"),
                     ("entailment", "neutral", "contradiction"), "premise", "hypothesis",
                     eval_files={"validation_matched": "dev_matched.tsv",
                                 "validation_mismatched": "dev_mismatched.tsv"}),
    "qnli": GlueSpec("QNLI", "question", "sentence", "label", _NLI2, _NLI2, "question", "sentence"),
    "rte": GlueSpec("RTE", "sentence1", "sentence2", "label", _NLI2, _NLI2, "sentence1", "sentence2"),
    "wnli": GlueSpec("WNLI", "sentence1", "sentence2", "label", _BINARY, ("not_entailment", "entailment"),
                     "sentence1", "sentence2"),
}


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def glue_key(name: str) -> str | None:
    """The GLUE task key for "glue/rte", "RTE", "SST-2", "glue/STS-B", "glue:rte", "nyu-mll/glue:rte"; else None."""
    lowered = name.strip().lower()
    for prefix in ("glue/", "glue:", HUB_GLUE + ":"):
        if lowered.startswith(prefix):
            lowered = lowered[len(prefix):]
            break
    key = _normalize(lowered)
    return key if key in GLUE else None


def is_glue_name(name: str) -> bool:
    """True when ``name`` asks for a GLUE task, known or not (it has a glue prefix)."""
    lowered = name.strip().lower()
    return lowered.startswith(("glue/", "glue:", HUB_GLUE + ":"))


def unknown_glue_task(name: str) -> RxfError:
    """The error for a glue-prefixed name that is not a GLUE task."""
    rest = name.strip().lower().split("/", 1)[-1].split(":", 1)[-1]
    return RxfError(
        f"unknown GLUE task {name!r}{closest('glue/' + _normalize(rest), [f'glue/{k}' for k in GLUE])}: "
        f"choose one of {', '.join(f'glue/{k}' for k in GLUE)}"
    )


def _task_dir(key: str, data_dir: str | Path) -> Path:
    """The folder holding ``key``'s TSVs: ``data_dir/<Task>`` (any case) or ``data_dir`` itself."""
    spec = GLUE[key]
    root = Path(data_dir).expanduser()
    hint = f"pass the GLUE root (the folder holding {spec.dir}/) or the {spec.dir} folder itself as data_dir"
    if not root.is_dir():
        raise RxfError(f"GLUE data dir {root} does not exist or is not a folder: {hint}")
    aliases = {_normalize(spec.dir), key}
    try:
        children = sorted(root.iterdir())
    except OSError as error:
        raise RxfError(f"GLUE data dir {root} cannot be listed: {os_cause(error)}") from None
    for child in children:
        if child.is_dir() and _normalize(child.name) in aliases:
            return child
    other = glue_key(root.name)
    if other is not None and other != key:
        raise RxfError(f"data dir {root} is the {GLUE[other].dir} folder, not {spec.dir}: {hint}")
    if _normalize(root.name) in aliases or any((root / f).is_file() for f in ["train.tsv", *spec.eval_files.values()]):
        return root
    if any(child.is_dir() and glue_key(child.name) for child in root.iterdir()):
        return root / spec.dir  # a GLUE root without this task: the missing-file error says so
    raise RxfError(f"GLUE data dir {root} has no {spec.dir}/ folder and no {spec.dir} TSV files: {hint}")


def _column(header: list[str] | None, column: str | int, path: Path, role: str) -> int:
    """Index of ``column`` in the TSV header (or the index itself for header-less files)."""
    if isinstance(column, int):
        return column
    assert header is not None
    if column not in header:
        raise RxfError(
            f"{path}, line 1: the header has no {role} column {column!r}{closest(column, header)}; "
            f"its columns are: {', '.join(header)} (is this the right GLUE task folder?)"
        )
    return header.index(column)


def read_glue_tsv(key: str, path: Path) -> tuple[datasets.Dataset, Origin]:
    """One GLUE TSV as a dataset with columns text[, text_pair], label (and where its rows are); malformed
    rows are RxfErrors."""
    spec = GLUE[key]
    line_of_row: list[int] = []
    texts: list[str] = []
    pairs: list[str] = []
    labels: list[int] | list[float] = []
    # iter_lines drops the byte-order mark the MRPC files start with and names the line of any
    # byte that is not UTF-8. QUOTE_NONE: GLUE text has stray quotes, so one row is one line.
    lines = iter_lines(path, f"GLUE {spec.dir} file")
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = None
    if spec.header:
        header = next(reader, None)
        if header is None:
            raise RxfError(f"{path} is empty: expected a GLUE {spec.dir} TSV with a header line")
        num_fields = len(header)
    else:
        num_fields = spec.num_fields
    text_i = _column(header, spec.text, path, "text")
    pair_i = None if spec.text_pair is None else _column(header, spec.text_pair, path, "second text")
    label_i = _column(header, spec.label, path, "label")
    label_name = spec.label if isinstance(spec.label, str) else f"{spec.label + 1} (label)"
    for row in reader:
        if not row or row == [""]:
            continue  # blank line
        where = f"{path}, line {reader.line_num}"
        if len(row) != num_fields:
            raise RxfError(
                f"{where}: {len(row)} tab-separated fields, expected {num_fields}: fix or remove this row"
            )
        raw = row[label_i].strip()
        if spec.label_values is None:
            try:
                labels.append(float(raw))
            except ValueError:
                raise RxfError(f"{where}: label {raw!r} in column {label_name} is not a number") from None
        else:
            if raw not in spec.label_values:
                raise RxfError(
                    f"{where}: label {raw!r} in column {label_name} is not one of {', '.join(spec.label_values)}"
                )
            labels.append(spec.label_values.index(raw))
        texts.append(row[text_i])
        line_of_row.append(reader.line_num)
        if pair_i is not None:
            pairs.append(row[pair_i])
    if not texts:
        raise RxfError(f"{path} has no data rows: expected a GLUE {spec.dir} TSV")
    ds = make_dataset(texts, labels, pairs if spec.text_pair is not None else None, regression=spec.label_values is None)
    return ds, Origin(str(path), lambda i: f"{path}, line {line_of_row[i]}")


def _task(
    key: str, train: datasets.Dataset, eval_splits: dict[str, datasets.Dataset], origins: dict[str, Origin] | None = None
) -> TextTask:
    spec = GLUE[key]
    return TextTask(
        name=f"glue/{key}",
        train=train,
        eval=eval_splits,
        label_names=None if spec.label_names is None else list(spec.label_names),
        main_metric=metrics.GLUE_METRICS[key],
        origins=origins or {},
    )


def load_glue_dir(key: str, data_dir: str | Path) -> TextTask:
    """A GLUE task from its TSVs: train.tsv and dev.tsv (MNLI: dev_matched.tsv, dev_mismatched.tsv)."""
    spec = GLUE[key]
    folder = _task_dir(key, data_dir)
    files = {"train": "train.tsv", **spec.eval_files}
    for fname in files.values():
        if not (folder / fname).is_file():
            raise RxfError(
                f"{spec.dir} {fname} not found in {folder}: this copy of GLUE has no {spec.dir} "
                f"{Path(fname).stem} split (add the file, or leave out data_dir to download glue/{key} from the hub)"
            )
    loaded = {split: read_glue_tsv(key, folder / fname) for split, fname in files.items()}
    origins = {split: found for split, (_, found) in loaded.items()}
    datasets_ = {split: ds for split, (ds, _) in loaded.items()}
    train = datasets_.pop("train")
    return _task(key, train, datasets_, origins)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def load_glue_hub(key: str) -> TextTask:
    """A GLUE task downloaded from the hub dataset ``nyu-mll/glue`` (needs a network or a warm cache)."""
    spec = GLUE[key]
    try:
        loaded = hub.load_dataset(HUB_GLUE, key)
    except Exception as error:  # network, hub or cache failures all mean the same thing to the user
        raise RxfError(
            f"could not load glue/{key} from the Hugging Face hub ({_first_line(error)}): "
            f"pass data_dir (--data-dir) pointing at a local copy of GLUE (the folder holding {spec.dir}/)"
        ) from error

    def standard(split: str) -> datasets.Dataset:
        if split not in loaded:
            raise RxfError(f"hub dataset {HUB_GLUE}:{key} has no {split!r} split (it has {', '.join(loaded)})")
        ds = loaded[split]
        columns = {spec.hub_text: TEXT, "label": LABEL}
        if spec.hub_text_pair is not None:
            columns[spec.hub_text_pair] = TEXT_PAIR
        ds = ds.select_columns(list(columns)).rename_columns(columns)
        return ds.cast_column(LABEL, datasets.Value("float32" if spec.label_values is None else "int64"))

    return _task(key, standard("train"), {split: standard(split) for split in spec.eval_files})


def load_glue(key: str, data_dir: str | Path | None = None) -> TextTask:
    """A GLUE task from ``data_dir`` if given, else from the hub."""
    return load_glue_hub(key) if data_dir is None else load_glue_dir(key, data_dir)
