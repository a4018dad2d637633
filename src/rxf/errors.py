"""User-facing errors.

Everything a user can get wrong (a config key, a data file, a model path) is reported as an
:class:`RxfError` whose message is one line naming the problem and, where there is one, the fix.
The CLI prints the message and exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RxfError(ValueError):
    """A problem with the user's input: config, data, model or output location."""


def closest(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' suffix naming the closest valid choice, or '' if none is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""
