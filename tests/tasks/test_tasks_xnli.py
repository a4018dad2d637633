"""The XNLI reader: the shared XTREME files, subsets, file layouts and bad input."""

import collections

import pytest
from shared_data import SHARED_DATA
from tiny_multilingual import write_tsv, write_xnli_dir

from rxf.errors import RxfError
from rxf.tasks import available_tasks, load_task
from rxf.tasks.xnli import (
    LABEL_NAMES,
    XNLI_LANGUAGES,
    group_subset,
    read_xnli_tsv,
    xnli_files,
    xnli_languages,
)

XNLI_DIR = SHARED_DATA / "xnli"
needs_xnli = pytest.mark.skipif(not XNLI_DIR.is_dir(), reason=f"XNLI files not found at {XNLI_DIR}")


@needs_xnli
def test_shared_files_parse_in_all_15_languages_with_the_documented_counts():
    for lang in XNLI_LANGUAGES:
        dev = read_xnli_tsv(XNLI_DIR / "dev" / f"dev-{lang}.tsv")
        test = read_xnli_tsv(XNLI_DIR / "test_labeled_derived" / f"test-{lang}.tsv")
        assert (len(dev), len(test)) == (2490, 5010), lang
        assert collections.Counter(dev["label"]) == {0: 830, 1: 830, 2: 830}, lang
        assert collections.Counter(test["label"]) == {0: 1670, 1: 1670, 2: 1670}, lang
        assert all(text and pair for text, pair in zip(test["text"], test["text_pair"])), lang


def _row_indices(subset, full) -> set[int]:
    """Where the (premise, hypothesis) pairs of ``subset`` sit in ``full``."""
    position = {pair: i for i, pair in enumerate(zip(full["text"], full["text_pair"]))}
    return {position[pair] for pair in zip(subset["text"], subset["text_pair"])}


@needs_xnli
def test_the_task_trains_on_english_dev_and_tests_the_same_rows_in_every_language():
    task = load_task("xnli", data_dir=XNLI_DIR, max_train_samples=30, max_eval_samples=12, seed=3)
    assert list(task.eval) == [f"test_{lang}" for lang in XNLI_LANGUAGES]
    assert task.label_names == list(LABEL_NAMES) and task.main_metric == "accuracy"
    assert len(task.train) == 30 and all(len(ds) == 12 for ds in task.eval.values())
    english_dev = read_xnli_tsv(XNLI_DIR / "dev" / "dev-en.tsv")
    assert len(_row_indices(task.train, english_dev)) == 30
    files = xnli_files(XNLI_DIR, XNLI_LANGUAGES)[1]
    rows = {lang: _row_indices(task.eval[f"test_{lang}"], read_xnli_tsv(files[lang])) for lang in XNLI_LANGUAGES}
    assert all(chosen == rows["en"] for chosen in rows.values())  # parallel items
    assert len({r // 3 for r in rows["en"]}) == 4  # 4 whole premise groups
    assert collections.Counter(task.eval["test_th"]["label"]) == {0: 4, 1: 4, 2: 4}
    # The training seed does not move the subsets: every seed sees the same data.
    other = load_task("xnli", data_dir=XNLI_DIR, max_train_samples=30, max_eval_samples=12, seed=99)
    assert other.train["text_pair"] == task.train["text_pair"]
    assert other.eval["test_sw"]["text_pair"] == task.eval["test_sw"]["text_pair"]


def test_subsets_take_whole_premise_groups_and_the_same_rows_in_every_language(tmp_path):
    write_xnli_dir(tmp_path, ["en", "de", "ru"], test_groups=10)
    rows = group_subset(30, 9)
    assert list(rows) == sorted(rows) and len(rows) == 9
    assert all({3 * (r // 3), 3 * (r // 3) + 1, 3 * (r // 3) + 2} <= set(rows) for r in rows)
    task = load_task("xnli/en,de,ru", data_dir=tmp_path, max_eval_samples=9)
    full = load_task("xnli/en,de,ru", data_dir=tmp_path)
    for lang in ("en", "de", "ru"):
        chosen = {(t, p) for t, p in zip(task.eval[f"test_{lang}"]["text"], task.eval[f"test_{lang}"]["text_pair"])}
        every = list(zip(full.eval[f"test_{lang}"]["text"], full.eval[f"test_{lang}"]["text_pair"]))
        assert chosen <= set(every)
    assert group_subset(30, None) is None and group_subset(30, 30) is None


def test_test_splits_are_ordered_by_length(tmp_path):
    write_xnli_dir(tmp_path, ["en", "zh"])
    task = load_task("xnli/en,zh", data_dir=tmp_path)
    lengths = [len(t) + len(p) for t, p in zip(task.eval["test_zh"]["text"], task.eval["test_zh"]["text_pair"])]
    assert lengths == sorted(lengths)


def test_language_names_in_table_order_and_errors():
    assert xnli_languages("xnli") == XNLI_LANGUAGES
    assert xnli_languages("XNLI/ur, en ,fr") == ("en", "fr", "ur")
    with pytest.raises(RxfError, match="'fe' is not an XNLI language.*choose from en, fr, es"):
        xnli_languages("xnli/fe")
    with pytest.raises(RxfError, match="names no language"):
        xnli_languages("xnli/")
    assert "xnli" in available_tasks()


def test_multinli_train_file_is_preferred_to_english_dev(tmp_path):
    write_xnli_dir(tmp_path, ["en", "de"])
    train, tests = xnli_files(tmp_path, ("en", "de"))
    assert train == tmp_path / "dev" / "dev-en.tsv" and tests["de"].parent.name == "test_labeled_derived"
    rows = [("A premise.", "A hypothesis.", "contradictory")] * 3 + [("A premise.", "Another.", "entailment")]
    write_tsv(tmp_path / "train-en.tsv", rows)
    task = load_task("xnli/en,de", data_dir=tmp_path)
    assert len(task.train) == 4 and task.train["label"] == [2, 2, 2, 0]  # XTREME's "contradictory"


def test_bad_files_name_the_problem(tmp_path):
    unlabelled = write_tsv(tmp_path / "test-de.tsv", [("Ein Satz.", "Noch einer.")])
    with pytest.raises(RxfError, match=r"test-de.tsv, line 1: 2 fields .* XTREME strips the test labels"):
        read_xnli_tsv(unlabelled)
    bad_label = write_tsv(tmp_path / "bad.tsv", [("a", "b", "neutral"), ("a", "b", "maybe")])
    with pytest.raises(RxfError, match=r"bad.tsv, line 2: label 'maybe' is not one of entailment"):
        read_xnli_tsv(bad_label)
    with pytest.raises(RxfError, match="does not exist"):
        load_task("xnli", data_dir=tmp_path / "missing")
    write_xnli_dir(tmp_path / "some", ["en"])
    with pytest.raises(RxfError, match="has no test-fr.tsv"):
        load_task("xnli/en,fr", data_dir=tmp_path / "some")
    with pytest.raises(RxfError, match="does not apply to task 'xnli'"):
        load_task("xnli", data_dir=tmp_path / "some", text_column="premise")
    with pytest.raises(RxfError, match="classification task"):
        load_task("xnli/en", data_dir=tmp_path / "some", task_type="regression")
