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
    # A train output_dir whose run --overwrite was moving aside when it crashed: the hidden folder is no run.
    train_output(tmp_path / "moving" / ".rxf-earlier-run-7.moving", "glue/rte", "r3f", 1, [0.6], 0.5)
    assert main(["report", "--runs", str(tmp_path / "moving")]) == 2
    assert "holds no runs" in capsys.readouterr().err


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


# ---- bad records, bad options, write faults: one line, exit 2, the earlier report untouched (fuzz audit s14) ----

from fuzz.conftest import CliResult, assert_clean_failure, snapshot  # noqa: E402


def report(args: list, capsys) -> CliResult:
    """``rxf report ARGS`` in this process; an exception that escapes main fails the test."""
    code = main(["report", *map(str, args)])
    out, err = capsys.readouterr()
    return CliResult(code, out, err)


def good_records() -> list[dict]:
    return [fake_record("glue/rte", method, seed, [0.55 + seed / 100, 0.6 + seed / 100], 0.527)
            for method in ("standard", "r3f") for seed in range(1, 6)]


def old_report(folder):
    """An earlier report: every file holds "OLD <name>"."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("table2.md", "table2.csv", "stability.md", "comparison.md", "figure2.png", "progress.md", "regularizers.md"):
        (folder / name).write_text(f"OLD {name}\n")
    return folder


def _set(path: str, value):
    """A change to one record: the value at a dotted path (with [i] for a list item); ... deletes it."""
    def change(record: dict) -> None:
        *parents, last = path.replace("[", ".").replace("]", "").split(".")
        target = record
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is ...:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return change


@pytest.mark.parametrize(
    "change,words",
    [
        (_set("phase", ...), ["'phase'", "missing"]),
        (_set("phase", "final"), ["'phase'", "search, seeds", "'final'"]),
        (_set("task", ...), ["'task'", "missing"]),
        (_set("task", 5), ["'task'", "string"]),
        (_set("method", None), ["'method'", "null"]),
        (_set("seed", ...), ["'seed'", "whole number"]),
        (_set("seed", None), ["'seed'", "null"]),
        (_set("majority_baseline", ...), ["'majority_baseline'", "missing"]),
        (_set("majority_baseline", None), ["'majority_baseline'", "mapping"]),
        (_set("majority_baseline", {"accuracy": "abc"}), ["'majority_baseline.accuracy'", "finite number"]),
        (_set("majority_baseline", {"accuracy": float("nan")}), ["'majority_baseline.accuracy'", "nan"]),
        (_set("metrics", [1, 2]), ["'metrics'", "mapping"]),
        (_set("metrics.history", [1, 2]), ["'metrics.history[0]'", "mapping"]),
        (_set("metrics.history", "oops"), ["'metrics.history'", "list"]),
        (_set("metrics.history[0].eval_accuracy", "0.7"), ["'metrics.history[0].eval_accuracy'", "finite number"]),
        (_set("metrics.history[1].eval_accuracy", None), ["'metrics.history[1].eval_accuracy'", "null"]),
        (_set("metrics.history[0].eval_accuracy", float("nan")), ["'metrics.history[0].eval_accuracy'", "nan"]),
        (_set("metrics.history[1].eval_accuracy", float("inf")), ["'metrics.history[1].eval_accuracy'", "inf"]),
        (_set("metrics.loss_curve", [{"loss": 1.0, "epoch": "one", "r3f_divergence": 0.1}]), ["'metrics.loss_curve[0].epoch'", "'one'"]),
        (_set("objective", ...), ["'objective'", "missing"]),
    ],
)
def test_a_malformed_record_is_named_in_one_line_before_anything_is_written(tmp_path, capsys, change, words):
    records = good_records()
    change(records[0])
    runs = write_records(tmp_path / "sweep", records)
    out = old_report(tmp_path / "report")
    before = snapshot(out)
    line = assert_clean_failure(report(["--runs", runs, "--output-dir", out], capsys), records[0]["run_id"] + ".json", *words)
    assert "delete it to redo that run" in line
    assert snapshot(out) == before


def test_a_record_that_is_not_a_mapping_is_named(tmp_path, capsys):
    runs = write_records(tmp_path / "sweep", good_records())
    (runs / "records" / "zz.json").write_text("[1, 2, 3]")
    assert_clean_failure(report(["--runs", runs], capsys), "zz.json", "must be a mapping", "[1, 2, 3]")


@pytest.mark.parametrize(
    "change,words",
    [
        ({"best": "x"}, ["'best'", "'x'"]),
        ({"best": {"eval_accuracy": float("nan")}}, ["'best.eval_accuracy'", "finite"]),
        ({"history": "x"}, ["'history'", "list"]),
        ({"majority_baseline": [0.5]}, ["'majority_baseline'", "[0.5]"]),
        ({"majority_baseline": None, "config": "oops"}, ["no majority_baseline", "'config'"]),
        ({"seed": None}, ["'seed'", "whole number"]),
        ({"task": ["glue/rte"]}, ["'task'", "string"]),
    ],
)
def test_a_malformed_train_metrics_json_is_named_in_one_line(tmp_path, capsys, change, words):
    run = train_output(tmp_path / "run", "glue/rte", "standard", 1, [0.6], 0.5)
    metrics = {**json.loads((run / "metrics.json").read_text()), **change}
    (run / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if v is not None or k != "majority_baseline"}))
    line = assert_clean_failure(report(["--runs", run, "--output-dir", tmp_path / "report"], capsys), "run/metrics.json", *words)
    assert "leave" in line and "out of --runs" in line
    assert not (tmp_path / "report").exists()


def test_a_train_run_from_before_majority_baselines_still_loads(tmp_path, capsys):
    """Older `rxf train` runs wrote no majority_baseline: it is computed from the data their config names."""
    from tiny_glue import tiny_rte_dir

    data = tiny_rte_dir(tmp_path / "glue")
    run = train_output(tmp_path / "run", "glue/rte", "standard", 1, [0.6], 0.5)
    metrics = json.loads((run / "metrics.json").read_text())
    del metrics["majority_baseline"]
    metrics["config"] = {"task": "glue/rte", "data_dir": str(data)}
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert main(["report", "--runs", str(run), "--output-dir", str(tmp_path / "report")]) == 0
    with open(tmp_path / "report" / "table2.csv") as f:
        (row,) = csv.DictReader(f)
    assert float(row["majority_baseline"]) == pytest.approx(0.5) and float(row["max"]) == pytest.approx(0.6)


def test_a_failed_write_leaves_the_earlier_report_as_it_was(tmp_path, capsys, full_disk):
    """Disk full while the sixth file is written: one line, and not one earlier file replaced."""
    runs = write_records(tmp_path / "sweep", good_records())
    out = old_report(tmp_path / "report")
    before = snapshot(out)
    with full_disk("progress.md"):
        line = assert_clean_failure(report(["--runs", runs, "--output-dir", out], capsys), "could not write the report", str(out), "no space left")
    assert "as it was" in line
    assert snapshot(out) == before  # and no temporary file left behind


def test_a_figure_that_cannot_be_drawn_removes_the_earlier_one_and_says_so(tmp_path, capsys, monkeypatch):
    from rxf.experiments import report as report_module

    def broken(plt, cells, labels):
        raise ValueError("cannot draw")

    monkeypatch.setattr(report_module, "_draw_distributions", broken)
    runs = write_records(tmp_path / "sweep", good_records())
    out = old_report(tmp_path / "report")
    result = report(["--runs", runs, "--output-dir", out], capsys)
    assert result.returncode == 0
    assert [line for line in result.stderr.splitlines() if "figure2" in line] == [
        "rxf: warning: figure2.png was not drawn (ValueError: cannot draw); it is left out of the results, "
        "and the earlier figure2.png will be removed when the new results are written (it shows earlier results)"
    ]
    assert not (out / "figure2.png").exists() and (out / "table2.md").read_text() != "OLD table2.md\n"


def test_an_output_dir_that_cannot_hold_the_report_is_one_line(tmp_path, capsys):
    runs = write_records(tmp_path / "sweep", good_records())
    clash = old_report(tmp_path / "clash")
    (clash / "comparison.md").unlink()
    (clash / "comparison.md").mkdir()
    before = snapshot(clash)
    assert_clean_failure(report(["--runs", runs, "--output-dir", clash], capsys), "comparison.md is a folder")
    assert snapshot(clash) == before
    (tmp_path / "afile").write_text("x\n")
    assert_clean_failure(report(["--runs", runs, "--output-dir", tmp_path / "afile"], capsys), "is a file, not a folder")
    line = assert_clean_failure(report(["--runs", runs, "--output-dir", tmp_path / "afile" / "sub"], capsys), "--output-dir")
    assert f"afile/sub cannot be created: {tmp_path / 'afile'} is a file, not a folder" in line


def test_a_folder_given_twice_counts_each_run_once(tmp_path, capsys):
    runs = write_records(tmp_path / "sweep", good_records())
    result = report(["--runs", runs, runs / "records", "--output-dir", tmp_path / "report"], capsys)
    assert result.returncode == 0
    assert result.stderr.count("\n") == 1 and "counted once" in result.stderr
    assert "| STD | 65.0 (5) |" in result.stdout  # 5 seeds, not 10


def test_a_record_hard_linked_into_a_second_folder_counts_once(tmp_path, capsys):
    import os

    runs = write_records(tmp_path / "sweep", good_records())
    other = tmp_path / "other" / "records"
    other.mkdir(parents=True)
    first = sorted((runs / "records").glob("*.json"))[0]
    os.link(first, other / first.name)  # as summarize --table treats it: the same file, another path
    result = report(["--runs", runs, other.parent, "--output-dir", tmp_path / "report"], capsys)
    assert result.returncode == 0, result.stderr
    assert "counted once" in result.stderr and "| STD | 65.0 (5) |" in result.stdout


def test_two_records_of_one_seed_are_refused(tmp_path, capsys):
    """A copied record (or two sweeps' runs of one row and seed) would count that seed twice."""
    records = good_records()
    copy = json.loads(json.dumps(records[0]))
    copy["run_id"] = "copied"
    runs = write_records(tmp_path / "sweep", [*records, copy])
    assert_clean_failure(report(["--runs", runs], capsys), "copied.json", f"{records[0]['run_id']}.json", "seed 1")


def test_a_copied_search_run_is_refused(tmp_path, capsys):
    search = fake_record("glue/rte", "r3f", 0, [0.6], 0.527, phase="search")
    first = write_records(tmp_path / "one", [*good_records(), search])
    second = write_records(tmp_path / "two", [search])
    assert_clean_failure(report(["--runs", first, second, "--output-dir", tmp_path / "report"], capsys), "same search run", search["run_id"])


def test_a_record_file_given_as_runs_is_named(tmp_path, capsys):
    runs = write_records(tmp_path / "sweep", good_records())
    record = next((runs / "records").glob("*.json"))
    assert_clean_failure(report(["--runs", record], capsys), record.name, "is a file", "the folder that holds it")


@pytest.mark.parametrize(
    "option,words",
    [
        (["--metric", "rte=accuracy"], ["--metric rte=accuracy", "'rte'", "did you mean 'glue/rte'", "glue/rte"]),
        (["--metric", "glue/rtee=accuracy"], ["'glue/rtee'", "did you mean 'glue/rte'"]),
        (["--label", "standrd=Standard"], ["--label standrd=Standard", "did you mean 'standard'", "r3f, standard"]),
        (["--label", "standard=R3F"], ["'r3f'", "'standard'", "'R3F'"]),
        (["--learned", "rte=0.62"], ["--learned rte=0.62", "did you mean 'glue/rte'"]),
        (["--learned", "glue/rte=62%"], ["--learned glue/rte=62%", "must be a number", "glue/rte=0.62"]),
        (["--learned", "glue/rte=nan"], ["--learned glue/rte=nan", "from -1 to 1"]),
    ],
)
def test_an_option_that_names_no_task_or_row_is_one_line(tmp_path, capsys, option, words):
    runs = write_records(tmp_path / "sweep", good_records())
    assert_clean_failure(report(["--runs", runs, *option], capsys), *words)
    assert not (runs / "report").exists()


def test_no_search_runs_is_said_plainly(tmp_path, capsys):
    runs = write_records(tmp_path / "sweep", good_records())
    line = assert_clean_failure(report(["--runs", runs, "--phase", "search"], capsys), f"no search runs in {runs}:", "without --phase search")
    assert "[" not in line and "until its seeds phase" not in line
