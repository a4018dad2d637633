"""XNLI: train on English NLI, evaluate zero-shot on 15 languages (the paper's Table 3).

Name forms: ``"xnli"`` (all 15 languages) or ``"xnli/fr,de,sw"`` (some of them). The task's
train split is English; its eval splits are ``test_<lang>``, one per language, in the order of
:data:`XNLI_LANGUAGES` (the paper's column order), so ``test_en`` comes first when asked for.

Two sources:

* ``data_dir``: XTREME's per-language files (``premise<TAB>hypothesis<TAB>label``, csv-quoted),
  found as ``test-<lang>.tsv`` in ``data_dir/test_labeled_derived/``, ``data_dir/test/`` or
  ``data_dir``, and likewise ``dev-<lang>.tsv`` in ``data_dir/dev/`` or ``data_dir``. Training
  uses MultiNLI's ``train-en.tsv`` when the folder has it (XTREME's layout), else the English
  dev set (2,490 pairs) — the offline fallback, since dev and test share no premise.
* no ``data_dir``: the hub, ``nyu-mll/multi_nli`` (train) and ``facebook/xnli`` (test), the
  paper's setting.

Subsets (``max_train_samples``, ``max_eval_samples``) are drawn once with a fixed seed, never
the training seed, and by whole premise groups (the files hold groups of 3 consecutive pairs
sharing a premise, one per label), taking the same rows in every language: every method and
every seed is evaluated on the same parallel test items. Test splits are ordered by length
(accuracy does not depend on the order; padding does).
"""

from __future__ import annotations

import csv
from pathlib import Path

import datasets
import numpy as np

from rxf import hub
from rxf.errors import RxfError, closest
from rxf.io import iter_lines
from rxf.tasks.base import LABEL, SPLIT_SEED, TEXT, TEXT_PAIR, TextTask, make_dataset

# The paper's Table 3 column order.
XNLI_LANGUAGES = ("en", "fr", "es", "de", "el", "bg", "ru", "tr", "ar", "vi", "th", "zh", "hi", "sw", "ur")
# Label ids as the hub datasets (multi_nli, xnli) number them.
LABEL_NAMES = ("entailment", "neutral", "contradiction")
LABEL_ALIASES = {"contradictory": "contradiction"}  # XTREME's MultiNLI train-en.tsv spells it so
GROUP_SIZE = 3  # consecutive pairs sharing a premise
HUB_XNLI = "facebook/xnli"
HUB_MULTI_NLI = "nyu-mll/multi_nli"


def is_xnli_name(name: str) -> bool:
    """True for "xnli" and "xnli/<lang>[,<lang>...]" (any case)."""
    lowered = name.strip().lower()
    return lowered == "xnli" or lowered.startswith("xnli/")


def xnli_languages(name: str) -> tuple[str, ...]:
    """The languages a task name asks for, in Table 3 order: "xnli" -> all 15, "xnli/fr,de" -> (fr, de)."""
    lowered = name.strip().lower()
    if lowered == "xnli":
        return XNLI_LANGUAGES
    asked = [part.strip() for part in lowered.split("/", 1)[1].split(",") if part.strip()]
    if not asked:
        raise RxfError(f"task {name!r} names no language: use 'xnli' or e.g. 'xnli/en,fr,de'")
    for lang in asked:
        if lang not in XNLI_LANGUAGES:
            raise RxfError(
                f"task {name!r}: {lang!r} is not an XNLI language{closest(lang, XNLI_LANGUAGES)}; "
                f"choose from {', '.join(XNLI_LANGUAGES)}"
            )
    return tuple(lang for lang in XNLI_LANGUAGES if lang in asked)


def read_xnli_tsv(path: str | Path) -> datasets.Dataset:
    """One XTREME-format file as a dataset (text = premise, text_pair = hypothesis, label id)."""
    path = Path(path)
    premises: list[str] = []
    hypotheses: list[str] = []
    labels: list[int] = []
    reader = csv.reader(iter_lines(path, "XNLI file"), delimiter="\t")
    end = 0
    for row in reader:
        start, end = end + 1, reader.line_num  # a quoted field can run over several lines
        if not row or row == [""]:
            continue
        where = f"{path}, line {start}"
        if end > start and len(row) != 3:
            raise RxfError(
                f"{where}: a quote (\") is left open: the row runs on to line {end}; close the quote, or remove it"
            )
        if len(row) == 2:
            raise RxfError(
                f"{where}: 2 fields (premise, hypothesis) and no label: XTREME strips the test labels; "
                "use labelled test files (e.g. shared/data/xnli/test_labeled_derived/) or leave out "
                "data_dir to load facebook/xnli from the hub"
            )
        if len(row) != 3:
            raise RxfError(f"{where}: {len(row)} tab-separated fields, expected 3 (premise, hypothesis, label)")
        label = LABEL_ALIASES.get(row[2].strip(), row[2].strip())
        if label not in LABEL_NAMES:
            raise RxfError(f"{where}: label {row[2]!r} is not one of {', '.join(LABEL_NAMES)}")
        premises.append(row[0])
        hypotheses.append(row[1])
        labels.append(LABEL_NAMES.index(label))
    if not premises:
        raise RxfError(f"{path} has no rows: expected premise<TAB>hypothesis<TAB>label lines")
    return make_dataset(premises, labels, hypotheses)


def group_subset(num_rows: int, n: int | None, seed: int = SPLIT_SEED) -> np.ndarray | None:
    """Sorted row indices of ``n`` rows made of whole premise groups (None: keep every row)."""
    if n is None or n >= num_rows:
        return None
    num_groups = num_rows // GROUP_SIZE
    chosen = np.random.default_rng(seed).permutation(num_groups)[: -(-n // GROUP_SIZE)]
    rows = (chosen[:, None] * GROUP_SIZE + np.arange(GROUP_SIZE)).reshape(-1)
    return np.sort(rows[:n])


def _subset(ds: datasets.Dataset, n: int | None) -> datasets.Dataset:
    rows = group_subset(len(ds), n)
    return ds if rows is None else ds.select(rows)


def by_length(ds: datasets.Dataset) -> datasets.Dataset:
    """The rows ordered by text length: evaluation batches then pad little (about twice as fast on a CPU)."""
    lengths = [len(text) + len(pair) for text, pair in zip(ds[TEXT], ds[TEXT_PAIR])]
    return ds.select(np.argsort(lengths, kind="stable"))


def _find(root: Path, folders: tuple[str, ...], filename: str) -> Path | None:
    for folder in folders:
        candidate = root / folder / filename
        if candidate.is_file():
            return candidate
    return None


def xnli_files(data_dir: str | Path, languages: tuple[str, ...]) -> tuple[Path, dict[str, Path]]:
    """(training file, {lang: test file}) in an XTREME-style folder; see the module docstring."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise RxfError(f"XNLI data dir {root} does not exist or is not a folder")
    train = _find(root, ("", "train"), "train-en.tsv") or _find(root, ("dev", ""), "dev-en.tsv")
    if train is None:
        raise RxfError(
            f"XNLI data dir {root} has neither train-en.tsv (MultiNLI) nor dev/dev-en.tsv to train on: "
            "pass the folder holding dev/ and test_labeled_derived/ (or XTREME's xnli folder)"
        )
    tests = {}
    for lang in languages:
        found = _find(root, ("test_labeled_derived", "test", ""), f"test-{lang}.tsv")
        if found is None:
            raise RxfError(f"XNLI data dir {root} has no test-{lang}.tsv (looked in test_labeled_derived/, test/ and {root})")
        tests[lang] = found
    return train, tests


def trained_on(train_file: Path) -> str:
    """A phrase for reports: what the English training set is."""
    return "MultiNLI train (train-en.tsv)" if train_file.name == "train-en.tsv" else "XNLI English dev (dev-en.tsv)"


def load_xnli_dir(
    data_dir: str | Path,
    languages: tuple[str, ...] = XNLI_LANGUAGES,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
) -> TextTask:
    """XNLI from local XTREME-format files; ``max_eval_samples`` applies per language."""
    train_file, test_files = xnli_files(data_dir, languages)
    train = _subset(read_xnli_tsv(train_file), max_train_samples)
    tests = {f"test_{lang}": by_length(_subset(read_xnli_tsv(path), max_eval_samples)) for lang, path in test_files.items()}
    sizes = {len(ds) for ds in tests.values()}
    if len(sizes) > 1:
        raise RxfError(f"XNLI test files in {data_dir} differ in length ({sorted(sizes)}): they must be parallel")
    return TextTask(name="xnli", train=train, eval=tests, label_names=list(LABEL_NAMES), main_metric="accuracy")


def _hub_split(path: str, config: str | None, split: str) -> datasets.Dataset:
    try:
        ds = hub.load_dataset(path, config, split=split)
    except Exception as error:  # network, hub or cache failures all mean the same thing here
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise RxfError(
            f"could not load {path}{':' + config if config else ''} ({split}) from the Hugging Face hub "
            f"({type(error).__name__}: {first}): pass data_dir with XTREME-format XNLI files instead"
        ) from error
    ds = ds.filter(lambda row: row["label"] in (0, 1, 2))  # MultiNLI marks pairs without a gold label -1
    ds = ds.select_columns(["premise", "hypothesis", "label"]).rename_columns(
        {"premise": TEXT, "hypothesis": TEXT_PAIR}
    )
    return ds.cast_column(LABEL, datasets.Value("int64"))


def load_xnli_hub(
    languages: tuple[str, ...] = XNLI_LANGUAGES,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
) -> TextTask:
    """XNLI as in the paper: MultiNLI train from the hub, XNLI test per language."""
    train = _hub_split(HUB_MULTI_NLI, None, "train")
    if max_train_samples is not None and max_train_samples < len(train):
        train = train.shuffle(seed=SPLIT_SEED).select(range(max_train_samples))
    tests = {f"test_{lang}": by_length(_subset(_hub_split(HUB_XNLI, lang, "test"), max_eval_samples)) for lang in languages}
    return TextTask(name="xnli", train=train, eval=tests, label_names=list(LABEL_NAMES), main_metric="accuracy")


def load_xnli(
    name: str = "xnli",
    data_dir: str | Path | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
) -> TextTask:
    """XNLI from ``data_dir`` if given, else from the hub; see the module docstring."""
    languages = xnli_languages(name)
    if data_dir is None:
        return load_xnli_hub(languages, max_train_samples, max_eval_samples)
    return load_xnli_dir(data_dir, languages, max_train_samples, max_eval_samples)
