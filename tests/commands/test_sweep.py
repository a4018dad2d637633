"""`rxf sweep` then `rxf report`, end to end on a tiny BERT and tiny GLUE-format data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rxf.cli import main
from tiny_glue import tiny_bert_dir, tiny_rte_dir, write_recipe


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli-sweep")
    recipe = write_recipe(root / "rte.yaml", tiny_bert_dir(root / "model"), tiny_rte_dir(root / "glue"))
    path = root / "sweep.yaml"
    path.write_text(
        f"recipes: [{recipe.name}]\nmethods: [standard, r4f]\ntrials: 1\nseeds: [1, 2]\n"
        f"learning_rates: [1.0e-3]\noutput_dir: {root / 'out'}\n"
    )
    return path


def test_sweep_then_report_end_to_end(sweep_file, tmp_path, capsys):
    out = sweep_file.parent / "out"
    assert main(["sweep", "--config", str(sweep_file)]) == 0
    assert "5 runs (5 trained now" in capsys.readouterr().out  # Standard has one setting: no search
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert sorted((r["method"], r["phase"], r["seed"]) for r in records) == [
        ("r4f", "search", 0), ("r4f", "seeds", 1), ("r4f", "seeds", 2),
        ("standard", "seeds", 1), ("standard", "seeds", 2),
    ]

    assert main(["sweep", "--config", str(sweep_file)]) == 0  # resumed: everything was done
    assert "5 runs (0 trained now" in capsys.readouterr().out

    report = tmp_path / "report"
    assert main(["report", "--runs", str(out), "--output-dir", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "Max over seeds" in printed and "| R4F |" in printed and "failed rate" in printed
    assert {p.name for p in report.iterdir()} == {"table2.md", "table2.csv", "stability.md", "comparison.md", "figure2.png", "progress.md", "regularizers.md"}
    assert "| RTE | R4F | 1 | 2 | 1, 2 |" in (report / "progress.md").read_text()
    rows = (report / "table2.csv").read_text().splitlines()
    assert rows[0].startswith("task,method,metric,runs,max,median") and len(rows) == 3


def test_sweep_flags_override_the_file(sweep_file, tmp_path, capsys):
    out = tmp_path / "only-search"
    code = main(["sweep", "--config", str(sweep_file), "--methods", "r4f", "--search-only",
                 "--output-dir", str(out), "--set", "max_steps=1", "--tasks", "rte"])
    assert code == 0
    (record,) = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert record["phase"] == "search" and record["metrics"]["config"]["max_steps"] == 1


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--methods", "r3ff"], ["methods", "(from --methods)", "r3f"]),
        (["--tasks", "cola"], ["--tasks cola", "matches none"]),
        (["--set", "seed=3"], ["overrides cannot set 'seed'"]),
        (["--set", "max_step=3"], ["max_step", "max_steps"]),
        (["--trials", "0"], ["trials"]),
        (["--sampler", "grd"], ["sampler", "grid"]),
    ],
)
def test_sweep_mistakes_exit_2_with_one_line(sweep_file, capsys, argv, words):
    assert main(["sweep", "--config", str(sweep_file), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rxf: error:") and err.count("\n") == 1
    for word in words:
        assert word in err


def test_missing_sweep_file(tmp_path, capsys):
    assert main(["sweep", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_methods_flag_leaves_the_other_rows_search_spaces_aside(sweep_file, tmp_path, capsys):
    path = tmp_path / "spaces.yaml"
    path.write_text(sweep_file.read_text().replace("output_dir:", "search_spaces: {r4f: {lambda_: [1.0]}}\noutput_dir:")
                    .replace(str(sweep_file.parent / "out"), str(tmp_path / "out")).replace("recipes: [", f"recipes: [{sweep_file.parent}/"))
    assert main(["sweep", "--config", str(path), "--methods", "standard", "--seeds", "1"]) == 0
    assert "1 runs (1 trained now" in capsys.readouterr().out


def test_an_error_inside_a_search_run_is_one_line(sweep_file, tmp_path):
    """Not optuna's warning and traceback first (fuzz audit s14, B5): a search run whose data is missing."""
    from fuzz.conftest import assert_clean_failure, run_cli

    path = tmp_path / "sweep.yaml"
    path.write_text(
        f"recipes: [{sweep_file.parent / 'rte.yaml'}]\nmethods: [r4f]\ntrials: 1\nseeds: [1]\nlearning_rates: [1.0e-3]\n"
        f"search_overrides: {{data_dir: {tmp_path / 'no-such-glue'}}}\noutput_dir: {tmp_path / 'out'}\n"
    )
    assert_clean_failure(run_cli(["sweep", "--config", path]), "no-such-glue")


def test_an_output_dir_that_is_a_file_is_one_line(sweep_file, tmp_path, capsys):
    (tmp_path / "afile").write_text("x\n")
    assert main(["sweep", "--config", str(sweep_file), "--output-dir", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a folder" in err and "afile" in err


def test_two_processes_share_one_sweep_and_train_each_run_once(tmp_path):
    """The same `rxf sweep` started twice at once: each run trained by one of them, the sweep complete."""
    import os
    import re
    import subprocess
    import sys

    recipe = write_recipe(tmp_path / "rte.yaml", tiny_bert_dir(tmp_path / "model"), tiny_rte_dir(tmp_path / "glue"),
                          max_steps=40, eval_steps=20)  # runs of a second or two, so that the processes overlap
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"recipes: [{recipe.name}]\nmethods: [standard, r3f]\ntrials: 2\nseeds: [1, 2, 3]\n"
                     f"learning_rates: [1.0e-3, 3.0e-3]\noutput_dir: {tmp_path / 'out'}\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "rxf.cli", "sweep", "--config", str(sweep)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
                 for _ in range(2)]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    trained = [re.findall(r"^\[glue/rte .*\] accuracy=\S+ in \d+s$", output, re.M) for output in outputs]
    assert len(trained[0]) + len(trained[1]) == 2 * 2 + 2 * 3  # every run trained once, by one process
    assert trained[0] and trained[1]  # both worked (they overlap: each starts in a second, the sweep takes ~20 s)
    assert len(list((tmp_path / "out" / "records").glob("*.json"))) == 10
    assert not (tmp_path / "out" / "runs").exists()
