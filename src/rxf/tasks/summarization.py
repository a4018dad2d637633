"""Summarization data: document/summary pairs from the hub, the shared benchmark files, or your own files.

:func:`load_summarization_task` is the one entry point; it returns a :class:`SummarizationTask`
whose datasets have the columns ``document`` and ``summary``.

Name forms:

* ``"cnn_dailymail"``, ``"gigaword"``, ``"xsum"``, ``"reddit_tifu"``, ``"samsum"``: from the hub
  (see :data:`SUMMARIZATION_DATASETS` for the hub ids and columns), or, with ``data_dir``, from
  the local copies laid out as in ``shared/data/summarization`` (see :data:`LOCAL_FILES`):

  - gigaword: 10,000 article/headline pairs of unknown origin split → a fixed 80/10/10
    train/validation/test split (seeded, duplicated articles kept on one side);
  - xsum: 1,000 documents of the official validation split (one, a photo gallery, has no text
    and is dropped) → the same fixed 80/10/10 split;
  - cnn_dailymail: 250 stories of the official test split → evaluation only (``test``);
  - samsum: the official validation (818) and test (819) CSVs → train on validation, evaluate
    on test (the official train split is not available offline).

* ``None``, ``"csv"`` or ``"json"`` with ``train_file`` (and optionally ``eval_file``): your own
  CSV/TSV/JSON/JSONL files with a document and a summary column; without ``eval_file`` a fixed
  10 % of ``train_file`` is held out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from rxf import hub
from rxf.errors import RxfError, closest
from rxf.tasks.base import SPLIT_SEED, check_max_samples, subsample
from rxf.tasks.files import FORMATS, RawSplit, read_file, root_cause

DOCUMENT, SUMMARY = "document", "summary"
FILE_TASK_NAMES = ("csv", "json", "jsonl", "tsv")
# Held-out fractions of the fixed splits made from one file: (validation, test).
LOCAL_HOLDOUT = (0.1, 0.1)
FILE_HOLDOUT = 0.1

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SummarizationDataset:
    """Where a named dataset lives on the hub and which columns hold the document and the summary."""

    hub_path: str
    hub_config: str | None
    document_column: str
    summary_column: str
    # Reference summaries of several sentences: ROUGE-Lsum (one sentence per line) is the one to report.
    multi_sentence: bool


SUMMARIZATION_DATASETS: dict[str, SummarizationDataset] = {
    "cnn_dailymail": SummarizationDataset("abisee/cnn_dailymail", "3.0.0", "article", "highlights", True),
    "gigaword": SummarizationDataset("Harvard/gigaword", None, "document", "summary", False),
    "xsum": SummarizationDataset("EdinburghNLP/xsum", None, "document", "summary", False),
    # The paper's "Reddit TIFU (Long)": the TL;DR line as summary. The hub has one split (train): 10 % is held out.
    "reddit_tifu": SummarizationDataset("ctr4si/reddit_tifu", "long", "documents", "tldr", True),
    "samsum": SummarizationDataset("Samsung/samsum", None, "dialogue", "summary", True),
}


@dataclass(frozen=True)
class LocalFiles:
    """The local copy of a named dataset under ``data_dir``: one file per split, or one file to split."""

    document_column: str
    summary_column: str
    splits: dict[str, str]  # split name -> path relative to data_dir; "all" is split 80/10/10


LOCAL_FILES: dict[str, LocalFiles] = {
    "gigaword": LocalFiles("article", "summary", {"all": "gigaword/pairs_10k_unknown_split.csv"}),
    "xsum": LocalFiles("document", "summary", {"all": "xsum/validation_subset_1000.jsonl"}),
    "cnn_dailymail": LocalFiles("article", "highlights", {"test": "cnndm/test_subset_250_from_frank.jsonl"}),
    "samsum": LocalFiles("dialogue", "summary", {"train": "samsum/validation.csv", "test": "samsum/test.csv"}),
}


@dataclass
class SummarizationTask:
    """Document/summary pairs: a train split (None for evaluation-only data) and named eval splits."""

    name: str
    train: datasets.Dataset | None
    eval: dict[str, datasets.Dataset]
    multi_sentence: bool = False
    source: str = ""  # where the data came from, for the run's record


def available_summarization_tasks() -> list[str]:
    return list(SUMMARIZATION_DATASETS)


# ---------------------------------------------------------------------------------------------
# Turning raw splits into document/summary datasets


def pairs(split: RawSplit, document_column: str, summary_column: str, drop_empty: bool = False) -> datasets.Dataset:
    """The split's two columns as ``document``/``summary``; an RxfError names a missing column or an empty row.

    ``drop_empty`` drops rows with an empty document or summary instead (the public datasets have
    a few: XSum's photo galleries have no text), and logs how many.
    """
    existing = split.ds.column_names
    for option, column in (("document_column", document_column), ("summary_column", summary_column)):
        if column not in existing:
            raise RxfError(
                f"{split.source} has no column {column!r}{closest(column, existing)}: its columns are "
                f"{', '.join(existing)}; set {option} to one of them"
            )
    columns = {DOCUMENT: split.ds[document_column], SUMMARY: split.ds[summary_column]}
    keep = [True] * len(split.ds)
    for name, column in ((DOCUMENT, document_column), (SUMMARY, summary_column)):
        for i, value in enumerate(columns[name]):
            if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
                if not drop_empty:
                    raise RxfError(f"{split.where(i)}: column {column!r} is empty: every row needs a {name}")
                keep[i] = False
            elif isinstance(value, (list, dict)):  # str() of it would be trained on as text: "['the', 'city']"
                raise RxfError(
                    f"{split.where(i)}: column {column!r} holds a JSON {type(value).__name__.replace('dict', 'object')}, "
                    f"not text: every {name} must be a string"
                )
    if not all(keep):
        logger.warning("%s: dropped %d row(s) with an empty document or summary", split.source, keep.count(False))
    columns = {name: [str(v) for v, kept in zip(values, keep) if kept] for name, values in columns.items()}
    features = datasets.Features({DOCUMENT: datasets.Value("string"), SUMMARY: datasets.Value("string")})
    return datasets.Dataset.from_dict(columns, features=features)


def grouped_split(
    documents: list[str], fractions: tuple[float, ...], seed: int = SPLIT_SEED
) -> list[np.ndarray]:
    """Row indices for each of ``1 - sum(fractions)``, ``*fractions``, by a seeded shuffle of the distinct documents.

    Rows with the same document land in the same part, so a duplicated article cannot leak from
    train into evaluation. The split depends only on the documents and the seed, never on the
    training seed.
    """
    first: dict[str, int] = {}
    group_of = [first.setdefault(doc, len(first)) for doc in documents]
    order = np.random.default_rng(seed).permutation(len(first))
    sizes = [int(round(f * len(first))) for f in fractions]
    bounds = np.cumsum([len(first) - sum(sizes), *sizes])
    part_of_group = np.searchsorted(bounds, np.argsort(order), side="right")
    part_of_row = part_of_group[group_of]
    return [np.flatnonzero(part_of_row == k) for k in range(len(fractions) + 1)]


def split_three_ways(ds: datasets.Dataset) -> tuple[datasets.Dataset, dict[str, datasets.Dataset]]:
    train, validation, test = grouped_split(ds[DOCUMENT], LOCAL_HOLDOUT)
    return ds.select(train), {"validation": ds.select(validation), "test": ds.select(test)}


# ---------------------------------------------------------------------------------------------
# Loaders


def load_local(name: str, data_dir: str | Path) -> SummarizationTask:
    """A named dataset from its local copy under ``data_dir`` (see :data:`LOCAL_FILES`)."""
    spec = LOCAL_FILES.get(name)
    if spec is None:
        raise RxfError(
            f"task {name!r} has no local copy that rxf knows of (those with one: {', '.join(LOCAL_FILES)}): "
            "leave out data_dir to load it from the hub, or pass train_file/eval_file"
        )
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise RxfError(f"data_dir {root} is not a folder: point it at the folder holding {name}'s files")
    loaded = {}
    for split, relative in spec.splits.items():
        path = root / relative
        if not path.is_file():
            raise RxfError(f"{name}: expected its file {relative} under data_dir {root}, but {path} does not exist")
        loaded[split] = pairs(read_file(path, "data file"), spec.document_column, spec.summary_column, drop_empty=True)
    if "all" in loaded:
        train, evaluation = split_three_ways(loaded["all"])
    else:
        train = loaded.pop("train", None)
        evaluation = loaded
    multi_sentence = SUMMARIZATION_DATASETS[name].multi_sentence
    return SummarizationTask(name, train, evaluation, multi_sentence, source=str(root))


def load_hub_summarization(name: str, data_dir: str | Path | None = None) -> SummarizationTask:
    """A named dataset from the Hugging Face hub: train, and validation/test for evaluation."""
    spec = SUMMARIZATION_DATASETS[name]
    try:
        loaded = hub.load_dataset(spec.hub_path, spec.hub_config, data_dir=None if data_dir is None else str(data_dir))
    except Exception as error:
        raise RxfError(
            f"loading {name} from the Hugging Face hub ({spec.hub_path}) failed ({root_cause(error)}): "
            f"offline, pass data_dir with its local copy ({', '.join(LOCAL_FILES)} have one) or train_file/eval_file"
        ) from error

    def raw(split: str) -> RawSplit:
        source = f"hub dataset {spec.hub_path}, split {split!r}"
        return RawSplit(loaded[split], source, lambda i: f"{source}, row {i}")

    if "train" not in loaded:
        raise RxfError(f"hub dataset {spec.hub_path} has no 'train' split (it has: {', '.join(loaded)})")
    train = pairs(raw("train"), spec.document_column, spec.summary_column, drop_empty=True)
    evaluation = {
        split: pairs(raw(split), spec.document_column, spec.summary_column, drop_empty=True)
        for split in loaded
        if split != "train"
    }
    if not evaluation:
        train, evaluation = split_three_ways(train)
    return SummarizationTask(name, train, evaluation, spec.multi_sentence, source=spec.hub_path)


def load_summarization_files(
    train_file: str | Path | None,
    eval_file: str | Path | None,
    *,
    name: str | None,
    document_column: str,
    summary_column: str,
    multi_sentence: bool,
) -> SummarizationTask:
    """Your own files: train_file (+ eval_file, else a fixed 10 % held out), or eval_file alone (evaluation only)."""
    evaluation: dict[str, datasets.Dataset] = {}
    if eval_file is not None:
        evaluation["validation"] = pairs(read_file(eval_file, "eval_file"), document_column, summary_column)
    train = None
    if train_file is not None:
        train = pairs(read_file(train_file, "train_file"), document_column, summary_column)
        if not evaluation:
            if len(train) < 2:
                raise RxfError(f"train_file {train_file} has {len(train)} row(s): too few to hold out an eval set; pass eval_file")
            kept, held_out = grouped_split(train[DOCUMENT], (FILE_HOLDOUT,))
            if len(held_out) == 0:
                kept, held_out = kept[1:], kept[:1]
            train, evaluation = train.select(kept), {"validation": train.select(held_out)}
    first = Path(train_file if train_file is not None else eval_file)  # type: ignore[arg-type]
    return SummarizationTask(
        name or FORMATS.get(first.suffix.lower(), "files"), train, evaluation, multi_sentence, source=str(first.parent)
    )


def load_summarization_task(
    name: str | None = "gigaword",
    *,
    data_dir: str | Path | None = None,
    train_file: str | Path | None = None,
    eval_file: str | Path | None = None,
    document_column: str = DOCUMENT,
    summary_column: str = SUMMARY,
    multi_sentence: bool | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = SPLIT_SEED,
) -> SummarizationTask:
    """Load a summarization task by name or from files; see the module docstring for the name forms.

    ``multi_sentence`` overrides whether ROUGE-Lsum splits summaries into sentences (the named
    datasets know; your files default to False). ``max_train_samples``/``max_eval_samples`` keep a
    random subset (shuffled with ``seed``) of train and of each eval split. The default seed is
    fixed, independent of any training seed, so that runs with different seeds see the same
    examples and are scored on the same documents.
    """
    check_max_samples(max_train_samples, "max_train_samples")
    check_max_samples(max_eval_samples, "max_eval_samples")
    name = None if name is None or not str(name).strip() else str(name).strip()
    key = None if name is None else name.lower()
    custom_columns = document_column != DOCUMENT or summary_column != SUMMARY

    if train_file is not None or eval_file is not None or key in FILE_TASK_NAMES:
        if train_file is None and eval_file is None:
            raise RxfError(f"task {name!r} reads your own files: pass train_file (and optionally eval_file)")
        if key is not None and key not in FILE_TASK_NAMES:
            raise RxfError(
                f"train_file/eval_file are for your own data, but task {name!r} brings its own: "
                "leave out the task name (or use 'csv'/'json'), or leave out the files"
            )
        if data_dir is not None:
            raise RxfError("data_dir is for the named datasets: with train_file/eval_file, leave it out")
        task = load_summarization_files(
            train_file,
            eval_file,
            name=name,
            document_column=document_column,
            summary_column=summary_column,
            multi_sentence=bool(multi_sentence),
        )
    elif key in SUMMARIZATION_DATASETS:
        if custom_columns:
            raise RxfError(
                f"document_column/summary_column do not apply to task {name!r}, whose columns are known: "
                "leave them out, or use train_file/eval_file for your own data"
            )
        task = load_local(key, data_dir) if data_dir is not None else load_hub_summarization(key)
    elif key is None:
        raise RxfError("no summarization data: name a task (" + ", ".join(SUMMARIZATION_DATASETS) + ") or pass train_file")
    else:
        raise RxfError(
            f"unknown summarization task {name!r}{closest(key, SUMMARIZATION_DATASETS)}: choose one of "
            f"{', '.join(SUMMARIZATION_DATASETS)}, or pass train_file/eval_file"
        )
    if multi_sentence is not None:
        task.multi_sentence = multi_sentence
    if task.train is not None:
        task.train = subsample(task.train, max_train_samples, seed)
    task.eval = {split: subsample(ds, max_eval_samples, seed) for split, ds in task.eval.items()}
    return task
