"""One run per run directory: a manifest of what defines the run, and a lock while it trains.

A run's ``output_dir`` belongs to that run. :func:`claim` takes it for one process:

1. **The lock**, ``.rxf.lock``, holds the owner's pid, host and start time and is created
   atomically, so a second process on the same directory stops with one line naming the owner
   (a :class:`RunInUse` error, which ``rxf sweep`` catches to leave that run to its owner).
   A lock whose process is gone (same host, and the pid is dead, a zombie, or now belongs to
   another process) is stale: it is taken over with a warning, by one process only when several
   find it stale at once. A lock written on another host (or any lock, on Windows) cannot be
   checked from here; the message says how to remove it once that process is gone.
2. **The manifest**, ``run.json``, records what defines the run: its settings (model, data
   files, task, method and options, seed, steps, recipe, ...) and a fingerprint of the data as
   loaded. :meth:`RunDirectory.check` compares them with the manifest already there:

   * no manifest and no run outputs (a new or unrelated folder): a new run;
   * the same run, unfinished: it resumes (from its newest sound checkpoint);
   * the same run, finished: refused (nothing to do);
   * a different run: refused, naming what differs;
   * run outputs without a manifest (from an older rxf, or copied in): refused.

   ``overwrite`` replaces the earlier run instead of refusing; see 4.
3. :meth:`RunDirectory.finish` marks the manifest finished once the results are written.
4. **Overwrite keeps the earlier run until the new one has truly begun.** :meth:`RunDirectory.start`
   (once the new run's data and model have loaded) moves what a run writes (``RUN_FILES``; nothing
   else the folder holds) into the hidden folder ``.rxf-earlier-run-<pid>`` inside it, by renames.
   Once the new run's first training step is done (:meth:`RunDirectory.drop_earlier_run`, called by
   a trainer callback), or at its finish for a run that makes no step, that folder is renamed
   ``.deleting`` (from then on the earlier run is gone for good) and deleted in a background thread,
   so a slow file system does not hold up training; :meth:`RunDirectory.release` waits for it. A
   failed delete is a warning naming the folder, never an error of the new run. A run that ends
   before its first step, by an error, Ctrl-C or SIGTERM (rxf.cli), gets the earlier run back as it
   was. After a SIGKILL or a power loss the next :func:`claim` of the folder (``rxf train``, ``sft``,
   ``summarize``, and the verbs that run them) does it, or finishes the delete (with a warning) if the
   new run had begun (renamed ``.deleting``, or ``began`` in its manifest) or finished; until then
   :func:`settled_folder` says where the run that claim will leave is. While entries move, the hidden folder's name ends in ``.moving`` (the folder then holds
   nothing of the new run), so a crash at any point is finished the right way. A run output that is
   a symbolic link is not moved: one to an empty folder stays in place, any other is refused.

A run that fails before writing anything leaves no trace: the folders it created and the
manifest it wrote are removed again, and the lock is always released.

Settings are compared as given, with a setting at its default equal to one that is absent, so a
field added to the config in a later version (at its default) does not make an old run "another
run". Only the main process of a multi-process launch takes the lock and writes the manifest.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rxf.errors import RxfError

MANIFEST = "run.json"
LOCK = ".rxf.lock"
TAKEOVER = ".takeover"  # LOCK + TAKEOVER: held while a stale lock is deleted (RunDirectory._remove_stale_lock)
# What a run writes whose presence says that a run happened here (without a manifest: refused).
RUN_OUTPUTS = ("checkpoints", "model", "adapter", "merged", "metrics.json")
# Everything a run writes into its output_dir (rxf train, sft, summarize, and a probe stage's encoder/):
# all that `overwrite` moves aside, puts back or deletes; anything else there is left alone.
RUN_FILES = (
    *RUN_OUTPUTS, MANIFEST, "config.yaml", "history.jsonl", "history.png", "tensorboard", "dev_report.md",
    "dev_confusion_matrix.png", "predictions-*.jsonl", "encoder",
)
# Where `overwrite` keeps the earlier run (inside output_dir, + the pid), and the suffixes it has while
# its entries move (in either direction) and while it is deleted (module docstring, 4).
EARLIER_RUN = ".rxf-earlier-run-"
MOVING = ".moving"
DELETING = ".deleting"
SHOWN_DIFFERENCES = 3
WINDOWS = os.name == "nt"  # where a lock's owner cannot be probed (_checkable)
# Settings that name local files or folders (compared as absolute paths).
PATH_SETTINGS = ("model", "data_dir", "train_file", "eval_file")


def warn(text: str) -> None:
    """A one-line warning on stderr (the run goes on)."""
    print(f"rxf: warning: {text}", file=sys.stderr, flush=True)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def is_main_process() -> bool:
    """True unless this is a non-zero rank of torchrun / accelerate launch."""
    return os.environ.get("RANK", "0") == "0"


# ---- comparing settings ----------------------------------------------------------------------


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, values normalised as JSON stores them (tuples as lists)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.loads(json.dumps(value, default=str))
    return flat


def differences(before: dict[str, Any], now: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """``"seed: 3 there, 4 here"`` for every setting that differs; an absent setting is at its default."""
    before, now, defaults = flatten(before), flatten(now), flatten(defaults)
    missing = object()
    found = []
    for key in sorted(set(before) | set(now)):
        old = before.get(key, defaults.get(key, missing))
        new = now.get(key, defaults.get(key, missing))
        if key not in now and key not in defaults:
            continue  # a setting this version no longer has
        if old != new:
            shown = lambda v: "(not set)" if v is missing else json.dumps(v)  # noqa: E731
            found.append(f"{key}: {shown(old)} there, {shown(new)} here")
    return found


def _summary(found: list[str]) -> str:
    text = "; ".join(found[:SHOWN_DIFFERENCES])
    if len(found) > SHOWN_DIFFERENCES:
        text += f"; and {len(found) - SHOWN_DIFFERENCES} more (see {MANIFEST})"
    return text


# ---- the lock --------------------------------------------------------------------------------


def _process_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), to tell a reused pid; None if unknown."""
    stat = _process_stat(pid)
    return None if stat is None else stat[19]


def _other_host(owner: dict[str, Any]) -> bool:
    return owner.get("host", socket.gethostname()) != socket.gethostname()


def _checkable(owner: dict[str, Any]) -> bool:
    """Whether this process can tell if the lock's owner still runs: not another machine's process, and
    not on Windows, where ``os.kill(pid, 0)`` would send that process group a Ctrl-C (signal 0 is CTRL_C_EVENT)."""
    return not _other_host(owner) and not WINDOWS


def _owner_alive(owner: dict[str, Any]) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return False  # not a lock rxf wrote
    if not _checkable(owner):
        return True  # taken as alive: the message says how to remove the lock once that run is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    stat = _process_stat(pid)
    if stat is not None and stat[0] == "Z":
        return False  # exited, not yet reaped by its parent: it holds nothing any more
    started = owner.get("process_start")
    return started is None or stat is None or stat[19] == started


def _read_lock(lock: Path) -> dict[str, Any] | None:
    try:
        return _parse_lock(lock.read_bytes())
    except OSError:
        return None


def _parse_lock(content: bytes) -> dict[str, Any] | None:
    """The owner a lock file's content names; None if it is not a lock rxf wrote whole."""
    try:
        owner = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    return owner if isinstance(owner, dict) else None


def is_locked(lock: Path) -> bool:
    """Whether a live process holds the lock file ``lock`` (False for a missing, unreadable or stale one)."""
    owner = _read_lock(lock)
    return owner is not None and _owner_alive(owner)


def _describe(owner: dict[str, Any]) -> str:
    return f"pid {owner.get('pid')} on host {owner.get('host')}, since {owner.get('started')}"


def defining_settings(values: dict[str, Any], not_run: Sequence[str], method_options: dict[str, Any]) -> dict[str, Any]:
    """A config's settings that define its run: those not in ``not_run``, local paths made absolute
    (the same data reached by another relative path is the same run), every option of its method."""
    values = {key: value for key, value in values.items() if key not in not_run}
    for name in PATH_SETTINGS:
        path = Path(values[name]).expanduser() if isinstance(values.get(name), str) else None
        if path is not None and path.exists():
            values[name] = str(path.resolve())
    return {**values, "method_options": method_options}


def run_owned(output_dir: str | Path, settings: dict[str, Any], defaults: dict[str, Any], overwrite: bool, work):
    """``work(run_dir)`` in ``output_dir``, claimed and checked for this run (the refusals above); a
    failed write outside a checkpoint is one line. ``work`` calls ``run_dir.finish()`` once its results are written."""
    from rxf.io import output_write_failure

    with claim(output_dir) as run_dir:
        run_dir.check(settings, defaults, overwrite=overwrite)
        try:
            return work(run_dir)
        except OSError as error:
            raise output_write_failure(error, run_dir.path) from None


class RunInUse(RxfError):
    """The run directory is locked by a live process (this host's, or any process of another host)."""

    def __init__(self, message: str, holder: str, lock: Path, elsewhere: bool):
        super().__init__(message)
        self.holder = holder  # "pid N on host H, since T"
        self.lock = lock
        self.elsewhere = elsewhere  # held from another host (or on Windows): whether it is alive cannot be checked


# ---- the directory ---------------------------------------------------------------------------


class RunDirectory:
    """A run's output directory, claimed by this process (see the module docstring)."""

    def __init__(self, path: Path, created: list[Path], main_process: bool):
        self.path = path
        self.created = created  # folders this claim created, outermost first
        self.main_process = main_process
        self.locked = False
        self.manifest: dict[str, Any] | None = None  # as found on disk, or as written
        self.wrote_new_manifest = False
        self.earlier_run: Path | None = None  # where `overwrite` keeps the earlier run until it is deleted
        self.deletion: threading.Thread | None = None  # deleting it (drop_earlier_run)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    # -- the lock

    def lock(self) -> None:
        """Take the lock, or raise an RxfError naming the process that holds it."""
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _now(),
            "process_start": _process_start(os.getpid()),
            "command": sys.argv,
        }
        for _ in range(20):
            try:
                descriptor = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    seen = self.lock_path.read_bytes()
                    age = datetime.datetime.now().timestamp() - self.lock_path.stat().st_mtime
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                owner = _parse_lock(seen)
                if owner is None:
                    # Being written by the process that just created it, or left empty by a crash.
                    if age < 5:
                        time.sleep(0.5)
                        continue
                    stale = f"{self.lock_path} is empty or unreadable (left by a crash?): taking it over"
                elif _owner_alive(owner):
                    if not _checkable(owner):
                        where = "on another machine" if _other_host(owner) else "whose process cannot be checked on Windows"
                        raise RunInUse(
                            f"output_dir {self.path} is locked by an rxf run {where} ({_describe(owner)}): "
                            f"wait for it, or choose another output_dir; if that run is gone, delete {self.lock_path}",
                            _describe(owner), self.lock_path, elsewhere=True,
                        )
                    raise RunInUse(
                        f"output_dir {self.path} is in use by another rxf run ({_describe(owner)}): "
                        "wait for it to finish, or choose another output_dir",
                        _describe(owner), self.lock_path, elsewhere=False,
                    )
                else:
                    stale = f"taking over the lock of {self.path} from a run that is gone ({_describe(owner)})"
                if self._remove_stale_lock(seen):
                    warn(stale)
                continue
            with os.fdopen(descriptor, "w") as handle:
                handle.write(json.dumps(me, indent=1))
            self.locked = True
            return
        raise RxfError(f"could not take the lock {self.lock_path}: another process keeps replacing it")

    def _remove_stale_lock(self, seen: bytes) -> bool:
        """Delete the lock file if it still holds ``seen`` (found stale); whether this process deleted it.

        Two processes can find the same stale lock: the first deletes it and creates its own, and the
        second must not then delete that fresh one. So the check and the delete happen while holding
        ``.rxf.lock.takeover``, created exclusively; one left by a process that died holding it (it is
        held for microseconds) is removed once it is a few seconds old.
        """
        takeover = self.lock_path.with_name(LOCK + TAKEOVER)
        try:
            descriptor = os.open(takeover, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if datetime.datetime.now().timestamp() - takeover.stat().st_mtime > 5:
                    takeover.unlink()
            except FileNotFoundError:
                pass
            time.sleep(0.1)
            return False
        try:
            if self.lock_path.read_bytes() != seen:
                return False  # another process took it over first
            self.lock_path.unlink()
            return True
        except FileNotFoundError:
            return False
        finally:
            os.close(descriptor)
            takeover.unlink(missing_ok=True)

    def unlock(self) -> None:
        if self.locked:
            owner = _read_lock(self.lock_path)
            if owner is None or owner.get("pid") == os.getpid():
                try:
                    self.lock_path.unlink()
                except FileNotFoundError:
                    pass
            self.locked = False

    # -- the manifest

    def _read_manifest(self) -> dict[str, Any] | None:
        from rxf.io import read_json

        if not self.manifest_path.exists():
            return None
        manifest = read_json(self.manifest_path, "run manifest", "delete it only if you mean to discard this run")
        if not isinstance(manifest, dict) or not isinstance(manifest.get("settings"), dict):
            raise RxfError(f"run manifest {self.manifest_path} is not one rxf wrote (no settings): choose another output_dir")
        return manifest

    def _resumable(self) -> str:
        """', unfinished with checkpoint-N,' when the directory holds checkpoints of an unfinished run, for the refusals."""
        if self.manifest is not None and self.manifest.get("status") == "finished":
            return ""
        found = sorted(self.path.glob("checkpoints/checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1]) if p.name.rsplit("-", 1)[-1].isdigit() else -1)
        return f", unfinished with {found[-1].name}," if found else ""

    def _outputs(self) -> list[str]:
        return [name for name in RUN_OUTPUTS if (self.path / name).exists()]

    def check(self, settings: dict[str, Any], defaults: dict[str, Any], *, overwrite: bool) -> None:
        """Refuse (RxfError) a directory that holds another run, a finished run or unidentified outputs,
        unless ``overwrite``; otherwise return (a new run, or the same one to resume)."""
        if not self.main_process:
            return
        manifest = self._read_manifest()
        self.manifest = manifest
        if overwrite:
            return
        how = "choose another output_dir, or pass --overwrite (overwrite: true) to replace it"
        if manifest is None:
            outputs = self._outputs()
            if outputs:
                raise RxfError(
                    f"output_dir {self.path} holds {', '.join(outputs)} but no {MANIFEST} (from an older rxf, or "
                    f"copied in), so rxf cannot tell whether it is this run: {how}"
                )
            return
        found = differences(manifest["settings"], settings, defaults)
        if found:
            raise RxfError(f"output_dir {self.path} holds another run{self._resumable().rstrip(',')} ({_summary(found)}): {how}")
        if manifest.get("status") == "finished":
            raise RxfError(
                f"output_dir {self.path} holds this run, finished on {manifest.get('finished', '?')} "
                "(its results are in metrics.json): choose another output_dir, or pass --overwrite (overwrite: true) "
                "to train it again"
            )

    def start(self, settings: dict[str, Any], defaults: dict[str, Any], data: dict[str, Any], *, overwrite: bool) -> bool:
        """The run is about to train: check the data too, replace an earlier run (``overwrite``), write the manifest.

        Returns True when the run starts fresh (a new run, or an overwritten one), False when it resumes.
        """
        if not self.main_process:
            return overwrite
        self.check(settings, defaults, overwrite=overwrite)
        manifest = self.manifest
        if manifest is not None and not overwrite:
            before = manifest.get("data", {})
            if before.get("fingerprint") != data.get("fingerprint"):
                found = differences({k: v for k, v in before.items() if k != "fingerprint"},
                                    {k: v for k, v in data.items() if k != "fingerprint"}, {})
                found = found or [f"fingerprint: {str(before.get('fingerprint'))[:12]} there, {str(data.get('fingerprint'))[:12]} here"]
                raise RxfError(
                    f"output_dir {self.path} holds a run{self._resumable()} with the same settings on other data "
                    f"({_summary(found)}; have the data files changed?): choose another output_dir, or pass --overwrite "
                    "(overwrite: true) to replace it"
                )
            return False
        if overwrite and (manifest is not None or self._outputs()):
            replaced = ", ".join(self._outputs()) or MANIFEST
            try:
                self._set_aside_earlier_run()
            except OSError as error:  # e.g. a mount point, or no rename on a FUSE mount: what moved goes back on release
                raise RxfError(
                    f"output_dir {self.path}: --overwrite cannot move the earlier run aside ({error.strerror}: "
                    f"{error.filename}), so it is left as it was: remove it yourself, or choose another output_dir"
                ) from None
            warn(f"overwrite: replacing the earlier run in {self.path} ({replaced}); it is kept aside in "
                 f"{self.earlier_run.name} until this run's first training step (or its finish)")
        self.manifest = {
            "status": "running",
            "started": _now(),
            "host": socket.gethostname(),
            "command": sys.argv,
            "settings": settings,
            "data": data,
        }
        self._write_manifest()
        self.wrote_new_manifest = True
        return True

    def finish(self) -> None:
        """Mark the run finished (its results are written): the same command no longer retrains it."""
        if self.main_process and self.manifest is not None:
            self.manifest.update(status="finished", finished=_now())
            self._write_manifest()
        self.drop_earlier_run()  # a run that did not train (rxf summarize --max-steps 0) lets it go here

    def _write_manifest(self) -> None:
        tmp = self.manifest_path.with_name(f"{MANIFEST}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.manifest, indent=1, default=str))
            os.replace(tmp, self.manifest_path)
        except OSError:
            tmp.unlink(missing_ok=True)  # (a full disk: no half-written file left beside the manifest)
            raise

    # -- the earlier run, kept aside by `overwrite` (module docstring, 4)

    def _run_files(self) -> list[Path]:
        """The entries of the folder that a run writes (``RUN_FILES``)."""
        return [entry for entry in self.path.iterdir() if is_run_file(entry.name)]

    def _set_aside_earlier_run(self) -> None:
        """Move the earlier run's files into ``.rxf-earlier-run-<pid>`` (named ``.moving`` until all are in).
        A symbolic link stays: one to an empty folder holds nothing of the earlier run; any other is refused."""
        run_files = self._run_files()
        for entry in run_files:
            if entry.is_symlink() and not _empty_folder(entry):
                target = os.readlink(entry)
                advice = f"empty {target} yourself (the link can stay)" if entry.is_dir() else "remove the link yourself"
                raise RxfError(
                    f"output_dir {self.path}: {entry.name} is a symbolic link to {target}, and --overwrite does not "
                    f"delete through a link: {advice}, or choose another output_dir"
                )
        moving = self.path / f"{EARLIER_RUN}{os.getpid()}{MOVING}"
        moving.mkdir()
        self.earlier_run = moving
        for entry in run_files:
            if not entry.is_symlink():
                entry.rename(moving / entry.name)
        self.earlier_run = moving.rename(self.path / f"{EARLIER_RUN}{os.getpid()}")

    def _put_back(self, earlier: Path) -> None:
        """Give the folder back to the earlier run in ``earlier``: what the new run wrote goes (what it wrote
        into a linked folder too, which was empty), then the earlier run's files move back."""
        if not earlier.name.endswith(MOVING):
            for entry in self._run_files():
                for written in entry.iterdir() if entry.is_symlink() and entry.is_dir() else [entry]:
                    _remove(written)
            earlier = earlier.rename(earlier.with_name(earlier.name + MOVING))
        for entry in earlier.iterdir():
            entry.rename(self.path / entry.name)
        earlier.rmdir()

    def _delete(self, earlier: Path) -> bool:
        """Delete the earlier run in ``earlier``, renamed ``.deleting`` first (from then on it cannot come back);
        whether it is gone. Only a warning when that fails: the folder belongs to the new run, which goes on."""
        try:
            if not earlier.name.endswith(DELETING):
                earlier = earlier.rename(earlier.with_name(earlier.name + DELETING))
            for entry in earlier.iterdir():
                if is_run_file(entry.name):
                    _remove(entry)
            earlier.rmdir()
        except OSError as error:
            warn(f"could not delete the replaced run kept in {earlier} ({error.strerror}: {error.filename}): "
                 "delete that folder yourself")
            return False
        return True

    def drop_earlier_run(self) -> None:
        """The new run has truly begun (its first training step is done, or it finished): delete the earlier
        run. The manifest's ``began``, then the rename to ``.deleting``, decide it (either is enough, so that
        a failed rename does not let the earlier run come back over the new one); the files go in a thread,
        so that deleting many GB on a slow file system does not hold up this rank while the others wait for
        it; :meth:`release` waits."""
        if self.earlier_run is None or self.earlier_run.name.endswith(DELETING):
            return
        manifest = self.manifest
        if self.main_process and manifest is not None and "began" not in manifest and manifest.get("status") != "finished":
            try:
                self.manifest["began"] = _now()
                self._write_manifest()
            except OSError as error:  # the rename below still decides it
                warn(f"could not write {self.manifest_path} ({error.strerror})")
        try:
            self.earlier_run = self.earlier_run.rename(self.earlier_run.with_name(self.earlier_run.name + DELETING))
        except OSError:
            self._delete(self.earlier_run)  # tries that rename again, and warns
            self.earlier_run = None
            return
        deletion = threading.Thread(target=self._delete, args=(self.earlier_run,), daemon=True)
        deletion.start()
        self.deletion = deletion

    def drop_earlier_run_callback(self) -> Any:
        """A TrainerCallback that calls :meth:`drop_earlier_run` once the first training step is done."""
        from transformers import TrainerCallback

        run_dir = self

        class DropEarlierRun(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                run_dir.drop_earlier_run()

        return DropEarlierRun()

    def _recover_earlier_run(self) -> None:
        """Finish what an ``overwrite`` run that stopped while it kept an earlier run aside was doing: put that
        run back (the stopped run had not made its first step) or delete it (:func:`_comes_back`)."""
        for earlier in sorted(self.path.glob(f"{EARLIER_RUN}*")):
            if not _comes_back(self.path, earlier):
                if self._delete(earlier):
                    warn(f"deleted the earlier run in {self.path}, which an --overwrite run that stopped after its "
                         f"first training step had replaced (kept aside in {earlier.name} until then)")
                continue
            try:
                self._put_back(earlier)
            except OSError as error:
                where = next(self.path.glob(f"{EARLIER_RUN}*"), earlier)  # (renamed on the way)
                written = [] if where.name.endswith(MOVING) else [entry.name for entry in self._run_files()]
                first = f"delete {', '.join(written)} (the stopped run's), then " if written else ""
                raise RxfError(
                    f"output_dir {self.path}: the earlier run that a stopped --overwrite run moved aside into "
                    f"{where} cannot be put back ({error.strerror}: {error.filename}): {first}move what that "
                    f"folder holds back into {self.path}, then run again"
                ) from None
            warn(f"put back the earlier run in {self.path}, which an --overwrite run that stopped before "
                 f"its first training step had moved aside (into {earlier.name})")

    # -- ending the claim

    def release(self, failed: bool) -> None:
        """Release the lock; an earlier run still kept aside goes back, one being deleted is deleted to the end;
        after a failure that wrote nothing, remove what the claim itself created."""
        if self.earlier_run is not None:
            if self.deletion is not None:
                self.deletion.join()
            elif self.earlier_run.name.endswith(DELETING):  # stopped between the rename and the thread's start
                self._delete(self.earlier_run)
            else:
                try:
                    self._put_back(self.earlier_run)
                    self.wrote_new_manifest = False  # the manifest there is the earlier run's again
                except OSError as error:
                    where = next(self.path.glob(f"{EARLIER_RUN}*"), self.earlier_run)  # (renamed on the way)
                    warn(f"could not put the earlier run back into {self.path} ({error.strerror}: {error.filename}): "
                         f"it is in {where}, and the next rxf train, sft or summarize on {self.path} puts it back")
            self.earlier_run = None
        if failed and self.main_process:
            try:
                leftovers = {child.name for child in self.path.iterdir()} - {LOCK, MANIFEST if self.wrote_new_manifest else ""}
            except OSError:
                leftovers = {"(cannot be listed)"}
            if not leftovers:
                if self.wrote_new_manifest:
                    self.manifest_path.unlink(missing_ok=True)
                self.unlock()
                remove_empty(self.created)
                return
        self.unlock()

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.release(failed=kind is not None)


def make_output_dir(output_dir: str | Path, main_process: bool = True, option: str = "output_dir") -> tuple[Path, list[Path]]:
    """Create ``output_dir`` (and its missing parents) and check that it can be written, so that an
    unwritable location fails before any work, in one line naming ``option``; the folders created here
    are removed again on failure. Returns (the folder, the folders created here, outermost first)."""
    from rxf.io import check_writable, write_cause

    path = check_writable(output_dir, option, folder=True)  # a file in the way: named before anything is created
    created = [parent for parent in [*reversed(path.parents), path] if not parent.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        if main_process:
            probe = path / f".rxf-write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
    except OSError as error:
        remove_empty(created)
        cause, hint = write_cause(error, path)
        raise RxfError(f"{option} {path} cannot be written: {cause}: {hint}") from None
    return path, created


def is_run_file(name: str) -> bool:
    """Whether ``name`` in a run's output_dir is something a run writes (``RUN_FILES``)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_FILES)


def _empty_folder(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _says_finished(manifest: Path) -> bool:
    return _manifest_fields(manifest).get("status") == "finished"


def _manifest_fields(manifest: Path) -> dict[str, Any]:
    """The manifest's top-level fields; empty where it is missing or not a mapping rxf wrote."""
    try:
        fields = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return {}
    return fields if isinstance(fields, dict) else {}


def _comes_back(output_dir: Path, earlier: Path) -> bool:
    """Whether the next claim of ``output_dir`` puts back the earlier run kept in ``earlier`` (else deletes it):
    yes unless the run that replaced it had begun (``.deleting``, or its manifest says ``began``: the rename
    failed) or finished (killed before it deleted it)."""
    if earlier.name.endswith(DELETING):
        return False
    if earlier.name.endswith(MOVING):  # moving in or out: the new run had not even written its manifest
        return True
    manifest = _manifest_fields(output_dir / MANIFEST)
    return not (manifest.get("status") == "finished" or "began" in manifest)


def settled_folder(output_dir: str | Path) -> Path:
    """Where the run that the next claim of ``output_dir`` will leave there is now: ``output_dir``, or the
    hidden folder of an earlier run that a stopped ``overwrite`` run left aside and that claim puts back."""
    path = Path(output_dir)
    for earlier in path.glob(f"{EARLIER_RUN}*"):
        if _comes_back(path, earlier) and (earlier / MANIFEST).exists():
            return earlier
    return path


def _remove(path: Path) -> None:
    """Delete a file or a folder with everything in it."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def remove_empty(created: list[Path]) -> None:
    """Remove the folders :func:`make_output_dir` created (``created``, outermost first), innermost first,
    as long as they are empty: a command that failed before writing anything leaves no folder behind."""
    for folder in reversed(created):
        try:
            folder.rmdir()  # only if empty
        except OSError:
            break


@contextmanager
def output_folder(output_dir: str | Path, option: str = "output_dir") -> Iterator[Path]:
    """:func:`make_output_dir` for a command that fills the folder as it goes (rxf xnli, rxf report): a
    failure inside, before anything is written there, removes the folders made here."""
    path, created = make_output_dir(output_dir, option=option)
    try:
        yield path
    except BaseException:
        remove_empty(created)
        raise


def claim(output_dir: str | Path, main_process: bool | None = None) -> RunDirectory:
    """Create ``output_dir`` if needed, check that it can be written, and lock it for this process.

    Use as a context manager: ``with claim(path) as run_dir: ...`` releases the lock at the end.
    """
    main_process = is_main_process() if main_process is None else main_process
    path, created = make_output_dir(output_dir, main_process)
    run_dir = RunDirectory(path, created, main_process)
    if main_process:
        try:
            run_dir.lock()
            run_dir._recover_earlier_run()
        except BaseException:
            run_dir.release(failed=True)
            raise
    return run_dir


_OVERWRITE_ADVICE = re.compile(r"pass --overwrite( \(overwrite: true\))?")


@contextmanager
def overwrite_said_as(advice: str) -> Iterator[None]:
    """Inside, an error's advice "pass --overwrite (overwrite: true)" reads ``advice`` instead: for verbs
    that run rxf train's code but set overwrite another way (rxf xnli: "pass --set train_options.overwrite=true")."""
    try:
        yield
    except RxfError as error:
        if not _OVERWRITE_ADVICE.search(str(error)):
            raise
        raise RxfError(_OVERWRITE_ADVICE.sub(advice, str(error))) from None


def is_finished(output_dir: str | Path) -> bool:
    """Whether ``output_dir`` holds a finished run (its manifest says so), as the next claim will leave it."""
    return _says_finished(settled_folder(output_dir) / MANIFEST)
