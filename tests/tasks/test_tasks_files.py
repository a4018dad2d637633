"""Tasks from the user's CSV/TSV/JSON/JSONL files and from (faked) hub datasets."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from rxf.errors import RxfError
from rxf.tasks import load_task


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


TRAIN_CSV = 'sentence,second,sentiment\n"good, really",yes,pos\nbad,no,neg\nmeh,so so,neutral\nfine,ok,pos\n'
EVAL_CSV = "sentence,second,sentiment\ngreat,yes,pos\nawful,no,neg\n"


def test_csv_with_pair_and_string_labels(tmp_path):
    task = load_task(
        train_file=write_csv(tmp_path / "train.csv", TRAIN_CSV),
        eval_file=write_csv(tmp_path / "dev.csv", EVAL_CSV),
        text_column="sentence",
        text_pair_column="second",
        label_column="sentiment",
    )
    assert task.name == "csv" and task.main_metric == "accuracy"
    assert task.label_names == ["neg", "neutral", "pos"]  # sorted label set of train
    assert task.has_text_pair and not task.is_regression
    assert task.train["text"] == ["good, really", "bad", "meh", "fine"]
    assert task.train["text_pair"] == ["yes", "no", "so so", "ok"]
    assert task.train["label"] == [2, 0, 1, 2]
    assert task.eval["validation"]["label"] == [2, 0]
    assert set(task.compute_metrics([2, 1], task.eval["validation"]["label"])) == {"accuracy", "macro_f1"}


def test_jsonl_and_tsv_with_default_columns(tmp_path):
    rows = [{"text": f"t{i}", "text_pair": f"p{i}", "label": i % 3} for i in range(30)]
    task = load_task("json", train_file=write_jsonl(tmp_path / "train.jsonl", rows),
                     eval_file=write_jsonl(tmp_path / "dev.jsonl", rows[:6]), text_pair_column="text_pair")
    assert task.name == "json" and task.label_names == ["0", "1", "2"]
    assert task.train["label"] == [i % 3 for i in range(30)] and len(task.eval["validation"]) == 6
    tsv = write_csv(tmp_path / "train.tsv", "text\tlabel\nit's \"quoted\", ok\t1\nno\t0\nyes\t1\n")
    task = load_task(train_file=tsv)
    assert sorted([*task.train["text"], *task.eval["validation"]["text"]]) == ["it's \"quoted\", ok", "no", "yes"]


def test_numeric_labels_sort_numerically_and_regression_is_inferred(tmp_path):
    rows = [{"text": f"t{i}", "label": [2, 10, 1][i % 3]} for i in range(9)]
    task = load_task(train_file=write_jsonl(tmp_path / "a.jsonl", rows))
    assert task.label_names == ["1", "2", "10"]
    rows = [{"text": f"t{i}", "label": i / 4} for i in range(20)]
    task = load_task(train_file=write_jsonl(tmp_path / "r.jsonl", rows))
    assert task.is_regression and task.num_labels == 1 and task.main_metric == "pearson_spearman"
    assert len(task.train) == 18 and len(task.eval["validation"]) == 2  # fixed 10% held out
    assert task.train.features["label"].dtype == "float32"
    # Integer-valued labels are classes unless task_type says otherwise.
    rows = [{"text": f"t{i}", "label": i % 5} for i in range(20)]
    assert load_task(train_file=write_jsonl(tmp_path / "i.jsonl", rows), task_type="regression").is_regression
    assert load_task(train_file=write_jsonl(tmp_path / "i.jsonl", rows)).num_labels == 5


def test_held_out_split_is_fixed_and_stratified(tmp_path):
    rows = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(100)]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    a, b = load_task(train_file=path, seed=0), load_task(train_file=path, seed=7)
    assert a.eval["validation"]["text"] == b.eval["validation"]["text"]
    assert len(a.eval["validation"]) == 10 and sorted(a.eval["validation"]["label"]) == [0] * 5 + [1] * 5
    assert not set(a.train["text"]) & set(a.eval["validation"]["text"])


def test_eval_label_not_in_train(tmp_path):
    train = write_csv(tmp_path / "train.csv", "text,label\na,pos\nb,neg\n")
    dev = write_csv(tmp_path / "dev.csv", "text,label\nc,pos\nd,neutral\n")
    with pytest.raises(RxfError, match=r"dev\.csv, line 3: label 'neutral' does not occur in .*train\.csv; "
                                       r"the train labels are: neg, pos"):
        load_task(train_file=train, eval_file=dev)


def test_missing_column_lists_existing_ones(tmp_path):
    train = write_csv(tmp_path / "train.csv", "text,labels\na,1\n")
    with pytest.raises(RxfError, match=r"train\.csv has no column 'label' \(did you mean 'labels'\?\): "
                                       r"its columns are text, labels; set label_column"):
        load_task(train_file=train)
    with pytest.raises(RxfError, match=r"has no column 'premise'.*set text_pair_column"):
        load_task(train_file=train, text_pair_column="premise", label_column="labels")


def test_empty_and_unreadable_files(tmp_path):
    with pytest.raises(RxfError, match=r"train_file .*empty\.csv is empty"):
        load_task(train_file=write_csv(tmp_path / "empty.csv", ""))
    with pytest.raises(RxfError, match=r"header\.csv has no data rows \(only a header\)"):
        load_task(train_file=write_csv(tmp_path / "header.csv", "text,label\n"))
    with pytest.raises(RxfError, match=r"eval_file .*nope\.csv does not exist"):
        load_task(train_file=write_csv(tmp_path / "ok.csv", "text,label\na,1\nb,0\n"), eval_file=tmp_path / "nope.csv")
    with pytest.raises(RxfError, match=r"a\.txt: a \.txt file is read as delimited text when you say how.*--delimiter tab"):
        load_task(train_file=write_csv(tmp_path / "a.txt", "text,label\na,1\n"))
    with pytest.raises(RxfError, match=r"unsupported file type '\.xlsx'"):
        load_task(train_file=write_csv(tmp_path / "a.xlsx", "text,label\na,1\n"))
    with pytest.raises(RxfError, match=r"could not read train_file .*ragged\.csv: .*line 3"):
        load_task(train_file=write_csv(tmp_path / "ragged.csv", "text,label\na,1\nb,0,extra\n"))
    with pytest.raises(RxfError, match=r"blank\.csv, line 3: label column 'label' is empty"):
        load_task(train_file=write_csv(tmp_path / "blank.csv", "text,label\na,x\nb,\n"))


def test_option_misuse(tmp_path):
    train = write_csv(tmp_path / "train.csv", "text,label\na,1\nb,0\n")
    with pytest.raises(RxfError, match="task_type 'regresion' \\(did you mean 'regression'\\?\\)"):
        load_task(train_file=train, task_type="regresion")
    with pytest.raises(RxfError, match="pass train_file"):
        load_task("csv")
    with pytest.raises(RxfError, match="eval_file needs a train_file"):
        load_task(eval_file=train)
    with pytest.raises(RxfError, match="brings its own"):
        load_task("glue/rte", train_file=train)
    with pytest.raises(RxfError, match="max_eval_samples must be a positive integer"):
        load_task(train_file=train, max_eval_samples=-1)


def test_hub_dataset_with_config_and_class_labels(monkeypatch):
    features = datasets.Features({"content": datasets.Value("string"), "stars": datasets.ClassLabel(names=["bad", "good"])})

    def split(labels):
        return datasets.Dataset.from_dict({"content": [f"r{i}" for i in range(len(labels))], "stars": labels},
                                          features=features)

    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        return datasets.DatasetDict({"train": split([0, 1, 1, 0]), "test": split([1, 0])})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = load_task("someone/reviews:en", text_column="content", label_column="stars")
    assert calls == [("someone/reviews", "en")]
    assert task.name == "someone/reviews:en" and task.label_names == ["bad", "good"]
    assert list(task.eval) == ["test"] and task.eval["test"]["label"] == [1, 0]


def test_hub_failure_is_an_rxf_error(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'imdb' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    with pytest.raises(RxfError, match=r"'imdb' is not one of rxf's tasks, and as a Hugging Face hub dataset it could "
                                       r"not be fetched: the hub cannot be reached"):
        load_task("imdb")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # issue 17: not "Dataset imdb is not cached in None"
    with pytest.raises(RxfError, match=r"it is not in the local cache, and the hub is off \(HF_HUB_OFFLINE"):
        load_task("imdb")


# ---------------------------------------------------------------------------------------------
# Delimiters and multi-label files, as users have them

SEMICOLON_CSV = (  # a spreadsheet's export in a comma-decimal locale: ';' between fields, commas inside texts
    "review;rating;score\n"
    '"Great product, fast delivery";pos;4,5\n'
    "Terrible, broke after a day;neg;1,0\n"
    "Okay I guess;neutral;3,0\n"
    "Works as described, would buy again;pos;5,0\n"
)


def test_semicolon_csv_is_sniffed_or_named(tmp_path):
    path = write_csv(tmp_path / "reviews.csv", SEMICOLON_CSV)
    for delimiter in (None, "auto", ";", "semicolon"):
        task = load_task(train_file=path, eval_file=path, text_column="review", label_column="rating", delimiter=delimiter)
        assert task.train["text"] == [
            "Great product, fast delivery", "Terrible, broke after a day", "Okay I guess", "Works as described, would buy again"
        ]
        assert task.label_names == ["neg", "neutral", "pos"] and task.train["label"] == [2, 0, 1, 2]
    with pytest.raises(RxfError, match=r"reviews\.csv: .*read with delimiter ',': set delimiter"):  # the wrong one
        load_task(train_file=path, text_column="review", label_column="rating", delimiter="comma")


def test_pipe_csv_is_sniffed_and_a_comma_csv_stays_comma(tmp_path):
    piped = write_csv(tmp_path / "piped.csv", "text|label\nhello, world|greeting\nbye; then|farewell\nhi|greeting\n")
    assert load_task(train_file=piped, eval_file=piped).train["text"] == ["hello, world", "bye; then", "hi"]
    commas = write_csv(tmp_path / "commas.csv", 'text,label\n"a; b | c",x\n"d; e | f",y\n')
    assert load_task(train_file=commas, eval_file=commas).train["text"] == ["a; b | c", "d; e | f"]


def test_tab_separated_txt_when_asked(tmp_path):
    lines = ["sentence\tlabel", 'He said "hi", then left\t1', "No quotes here\t0", "Another, with comma\t1"]
    path = write_csv(tmp_path / "data.txt", "\n".join(lines) + "\n")
    for delimiter in ("tab", "\t", "\\t"):
        task = load_task(train_file=path, eval_file=path, text_column="sentence", delimiter=delimiter)
        assert task.train["text"] == ['He said "hi", then left', "No quotes here", "Another, with comma"]
        assert task.train["label"] == [1, 0, 1]


def test_bad_delimiter_options(tmp_path):
    train = write_csv(tmp_path / "train.csv", "text,label\na,1\nb,0\n")
    with pytest.raises(RxfError, match=r"delimiter '::' is not valid: use one of tab, comma, semicolon"):
        load_task(train_file=train, delimiter="::")
    with pytest.raises(RxfError, match=r"delimiter='tab' is for your own delimited-text files"):
        load_task("glue/rte", delimiter="tab")


def test_multi_label_from_a_jsonl_list_column(tmp_path):
    rows = [
        {"text": "Parliament votes on the football stadium budget", "topics": ["politics", "sport"]},
        {"text": "Striker signs a new contract", "topics": ["sport"]},
        {"text": "New phone has a faster chip", "topics": ["tech"]},
        {"text": "A quiet day", "topics": []},
        {"text": "Minister launches an app", "topics": ["politics", "tech"]},
    ]
    path = write_jsonl(tmp_path / "news.jsonl", rows)
    task = load_task(train_file=path, eval_file=path, label_column="topics")  # inferred from the lists
    assert task.multi_label and task.label_names == ["politics", "sport", "tech"] and task.main_metric == "micro_f1"
    assert task.train["label"][:4] == [[1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]
    labels = task.eval["validation"]["label"]
    perfect = task.compute_metrics([[5.0 if y else -5.0 for y in row] for row in labels], labels)
    assert perfect == {"micro_f1": 1.0, "macro_f1": 1.0, "exact_match": 1.0}
    one_miss = [[5.0 if y else -5.0 for y in row] for row in labels]
    one_miss[0] = [5.0, -5.0, -5.0]  # 'sport' missed in the first row
    scores = task.compute_metrics(one_miss, labels)
    assert scores["exact_match"] == pytest.approx(4 / 5) and scores["micro_f1"] == pytest.approx(2 * 5 / (2 * 5 + 1))
    with pytest.raises(RxfError, match=r"holds lists of labels.*not 'classification'"):
        load_task(train_file=path, label_column="topics", task_type="classification")


def test_multi_label_from_csv_with_a_separator(tmp_path):
    train = write_csv(
        tmp_path / "tickets.csv",
        "subject,tags\n"
        '"Refund, please",billing|urgent\n'
        "App crashes on login,bug\n"
        "Invoice is wrong,billing\n"
        "Site down!!,bug|urgent\n"
        "Just saying thanks,\n",
    )
    task = load_task(train_file=train, eval_file=train, text_column="subject", label_column="tags",
                     task_type="multi_label", label_separator="|")
    assert task.label_names == ["billing", "bug", "urgent"]
    assert task.train["label"] == [[1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 0]]
    unknown = write_csv(tmp_path / "dev.csv", "subject,tags\nHello,bug\nWhere is my parcel,shipping|urgent\n")
    with pytest.raises(RxfError, match=r"dev\.csv, line 3: label 'shipping' does not occur in .*tickets\.csv"):
        load_task(train_file=train, eval_file=unknown, text_column="subject", label_column="tags", label_separator="|")
    with pytest.raises(RxfError, match=r"tickets\.csv, line 2: label 'billing\|urgent' .* is text.*label_separator"):
        load_task(train_file=train, text_column="subject", label_column="tags", task_type="multi_label")
    with pytest.raises(RxfError, match=r"label_separator is for multi-label tasks"):
        load_task(train_file=train, text_column="subject", label_column="tags", task_type="classification", label_separator="|")
