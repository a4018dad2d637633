"""The XNLI recipe end to end on a tiny multilingual model and tiny XTREME-format files."""

import csv
import dataclasses
import json
import statistics

import numpy as np
import pytest
import torch
from tiny_multilingual import tiny_multilingual_model_dir, write_xnli_dir

import rxf.train
from rxf.errors import RxfError
from rxf.tasks import load_task
from rxf.xnli import XnliConfig, markdown_table, run_xnli, summarize, wins_text

LANGUAGES = ["en", "de", "ru", "zh"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Two methods x two seeds, trained once for every test of this module."""
    root = tmp_path_factory.mktemp("xnli")
    config = XnliConfig(
        model=str(tiny_multilingual_model_dir(root / "model", dropout=0.1)),
        data_dir=str(write_xnli_dir(root / "data", LANGUAGES, dev_groups=4, test_groups=3)),
        languages=["zh", "en", "ru", "de"],  # any order in; the paper's order out
        methods=["standard", "r4f"],
        seeds=[1, 2],
        epochs=1,
        batch_size=4,
        learning_rate=1e-3,
        prune_vocabulary=True,
        save_models=True,
        output_dir=str(root / "out"),
    )
    return config, run_xnli(config)


def test_every_run_is_tested_in_every_language_and_the_tables_agree(experiment):
    config, result = experiment
    out = config.output_dir
    rows = list(csv.DictReader(open(f"{out}/results.csv")))
    assert [(r["method"], r["seed"], r["language"]) for r in rows] == [
        (m, str(s), lang) for s in (1, 2) for m in ("standard", "r4f") for lang in LANGUAGES
    ]
    for row in rows:  # 9 test pairs per language: accuracies are multiples of 1/9
        assert round(float(row["accuracy"]) * 9, 6) == round(float(row["accuracy"]) * 9)
    summary = json.loads(open(f"{out}/summary.json").read())["summary"]
    for method in ("standard", "r4f"):
        mine = [r for r in rows if r["method"] == method]
        for lang in LANGUAGES:
            values = [float(r["accuracy"]) for r in mine if r["language"] == lang]
            assert summary[method][lang]["mean"] == pytest.approx(statistics.fmean(values))
            assert summary[method][lang]["std"] == pytest.approx(statistics.stdev(values))
        per_seed = [statistics.fmean(float(r["accuracy"]) for r in mine if r["seed"] == s) for s in ("1", "2")]
        assert summary[method]["avg"]["mean"] == pytest.approx(statistics.fmean(per_seed))
    table = open(f"{out}/results.md").read()
    assert "| method | en | de | ru | zh | Avg |" in table and "| r4f | " in table
    assert "r4f beats standard in " in table
    assert "XNLI English dev (dev-en.tsv) (12 pairs), 9 test pairs per language" in table
    assert open(f"{out}/xnli.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    summary_csv = list(csv.reader(open(f"{out}/summary.csv")))
    assert summary_csv[0] == ["method", "statistic", *LANGUAGES, "avg"]
    assert float(summary_csv[1][-1]) == pytest.approx(100 * summary["standard"]["avg"]["mean"], abs=0.005)


def test_recorded_accuracy_is_what_the_saved_model_scores(experiment):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    config, result = experiment
    run = f"{config.output_dir}/runs/r4f-seed2/model"
    model = AutoModelForSequenceClassification.from_pretrained(run).eval()
    tokenizer = AutoTokenizer.from_pretrained(run)
    test = load_task("xnli/ru", data_dir=config.data_dir).eval["test_ru"]
    batch = tokenizer(list(test["text"]), list(test["text_pair"]), padding=True, return_tensors="pt")
    with torch.no_grad():
        predictions = model(**batch).logits.argmax(-1).numpy()
    accuracy = float(np.mean(predictions == np.array(test["label"])))
    recorded = [r["accuracy"] for r in result["records"] if (r["method"], r["seed"], r["language"]) == ("r4f", 2, "ru")]
    assert recorded == [pytest.approx(accuracy)]


def test_finished_runs_are_not_run_again(experiment, monkeypatch):
    config, result = experiment

    def no_training(run_config):
        raise AssertionError(f"trained {run_config.output_dir} again")

    monkeypatch.setattr(rxf.train, "run_training", no_training)
    assert run_xnli(config)["records"] == result["records"]
    # A setting that does not change what a run computes (the progress bar) reuses the runs too.
    assert run_xnli(dataclasses.replace(config, progress_bar=not config.progress_bar))["records"] == result["records"]


def test_configs_are_checked_before_anything_runs(tmp_path):
    with pytest.raises(RxfError, match="languages: 'xx' must be one of en, "):
        XnliConfig(languages=["en", "xx"]).validate()
    with pytest.raises(RxfError, match="method_options has options for 'r3f', which is not in methods"):
        XnliConfig(methods=["standard"], method_options={"r3f": {"lambda_": 1.0}}).validate()
    with pytest.raises(RxfError, match="lambda_"):
        XnliConfig(methods=["r3f"], method_options={"r3f": {"lambda_": -1.0}}).validate()
    with pytest.raises(RxfError, match="unknown train_options key 'warmup'.*warmup_ratio"):
        XnliConfig(train_options={"warmup": 0.1}).validate()
    with pytest.raises(RxfError, match="unknown config key 'seed'.*seeds"):
        XnliConfig.from_dict({"seed": 1})
    with pytest.raises(RxfError, match="lists a method twice"):
        XnliConfig(methods=["r3f", "r3f"]).validate()


def test_markdown_marks_the_best_mean_per_column():
    records = [
        {"method": m, "seed": s, "language": lang, "accuracy": acc}
        for m, s, lang, acc in [("a", 1, "en", 0.5), ("a", 2, "en", 0.7), ("b", 1, "en", 0.4), ("b", 2, "en", 0.6),
                                ("a", 1, "sw", 0.3), ("a", 2, "sw", 0.3), ("b", 1, "sw", 0.4), ("b", 2, "sw", 0.4)]
    ]
    table = markdown_table(summarize(records, ["a", "b"], ["en", "sw"]), ["en", "sw"])
    assert "| a | **60.0 ± 14.1** | 30.0 ± 0.0 | **45.0 ± 7.1** |" in table
    assert "| b | 50.0 ± 14.1 | **40.0 ± 0.0** | **45.0 ± 7.1** |" in table
    wins = wins_text(summarize(records, ["a", "b"], ["en", "sw"]), ["en", "sw"])
    assert wins == "b beats a in 1 of 2 languages: sw; average +0.0 points.\n"
