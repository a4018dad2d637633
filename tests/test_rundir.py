"""rxf.rundir: one run per run directory (manifest, refusal naming what differs, overwrite, lock)."""

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rxf import rundir
from rxf.errors import RxfError

SETTINGS = {"model": "/m", "seed": 3, "method": "r3f", "method_options": {"lambda_": 1.0, "sigma": 1e-5}}
DEFAULTS = {"model": "all-MiniLM-L6-v2", "seed": 42, "dropout": None, "method": "r3f", "method_options": {"lambda_": 1.0, "sigma": 1e-5}}
DATA = {"fingerprint": "abc"}


def started(path, settings=SETTINGS, data=DATA, overwrite=False):
    with rundir.claim(path) as run_dir:
        run_dir.check(settings, DEFAULTS, overwrite=overwrite)
        fresh = run_dir.start(settings, DEFAULTS, data, overwrite=overwrite)
    return fresh


def finished(path):
    with rundir.claim(path) as run_dir:
        run_dir.check(SETTINGS, DEFAULTS, overwrite=False)
        run_dir.start(SETTINGS, DEFAULTS, DATA, overwrite=False)
        (path / "metrics.json").write_text("{}")
        run_dir.finish()


def refusal(path, settings=SETTINGS, overwrite=False) -> str:
    with pytest.raises(RxfError) as caught:
        with rundir.claim(path) as run_dir:
            run_dir.check(settings, DEFAULTS, overwrite=overwrite)
    return str(caught.value)


def test_a_new_run_writes_its_manifest_and_the_same_run_resumes(tmp_path):
    out = tmp_path / "run"
    assert started(out) is True
    manifest = json.loads((out / rundir.MANIFEST).read_text())
    assert manifest["status"] == "running" and manifest["settings"] == SETTINGS and manifest["data"] == DATA
    assert started(out) is False  # the same settings and data: resume
    assert not (out / rundir.LOCK).exists()  # released


def test_another_run_is_refused_naming_what_differs(tmp_path):
    out = tmp_path / "run"
    started(out)
    before = (out / rundir.MANIFEST).read_bytes()
    text = refusal(out, {**SETTINGS, "seed": 4, "method_options": {"lambda_": 2.0, "sigma": 1e-5}})
    assert "holds another run" in text and "seed: 3 there, 4 here" in text
    assert "method_options.lambda_: 1.0 there, 2.0 here" in text and "--overwrite" in text
    assert (out / rundir.MANIFEST).read_bytes() == before


@pytest.mark.parametrize("make", ["another run", "other data", "finished"])
def test_each_refusals_advice_is_reworded_for_verbs_without_an_overwrite_flag(tmp_path, make):
    out = tmp_path / "run"
    finished(out) if make == "finished" else started(out)
    with pytest.raises(RxfError) as raised, rundir.overwrite_said_as("pass --set train.overwrite=true"):
        if make == "another run":
            started(out, {**SETTINGS, "seed": 4})
        elif make == "other data":
            started(out, data={"fingerprint": "def"})
        else:
            started(out)
    assert "--set train.overwrite=true" in str(raised.value) and "--overwrite" not in str(raised.value)


def test_a_setting_absent_from_the_manifest_counts_as_its_default(tmp_path):
    out = tmp_path / "run"
    started(out)
    # A newer rxf adds a field: at its default the old run is the same run; set otherwise it is another.
    assert started(out, {**SETTINGS, "dropout": None}) is False
    text = refusal(out, {**SETTINGS, "dropout": 0.2})
    assert "dropout: null there, 0.2 here" in text


def test_other_data_with_the_same_settings_is_refused(tmp_path):
    out = tmp_path / "run"
    started(out)
    with pytest.raises(RxfError, match="same settings on other data"):
        started(out, data={"fingerprint": "def"})


def test_a_finished_run_is_not_trained_again_silently(tmp_path):
    out = tmp_path / "run"
    finished(out)
    assert "holds this run, finished" in refusal(out)
    assert rundir.is_finished(out)


def earlier_run(tmp_path):
    """A finished run with a checkpoint, its own history.jsonl and a file of the user's; and a snapshot of it."""
    out = tmp_path / "run"
    finished(out)
    (out / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (out / "checkpoints" / "checkpoint-4" / "model.safetensors").write_bytes(b"old weights")
    (out / "history.jsonl").write_text("old history")
    (out / "notes.txt").write_text("mine")
    return out, snapshot(out)


def snapshot(root):
    """Every file and folder under ``root`` (hidden ones too), with the bytes of each file."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else "folder" for p in sorted(root.rglob("*"))}


def new_run_writes(out):
    """What a replacing run writes before its first training step."""
    (out / "checkpoints").mkdir()
    (out / "history.jsonl").write_text("new history")
    (out / "config.yaml").write_text("seed: 9")


def test_overwrite_replaces_the_earlier_run_once_the_new_one_has_trained_a_step(tmp_path):
    out, _ = earlier_run(tmp_path)
    with rundir.claim(out) as run_dir:
        run_dir.check({**SETTINGS, "seed": 9}, DEFAULTS, overwrite=True)
        assert (out / "metrics.json").exists()  # nothing moved before start()
        assert run_dir.start({**SETTINGS, "seed": 9}, DEFAULTS, DATA, overwrite=True) is True
        assert sorted(p.name for p in out.iterdir()) == [f"{rundir.EARLIER_RUN}{os.getpid()}", rundir.LOCK, "notes.txt", rundir.MANIFEST]
        new_run_writes(out)
        run_dir.drop_earlier_run()  # the first training step is done
        run_dir.finish()
    assert not (out / "metrics.json").exists() and list((out / "checkpoints").iterdir()) == []
    assert (out / "history.jsonl").read_text() == "new history"
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own outputs go
    assert json.loads((out / rundir.MANIFEST).read_text())["settings"]["seed"] == 9
    assert not list(out.glob(f"{rundir.EARLIER_RUN}*"))  # nothing left aside


@pytest.mark.parametrize("failure", [RxfError("peft cannot wrap a layer"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_overwrite_that_fails_before_its_first_training_step_leaves_the_earlier_run_byte_for_byte(tmp_path, failure, capsys):
    out, before = earlier_run(tmp_path)
    with pytest.raises(type(failure)):
        with rundir.claim(out) as run_dir:
            run_dir.start({**SETTINGS, "seed": 9}, DEFAULTS, DATA, overwrite=True)
            new_run_writes(out)
            raise failure
    assert snapshot(out) == before
    assert f"kept aside in {rundir.EARLIER_RUN}{os.getpid()} until this run's first training step (or its finish)" in capsys.readouterr().err


def test_overwrite_that_cannot_move_the_earlier_run_aside_leaves_it_as_it_was(tmp_path, monkeypatch):
    out, before = earlier_run(tmp_path)
    real_rename, renames = os.rename, []

    def rename(source, target, **kwargs):  # the third entry is on another file system
        renames.append(source)
        if len(renames) == 3:
            raise OSError(18, "Invalid cross-device link", str(source))
        return real_rename(source, target, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(RxfError, match="--overwrite cannot move the earlier run aside .Invalid cross-device link.*left as it was"):
        with rundir.claim(out) as run_dir:
            run_dir.start({**SETTINGS, "seed": 9}, DEFAULTS, DATA, overwrite=True)
    monkeypatch.undo()
    assert snapshot(out) == before


# A replacing run killed (SIGKILL) at one of four points: after it moved the earlier run aside and wrote,
# in the middle of moving it aside, in the middle of deleting it after its first training step, and after
# it marked itself finished but before it let the earlier run go (a run that makes no training step).
KILLED_OVERWRITE = """
import os, pathlib, sys
from rxf import rundir

out, point = pathlib.Path(sys.argv[1]), sys.argv[2]
die = lambda *args, **kwargs: os.kill(os.getpid(), 9)
real_rename, real_remove, renames, removals = os.rename, rundir._remove, [], []

def rename(source, target):
    renames.append(source)
    return die() if point == "while moving aside" and len(renames) == 3 else real_rename(source, target)

def remove(path):
    removals.append(path)
    return die() if point == "while deleting" and len(removals) == 2 else real_remove(path)

os.rename = rename
if point == "while deleting":
    rundir._remove = remove
if point == "after finishing":
    rundir.RunDirectory.drop_earlier_run = die
with rundir.claim(out) as run_dir:
    run_dir.start({"seed": 9}, {}, {"fingerprint": "new"}, overwrite=True)
    (out / "history.jsonl").write_text("new history")
    if point == "while deleting":
        run_dir.drop_earlier_run()
        run_dir.deletion.join()
    if point == "after finishing":
        (out / "metrics.json").write_text("new metrics")
        run_dir.finish()
    die()
"""


def killed_overwrite(out, point):
    killed = subprocess.run([sys.executable, "-c", KILLED_OVERWRITE, str(out), point], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert list(out.glob(".rxf-earlier-run-*"))  # left aside by the killed run


@pytest.mark.parametrize("point", ["after moving aside", "while moving aside", "while deleting", "after finishing"])
def test_overwrite_killed_while_the_earlier_run_is_aside_loses_nothing(tmp_path, capsys, point):
    out, before = earlier_run(tmp_path)
    killed_overwrite(out, point)
    with rundir.claim(out):  # the next run on the folder
        pass
    assert not list(out.glob(".rxf-earlier-run-*"))
    if point in ("while deleting", "after finishing"):  # the new run had begun: the earlier run goes, the user's file stays
        names = ["history.jsonl", "notes.txt", rundir.MANIFEST] + (["metrics.json"] if point == "after finishing" else [])
        assert sorted(p.name for p in out.iterdir()) == sorted(names)
        assert (out / "history.jsonl").read_text() == "new history"
        manifest = json.loads((out / rundir.MANIFEST).read_text())
        assert manifest["settings"] == {"seed": 9}
        assert manifest["status"] == ("finished" if point == "after finishing" else "running")
        assert f"deleted the earlier run in {out}, which an --overwrite run that stopped" in capsys.readouterr().err
    else:
        assert snapshot(out) == before
        assert "put back the earlier run" in capsys.readouterr().err


@pytest.mark.parametrize("point", ["after moving aside", "while moving aside", "while deleting", "after finishing"])
def test_is_finished_reads_the_run_the_next_claim_leaves(tmp_path, point):
    """rxf probe asks before it trains a stage again: a finished stage whose --overwrite rerun was killed
    before its first step is still finished (that claim puts it back), so the rerun passes overwrite again."""
    out, _ = earlier_run(tmp_path)
    killed_overwrite(out, point)
    coming_back = point in ("after moving aside", "while moving aside")
    assert rundir.is_finished(out) == (coming_back or point == "after finishing")
    with rundir.claim(out) as run_dir:
        run_dir.check({"seed": 9}, {}, overwrite=rundir.is_finished(out))  # as rxf probe does: not refused
    assert rundir.is_finished(out) == (coming_back or point == "after finishing")


def failing_remove(monkeypatch, name):
    """``rundir._remove`` fails on ``name`` as on NFS when another process holds a file open in it."""
    real_remove = rundir._remove

    def remove(path):
        if path.name == name:
            raise OSError(errno.ENOTEMPTY, "Directory not empty", str(path / ".nfs0001"))
        return real_remove(path)

    monkeypatch.setattr(rundir, "_remove", remove)


def test_a_replaced_run_that_cannot_be_deleted_is_a_warning_and_the_new_run_goes_on(tmp_path, monkeypatch, capsys):
    out, _ = earlier_run(tmp_path)
    failing_remove(monkeypatch, "checkpoints")
    with rundir.claim(out) as run_dir:
        run_dir.start({**SETTINGS, "seed": 9}, DEFAULTS, DATA, overwrite=True)
        new_run_writes(out)
        run_dir.drop_earlier_run()  # the first training step is done
        (out / "metrics.json").write_text("new metrics")
        run_dir.finish()
    deleting = out / f"{rundir.EARLIER_RUN}{os.getpid()}{rundir.DELETING}"
    warnings = [line for line in capsys.readouterr().err.splitlines() if "could not delete" in line]
    assert warnings == [f"rxf: warning: could not delete the replaced run kept in {deleting} (Directory not empty: "
                        f"{deleting}/checkpoints/.nfs0001): delete that folder yourself"]
    assert json.loads((out / rundir.MANIFEST).read_text())["status"] == "finished"
    # The next claim tries again: a warning, not an error; once it can, the folder goes.
    with rundir.claim(out) as run_dir:
        run_dir.check({**SETTINGS, "seed": 9}, DEFAULTS, overwrite=True)
    assert "could not delete the replaced run" in capsys.readouterr().err and deleting.is_dir()
    monkeypatch.undo()
    with rundir.claim(out):
        pass
    assert not deleting.exists() and (out / "metrics.json").read_text() == "new metrics"


def test_a_replaced_run_whose_rename_failed_does_not_come_back_over_the_new_run(tmp_path, monkeypatch, capsys):
    """The rename to .deleting fails (a warning: delete it yourself), then the new run fails before any checkpoint:
    the earlier run must not come back over the new one (its manifest says it began), as the warning said."""
    out, _ = earlier_run(tmp_path)
    real_rename = os.rename

    def rename(source, target, **kwargs):
        if str(target).endswith(rundir.DELETING):
            raise OSError(errno.EACCES, "Permission denied", str(source))
        return real_rename(source, target, **kwargs)

    with pytest.raises(RuntimeError):
        with rundir.claim(out) as run_dir:
            run_dir.start({**SETTINGS, "seed": 9}, DEFAULTS, DATA, overwrite=True)
            new_run_writes(out)
            monkeypatch.setattr(os, "rename", rename)
            run_dir.drop_earlier_run()  # the first training step is done
            monkeypatch.undo()
            raise RuntimeError("out of memory at update 40")
    assert "could not delete the replaced run" in capsys.readouterr().err
    assert rundir.settled_folder(out) == out and not rundir.is_finished(out)  # what rxf probe and sweep ask
    with rundir.claim(out) as run_dir:
        run_dir.check({**SETTINGS, "seed": 9}, DEFAULTS, overwrite=False)  # the same command again: it resumes
    assert (out / "history.jsonl").read_text() == "new history" and not (out / "metrics.json").exists()
    assert not list(out.glob(f"{rundir.EARLIER_RUN}*"))
    assert "deleted the earlier run" in capsys.readouterr().err


def test_a_run_stopped_while_the_replaced_run_is_deleted_deletes_it_to_the_end(tmp_path):
    out, _ = earlier_run(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with rundir.claim(out) as run_dir:
            run_dir.start({**SETTINGS, "seed": 9}, DEFAULTS, DATA, overwrite=True)
            new_run_writes(out)
            run_dir.drop_earlier_run()
            raise KeyboardInterrupt
    assert not list(out.glob(".rxf-earlier-run-*"))
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "config.yaml", "history.jsonl", "notes.txt", rundir.MANIFEST]


@pytest.mark.parametrize("new_run", ["trains", "fails before its first step"])
def test_overwrite_moves_only_what_a_run_writes(tmp_path, new_run):
    """Another run's folder inside the output_dir, and files written there while the new run loads, stay."""
    out, _ = earlier_run(tmp_path)
    (out / "predictions-test.jsonl").write_text("old predictions")
    inner = rundir.claim(out / "ablation")  # another run, in progress, in a folder inside
    inner.start({"seed": 5}, {}, {"fingerprint": "inner"}, overwrite=False)
    (out / "ablation" / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    with pytest.raises(RuntimeError) if new_run != "trains" else contextlib.nullcontext():
        with rundir.claim(out) as run_dir:
            run_dir.start({**SETTINGS, "seed": 9}, DEFAULTS, DATA, overwrite=True)
            assert not (out / "predictions-test.jsonl").exists() and (out / "ablation" / rundir.LOCK).exists()
            (out / "ablation" / "checkpoints" / "checkpoint-2").mkdir()  # while the new run loads
            (out / "eval-dev").mkdir()
            (out / "eval-dev" / "eval_report.md").write_text("an rxf evaluate report")
            if new_run != "trains":
                raise RuntimeError("out of memory at step 1")
            run_dir.drop_earlier_run()
            run_dir.finish()
    inner.release(failed=False)
    assert sorted(str(p.relative_to(out / "ablation")) for p in (out / "ablation").rglob("*")) == [
        "checkpoints", "checkpoints/checkpoint-1", "checkpoints/checkpoint-2", rundir.MANIFEST]
    assert (out / "eval-dev" / "eval_report.md").is_file() and (out / "notes.txt").read_text() == "mine"
    assert (out / "predictions-test.jsonl").exists() == (new_run != "trains")


def test_overwrite_refuses_a_run_output_that_links_to_something_and_keeps_a_link_to_an_empty_folder(tmp_path):
    out, _ = earlier_run(tmp_path)
    big = tmp_path / "bigger-disk"
    (out / "checkpoints").rename(big)
    (out / "checkpoints").symlink_to(big)  # the checkpoints on a bigger disk, linked in
    before = snapshot(out)
    with pytest.raises(RxfError, match=f"checkpoints is a symbolic link to {big}, .*: empty {big} yourself .the link can stay"):
        with rundir.claim(out) as run_dir:
            run_dir.start({**SETTINGS, "seed": 9}, DEFAULTS, DATA, overwrite=True)
    assert snapshot(out) == before and (big / "checkpoint-4").is_dir()
    # Emptied, the link stays where it is; a new run that stops before its first step leaves the folder empty.
    rundir._remove(big / "checkpoint-4")
    with pytest.raises(RuntimeError):
        with rundir.claim(out) as run_dir:
            run_dir.start({**SETTINGS, "seed": 9}, DEFAULTS, DATA, overwrite=True)
            (out / "checkpoints" / "checkpoint-1").mkdir()
            raise RuntimeError("out of memory")
    assert (out / "checkpoints").is_symlink() and list(big.iterdir()) == []
    assert json.loads((out / rundir.MANIFEST).read_text())["settings"] == SETTINGS
    with rundir.claim(out) as run_dir:
        run_dir.start({**SETTINGS, "seed": 9}, DEFAULTS, DATA, overwrite=True)
        (out / "checkpoints" / "checkpoint-1").mkdir()
        run_dir.drop_earlier_run()
    assert (out / "checkpoints").is_symlink() and [p.name for p in big.iterdir()] == ["checkpoint-1"]


# The SIGTERM handler of rxf.cli around a replacing run that is still loading.
TERMINATED_OVERWRITE = """
import pathlib, sys, time
from rxf import cli, rundir

out = pathlib.Path(sys.argv[1])
try:
    with cli.sigterm_stops_like_ctrl_c(), rundir.claim(out) as run_dir:
        run_dir.start({"seed": 9}, {}, {"fingerprint": "new"}, overwrite=True)
        (out / "history.jsonl").write_text("new history")
        print("loading", flush=True)
        time.sleep(60)
except cli.Terminated:
    sys.exit(143)
"""


def test_sigterm_before_the_first_training_step_puts_the_earlier_run_back(tmp_path):
    out, before = earlier_run(tmp_path)
    run = subprocess.Popen([sys.executable, "-c", TERMINATED_OVERWRITE, str(out)], stdout=subprocess.PIPE, text=True)
    assert run.stdout.readline() == "loading\n"
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=30) == 143
    assert snapshot(out) == before


def test_outputs_without_a_manifest_are_refused(tmp_path):
    out = tmp_path / "old"
    (out / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    assert "no run.json" in refusal(out)
    (tmp_path / "unrelated").mkdir()
    (tmp_path / "unrelated" / "notes.txt").write_text("x")
    assert started(tmp_path / "unrelated") is True


def test_a_failure_before_anything_is_written_leaves_no_directory(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    with pytest.raises(RxfError, match="bad data"):
        with rundir.claim(out) as run_dir:
            run_dir.check(SETTINGS, DEFAULTS, overwrite=False)
            raise RxfError("bad data")
    assert not (tmp_path / "a").exists()
    with pytest.raises(RxfError, match="bad model"):
        with rundir.claim(out) as run_dir:
            run_dir.start(SETTINGS, DEFAULTS, DATA, overwrite=False)
            raise RxfError("bad model")
    assert not (tmp_path / "a").exists()
    # A directory that existed before stays, and so does whatever it held.
    keep = tmp_path / "keep"
    keep.mkdir()
    with pytest.raises(RxfError):
        with rundir.claim(keep):
            raise RxfError("bad")
    assert keep.is_dir() and list(keep.iterdir()) == []


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RxfError, match="is a file, not a folder"):
        rundir.claim(tmp_path / "f")
    with pytest.raises(RxfError, match=f"--output-dir {tmp_path}/f/sub cannot be created: {tmp_path}/f is a file, not a folder"):
        rundir.make_output_dir(tmp_path / "f" / "sub", option="--output-dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_output_folder_removes_what_it_created_after_a_failure_that_wrote_nothing(tmp_path):
    with pytest.raises(RxfError, match="bad data"):
        with rundir.output_folder(tmp_path / "a" / "b"):
            raise RxfError("bad data")
    assert list(tmp_path.iterdir()) == []
    # Once something is written there, it stays (the folders on the way too).
    with pytest.raises(RxfError, match="late"):
        with rundir.output_folder(tmp_path / "a" / "b") as out:
            (out / "results.csv").write_text("x")
            raise RxfError("late")
    assert (tmp_path / "a" / "b" / "results.csv").is_file()
    # A folder that existed before stays, empty or not.
    (tmp_path / "keep").mkdir()
    with pytest.raises(RxfError):
        with rundir.output_folder(tmp_path / "keep"):
            raise RxfError("bad")
    assert (tmp_path / "keep").is_dir()


def test_a_second_process_is_refused_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": holder.pid, "host": socket.gethostname(), "started": "then"}
        (out / rundir.LOCK).write_text(json.dumps(lock))
        with pytest.raises(rundir.RunInUse) as caught:  # (rxf sweep leaves such a run to its holder)
            rundir.claim(out)
        text = str(caught.value)
        assert "in use by another rxf run" in text and f"pid {holder.pid}" in text
        assert caught.value.holder.startswith(f"pid {holder.pid} on host") and caught.value.lock == out / rundir.LOCK
        assert json.loads((out / rundir.LOCK).read_text()) == lock  # the owner's lock is left alone
    finally:
        holder.kill()
        holder.wait()
    # Its process is gone: the lock is stale, taken over with a warning.
    assert started(out) is True
    assert "taking over the lock" in capsys.readouterr().err
    assert not (out / rundir.LOCK).exists()


def test_a_process_that_exited_unreaped_holds_no_lock(tmp_path, capsys):
    """A zombie (exited, its parent has not waited for it yet) still answers kill(pid, 0): it is not taken for alive."""
    out = tmp_path / "run"
    out.mkdir()
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(200):
            if Path(f"/proc/{exited.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                break
            time.sleep(0.05)
        else:
            pytest.fail("the child did not exit")
        (out / rundir.LOCK).write_text(json.dumps({"pid": exited.pid, "host": socket.gethostname(), "started": "then"}))
        assert not rundir.is_locked(out / rundir.LOCK)
        started(out)
        assert "taking over the lock" in capsys.readouterr().err
    finally:
        exited.wait()


def dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def test_two_processes_taking_over_one_stale_lock_do_not_delete_each_others(tmp_path, capsys):
    """B found the lock stale, then A took it over first: B's delete must not remove A's fresh lock."""
    out = tmp_path / "run"
    out.mkdir()
    stale = json.dumps({"pid": dead_pid(), "host": socket.gethostname(), "started": "then"}).encode()
    (out / rundir.LOCK).write_bytes(stale)
    with rundir.claim(out):  # A
        assert "taking over the lock" in capsys.readouterr().err
        b = rundir.RunDirectory(out, [], main_process=True)
        assert b._remove_stale_lock(stale) is False
        assert json.loads((out / rundir.LOCK).read_text())["pid"] == os.getpid()  # A's lock stays
        with pytest.raises(rundir.RunInUse):
            b.lock()
    assert sorted(p.name for p in out.iterdir()) == []


def test_a_takeover_file_left_by_a_crash_does_not_block_the_lock(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / rundir.LOCK).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname(), "started": "then"}))
    takeover = out / (rundir.LOCK + rundir.TAKEOVER)
    takeover.write_text("")
    os.utime(takeover, (time.time() - 60, time.time() - 60))  # its process died while deleting a stale lock
    with rundir.claim(out):
        assert json.loads((out / rundir.LOCK).read_text())["pid"] == os.getpid()
    assert not takeover.exists()


def test_a_reused_pid_does_not_keep_a_stale_lock(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    # Our own parent is alive, but it is not the process that wrote this lock (other start time).
    lock = {"pid": os.getppid(), "host": socket.gethostname(), "started": "then", "process_start": "1"}
    (out / rundir.LOCK).write_text(json.dumps(lock))
    started(out)
    assert "taking over the lock" in capsys.readouterr().err


def test_a_lock_from_another_host_is_not_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / rundir.LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "then"}))
    with pytest.raises(rundir.RunInUse) as caught:
        rundir.claim(out)
    assert "another machine" in str(caught.value) and "delete" in str(caught.value)
    assert caught.value.holder.startswith("pid 1 on host elsewhere")


def test_on_windows_a_lock_is_not_probed_with_a_signal(tmp_path, monkeypatch):
    """os.kill(pid, 0) sends a Ctrl-C on Windows (signal 0 is CTRL_C_EVENT): there the owner is not probed,
    and the message says to delete the lock once that run is gone."""
    out = tmp_path / "run"
    out.mkdir()
    (out / rundir.LOCK).write_text(json.dumps({"pid": 999_999_999, "host": socket.gethostname(), "started": "then"}))
    signals = []
    monkeypatch.setattr(os, "kill", lambda *args: signals.append(args))
    monkeypatch.setattr(rundir, "WINDOWS", True)
    with pytest.raises(rundir.RunInUse) as caught:
        rundir.claim(out)
    monkeypatch.undo()
    assert signals == [] and caught.value.elsewhere
    assert "cannot be checked on Windows" in str(caught.value) and f"delete {out / rundir.LOCK}" in str(caught.value)


def test_only_the_main_process_locks_and_writes(tmp_path):
    out = tmp_path / "run"
    with rundir.claim(out, main_process=False) as run_dir:
        run_dir.check(SETTINGS, DEFAULTS, overwrite=False)
        assert run_dir.start(SETTINGS, DEFAULTS, DATA, overwrite=False) is False
    assert list(out.iterdir()) == []


def test_a_manifest_that_cannot_be_written_leaves_no_temporary_file(tmp_path, full_disk):
    out = tmp_path / "run"
    with pytest.raises(OSError):
        with full_disk("run.json"), rundir.claim(out) as run_dir:
            run_dir.start(SETTINGS, DEFAULTS, DATA, overwrite=False)
    assert not out.exists()  # no half-written run.json.<pid>.tmp kept the folder the claim made
