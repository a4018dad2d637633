"""rxf.plots: text drawn as written; a figure that cannot be drawn is one warning and removes an earlier
one of its name; a failed write keeps the earlier file."""

import errno
import pathlib

import pytest

from rxf.plots import render_png, save_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def labelled(text):
    def draw(plt):
        figure, ax = plt.subplots()
        ax.bar([0, 1], [1, 2])
        ax.set_xticks([0, 1], [text, "pos"])
        ax.set_title(text)
        return figure

    return draw


def broken(plt):
    plt.subplots()
    raise ValueError("no data\nsecond line")


def test_dollar_signs_in_user_text_are_drawn_as_written(tmp_path):
    # matplotlib's math parser fails on this one: a class named so must not cost a run its results
    path = save_figure(tmp_path / "f.png", labelled(r"$\nosuchcmd$"))
    assert path == tmp_path / "f.png" and path.read_bytes().startswith(PNG_MAGIC)
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_render_png_draws_into_memory_and_closes_its_figure(tmp_path):
    import matplotlib.pyplot as plt

    png = render_png(tmp_path / "f.png", labelled("x"))
    assert png.startswith(PNG_MAGIC) and list(tmp_path.iterdir()) == []  # nothing written
    assert plt.get_fignums() == []


def test_a_figure_that_cannot_be_drawn_is_one_warning_and_removes_the_earlier_file(tmp_path, capsys):
    import matplotlib.pyplot as plt

    earlier = tmp_path / "f.png"
    earlier.write_bytes(b"earlier")
    assert save_figure(earlier, broken) is None
    assert capsys.readouterr().err.splitlines() == [
        "rxf: warning: f.png was not drawn (ValueError: no data); it is left out of the results, "
        "and the earlier f.png will be removed when the new results are written (it shows earlier results)"
    ]
    assert list(tmp_path.iterdir()) == []  # no stale picture beside the new results
    assert plt.get_fignums() == []  # the half-drawn figure is closed
    assert save_figure(earlier, broken) is None  # no earlier file: the warning says nothing of one
    assert capsys.readouterr().err.splitlines() == ["rxf: warning: f.png was not drawn (ValueError: no data); it is left out of the results"]


def test_the_warning_stays_true_when_the_write_then_fails(tmp_path, capsys, full_disk):
    """The warning comes before the results are written: a write that then fails removes no earlier figure."""
    from rxf.io import replace_files

    earlier, report = tmp_path / "f.png", tmp_path / "report.md"
    earlier.write_bytes(b"earlier")
    report.write_text("old report")
    png = render_png(earlier, broken)
    assert "the earlier f.png will be removed when the new results are written" in capsys.readouterr().err
    with full_disk(), pytest.raises(OSError):
        replace_files({report: "new report", earlier: png})
    assert earlier.read_bytes() == b"earlier" and report.read_text() == "old report"


def test_a_write_fault_is_raised_for_the_caller_and_leaves_no_partial_file(tmp_path, monkeypatch):
    real = pathlib.Path.write_bytes

    def full_disk(self, data):
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)
    earlier = tmp_path / "f.png"
    earlier.write_text("earlier")
    with pytest.raises(OSError) as raised:
        save_figure(earlier, labelled("x"))
    assert raised.value.errno == errno.ENOSPC
    assert earlier.read_text() == "earlier" and [p.name for p in tmp_path.iterdir()] == ["f.png"]
