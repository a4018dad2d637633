"""Resume after a crash: SIGKILL mid-run (and mid-save), rerun the same command, same results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rxf.checkpoints import latest_checkpoint
from tiny_models import save_tiny_classifier_dir, write_sentiment_csv

DRIVER = Path(__file__).resolve().parent / "resume_driver.py"


def test_latest_checkpoint_ignores_incomplete_ones(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    for step, complete in ((4, True), (8, True), (12, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text('{"global_step": 1}' if complete else '{"global_')
    (tmp_path / ".staging" / "checkpoint-16").mkdir(parents=True)
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint-8")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    model = save_tiny_classifier_dir(root / "model")
    data = write_sentiment_csv(root / "train.csv", rows=64)
    return root, model, data


def write_config(root, model, data, name):
    config = {
        "model": model, "task": None, "train_file": data, "method": "r3f",
        "method_options": {"sigma": 0.01}, "learning_rate": 1e-3, "max_steps": 16, "batch_size": 4,
        "eval_steps": 4, "checkpoint_steps": 4, "keep_checkpoints": 2, "logging_steps": 2, "seed": 3,
        "progress_bar": False, "output_dir": str(root / name), "save_model": False, "max_length": 16,
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(config, *kill):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(DRIVER), str(config), *kill], capture_output=True, text=True, env=env, timeout=600)


def curves(output_dir):
    metrics = json.loads((Path(output_dir) / "metrics.json").read_text())
    losses = [(e["step"], e["loss"], e["task_loss"], e["r3f_divergence"]) for e in metrics["loss_curve"]]
    evaluations = [(e["step"], e["eval_loss"], e["eval_accuracy"]) for e in metrics["history"]]
    return metrics, losses, evaluations


@pytest.mark.parametrize("kill", [("step", "10"), ("save", "12")], ids=["mid-run", "mid-save"])
def test_killed_run_resumes_to_the_same_result(setup, kill):
    root, model, data = setup
    reference = root / "uninterrupted"
    if not (reference / "metrics.json").exists():
        done = run(write_config(root, model, data, "uninterrupted"))
        assert done.returncode == 0, done.stderr[-3000:]
    name = f"killed-{kill[0]}"
    config = write_config(root, model, data, name)
    crashed = run(config, *kill)
    assert crashed.returncode == -9, crashed.stderr[-3000:]  # really killed
    checkpoints = root / name / "checkpoints"
    assert not (root / name / "metrics.json").exists()
    # Only complete checkpoints count: the one being written when killed is not one of them.
    assert latest_checkpoint(checkpoints) == str(checkpoints / "checkpoint-8")
    if kill[0] == "save":
        assert (checkpoints / ".staging" / "checkpoint-12").is_dir() and not (checkpoints / "checkpoint-12").exists()

    resumed = run(config)  # the same command again
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    expected, expected_losses, expected_evals = curves(reference)
    got, got_losses, got_evals = curves(root / name)
    assert got["resumed_from"].endswith("checkpoint-8")
    assert [s for s, *_ in got_losses] == [s for s, *_ in expected_losses] == [2, 4, 6, 8, 10, 12, 14, 16]
    # Same model, optimizer, data order, dropout and noise streams: equal up to float round-off.
    for a, b in zip(got_losses, expected_losses):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7)
    for a, b in zip(got_evals, expected_evals):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7)
    assert not checkpoints.exists()  # a finished run cleans up its checkpoints


def test_starting_over_on_top_of_a_crashed_run_needs_consent(setup, capsys):
    from rxf.cli import main

    root, model, data = setup
    config = write_config(root, model, data, "consent")
    assert run(config, "step", "6").returncode == -9
    assert main(["train", "--config", str(config), "--set", "resume=false"]) == 2
    message = capsys.readouterr().err
    assert "unfinished run" in message and "checkpoint-4" in message
