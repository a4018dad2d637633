"""`rxf report` on hand-made run records: files written, numbers printed, mistakes exit 2."""

from __future__ import annotations

import csv
import json

import pytest

from rxf.cli import main
from tiny_glue import fake_record, write_records


def test_report_prints_and_writes_the_tables(tmp_path, capsys):
    records = [fake_record("glue/cola", method, seed, [score], 0.0, metric="mcc")
               for method, scores in {"r3f": [0.30, 0.35, 0.0], "smart": [0.25, 0.33, 0.31]}.items()
               for seed, score in enumerate(scores, start=1)]
    runs = write_records(tmp_path / "sweep", records)
    assert main(["report", "--runs", str(runs)]) == 0
    printed = capsys.readouterr().out
    assert "| SMART | 33.0 (3) |" in printed and "| R3F | 35.0 (3) |" in printed  # max
    assert "| R3F | 30.0 (3) |" in printed  # median
    assert "| R3F | 18.9 | 1/3 | 33 % |" in printed  # std ×100 of (0.30, 0.35, 0.0); the 0.0 run failed
    assert (runs / "report" / "figure2.png").is_file()


def test_report_mistakes_exit_2(tmp_path, capsys):
    assert main(["report", "--runs", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    runs = write_records(tmp_path / "sweep", [fake_record("glue/rte", "r3f", 1, [0.6], 0.5)])
    assert main(["report", "--runs", str(runs), "--metric", "glue/rte"]) == 2
    assert "task=metric" in capsys.readouterr().err
    assert main(["report", "--runs", str(runs), "--metric", "glue/rte=mcc"]) == 2
    assert "no 'mcc'" in capsys.readouterr().err
    assert main(["report", "--runs", str(runs), "--label", "r3f-sigma0"]) == 2
    assert "--label expects row=name" in capsys.readouterr().err


def test_report_shows_a_row_under_its_label(tmp_path, capsys):
    """--label names a sweep variant in every table; the records and the CSV keep the row's own name."""
    records = [fake_record("glue/rte", method, seed, [0.6 + seed / 100], 0.527)
               for method in ("standard", "r3f-sigma0") for seed in range(1, 6)]
    runs = write_records(tmp_path / "sweep", records)
    assert main(["report", "--runs", str(runs), "--label", "r3f-sigma0=R-Drop", "--label", "standard=Standard"]) == 0
    printed = capsys.readouterr().out
    assert "| R-Drop | 65.0 (5) |" in printed and "| Standard | 65.0 (5) |" in printed and "r3f-sigma0" not in printed
    report = runs / "report"
    for name in ("comparison.md", "progress.md", "stability.md"):
        text = (report / name).read_text()
        assert "R-Drop" in text and "r3f-sigma0" not in text, name
    with open(report / "table2.csv") as f:
        assert {row["method"] for row in csv.DictReader(f)} == {"standard", "r3f-sigma0"}


def train_output(folder, task: str, method: str, seed: int, scores: list[float], baseline: float):
    """An `rxf train` output directory: the metrics.json run_training writes, one evaluation per score."""
    record = fake_record(task, method, seed, scores, baseline)
    metrics = {**record["metrics"], "task": task, "method": method, "seed": seed,
               "majority_baseline": record["majority_baseline"]}
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_report_over_train_outputs_and_a_sweep_together(tmp_path, capsys):
    """Plain `rxf train` outputs (one by one, or a folder of them) mix with a sweep's records."""
    standard = [train_output(tmp_path / "runs" / f"std-{seed}", "glue/rte", "standard", seed, [0.5, score], 0.527)
                for seed, score in ((1, 0.60), (2, 0.58), (3, 0.62))]
    r3f = train_output(tmp_path / "r3f", "glue/rte", "r3f", 1, [0.66, 0.64], 0.527)
    sweep = write_records(tmp_path / "sweep", [fake_record("glue/rte", "r4f", 1, [0.61], 0.527)])
    out = tmp_path / "report"
    assert main(["report", "--runs", str(tmp_path / "runs"), str(r3f), str(sweep), "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| STD | 62.0 (3) |" in printed and "| R3F | 66.0 (1) |" in printed and "| R4F | 61.0 (1) |" in printed
    assert "| STD | 60.0 (3) |" in printed  # median of the three best scores
    with open(out / "table2.csv") as f:
        rows = {row["method"]: row for row in csv.DictReader(f)}
    assert float(rows["standard"]["mean"]) == pytest.approx(0.60) and float(rows["standard"]["std"]) == pytest.approx(0.02)
    assert (out / "figure2.png").stat().st_size > 0
    # one train output alone: the report goes inside it
    assert main(["report", "--runs", str(standard[0])]) == 0
    assert (standard[0] / "report" / "table2.md").is_file()


def test_report_names_what_is_not_a_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", "--runs", str(tmp_path / "empty")]) == 2
    assert "holds no runs" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text('{"loss": 1}')
    assert main(["report", "--runs", str(tmp_path / "bad")]) == 2
    assert "not the metrics.json of an rxf train run" in capsys.readouterr().err


def test_report_over_real_train_runs(trained_runs, tmp_path, capsys):
    """metrics.json as `rxf train` writes it (with its majority-class scores) is a run of the report."""
    runs = [str(trained_runs["reviews"]), str(trained_runs["tickets"])]
    assert main(["report", "--runs", *runs, "--output-dir", str(tmp_path / "report")]) == 0
    with open(tmp_path / "report" / "table2.csv") as f:
        rows = {(row["method"], row["metric"]): row for row in csv.DictReader(f)}
    reviews = json.loads((trained_runs["reviews"] / "metrics.json").read_text())
    row = rows[("r4f", "accuracy")]
    assert float(row["max"]) == pytest.approx(reviews["best"]["eval_accuracy"])
    assert float(row["majority_baseline"]) == pytest.approx(reviews["majority_baseline"]["accuracy"]) == pytest.approx(1 / 3)
    assert ("r3f", "micro_f1") in rows  # the multi-label run, by its main metric
