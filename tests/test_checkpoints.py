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


def fake_checkpoint(folder: Path) -> Path:
    """A checkpoint folder with every file Trainer writes, small but real (safetensors, torch zip files)."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text('{"global_step": 1}')
    save_file({"weight": torch.zeros(64, 8)}, str(folder / "model.safetensors"))
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.save({"state": torch.zeros(64)}, folder / name)
    return folder


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_latest_checkpoint_ignores_incomplete_ones(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    for step in (4, 8, 12):
        fake_checkpoint(tmp_path / f"checkpoint-{step}")
    (tmp_path / "checkpoint-12" / "trainer_state.json").write_text('{"global_')
    (tmp_path / ".staging" / "checkpoint-16").mkdir(parents=True)
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint-8")


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda c: truncate(c / "optimizer.pt"), "optimizer.pt is truncated"),
        (lambda c: truncate(c / "model.safetensors"), "model.safetensors is truncated"),
        (lambda c: (c / "model.safetensors").unlink(), "model weights (model.safetensors) are missing"),
        (lambda c: (c / "rng_state.pth").unlink(), "rng_state.pth is missing"),
        # A rotation killed half-way: some files gone, trainer_state.json still there.
        (lambda c: [(c / n).unlink() for n in ("optimizer.pt", "scheduler.pt")], "optimizer.pt is missing"),
    ],
    ids=["truncated-optimizer", "truncated-weights", "missing-weights", "missing-rng", "half-deleted"],
)
def test_a_damaged_newest_checkpoint_is_skipped_for_the_previous_sound_one(tmp_path, damage, problem):
    from rxf.checkpoints import checkpoint_problem, find_resumable

    sound, newest = fake_checkpoint(tmp_path / "checkpoint-4"), fake_checkpoint(tmp_path / "checkpoint-8")
    assert checkpoint_problem(newest) is None
    damage(newest)
    assert problem in checkpoint_problem(newest)
    assert find_resumable(tmp_path) == (str(sound), [(newest, checkpoint_problem(newest))])


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


@pytest.mark.parametrize(
    "kill",
    [("step", "10"), ("save", "12"), ("step", "10", "SIGINT"), ("save", "12", "SIGINT")],
    ids=["mid-run", "mid-save", "ctrl-c-mid-run", "ctrl-c-mid-save"],
)
def test_killed_run_resumes_to_the_same_result(setup, kill):
    root, model, data = setup
    reference = root / "uninterrupted"
    if not (reference / "metrics.json").exists():
        done = run(write_config(root, model, data, "uninterrupted"))
        assert done.returncode == 0, done.stderr[-3000:]
    name = "killed-" + "-".join(kill[::2])
    config = write_config(root, model, data, name)
    crashed = run(config, *kill)
    if len(kill) > 2:  # Ctrl-C: a KeyboardInterrupt unwinds the run (the run directory's lock is released)
        assert crashed.returncode != 0 and "KeyboardInterrupt" in crashed.stderr, crashed.stderr[-3000:]
        assert not (root / name / ".rxf.lock").exists()
    else:
        assert crashed.returncode == -9, crashed.stderr[-3000:]  # really killed
        assert (root / name / ".rxf.lock").exists()  # left behind: taken over by the rerun (its process is gone)
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
    # The whole run's mean loss (Trainer alone averages the 8 steps after the restart), from the
    # loss summed up to step 8 that checkpoint-8 keeps.
    assert got["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-5)
    assert got["skipped_nonfinite_steps"] == expected["skipped_nonfinite_steps"] == 0
    # The run's wall time is the log's clock at the end, which went on from where it was at the restart.
    clock = {step: e["wall_time_s"] for step, e in zip([2, 4, 6, 8, 10, 12, 14, 16], got["loss_curve"])}
    assert got["train_wall_time_s"] >= clock[16] > clock[10] > clock[8] > 0
    assert not checkpoints.exists()  # a finished run cleans up its checkpoints


def test_starting_over_on_top_of_a_crashed_run_needs_consent(setup, capsys):
    from rxf.cli import main

    root, model, data = setup
    config = write_config(root, model, data, "consent")
    assert run(config, "step", "6").returncode == -9
    assert main(["train", "--config", str(config), "--set", "resume=false"]) == 2
    message = capsys.readouterr().err
    assert "unfinished run" in message and "checkpoint-4" in message
