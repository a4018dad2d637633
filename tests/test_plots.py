"""rxf.plots.save_figure: text drawn as written, a failed figure is one warning, the old file survives."""

import errno

import pytest

from rxf.plots import save_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def labelled(text):
    def draw(plt):
        figure, ax = plt.subplots()
        ax.bar([0, 1], [1, 2])
        ax.set_xticks([0, 1], [text, "pos"])
        ax.set_title(text)
        return figure

    return draw


def test_dollar_signs_in_user_text_are_drawn_as_written(tmp_path):
    # matplotlib's math parser fails on this one: a class named so must not cost a run its results
    path = save_figure(tmp_path / "f.png", labelled(r"$\nosuchcmd$"))
    assert path == tmp_path / "f.png" and path.read_bytes().startswith(PNG_MAGIC)
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_a_figure_that_cannot_be_drawn_is_one_warning_and_keeps_the_earlier_file(tmp_path, capsys):
    import matplotlib.pyplot as plt

    earlier = tmp_path / "f.png"
    earlier.write_bytes(b"earlier")

    def broken(plt):
        plt.subplots()
        raise ValueError("no data\nsecond line")

    assert save_figure(earlier, broken) is None
    err = capsys.readouterr().err
    assert err.splitlines() == ["rxf: warning: f.png was not drawn (ValueError: no data); everything else is written"]
    assert earlier.read_bytes() == b"earlier" and [p.name for p in tmp_path.iterdir()] == ["f.png"]
    assert plt.get_fignums() == []  # the half-drawn figure is closed


def test_a_write_fault_is_raised_for_the_caller_and_leaves_no_partial_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def full_disk(self, fname, **kwargs):
        open(fname, "wb").write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device", str(fname))

    monkeypatch.setattr(Figure, "savefig", full_disk)
    earlier = tmp_path / "f.png"
    earlier.write_bytes(b"earlier")
    with pytest.raises(OSError) as raised:
        save_figure(earlier, labelled("x"))
    assert raised.value.errno == errno.ENOSPC
    assert earlier.read_bytes() == b"earlier" and [p.name for p in tmp_path.iterdir()] == ["f.png"]
