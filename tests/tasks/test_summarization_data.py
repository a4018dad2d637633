"""Summarization data: the local benchmark copies, fixed held-out splits, your own files, and their errors."""

import json

import pytest

from rxf.errors import RxfError
from rxf.tasks.summarization import grouped_split, load_summarization_task
from shared_data import SHARED_DATA

SUMMARIZATION_DIR = SHARED_DATA / "summarization"
needs_summarization = pytest.mark.skipif(
    not SUMMARIZATION_DIR.is_dir(), reason=f"summarization data not found at {SUMMARIZATION_DIR}"
)


@needs_summarization
def test_gigaword_gets_a_fixed_disjoint_80_10_10_split():
    task = load_summarization_task("gigaword", data_dir=SUMMARIZATION_DIR)
    again = load_summarization_task("gigaword", data_dir=SUMMARIZATION_DIR)
    sizes = {"train": len(task.train), **{split: len(ds) for split, ds in task.eval.items()}}
    assert sum(sizes.values()) == 10_000 and set(sizes) == {"train", "validation", "test"}
    assert 950 <= sizes["validation"] <= 1050 and 950 <= sizes["test"] <= 1050
    assert task.eval["test"]["summary"] == again.eval["test"]["summary"]  # fixed, not random per load
    train_docs, test_docs = set(task.train["document"]), set(task.eval["test"]["document"])
    assert not train_docs & test_docs and not train_docs & set(task.eval["validation"]["document"])
    assert task.train.column_names == ["document", "summary"] and not task.multi_sentence
    assert task.train[0]["summary"] and task.train[0]["document"]


@needs_summarization
@pytest.mark.parametrize(
    "name,train,evaluation,multi_sentence",
    [
        ("xsum", 799, {"validation": 100, "test": 100}, False),  # one empty document dropped
        ("cnn_dailymail", None, {"test": 250}, True),
        ("samsum", 818, {"test": 819}, True),
    ],
)
def test_local_copies_of_the_other_datasets(name, train, evaluation, multi_sentence):
    task = load_summarization_task(name, data_dir=SUMMARIZATION_DIR)
    assert (None if task.train is None else len(task.train)) == train
    assert {split: len(ds) for split, ds in task.eval.items()} == evaluation
    assert task.multi_sentence == multi_sentence


@needs_summarization
def test_subsamples_are_the_same_whatever_the_training_seed():
    first = load_summarization_task("gigaword", data_dir=SUMMARIZATION_DIR, max_train_samples=50, max_eval_samples=20)
    second = load_summarization_task("gigaword", data_dir=SUMMARIZATION_DIR, max_train_samples=50, max_eval_samples=20)
    assert len(first.train) == 50 and len(first.eval["test"]) == 20
    assert first.eval["test"]["document"] == second.eval["test"]["document"]


def test_grouped_split_keeps_duplicates_together():
    documents = [f"doc {i % 30}" for i in range(90)]  # every document three times
    train, held_out = grouped_split(documents, (0.2,))
    assert len(held_out) == 18 and len(train) == 72
    assert not {documents[i] for i in train} & {documents[i] for i in held_out}


def test_own_csv_with_columns_and_a_held_out_tenth(tmp_path):
    rows = ["text,headline"] + [f"article number {i} about the storm,storm {i}" for i in range(40)]
    (tmp_path / "train.csv").write_text("\n".join(rows))
    task = load_summarization_task(None, train_file=tmp_path / "train.csv", document_column="text", summary_column="headline")
    assert len(task.train) == 36 and len(task.eval["validation"]) == 4
    assert task.eval["validation"][0]["summary"].startswith("storm")


def test_own_jsonl_eval_file_alone_is_evaluation_only(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(json.dumps({"document": f"doc {i}. More.", "summary": f"sum {i}. Two."}) for i in range(5)))
    task = load_summarization_task("json", eval_file=path, multi_sentence=True)
    assert task.train is None and len(task.eval["validation"]) == 5 and task.multi_sentence


@pytest.mark.parametrize(
    "content,options,words",
    [
        ("article,summary\nsome text,\n", {}, ["line 2", "'summary'", "empty"]),
        ("article,summary\nsome text,a sum\n", {"document_column": "articel"}, ["no column 'articel'", "'article'"]),
        ("document,summary\n", {}, ["no data rows"]),
    ],
)
def test_bad_files_name_the_file_column_and_row(tmp_path, content, options, words):
    path = tmp_path / "data.csv"
    path.write_text(content)
    options = {"document_column": "article", **options} if "article" in content else options
    with pytest.raises(RxfError) as error:
        load_summarization_task(None, train_file=path, **options)
    message = str(error.value)
    assert str(path) in message and all(word in message for word in words), message


@pytest.mark.parametrize(
    "record, words",
    [
        ({"document": ["the", "city"], "summary": "a city"}, ["'document'", "JSON list", "must be a string"]),
        ({"document": "the city", "summary": {"text": "a city"}}, ["'summary'", "JSON object", "must be a string"]),
    ],
)
def test_a_jsonl_cell_that_is_not_text_is_named_not_trained_on_as_its_repr(tmp_path, record, words):
    path = tmp_path / "data.jsonl"
    good = {"document": "the town hall", "summary": "a hall"}
    path.write_text("".join(json.dumps(r) + "\n" for r in [good] * 3 + [record]))
    with pytest.raises(RxfError) as error:
        load_summarization_task(None, train_file=path)
    message = str(error.value)
    assert str(path) in message and all(word in message for word in words), message


def test_a_lone_surrogate_escape_in_jsonl_is_named_with_line_and_field(tmp_path):
    path = tmp_path / "data.jsonl"
    good = json.dumps({"document": "the town hall", "summary": "a hall"}) + "\n"
    path.write_text(good * 2 + '{"document": "red \\ud800 cat", "summary": "red"}\n')  # valid JSON, not text
    with pytest.raises(RxfError) as error:
        load_summarization_task(None, train_file=path)
    message = str(error.value)
    assert all(word in message for word in (str(path), "line 3", "'document'", "surrogate")), message


@pytest.mark.parametrize(
    "name,options,words",
    [
        ("gigawrd", {}, ["unknown summarization task", "gigaword"]),
        ("reddit_tifu", {"data_dir": "/tmp"}, ["no local copy", "reddit_tifu"]),
        ("gigaword", {"data_dir": "/no/such/dir"}, ["data_dir", "not a folder"]),
        ("gigaword", {"document_column": "text"}, ["document_column", "gigaword"]),
        ("xsum", {"train_file": "x.csv"}, ["train_file", "xsum"]),
        ("gigaword", {}, ["hub", "data_dir"]),  # offline in the tests: the hub cannot be reached
        ("gigaword", {"max_train_samples": 0}, ["max_train_samples"]),
    ],
)
def test_bad_task_settings_are_rxf_errors(name, options, words):
    with pytest.raises(RxfError) as error:
        load_summarization_task(name, **options)
    assert all(word in str(error.value) for word in words), str(error.value)


def test_missing_local_file_names_it(tmp_path):
    (tmp_path / "gigaword").mkdir()
    with pytest.raises(RxfError, match="pairs_10k_unknown_split.csv"):
        load_summarization_task("gigaword", data_dir=tmp_path)
