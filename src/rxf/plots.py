"""PNG figures: matplotlib without a display, text drawn as written, and a figure that cannot be
drawn costs a warning, never the results it illustrates.

Every figure rxf draws goes through :func:`render_png`, which draws it into bytes; the caller
writes those with its other files in one :func:`rxf.io.replace_files` (:func:`save_figure` does
that for a figure on its own). The text in a figure comes from the user (class names, method
labels, titles); matplotlib would read ``$...$`` in it as math and fail on what it cannot
typeset, after a run had trained for hours, so math parsing is off. A figure that cannot be drawn
is None: given to ``replace_files``, that removes an earlier figure of the same name, which would
otherwise stay beside the new results as if it showed them.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any


def render_png(path: str | Path, draw: Callable[[Any], Any], dpi: int = 120) -> bytes | None:
    """``draw(pyplot)`` (which returns its figure) as the bytes of a PNG, for the file ``path``.

    None, with one warning naming ``path``, when matplotlib is not installed or the figure cannot be
    drawn; the warning says so when an earlier file at ``path`` is to be removed (by ``replace_files``).
    """
    path = Path(path)
    try:
        import matplotlib
    except ImportError:
        _not_drawn(path, "matplotlib is not installed: pip install matplotlib")
        return None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    buffer = io.BytesIO()
    try:
        with plt.rc_context({"text.parse_math": False}):
            figure = draw(plt)
            figure.savefig(buffer, dpi=dpi, format="png")
    except Exception as error:  # a bug or a library limit in drawing: the tables and the model are worth more
        cause = str(error).strip().splitlines()[0] if str(error).strip() else ""
        _not_drawn(path, f"{type(error).__name__}{': ' + cause if cause else ''}")
        return None
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)
    return buffer.getvalue()


def _not_drawn(path: Path, cause: str) -> None:
    from rxf.rundir import warn

    # Said before the results are written, so it says what their write does; a failed write removes nothing.
    stale = (f", and the earlier {path.name} will be removed when the new results are written (it shows earlier results)"
             if path.is_file() else "")
    warn(f"{path.name} was not drawn ({cause}); it is left out of the results{stale}")


def save_figure(path: str | Path, draw: Callable[[Any], Any], dpi: int = 120) -> Path | None:
    """Draw ``draw(pyplot)`` into the PNG ``path``, whole or not at all; return the path.

    None (one warning, an earlier file at ``path`` removed) when the figure cannot be drawn. An
    OSError while writing (disk full, read-only) is raised, for the caller to name.
    """
    from rxf.io import replace_files

    path = Path(path)
    png = render_png(path, draw, dpi)
    replace_files({path: png})
    return path if png is not None else None
