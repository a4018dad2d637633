"""rxf.io: every way a read fails is one RxfError line naming the file, the line where known, the cause and a fix."""

import collections
import errno
import os
from pathlib import Path

import numpy as np
import pytest

from rxf import io
from rxf.errors import RxfError


def message(call, *args) -> str:
    with pytest.raises(RxfError) as caught:
        call(*args)
    text = str(caught.value)
    assert "\n" not in text
    return text


def test_a_regular_file_is_read(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_bytes(b"\xef\xbb\xbfkey: caf\xc3\xa9\n")  # a byte-order mark is dropped
    assert io.read_text(path, "config file") == "key: café\n"
    assert list(io.iter_lines(path, "config file")) == ["key: café\n"]


def test_missing_file_and_folder_are_named(tmp_path):
    assert "does not exist" in message(io.read_text, tmp_path / "nope.yaml", "config file")
    text = message(io.read_text, tmp_path, "config file")
    assert "is a folder, not a file" in text and str(tmp_path) in text


def test_a_fifo_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    # Opening a FIFO for reading would block this test forever: the check must come first.
    for call in (io.read_text, io.check_utf8, lambda p, w: io.check_data_file(p, w, "csv")):
        assert "FIFO" in message(call, fifo, "train_file")


def test_permission_denied_is_named(tmp_path, monkeypatch):
    path = tmp_path / "secret.yaml"
    path.write_text("a: 1\n")
    real_access = os.access
    monkeypatch.setattr(io.os, "access", lambda p, mode: False if str(p) == str(path) else real_access(p, mode))
    text = message(io.read_text, path, "config file")
    assert "permission denied" in text and "secret.yaml" in text


def test_an_os_error_while_reading_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "data.csv"
    path.write_text("text,label\n")

    def failing(self):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(io.Path, "read_bytes", failing)
    assert "input/output error" in message(io.read_text, path, "train_file")


def test_latin1_names_line_byte_and_encoding(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes("text,label\ngood,pos\ncaf\xe9 au lait,neg\n".encode("latin-1"))
    for call in (io.read_text, io.check_utf8):
        text = message(call, path, "train_file")
        assert "line 3" in text and "0xe9" in text and "Latin-1" in text and "iconv" in text


def test_binary_files_are_not_taken_for_latin1(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\xff\xfe")
    assert "zip archive" in message(io.check_utf8, path, "train_file")


def test_json_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "record.json"
    path.write_text('{\n  "a": 1,\n  "b": \n}\n')
    text = message(io.read_json, path, "run record", "delete it")
    assert "line 4" in text and "not valid JSON" in text and text.endswith("delete it")


def test_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 1}\n\n{"text": "b", "label": 2\n')
    assert "line 3" in message(io.check_jsonl, path, "train_file")
    path.write_text('{"text": "a", "label": 1}\n[1, 2]\n')
    assert "line 2" in message(io.check_jsonl, path, "train_file")


def test_check_data_file_tells_json_documents_from_json_lines(tmp_path):
    array = tmp_path / "a.json"
    array.write_text('[{"text": "a", "label": 1},\n {"text": "b", "label": 2}]\n')
    io.check_data_file(array, "train_file", "json")
    lines = tmp_path / "b.json"
    lines.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 2}\n')
    io.check_data_file(lines, "train_file", "json")
    lines.write_text('{"text": "a", "label": 1}\n{"text": "b" "label": 2}\n')
    assert "line 2" in message(io.check_data_file, lines, "train_file", "json")


@pytest.mark.parametrize(
    "error, cause",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "no space left on device"),
        (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
        (OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
        (RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No space left on device\" })"),
         "no space left on device"),
    ],
)
def test_write_failure_names_folder_and_cause(tmp_path, error, cause):
    text = str(io.write_failure(error, tmp_path, "checkpoint-4", "then run the same command again"))
    assert text.startswith(f"could not write checkpoint-4 in {tmp_path}: {cause}")
    assert text.endswith("then run the same command again") and "\n" not in text


def test_torch_file_code_names_what_a_pickle_would_call_and_nothing_for_tensors(tmp_path, monkeypatch):
    # Some transformers releases keep Trainer's numpy allowlist elsewhere: rxf must not depend on finding it.
    import transformers.trainer_pt_utils

    monkeypatch.delattr(transformers.trainer_pt_utils, "safe_globals", raising=False)
    import torch
    torch.save({"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-3, "params": [0]}]}, tmp_path / "optimizer.pt")
    torch.save({"python": ("x",), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()}, tmp_path / "rng_state.pth")
    torch.save({"when": collections.OrderedDict(a=print)}, tmp_path / "planted.pt")
    assert io.torch_file_code(tmp_path / "optimizer.pt") == []
    assert io.torch_file_code(tmp_path / "rng_state.pth") == []
    assert io.torch_file_code(tmp_path / "planted.pt") == ["builtins.print"]


def test_rxf_source_has_no_call_that_unpickles():
    """docs/reliability.md's pickle policy: no loader in src/rxf that can run a file's code."""
    import re
    from pathlib import Path

    import yaml

    from rxf import config

    assert issubclass(config._Loader, yaml.SafeLoader)  # the one yaml.load call, below, uses it
    unpickling = re.compile(r"torch\.load\(|pickle\.loads?\(|dill\.|joblib\.load|allow_pickle=True|weights_only=False|"
                            r"yaml\.unsafe_load|yaml\.load\((?!.*Loader=_Loader\))|yaml\.(Full|Unsafe)?Loader\b")
    source = Path(io.__file__).parent
    hits = [f"{path.relative_to(source)}:{n}: {line.strip()}" for path in sorted(source.rglob("*.py"))
            for n, line in enumerate(path.read_text().splitlines(), 1) if unpickling.search(line)]
    assert hits == []


def test_replace_files_leaves_every_earlier_file_when_one_write_fails(tmp_path, full_disk):
    first, second = tmp_path / "a.md", tmp_path / "b.json"
    first.write_text("old a")
    second.write_text("old b")
    with full_disk(".b.json."), pytest.raises(OSError):
        io.replace_files({first: "new a", second: "new b"})
    assert (first.read_text(), second.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.md", "b.json"]
    io.replace_files({first: "new a", second: b"new b"})
    assert (first.read_text(), second.read_text()) == ("new a", "new b")


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("a file where a folder is made", ["a file is in the way", "choose another path"]),
        ("a file written below a file", ["a part of the path is a file", "choose another path"]),
        ("a folder written as a file", ["adir is a folder, not a file", "choose another name"]),
    ],
)
def test_write_failure_says_what_is_in_the_way_not_check_the_disk(tmp_path, case, fragments):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    write = {
        "a file where a folder is made": lambda: (tmp_path / "afile").mkdir(parents=True, exist_ok=True),
        "a file written below a file": lambda: (tmp_path / "afile" / "x.csv").write_text("y"),
        "a folder written as a file": lambda: (tmp_path / "adir").write_text("y"),
    }[case]
    with pytest.raises(OSError) as raised:
        write()
    message = str(io.write_failure(raised.value, tmp_path, "the predictions"))
    assert "check the disk" not in message and all(f in message for f in fragments), message


def test_replace_files_with_a_folder_in_the_way_replaces_none_of_them(tmp_path):
    first, blocked = tmp_path / "a.md", tmp_path / "b.json"
    first.write_text("old a")
    blocked.mkdir()
    with pytest.raises(IsADirectoryError):
        io.replace_files({first: "new a", blocked: "new b"})
    assert first.read_text() == "old a" and blocked.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["a.md", "b.json"]


def test_replace_files_when_a_rename_fails_the_files_before_it_are_new_and_the_rest_as_they_were(tmp_path, monkeypatch):
    """After the writes, the renames go one by one in order. One that fails for a reason the folder check
    cannot see (here an I/O error) stops there: the last file, a run's metrics.json, is new only if all are."""
    files = [tmp_path / name for name in ("a.csv", "b.md", "c.json")]
    for path in files:
        path.write_text(f"old {path.name}")
    real_replace = os.replace

    def replace(source, target):
        if os.path.basename(target) == "b.md":
            raise OSError(errno.EIO, "Input/output error", str(target))
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError) as raised:
        io.replace_files({path: f"new {path.name}" for path in files})
    assert raised.value.errno == errno.EIO
    assert [path.read_text() for path in files] == ["new a.csv", "old b.md", "old c.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.md", "c.json"]  # no temporary file left


def test_replace_files_removes_an_earlier_file_that_this_write_does_not_have(tmp_path):
    report, figure = tmp_path / "report.md", tmp_path / "figure.png"
    report.write_text("old report")
    figure.write_bytes(b"old figure")  # drew the old results; the new ones could not be drawn
    io.replace_files({report: "new report", figure: None, tmp_path / "never.png": None})
    assert report.read_text() == "new report" and sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_replace_files_removes_nothing_when_a_write_fails(tmp_path, full_disk):
    report, figure = tmp_path / "report.md", tmp_path / "figure.png"
    report.write_text("old report")
    figure.write_bytes(b"old figure")
    with full_disk(), pytest.raises(OSError):
        io.replace_files({report: "new report", figure: None})
    assert (report.read_text(), figure.read_bytes()) == ("old report", b"old figure")


def test_replace_files_writes_through_a_symbolic_link(tmp_path):
    """`predict --output link.csv` with link.csv -> data/preds.csv updates data/preds.csv; the link stays."""
    (tmp_path / "out").mkdir()
    (tmp_path / "data").mkdir()
    target, link = tmp_path / "data" / "preds.csv", tmp_path / "out" / "link.csv"
    target.write_text("old predictions")
    link.symlink_to(Path("..") / "data" / "preds.csv")  # relative, as `ln -s` is often used
    io.replace_files({link: "new predictions"})
    assert link.is_symlink() and target.read_text() == "new predictions"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["link.csv"]
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["preds.csv"]  # no temporary file left


def test_replace_files_creates_the_file_of_a_dangling_link_and_removes_only_links(tmp_path):
    (tmp_path / "data").mkdir()
    dangling, figure_link = tmp_path / "preds.csv", tmp_path / "figure.png"
    dangling.symlink_to(tmp_path / "data" / "preds.csv")
    (tmp_path / "data" / "figure.png").write_bytes(b"someone else's figure")
    figure_link.symlink_to(tmp_path / "data" / "figure.png")
    io.replace_files({dangling: "new predictions", figure_link: None})
    assert dangling.is_symlink() and (tmp_path / "data" / "preds.csv").read_text() == "new predictions"
    assert not figure_link.exists() and not figure_link.is_symlink()  # the link is removed ...
    assert (tmp_path / "data" / "figure.png").read_bytes() == b"someone else's figure"  # ... not what it pointed to


def test_replace_files_refuses_a_loop_of_links_before_writing_anything(tmp_path):
    first, loop = tmp_path / "a.md", tmp_path / "b.json"
    first.write_text("old a")
    loop.symlink_to(tmp_path / "c.json")
    (tmp_path / "c.json").symlink_to(loop)
    with pytest.raises(OSError) as raised:
        io.replace_files({first: "new a", loop: "new b"})
    assert raised.value.errno == errno.ELOOP and first.read_text() == "old a"
    assert "too many levels of symbolic links" in str(io.write_failure(raised.value, tmp_path, "the report"))


def test_check_writable_checks_a_link_where_it_points(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "preds.csv").write_text("old")
    (tmp_path / "link.csv").symlink_to(tmp_path / "data" / "preds.csv")
    (tmp_path / "dangling.csv").symlink_to(tmp_path / "gone" / "preds.csv")
    (tmp_path / "dangling-dir").symlink_to(tmp_path / "gone")
    assert io.check_writable(tmp_path / "link.csv", "--out") == tmp_path / "link.csv"
    assert f"link to {tmp_path}/gone/preds.csv, and {tmp_path}/gone does not exist" in message(
        io.check_writable, tmp_path / "dangling.csv", "--out")
    assert f"and {tmp_path}/gone does not exist" in message(io.check_writable, tmp_path / "dangling-dir", "--out", True)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path / "data" and real_access(path, mode))
    assert f"{tmp_path}/data is not writable (permission denied or read-only): choose another --out" in message(io.check_writable, tmp_path / "link.csv", "--out")


@pytest.mark.parametrize(
    "given, folder, fragments",
    [
        ("adir", False, ["--out {tmp}/adir is a folder, not a file: choose another --out, or move that folder away"]),
        ("afile", True, ["--out {tmp}/afile is a file, not a folder: choose another --out, or move that file away"]),
        ("afile/x.csv", False, ["--out {tmp}/afile/x.csv cannot be created: {tmp}/afile is a file, not a folder"]),
        ("afile/new/deeper", True, ["cannot be created: {tmp}/afile is a file, not a folder"]),
    ],
)
def test_check_writable_names_the_option_and_what_is_in_the_way(tmp_path, given, folder, fragments):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    text = message(io.check_writable, tmp_path / given, "--out", folder)
    assert all(f.format(tmp=tmp_path) in text for f in fragments), text


def test_check_writable_passes_what_can_be_written_and_creates_nothing(tmp_path):
    (tmp_path / "adir").mkdir()
    (tmp_path / "old.csv").write_text("x")
    assert io.check_writable(tmp_path / "old.csv", "--out") == tmp_path / "old.csv"
    assert io.check_writable(tmp_path / "new" / "deeper" / "x.csv", "--out") == tmp_path / "new" / "deeper" / "x.csv"
    assert io.check_writable(tmp_path / "adir", "--out", folder=True) == tmp_path / "adir"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "old.csv"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_check_writable_refuses_a_folder_it_cannot_write_into(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert message(io.check_writable, locked / "x.csv", "--out").endswith("is not writable (permission denied or read-only): choose another --out")
