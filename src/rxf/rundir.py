"""One run per run directory: a manifest of what defines the run, and a lock while it trains.

A run's ``output_dir`` belongs to that run. :func:`claim` takes it for one process:

1. **The lock**, ``.rxf.lock``, holds the owner's pid, host and start time and is created
   atomically, so a second process on the same directory stops with one line naming the owner.
   A lock whose process is gone (same host, and the pid is dead or now belongs to another
   process) is stale: it is taken over with a warning. A lock written on another host cannot be
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
   (once the new run's data and model have loaded) moves everything the folder holds, but the lock,
   into the hidden folder ``.rxf-earlier-run-<pid>`` inside it: renames, so no copy and no extra
   disk. The new run's first training step (:meth:`RunDirectory.drop_earlier_run`, called by a
   trainer callback) or its finish deletes the earlier run's outputs there and moves anything else
   back (files of the user's, which the new run has not rewritten). A run that ends before that
   point, by an error or Ctrl-C, gets the earlier run back as it was; after a crash (SIGKILL,
   power loss) the next claim of the folder does it. While entries move, the hidden folder's name
   ends in ``.moving`` (the folder then holds nothing of the new run), and while the earlier run is
   deleted in ``.deleting``, so a crash at any point is finished the right way.

A run that fails before writing anything leaves no trace: the folders it created and the
manifest it wrote are removed again, and the lock is always released.

Settings are compared as given, with a setting at its default equal to one that is absent, so a
field added to the config in a later version (at its default) does not make an old run "another
run". Only the main process of a multi-process launch takes the lock and writes the manifest.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rxf.errors import RxfError

MANIFEST = "run.json"
LOCK = ".rxf.lock"
# What a run writes whose presence says that a run happened here; `overwrite` deletes these.
RUN_OUTPUTS = ("checkpoints", "model", "adapter", "merged", "metrics.json")
# Where `overwrite` keeps the earlier run (inside output_dir, + the pid), and the suffixes it has while
# its entries move (in either direction) and while it is deleted (module docstring, 4).
EARLIER_RUN = ".rxf-earlier-run-"
MOVING = ".moving"
DELETING = ".deleting"
SHOWN_DIFFERENCES = 3
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


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), to tell a reused pid; None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _owner_alive(owner: dict[str, Any]) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return False  # not a lock rxf wrote
    if owner.get("host", socket.gethostname()) != socket.gethostname():
        return True  # another machine's process: cannot be checked from here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    started = owner.get("process_start")
    return started is None or _process_start(pid) in (None, started)


def _read_lock(lock: Path) -> dict[str, Any] | None:
    try:
        owner = json.loads(lock.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return owner if isinstance(owner, dict) else None


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
        self.earlier_run: Path | None = None  # where `overwrite` keeps the earlier run until the new one begins

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
        for _ in range(5):
            try:
                descriptor = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _read_lock(self.lock_path)
                if owner is None:
                    # Being written by the process that just created it, or left empty by a crash.
                    try:
                        age = datetime.datetime.now().timestamp() - self.lock_path.stat().st_mtime
                    except FileNotFoundError:
                        continue
                    if age < 5:
                        time.sleep(0.5)
                        continue
                    warn(f"{self.lock_path} is empty or unreadable (left by a crash?): taking it over")
                elif _owner_alive(owner):
                    if owner.get("host", socket.gethostname()) != socket.gethostname():
                        raise RxfError(
                            f"output_dir {self.path} is locked by an rxf run on another machine ({_describe(owner)}): "
                            f"wait for it, or choose another output_dir; if that run is gone, delete {self.lock_path}"
                        )
                    raise RxfError(
                        f"output_dir {self.path} is in use by another rxf run ({_describe(owner)}): "
                        "wait for it to finish, or choose another output_dir"
                    )
                else:
                    warn(f"taking over the lock of {self.path} from a run that is gone ({_describe(owner)})")
                try:
                    self.lock_path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(descriptor, "w") as handle:
                handle.write(json.dumps(me, indent=1))
            self.locked = True
            return
        raise RxfError(f"could not take the lock {self.lock_path}: another process keeps replacing it")

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
            warn(f"overwrite: replacing the earlier run in {self.path} ({replaced}); it is kept aside until this run's first training step")
            try:
                self._set_aside_earlier_run()
            except OSError as error:  # e.g. a mount point inside: what moved goes back on release
                raise RxfError(
                    f"output_dir {self.path}: --overwrite cannot move the earlier run aside ({error.strerror}: "
                    f"{error.filename}), so it is left as it was: remove it yourself, or choose another output_dir"
                ) from None
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
        tmp.write_text(json.dumps(self.manifest, indent=1, default=str))
        os.replace(tmp, self.manifest_path)

    # -- the earlier run, kept aside by `overwrite` (module docstring, 4)

    def _contents(self) -> list[Path]:
        """What the folder holds, but the lock and an earlier run kept aside."""
        return [entry for entry in self.path.iterdir() if entry.name != LOCK and not entry.name.startswith(EARLIER_RUN)]

    def _set_aside_earlier_run(self) -> None:
        """Move everything the folder holds into ``.rxf-earlier-run-<pid>`` (named ``.moving`` until all is in)."""
        moving = self.path / f"{EARLIER_RUN}{os.getpid()}{MOVING}"
        moving.mkdir()
        self.earlier_run = moving
        for entry in self._contents():
            entry.rename(moving / entry.name)
        self.earlier_run = moving.rename(self.path / f"{EARLIER_RUN}{os.getpid()}")

    def _put_back(self, earlier: Path) -> None:
        """Give the folder back to the earlier run in ``earlier``: what the new run wrote goes, then its entries move back."""
        if not earlier.name.endswith(MOVING):
            for entry in self._contents():
                _remove(entry)
            earlier = earlier.rename(earlier.with_name(earlier.name + MOVING))
        for entry in earlier.iterdir():
            entry.rename(self.path / entry.name)
        earlier.rmdir()

    def _delete(self, earlier: Path) -> None:
        """Delete the earlier run in ``earlier``: its outputs, and what the new run has written again; anything
        else (files of the user's) moves back, as if ``overwrite`` had only deleted the earlier run's outputs."""
        if not earlier.name.endswith(DELETING):
            earlier = earlier.rename(earlier.with_name(earlier.name + DELETING))
        for entry in earlier.iterdir():
            if entry.name in (*RUN_OUTPUTS, MANIFEST) or (self.path / entry.name).exists():
                _remove(entry)
            else:
                entry.rename(self.path / entry.name)
        earlier.rmdir()

    def drop_earlier_run(self) -> None:
        """The new run has truly begun (its first training step is done, or it finished): delete the earlier run."""
        if self.earlier_run is not None:
            earlier, self.earlier_run = self.earlier_run, None
            self._delete(earlier)

    def drop_earlier_run_callback(self) -> Any:
        """A TrainerCallback that calls :meth:`drop_earlier_run` once the first training step is done."""
        from transformers import TrainerCallback

        run_dir = self

        class DropEarlierRun(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                run_dir.drop_earlier_run()

        return DropEarlierRun()

    def _recover_earlier_run(self) -> None:
        """Finish what an ``overwrite`` run killed while it kept an earlier run aside was doing: put that run
        back (the killed run had not made its first step) or finish deleting it."""
        for earlier in list(self.path.glob(f"{EARLIER_RUN}*")):
            try:
                if earlier.name.endswith(DELETING):
                    self._delete(earlier)
                else:
                    self._put_back(earlier)
                    warn(f"put back the earlier run in {self.path}, which an --overwrite run that stopped before "
                         f"its first training step had moved aside (into {earlier.name})")
            except OSError as error:
                where = next(self.path.glob(f"{EARLIER_RUN}*"), earlier)  # (renamed on the way)
                raise RxfError(
                    f"output_dir {self.path}: the earlier run that a stopped --overwrite run moved aside into "
                    f"{where} cannot be put back ({error.strerror}: {error.filename}): move what that folder holds "
                    f"back into {self.path}, then run again"
                ) from None

    # -- ending the claim

    def release(self, failed: bool) -> None:
        """Release the lock; an earlier run still kept aside goes back; after a failure that wrote nothing,
        remove what the claim itself created."""
        if self.earlier_run is not None:
            earlier, self.earlier_run = self.earlier_run, None
            try:
                self._put_back(earlier)
                self.wrote_new_manifest = False  # the manifest there is the earlier run's again
            except OSError as error:
                where = next(self.path.glob(f"{EARLIER_RUN}*"), earlier)  # (renamed on the way)
                warn(f"could not put the earlier run back into {self.path} ({error.strerror}: {error.filename}): it is "
                     f"in {where}, and the next rxf run on {self.path} puts it back")
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
    """Whether ``output_dir`` holds a finished run (its manifest says so)."""
    path = Path(output_dir) / MANIFEST
    try:
        return json.loads(path.read_text()).get("status") == "finished"
    except (OSError, ValueError, AttributeError):
        return False
