"""Reading the user's files, and reporting a failed write: one place that turns every way a file
operation fails into one line.

Every file rxf reads (configs, data, run records, model and checkpoint metadata) goes through
these functions; each failure is an :class:`~rxf.errors.RxfError` of the form
``<what> <path>[, line N]: <cause>: <hint>``.

* :func:`regular_file`: the path exists, is a regular file and can be opened. A folder, a FIFO, a
  socket or a device is refused *before* it is opened (opening a FIFO for reading blocks until a
  writer comes, which would hang the run).
* :func:`read_text`, :func:`iter_lines`: UTF-8 text (a byte-order mark is dropped). Bytes that are
  not UTF-8 are reported with their line and a guess at the file's real encoding.
* :func:`read_json`, :func:`check_jsonl`: JSON whose syntax errors name the line.
* :func:`check_data_file`: a data file that another library (``datasets``, pandas) will parse,
  checked first so that its problems are named by line: encoding for delimited text, syntax for
  JSON/JSONL.
* :func:`check_writable`: an output file or folder that is written late (after a model loads or
  trains) can be written there, checked before any work.
* :func:`replace_files`: the one way rxf writes its result files: whole or not at all.
* :func:`write_failure`: the error for a write that failed (disk full, read-only, permission
  denied), naming the folder and the cause, from an OSError or from a library's own exception.
"""

from __future__ import annotations

import codecs
import errno
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rxf.errors import RxfError

CHUNK = 1 << 20  # bytes read at a time by the streaming checks

# errno -> (the cause in words, what to do about it when reading)
_CAUSES = {
    errno.ENOENT: "does not exist",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "does not exist (a part of the path is a file, not a folder)",
    errno.EEXIST: "a file is in the way (a part of the path is a file, not a folder)",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EIO: "input/output error (a failing disk or network drive?)",
    errno.ELOOP: "too many levels of symbolic links",
    errno.ENAMETOOLONG: "file name too long",
}
_READ_HINTS = {
    errno.EACCES: "check its permissions (ls -l), or copy it somewhere you can read",
    errno.EPERM: "check its permissions (ls -l), or copy it somewhere you can read",
}


def os_cause(error: OSError) -> str:
    """An OSError's cause in words: 'permission denied', 'no space left on device', ..."""
    return _CAUSES.get(error.errno or -1) or (error.strerror or str(error)).strip().lower()


def _read_failure(path: Path, what: str, error: OSError) -> RxfError:
    hint = _READ_HINTS.get(error.errno or -1)
    return RxfError(f"{what} {path}: {os_cause(error)}" + (f": {hint}" if hint else ""))


_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def regular_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path, if it is a regular file that can be read; an RxfError naming the problem otherwise."""
    path = Path(path).expanduser()
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise RxfError(f"{what} {path} does not exist{where}") from None
    except OSError as error:
        raise _read_failure(path, what, error) from None
    if stat.S_ISDIR(mode):
        raise RxfError(f"{what} {path} is a folder, not a file: give the path of the file itself")
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
        raise RxfError(
            f"{what} {path} is {kind}, not a regular file: rxf reads regular files only "
            "(write the contents to a file and pass that)"
        )
    if not os.access(path, os.R_OK):
        raise _read_failure(path, what, PermissionError(errno.EACCES, "permission denied"))
    return path


def read_bytes(path: str | Path, what: str) -> bytes:
    """The whole file, after :func:`regular_file`; OS errors as RxfErrors."""
    path = regular_file(path, what)
    try:
        return path.read_bytes()
    except OSError as error:
        raise _read_failure(path, what, error) from None


# ---- text ------------------------------------------------------------------------------------


def guess_encoding(sample: bytes) -> str:
    """A short guess at what a byte string that is not UTF-8 is, for the hint."""
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or sample[:200].count(b"\x00") > 10:
        return "UTF-16 (or binary)"
    if sample.startswith(b"PK\x03\x04"):
        return "a zip archive (an Excel .xlsx workbook?), not text"
    try:
        sample.decode("cp1252")
    except UnicodeDecodeError:
        return "Latin-1 (ISO-8859-1)"
    return "Latin-1 / Windows-1252"


def not_utf8(path: Path, what: str, line: int, bad_byte: int, sample: bytes) -> RxfError:
    """The error for a file that is not UTF-8, at ``line``."""
    guess = guess_encoding(sample)
    if "not text" in guess or "binary" in guess:
        fix = "pass a UTF-8 text file"
    else:
        source = "utf-16" if guess.startswith("UTF-16") else "cp1252" if "1252" in guess else "latin1"
        fix = f"save it as UTF-8 (e.g. iconv -f {source} -t utf-8 {path.name} > utf8-{path.name})"
    return RxfError(
        f"{what} {path}, line {line}: byte 0x{bad_byte:02x} is not UTF-8 text (the file looks like {guess}): {fix}"
    )


def iter_lines(path: str | Path, what: str) -> Iterator[str]:
    """The file's lines (line endings kept), decoded as UTF-8 one at a time; errors name the line."""
    path = regular_file(path, what)
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise not_utf8(path, what, number, raw[error.start], raw) from None
    except OSError as error:
        raise _read_failure(path, what, error) from None


def decode_text(raw: bytes, path: Path, what: str) -> str:
    """UTF-8 (a byte-order mark dropped) or an RxfError naming the line of the first bad byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        offset = error.start
        line = raw.count(b"\n", 0, offset) + 1
        start = raw.rfind(b"\n", 0, offset) + 1
        raise not_utf8(path, what, line, raw[offset], raw[start : offset + 200]) from None


def read_text(path: str | Path, what: str) -> str:
    """The whole file as UTF-8 text; every problem an RxfError naming the file (and line)."""
    path = Path(path).expanduser()
    return decode_text(read_bytes(path, what), path, what)


def check_utf8(path: str | Path, what: str) -> None:
    """Check that a (possibly large) file is UTF-8 throughout, without holding it in memory."""
    for _ in iter_lines(path, what):
        pass


# ---- JSON ------------------------------------------------------------------------------------


def parse_json(text: str, path: Path, what: str, hint: str = "") -> Any:
    """``json.loads(text)``; a syntax error names the file and line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RxfError(
            f"{what} {path}, line {error.lineno}: not valid JSON ({error.msg}, column {error.colno})"
            + (f": {hint}" if hint else "")
        ) from None


def read_json(path: str | Path, what: str, hint: str = "") -> Any:
    """A JSON file; any problem (file, encoding, syntax) an RxfError naming the file and line."""
    path = Path(path).expanduser()
    return parse_json(read_text(path, what), path, what, hint)


def file_identity(path: str | Path) -> tuple[int, int]:
    """The same file however it is reached: another path, a symbolic or a hard link."""
    status = os.stat(path)
    return status.st_dev, status.st_ino


def check_json_text(value: Any, where: str) -> None:
    """Every string in a parsed JSON value is text that UTF-8 can hold: a JSON escape of half a surrogate
    pair (``\\ud800`` without its other half) parses, but no UTF-8 writer (pyarrow, datasets) takes it."""
    stack = [(value, "")]
    while stack:
        item, field = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as error:
                raise RxfError(
                    f"{where}{': field ' + field if field else ''}: character {error.start} is {item[error.start]!r}, "
                    "half of a UTF-16 surrogate pair (a JSON escape \\ud800-\\udfff without its other half), which "
                    "is not text: fix or remove that escape"
                ) from None
        elif isinstance(item, dict):
            stack.extend((v, f"{field}.{k}" if field else repr(k)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{field}[{i}]") for i, v in enumerate(item))


def check_jsonl(path: str | Path, what: str) -> None:
    """Every non-blank line of a JSON Lines file is one JSON object; the first that is not is named."""
    path = Path(path).expanduser()
    for number, line in enumerate(iter_lines(path, what), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise RxfError(
                f"{what} {path}, line {number}: not valid JSON ({error.msg}, column {error.colno}): "
                "each line of a JSON Lines file must be one complete JSON object"
            ) from None
        if not isinstance(value, dict):
            raise RxfError(
                f"{what} {path}, line {number}: a JSON {type(value).__name__}, not an object: "
                'each line must be an object such as {"text": "...", "label": "..."}'
            )
        check_json_text(value, f"{what} {path}, line {number}")


def check_data_file(path: str | Path, what: str, kind: str) -> Path:
    """A data file that a library will parse: a readable regular file, UTF-8, and (JSON) valid syntax.

    ``kind``: "csv" (any delimited text) or "json" (a JSON document, or JSON Lines).
    """
    path = regular_file(path, what)
    if kind != "json":
        check_utf8(path, what)
        return path
    try:
        with open(path, "rb") as handle:
            head = handle.read(CHUNK).lstrip()
    except OSError as error:
        raise _read_failure(path, what, error) from None
    if path.suffix.lower() != ".jsonl" and head.startswith(b"["):
        read_json(path, what)
        return path
    if path.suffix.lower() != ".jsonl" and head.startswith(b"{"):
        try:  # one JSON object (possibly over many lines), else JSON Lines
            json.loads(read_text(path, what))
            return path
        except json.JSONDecodeError:
            pass
    check_jsonl(path, what)
    return path


# ---- writes ----------------------------------------------------------------------------------

_WRITE_HINTS = {
    errno.ENOSPC: "free some space on that disk",
    errno.EDQUOT: "free some space within your quota",
    errno.EROFS: "make it writable",
    errno.EACCES: "make it writable (check its permissions)",
    errno.EPERM: "make it writable (check its permissions)",
    errno.EISDIR: "choose another name, or move that folder away",
    errno.ENOTDIR: "choose another path, or move that file away",
    errno.EEXIST: "choose another path, or move that file away",
    errno.ENOENT: "check the path",
}
_LOW_SPACE = 16 << 20  # below this, an unexplained write failure is taken for a full disk


def write_cause(error: BaseException, folder: str | Path) -> tuple[str, str]:
    """(cause, hint) of a failed write into ``folder``.

    Libraries report a full disk in their own words (safetensors: "No space left on device (os
    error 28)"; torch.save: "enforce fail ... file write failed"), so the cause is read from the
    OSError in the chain, else from the message, else from the free space left on the disk.
    """
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _CAUSES:
            cause = _CAUSES[seen.errno]
            if seen.errno == errno.EISDIR and seen.filename:  # which of the files written is a folder
                cause = f"{Path(seen.filename).name} {cause}"
            return cause, _WRITE_HINTS.get(seen.errno, "check the disk")
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
        if os.strerror(code).lower() in text.lower() or f"os error {code})" in text:
            return _CAUSES[code], _WRITE_HINTS[code]
    try:
        if shutil.disk_usage(folder).free < _LOW_SPACE:
            return _CAUSES[errno.ENOSPC], _WRITE_HINTS[errno.ENOSPC]
    except OSError:
        pass
    first = (text.strip().splitlines() or [type(error).__name__])[0]
    return f"{type(error).__name__}: {first}", "check the disk"


def check_writable(path: str | Path, option: str, folder: bool = False, what: str | None = None) -> Path:
    """``path`` as a Path, if a file (a folder with ``folder``) can be written there; checked before any
    work, for outputs written late. ``what`` names ``path`` in messages (default: ``option``, the setting to
    change: a file the run names inside an output_dir is "output_dir's metrics.json"). An RxfError when a folder is where the file goes (or
    a file where the folder goes), a file is where one of its folders goes, or the nearest folder that
    exists is not writable. Missing folders are not created here. A symbolic link is checked where it
    points, as :func:`replace_files` writes through it; a dangling one must point into a folder that exists."""
    path = Path(path).expanduser()
    what = what or option
    wanted, found = ("folder", "file") if folder else ("file", "folder")
    if path.exists() and path.is_dir() != folder:
        raise RxfError(f"{what} {path} is a {found}, not a {wanted}: choose another {option}, or move that {found} away")
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    needed = target if folder else target.parent
    if path.is_symlink() and not path.exists() and not needed.is_dir():
        raise RxfError(
            f"{what} {path} is a symbolic link to {target}, and {needed} does not exist: "
            f"create that folder, or choose another {option}"
        )
    existing = target if target.is_dir() else target.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RxfError(
            f"{what} {path} cannot be created: {existing} is a file, not a folder: "
            f"choose another {option}, or move that file away"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RxfError(
            f"{what} {path} cannot be written: {existing} is not writable (permission denied or read-only): "
            f"choose another {option}"
        )
    return path


def write_failure(error: BaseException, folder: str | Path, what: str, then: str = "") -> RxfError:
    """One line for a failed write of ``what`` into ``folder``; ``then`` says what to do after the fix."""
    cause, hint = write_cause(error, folder)
    return RxfError(f"could not write {what} in {folder}: {cause}: {hint}" + (f", {then}" if then else ""))


# ---- weights and checkpoint files ------------------------------------------------------------
#
# Checked by their structure, without loading them: a file cut short by a crash or a full disk
# is told from a sound one before a library fails on it with a traceback.


def safetensors_header(path: str | Path) -> dict[str, Any]:
    """The header of a safetensors file (tensor name -> dtype, shape, data_offsets); ValueError saying
    what is wrong if the file is truncated or damaged."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ValueError("is truncated (shorter than a safetensors header)")
            length = int.from_bytes(prefix, "little")
            if length > size - 8:
                raise ValueError(f"is truncated or not a safetensors file ({size} bytes; its header alone would take {length + 8})")
            header = json.loads(handle.read(length))
    except OSError as error:
        raise ValueError(f"cannot be read: {os_cause(error)}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("is damaged (its header is not valid JSON): is it a safetensors file?") from None
    if not isinstance(header, dict):
        raise ValueError("is damaged (its header is not a mapping)")
    ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__" and isinstance(entry, dict)]
    needed = 8 + length + max(ends, default=0)
    if needed > size:
        raise ValueError(f"is truncated ({size} bytes of {needed})")
    return header


def torch_file_problem(path: str | Path) -> str | None:
    """What is wrong with a file torch.save wrote (a zip archive: optimizer.pt, rng_state.pth), or None.

    A file cut short loses the zip's central directory, which is at its end.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            if not archive.namelist():
                return "is empty"
    except zipfile.BadZipFile:
        return "is truncated or damaged"
    except OSError as error:
        return f"cannot be read: {os_cause(error)}"
    return None


# What Trainer lets its weights-only load build besides tensors: the numpy RNG state in rng_state.pth
# (transformers.trainer_pt_utils.safe_globals; named here because older releases define it elsewhere).
TRAINER_NUMPY_GLOBALS = frozenset({
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype",
    "numpy.dtypes.UInt32DType",
})


def torch_file_code(path: str | Path) -> list[str]:
    """The functions and classes a file torch.save wrote would call when unpickled, beyond tensors, plain
    containers and the numpy arrays Trainer allows in its RNG state: what Trainer's weights-only load
    refuses. Read from the pickle's opcodes, without running it; [] where torch cannot tell (before 2.5).
    """
    import torch.serialization

    if not hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):
        return []
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # not a torch.save archive: torch_file_problem reports it
        return []
    return sorted(set(found) - TRAINER_NUMPY_GLOBALS)


def replace_files(contents: dict[Path, str | bytes | None]) -> None:
    """Write each file of ``contents`` (path -> text or bytes) so that a failure leaves the earlier
    files as they were: all are written under temporary names first, then renamed into place.
    A path given None is an output this write does not have (a figure that could not be drawn): an
    earlier file there is removed once the others are in place, so that it is not taken for theirs.

    A path that is a symbolic link is written through it, as ``open(path, "w")`` would: the temporary
    file goes beside the file the link points to and is renamed onto it, so the link stays a link to
    the new content; a dangling link gets its file created. At a path given None, a link is removed,
    not the file it points to.

    Raises the OSError of the write that failed (disk full, read-only, a folder where a file goes),
    after removing the temporary files, for the caller to turn into :func:`write_failure`. A folder
    in the way, or a loop of symbolic links, is refused before anything is written; the renames need
    no space (each stays in its folder), so in practice they do not fail. They go one by one in the
    order given, not as one atomic step: one that still fails (an I/O error, a permission changed
    meanwhile) leaves the files before it new and the others as they were, and removes nothing.
    Callers that care which file is last (a ``metrics.json`` that marks a run done) put it last in
    ``contents``.
    """
    written: dict[Path, str | bytes] = {}  # the file each content goes to: a link's target for a link
    for path, content in contents.items():
        if path.is_dir():  # a rename onto a folder would fail after the files before it were replaced
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if content is None:
            continue
        target = Path(os.path.realpath(path)) if path.is_symlink() else path
        if target.is_symlink():  # realpath stops at a loop of links
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))
        written[target] = content
    partial = {target: target.with_name(f".{target.name}.{os.getpid()}.tmp") for target in written}
    try:
        for target, content in written.items():
            if isinstance(content, bytes):
                partial[target].write_bytes(content)
            else:
                partial[target].write_text(content, encoding="utf-8")
        for target in written:
            os.replace(partial[target], target)
    finally:
        for temporary in partial.values():
            temporary.unlink(missing_ok=True)
    for path, content in contents.items():
        if content is None:
            path.unlink(missing_ok=True)


def output_write_failure(error: OSError, output_dir: str | Path) -> BaseException:
    """The one-line error for an OSError raised while a run wrote into ``output_dir`` (disk full, read-only,
    permission denied on a file of the run), or the error itself when it is something else."""
    path = Path(error.filename) if isinstance(error.filename, str) else None
    inside = path is not None and Path(output_dir).resolve() in [path.resolve(), *path.resolve().parents]
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) or (inside and error.errno in (errno.EACCES, errno.EPERM)):
        folder = path.parent if path is not None else output_dir
        what = path.name if path is not None else "the run's files"
        return write_failure(error, folder, what, "then run the same command again (it resumes from its last checkpoint)")
    return error


def is_write_error(error: BaseException, folder: str | Path | None = None) -> bool:
    """Whether a library's exception during a save is a failed write (not a bug to show as a traceback).

    OSError, safetensors' SafetensorError, and torch.save's RuntimeErrors ("enforce fail ... file
    write failed", "basic_ios::clear: iostream error"), or any RuntimeError while ``folder``'s disk
    is (nearly) full.
    """
    if isinstance(error, OSError) or type(error).__name__ == "SafetensorError":
        return True
    if not isinstance(error, RuntimeError):
        return False
    text = str(error).lower()
    if any(words in text for words in ("file write failed", "failed writing", "no space left", "iostream error")):
        return True
    try:
        return folder is not None and shutil.disk_usage(folder).free < _LOW_SPACE
    except OSError:
        return False
