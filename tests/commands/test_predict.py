"""`rxf predict`: the input's rows out, with the label by name and the probabilities, as pipeline() gives them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from transformers import pipeline

from inference_runs import reviews_csv
from rxf.cli import main



def read_rows(path, delimiter=","):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


def test_predictions_keep_the_rows_and_match_pipeline(trained_runs, tmp_path):
    """An R4F run's model loads as plain transformers: our probabilities are pipeline()'s."""
    data = reviews_csv(tmp_path / "new.csv", 12, seed=7)  # semicolon CSV, ids with leading zeros
    assert main(["predict", "--model", str(trained_runs["reviews"]), "--input", str(data), "--no-progress"]) == 0
    rows = read_rows(tmp_path / "new.predictions.csv", delimiter=";")  # the input's delimiter is kept
    originals = read_rows(data, delimiter=";")
    assert [{k: r[k] for k in ("id", "review", "rating")} for r in rows] == originals  # cells as written ("0000")
    assert list(rows[0]) == ["id", "review", "rating", "prediction", "prob_meh", "prob_neg", "prob_pos"]

    classify = pipeline("text-classification", model=str(trained_runs["reviews"] / "model"), top_k=None, device="cpu")
    for row in rows:
        probs = {name: float(row[f"prob_{name}"]) for name in ("meh", "neg", "pos")}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        expected = {item["label"]: item["score"] for item in classify([row["review"]])[0]}
        assert probs == pytest.approx(expected, abs=1e-5)
        assert row["prediction"] == max(expected, key=expected.get)
    accuracy = np.mean([r["prediction"] == r["rating"] for r in rows])
    assert accuracy > 0.5  # the run learned its cue words: the columns are not in a shuffled order


def test_output_format_follows_the_output_extension(trained_runs, tmp_path):
    lines = [{"review": "the cat sat good", "meta": {"source": "app"}}, {"review": "a dog sees bad", "meta": None}]
    data = tmp_path / "new.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["predict", "--model", str(trained_runs["reviews"]), "--input", str(data), "--output", str(tmp_path / "out.tsv"),
                 "--no-progress"]) == 0
    rows = read_rows(tmp_path / "out.tsv", delimiter="\t")
    assert [r["review"] for r in rows] == ["the cat sat good", "a dog sees bad"] and rows[0]["meta"] == '{"source": "app"}'
    assert main(["predict", "--model", str(trained_runs["reviews"] / "model"), "--input", str(data), "--text-column", "review",
                 "--no-progress"]) == 0
    records = [json.loads(line) for line in (tmp_path / "new.predictions.jsonl").read_text().splitlines()]
    assert [r["meta"] for r in records] == [{"source": "app"}, None]
    assert [r["prediction"] for r in records] == [r["prediction"] for r in rows]


def test_multi_label_predictions_are_the_labels_over_one_half(trained_runs, tmp_path):
    data = tmp_path / "tickets.csv"
    data.write_text("text,tags\nthe cat good red,\nbad movie,\na dog sat,\n")
    assert main(["predict", "--model", str(trained_runs["tickets"]), "--input", str(data), "--no-progress"]) == 0
    rows = read_rows(tmp_path / "tickets.predictions.csv")
    names = ["colour", "complaint", "praise"]
    for row in rows:
        probs = np.array([float(row[f"prob_{name}"]) for name in names])
        assert ((0 < probs) & (probs < 1)).all()
        chosen = [name for name, p in zip(names, probs) if p > 0.5]
        assert row["prediction"] == "|".join(chosen)  # the run's label separator


def test_regression_predictions_are_the_score(trained_runs, tmp_path):
    data = tmp_path / "s.jsonl"
    data.write_text('{"sentence": "the cat good good good"}\n{"sentence": "the cat"}\n')
    assert main(["predict", "--model", str(trained_runs["scores"]), "--input", str(data), "--no-progress"]) == 0
    records = [json.loads(line) for line in (tmp_path / "s.predictions.jsonl").read_text().splitlines()]
    assert set(records[0]) == {"sentence", "prediction"}
    regress = pipeline("text-classification", model=str(trained_runs["scores"] / "model"), function_to_apply="none", device="cpu")
    expected = [item["score"] for item in regress([r["sentence"] for r in records])]
    assert [r["prediction"] for r in records] == pytest.approx(expected, abs=1e-4)


def test_predict_mistakes_are_one_line(trained_runs, tmp_path, capsys):
    data = tmp_path / "x.csv"
    data.write_text("body,label\nhello,1\n")
    assert main(["predict", "--model", str(trained_runs["reviews"]), "--input", str(data)]) == 2
    assert "has no column 'review'" in capsys.readouterr().err
    assert main(["predict", "--model", str(trained_runs["reviews"]), "--input", str(data), "--output", str(data)]) == 2
    assert "is the input file" in capsys.readouterr().err
    txt = tmp_path / "x.txt"
    txt.write_text("review\tid\nhello\t1\n")
    assert main(["predict", "--model", str(trained_runs["reviews"]), "--input", str(txt)]) == 2
    assert "--delimiter tab" in capsys.readouterr().err
    assert main(["predict", "--model", str(trained_runs["reviews"]), "--input", str(txt), "--delimiter", "tab", "--no-progress"]) == 0
    assert main(["predict", "--model", str(tmp_path), "--input", str(data)]) == 2
    assert "neither an rxf train output directory" in capsys.readouterr().err
    (tmp_path / "nomodel").mkdir()
    (tmp_path / "nomodel" / "metrics.json").write_text("{}")
    assert main(["predict", "--model", str(tmp_path / "nomodel"), "--input", str(data)]) == 2
    assert "saved no model" in capsys.readouterr().err
    # A run directory whose model/ holds damaged weights: named, not a safetensors traceback.
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(trained_runs["reviews"], damaged)
    weights = damaged / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["predict", "--model", str(damaged), "--input", str(data)]) == 2
    assert "model.safetensors" in capsys.readouterr().err


def test_a_bare_model_directory_and_long_texts(trained_runs, tmp_path, capsys):
    """No run config: columns default to 'text', max_length to what the model's position table takes (64 here)."""
    import shutil

    model = shutil.copytree(trained_runs["reviews"] / "model", tmp_path / "model")
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps({"text": " ".join(["the cat sat good"] * 60)}) + "\n" + json.dumps({"text": "bad"}) + "\n")
    assert main(["predict", "--model", str(model), "--input", str(data), "--no-progress"]) == 0
    assert main(["predict", "--model", str(model), "--input", str(data), "--max-length", "1000", "--no-progress"]) == 0
    assert "max_length 1000 is more than model" in capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "long.predictions.jsonl").read_text().splitlines()]
    assert [r["prediction"] in ("meh", "neg", "pos") for r in records] == [True, True]
