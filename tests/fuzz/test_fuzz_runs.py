"""Fuzz cases of issue 13, classes 3, 7 and 8: run directory ownership, write faults, damaged checkpoints.

* class 3: a run directory belongs to one run. Another run (other seed, method, data, learning
  rate), a finished run, outputs rxf cannot identify, a live lock: refused with one line, and what
  the directory held is byte-for-byte intact. A stale lock is taken over; ``--overwrite`` replaces.
* class 7: a checkpoint write that fails (disk full, read-only, permission denied; monkeypatched,
  and on a real tmpfs / read-only bind mount where this machine allows mounting) ends with one
  line naming the folder and the cause, removes the staging folder, leaves the earlier checkpoints
  intact, and the same command afterwards resumes with no manual step.
* class 8: a damaged newest checkpoint is skipped (with a warning) for the previous sound one; a
  checkpoint of another model or label set is refused naming the checkpoint and what differs.

Runs are interrupted in-process (a KeyboardInterrupt at a chosen step, as Ctrl-C would) to leave a
run directory with checkpoints behind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fuzz.conftest import assert_clean_failure, run_cli, snapshot

STEPS = ["--max-steps", "6", "--eval-steps", "2", "--batch-size", "4", "--max-length", "16", "--no-progress",
         "--set", "keep_checkpoints=2"]


def train(model, data, out, *extra) -> list:
    return ["train", "--model", model, "--train-file", data, *STEPS, "--output-dir", out, *extra]


def interrupted(run, args, step: int, monkeypatch) -> None:
    """Run ``args`` and stop it (as Ctrl-C would) once step ``step`` and its checkpoint are done."""
    from rxf.trainer import RxfTrainerMixin

    original = RxfTrainerMixin.training_step

    def stop_after(self, *args, **kwargs):
        if self.state.global_step == step:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(RxfTrainerMixin, "training_step", stop_after)
        result = run(args)
    assert result.returncode == 130, result.stderr[-3000:]


def checkpoints(out: Path) -> list[str]:
    folder = out / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def resumes(result, checkpoint: str) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from" in result.stdout and result.stdout.split("resuming from", 1)[1].split()[0].endswith(checkpoint)


@pytest.fixture
def finished_run(run_in_process, tmp_path, tiny_model, tiny_csv):
    out = tmp_path / "run"
    args = train(tiny_model, tiny_csv, out)
    assert run_in_process(args).returncode == 0
    return out, args


@pytest.fixture
def unfinished_run(run_in_process, tmp_path, tiny_model, tiny_csv, monkeypatch):
    """A run stopped after step 4: checkpoint-2 and checkpoint-4 on disk."""
    out = tmp_path / "run"
    args = train(tiny_model, tiny_csv, out)
    interrupted(run_in_process, args, 4, monkeypatch)
    assert checkpoints(out) == ["checkpoint-2", "checkpoint-4"]
    return out, args


# ---- class 3: one run per run directory --------------------------------------------------------


@pytest.mark.parametrize(
    "change, fragments",
    [
        (["--seed", "7"], ["holds another run", "seed: 42 there, 7 here", "--overwrite"]),
        (["--method", "r4f"], ["holds another run", 'method: "r3f" there, "r4f" here']),
        (["--lr", "0.001"], ["holds another run", "learning_rate"]),
        (["--lambda", "2.0"], ["holds another run", "method_options.lambda_"]),
        ([], ["holds this run, finished", "--overwrite"]),
    ],
    ids=["other-seed", "other-method", "other-lr", "other-option", "same-command"],
)
def test_a_finished_run_is_never_overwritten_silently(run_in_process, finished_run, change, fragments):
    out, args = finished_run
    before = snapshot(out)
    assert_clean_failure(run_in_process([*args, *change]), str(out), *fragments)
    assert snapshot(out) == before


@pytest.mark.parametrize(
    "change, fragments",
    [
        (["--method", "r4f"], ['method: "r3f" there, "r4f" here']),
        (["--seed", "7"], ["seed: 42 there, 7 here"]),
        (["--max-length", "24"], ["max_length: 16 there, 24 here"]),
    ],
    ids=["other-method", "other-seed", "other-max-length"],
)
def test_an_unfinished_run_is_not_resumed_by_another_run(run_in_process, unfinished_run, change, fragments):
    out, args = unfinished_run
    before = snapshot(out)
    assert_clean_failure(run_in_process([*args, *change]), "holds another run", *fragments)
    assert snapshot(out) == before


def test_changed_data_is_another_run(run_in_process, unfinished_run, tiny_csv):
    out, args = unfinished_run
    before = snapshot(out)
    tiny_csv.write_text(tiny_csv.read_text().replace("the cat sat", "the dog sat"))
    assert_clean_failure(run_in_process(args), "same settings on other data", "checkpoint-4", "--overwrite")
    assert snapshot(out) == before


def test_data_with_other_labels_is_another_run(run_in_process, unfinished_run, tiny_csv):
    out, args = unfinished_run
    before = snapshot(out)
    tiny_csv.write_text(tiny_csv.read_text().replace(",neg", ",meh"))
    assert_clean_failure(run_in_process(args), "other data", 'labels: ["neg", "pos"] there, ["meh", "pos"] here')
    assert snapshot(out) == before


@pytest.mark.parametrize("left", ["metrics.json", "checkpoints/checkpoint-2/trainer_state.json"])
def test_outputs_without_a_manifest_are_refused(run_in_process, tmp_path, tiny_model, tiny_csv, left):
    out = tmp_path / "old-run"
    (out / left).parent.mkdir(parents=True, exist_ok=True)
    (out / left).write_text("{}")
    before = snapshot(out)
    assert_clean_failure(run_in_process(train(tiny_model, tiny_csv, out)), "no run.json", "cannot tell")
    assert snapshot(out) == before


def test_a_damaged_manifest_is_named(run_in_process, finished_run):
    out, args = finished_run
    (out / "run.json").write_bytes(b'{"status": "fin\xffished"')
    before = snapshot(out)
    assert_clean_failure(run_in_process(args), "run.json", "line 1")
    assert snapshot(out) == before


def test_a_live_lock_refuses_a_second_process(run_in_process, finished_run):
    out, args = finished_run
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (out / ".rxf.lock").write_text(json.dumps({"pid": owner.pid, "host": socket.gethostname(), "started": "now"}))
        before = snapshot(out)
        assert_clean_failure(run_in_process([*args, "--overwrite"]), "in use by another rxf run", f"pid {owner.pid}")
        assert snapshot(out) == before
    finally:
        owner.kill()
        owner.wait()


def test_a_lock_of_another_machine_is_not_taken_over(run_in_process, finished_run):
    out, args = finished_run
    (out / ".rxf.lock").write_text(json.dumps({"pid": 1, "host": "gpu-node-7", "started": "now"}))
    before = snapshot(out)
    assert_clean_failure(run_in_process([*args, "--overwrite"]), "gpu-node-7", ".rxf.lock")
    assert snapshot(out) == before


def test_two_processes_on_one_directory(run_in_process, tmp_path, tiny_model, tiny_csv):
    """A real second `rxf train` while the first trains: refused while the first holds the lock."""
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "rxf.cli", *map(str, train(tiny_model, tiny_csv, out, "--set", "max_steps=100000"))],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 240
        while not (out / "checkpoints").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.5)  # the first run is training once it writes checkpoints
        assert first.poll() is None, "the first run ended early"
        result = run_in_process(train(tiny_model, tiny_csv, out, "--set", "max_steps=100000"))
        assert_clean_failure(result, "in use by another rxf run", f"pid {first.pid}")
    finally:
        first.kill()
        first.wait()


def test_a_stale_lock_is_taken_over(run_in_process, unfinished_run):
    out, args = unfinished_run
    (out / ".rxf.lock").write_text(json.dumps({"pid": 2**22 + 17, "host": socket.gethostname(), "started": "then"}))
    result = run_in_process(args)
    resumes(result, "checkpoint-4")
    assert "taking over the lock" in result.stderr and not (out / ".rxf.lock").exists()


def test_overwrite_replaces_a_finished_run(run_in_process, finished_run):
    out, args = finished_run
    result = run_in_process([*args, "--seed", "7", "--overwrite"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["seed"] == 7
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert not list(out.glob(".rxf-earlier-run-*"))  # nothing of the earlier run left aside


def test_overwrite_stopped_before_its_first_training_step_leaves_the_finished_run_byte_for_byte(
    run_in_process, finished_run, monkeypatch
):
    """Issue s15: --overwrite removed the earlier run at start, so a run that then failed (out of memory
    at the first step, Ctrl-C, a trainer that refused the model) lost it."""
    out, args = finished_run
    before = snapshot(out)
    interrupted(run_in_process, [*args, "--seed", "7", "--overwrite"], 0, monkeypatch)
    assert snapshot(out) == before


def test_overwrite_lets_the_earlier_run_go_after_the_first_training_step(run_in_process, finished_run, monkeypatch):
    out, args = finished_run
    interrupted(run_in_process, [*args, "--seed", "7", "--overwrite"], 2, monkeypatch)
    assert checkpoints(out) == ["checkpoint-2"] and not (out / "metrics.json").exists()
    assert not list(out.glob(".rxf-earlier-run-*"))
    resumes(run_in_process([*args, "--seed", "7"]), "checkpoint-2")  # the new run is the folder's now


def test_output_dir_that_is_a_file(run_in_process, tmp_path, tiny_model, tiny_csv):
    (tmp_path / "out").write_text("notes")
    assert_clean_failure(run_in_process(train(tiny_model, tiny_csv, tmp_path / "out")), "is a file, not a folder")
    assert (tmp_path / "out").read_text() == "notes"


def test_an_error_before_training_leaves_no_output_directory(run_in_process, tmp_path, tiny_model):
    """Issue 17: `--task bogus` named the task plainly and left an empty output directory behind."""
    out = tmp_path / "runs" / "bogus"
    line = assert_clean_failure(run_in_process(["train", "--model", tiny_model, "--task", "bogus", "--output-dir", out]), "'bogus'")
    assert "is not cached in None" not in line and "hub is off" in line
    assert not (tmp_path / "runs").exists()


# ---- class 7: write faults while saving a checkpoint --------------------------------------------


def failing_torch_save(error: BaseException, checkpoint: str):
    """torch.save that writes a few bytes and fails (as a full disk does) for files of ``checkpoint``."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if checkpoint in str(f):
            Path(f).write_bytes(b"PK\x03\x04 cut short")
            raise error
        return real_save(obj, f, *args, **kwargs)

    return save


@pytest.mark.parametrize(
    "error, cause",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "no space left on device"),
        (OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
        (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
        (RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file data/3: file write failed"),
         "file write failed"),
    ],
    ids=["disk-full", "read-only", "permission", "torch-enforce-fail"],
)
def test_a_failed_checkpoint_write_is_one_line_and_the_run_resumes(run_in_process, tmp_path, tiny_model, tiny_csv,
                                                                     monkeypatch, error, cause):
    out = tmp_path / "run"
    args = train(tiny_model, tiny_csv, out)
    interrupted(run_in_process, args, 2, monkeypatch)
    before = snapshot(out / "checkpoints")
    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", failing_torch_save(error, "checkpoint-4"))
        result = run_in_process(args)
    assert_clean_failure(result, "checkpoint-4", str(out / "checkpoints"), cause, "resume from checkpoint-2")
    assert snapshot(out / "checkpoints") == before  # checkpoint-2 intact, no .staging left behind
    resumes(run_in_process(args), "checkpoint-2")  # the same command, nothing done by hand
    assert (out / "metrics.json").is_file() and not (out / "checkpoints").exists()


def test_a_failed_write_of_the_results_is_one_line_and_the_run_resumes(run_in_process, tmp_path, tiny_model, tiny_csv,
                                                                        monkeypatch):
    import rxf.train

    out = tmp_path / "run"
    args = train(tiny_model, tiny_csv, out)

    def full_disk(path, payload):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(rxf.train, "write_json_atomic", full_disk)
        assert_clean_failure(run_in_process(args), "could not write the run's results", "no space left on device")
    assert checkpoints(out)[-1] == "checkpoint-6"
    resumes(run_in_process(args), "checkpoint-6")
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 6


def test_a_failed_write_of_the_training_history_is_one_line(run_in_process, tmp_path, tiny_model, tiny_csv, monkeypatch):
    """Not only checkpoints: any file of the run that cannot be written (here history.jsonl) ends in one line."""
    import rxf.history

    out = tmp_path / "run"
    args = train(tiny_model, tiny_csv, out)
    interrupted(run_in_process, args, 2, monkeypatch)
    before = snapshot(out / "checkpoints")

    def full_disk(path, mode="r", *rest, **kwargs):
        if "a" in mode:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return open(path, mode, *rest, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(rxf.history, "open", full_disk, raising=False)
        assert_clean_failure(run_in_process(args), "could not write history.jsonl", str(out), "no space left on device")
    assert snapshot(out / "checkpoints") == before
    resumes(run_in_process(args), "checkpoint-2")


def test_disk_full_on_a_real_tmpfs(mount_point, tiny_model, tiny_csv):
    """A 200 kB tmpfs holds one checkpoint of the tiny model, not two: the second save fills it."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount_point)], check=True)
    out = mount_point / "run"
    args = train(tiny_model, tiny_csv, out, "--set", "keep_checkpoints=1")
    assert_clean_failure(run_cli(args), str(out / "checkpoints"), "no space left on device", "resume from checkpoint-2")
    from rxf.checkpoints import checkpoint_problem

    assert checkpoints(out) == ["checkpoint-2"] and checkpoint_problem(out / "checkpoints" / "checkpoint-2") is None
    subprocess.run(["mount", "-o", "remount,size=16m", str(mount_point)], check=True)  # space freed
    result = run_cli(args)
    resumes(result, "checkpoint-2")


def test_read_only_checkpoints_folder_on_a_real_mount(mount_point, run_in_process, tiny_model, tiny_csv, monkeypatch):
    out = mount_point / "run"
    args = train(tiny_model, tiny_csv, out)
    interrupted(run_in_process, args, 2, monkeypatch)
    folder = out / "checkpoints"
    before = snapshot(folder)
    if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        assert_clean_failure(run_cli(args), str(folder), "read-only file system")
        assert snapshot(folder) == before
    finally:
        subprocess.run(["umount", str(folder)], check=True)
    resumes(run_cli(args), "checkpoint-2")


# ---- class 8: damaged and incompatible checkpoints ----------------------------------------------


def cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda c: cut(c / "optimizer.pt"), "optimizer.pt is truncated"),
        (lambda c: (c / "model.safetensors").unlink(), "model weights (model.safetensors) are missing"),
        (lambda c: cut(c / "model.safetensors"), "model.safetensors is truncated"),
        (lambda c: cut(c / "trainer_state.json"), "trainer_state.json is damaged"),
        (lambda c: (c / "scheduler.pt").unlink(), "scheduler.pt is missing"),
    ],
    ids=["truncated-optimizer", "missing-weights", "truncated-weights", "truncated-state", "missing-scheduler"],
)
def test_a_damaged_newest_checkpoint_is_skipped_with_a_warning(run_in_process, unfinished_run, damage, problem):
    out, args = unfinished_run
    damage(out / "checkpoints" / "checkpoint-4")
    result = run_in_process(args)
    resumes(result, "checkpoint-2")
    warnings = [line for line in result.stderr.splitlines() if "damaged" in line]
    assert len(warnings) == 1 and problem in warnings[0] and "resuming from checkpoint-2 instead" in warnings[0]


def test_a_half_deleted_rotated_checkpoint_does_not_stop_the_run(run_in_process, unfinished_run):
    out, args = unfinished_run
    oldest = out / "checkpoints" / "checkpoint-2"
    for name in ("optimizer.pt", "model.safetensors"):  # rotation killed while deleting it
        (oldest / name).unlink()
    result = run_in_process(args)
    resumes(result, "checkpoint-4")
    assert "damaged" not in result.stderr


def test_every_checkpoint_damaged_starts_over_with_a_warning(run_in_process, unfinished_run):
    out, args = unfinished_run
    for name in ("checkpoint-2", "checkpoint-4"):
        cut(out / "checkpoints" / name / "optimizer.pt")
    result = run_in_process(args)
    assert result.returncode == 0 and "resuming from" not in result.stdout
    assert "starting over" in result.stderr


def test_the_resumed_run_after_a_damaged_checkpoint_matches_an_uninterrupted_one(run_in_process, unfinished_run, tmp_path):
    out, args = unfinished_run
    cut(out / "checkpoints" / "checkpoint-4" / "optimizer.pt")
    resumes(run_in_process(args), "checkpoint-2")
    reference = tmp_path / "reference"
    assert run_in_process([*args[:-1], reference]).returncode == 0  # the same run in another directory, uninterrupted
    curve = lambda run: [(e["step"], e["loss"]) for e in json.loads((run / "metrics.json").read_text())["loss_curve"]]  # noqa: E731
    evaluations = lambda run: [(e["step"], e["eval_accuracy"]) for e in json.loads((run / "metrics.json").read_text())["history"]]  # noqa: E731
    assert curve(out) == pytest.approx(curve(reference), rel=1e-5) and evaluations(out) == evaluations(reference)


class CallsCode:
    """Unpickling this runs a shell command: what a planted optimizer.pt would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["optimizer.pt", "rng_state.pth"])
def test_a_checkpoint_file_that_would_run_code_is_refused_and_kept(run_in_process, unfinished_run, tmp_path, name):
    out, args = unfinished_run
    planted = out / "checkpoints" / "checkpoint-4" / name
    marker = tmp_path / "code-ran"
    torch.save({"state": CallsCode(marker)}, planted)
    before = snapshot(out / "checkpoints")
    assert_clean_failure(run_in_process(args), str(planted), "posix.system", "remove checkpoint-4", "--overwrite")
    assert not marker.exists()
    assert snapshot(out / "checkpoints") == before  # left in place for its owner, not removed as damage
    shutil.rmtree(out / "checkpoints" / "checkpoint-4")
    resumes(run_in_process(args), "checkpoint-2")
    assert not marker.exists()


def other_run_checkpoint(run_in_process, monkeypatch, tmp_path, model, data) -> Path:
    """checkpoint-4 of another run (other data or model), stopped after step 4."""
    out = tmp_path / "other"
    interrupted(run_in_process, train(model, data, out), 4, monkeypatch)
    return out / "checkpoints" / "checkpoint-4"


def test_a_checkpoint_with_other_labels_is_refused(run_in_process, unfinished_run, tmp_path, tiny_model, monkeypatch):
    out, args = unfinished_run
    three = tmp_path / "three.csv"
    three.write_text("text,label\n" + "".join(f"the cat sat {w},{w}\n" for w in ["good", "bad", "red"] * 14))
    foreign = other_run_checkpoint(run_in_process, monkeypatch, tmp_path, tiny_model, three)
    target = out / "checkpoints" / "checkpoint-4"
    shutil.rmtree(target)
    shutil.copytree(foreign, target)
    before = snapshot(out)
    assert_clean_failure(run_in_process(args), "checkpoint-4", "3 labels", "this run has 2", "does not fit")
    assert snapshot(out) == before


def test_a_checkpoint_of_another_model_is_refused(run_in_process, unfinished_run, tmp_path, tiny_csv, monkeypatch):
    from transformers import BertConfig, BertModel

    out, args = unfinished_run
    wider = tmp_path / "wider"
    shutil.copytree(args[args.index("--model") + 1], wider)
    config = BertConfig.from_pretrained(wider)
    config.hidden_size, config.intermediate_size = 32, 64
    BertModel(config).save_pretrained(wider)
    foreign = other_run_checkpoint(run_in_process, monkeypatch, tmp_path, wider, tiny_csv)
    target = out / "checkpoints" / "checkpoint-4"
    shutil.rmtree(target)
    shutil.copytree(foreign, target)
    before = snapshot(out)
    assert_clean_failure(run_in_process(args), "checkpoint-4", "shape", "does not fit")
    assert snapshot(out) == before
