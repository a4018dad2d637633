"""PNG figures: matplotlib without a display, text drawn as written, and a figure that cannot be
drawn costs a warning, never the results it illustrates.

Every figure rxf draws goes through :func:`save_figure`. The text in a figure comes from the user
(class names, method labels, titles); matplotlib would read ``$...$`` in it as math and fail on
what it cannot typeset, after a run had trained for hours, so math parsing is off. The file is
written under a temporary name and renamed, so a failure never leaves half a PNG in place of an
earlier one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def save_figure(path: str | Path, draw: Callable[[Any], Any], dpi: int = 120) -> Path | None:
    """Draw ``draw(pyplot)`` (which returns its figure) into the PNG ``path``; return the path.

    None, with one line on stderr, when matplotlib is not installed or the figure cannot be drawn.
    An OSError while writing (disk full, read-only) is raised, for the caller to name.
    """
    from rxf.rundir import warn

    path = Path(path)
    try:
        import matplotlib
    except ImportError:
        print(f"rxf: no {path.name}: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        return None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with plt.rc_context({"text.parse_math": False}):
            figure = draw(plt)
            figure.savefig(partial, dpi=dpi, format="png")
        os.replace(partial, path)
    except OSError:
        raise
    except Exception as error:  # a bug or a library limit in drawing: the tables and the model are worth more
        cause = str(error).strip().splitlines()[0] if str(error).strip() else ""
        warn(f"{path.name} was not drawn ({type(error).__name__}{': ' + cause if cause else ''}); everything else is written")
        return None
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)
        partial.unlink(missing_ok=True)
    return path
