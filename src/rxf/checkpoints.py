"""Finding the checkpoint to resume from.

RxfTrainer writes each checkpoint into ``<dir>/.staging`` and renames it to ``checkpoint-N``
only when every file is in place, so a ``checkpoint-N`` folder is complete by construction; a
run killed while saving leaves at most a ``.staging`` folder, which is ignored (and replaced at
the next save). As a second guard, a checkpoint counts only if its ``trainer_state.json`` (the
last file the Trainer writes) parses.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def is_complete(checkpoint: Path) -> bool:
    state = checkpoint / "trainer_state.json"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError):
        return False
    return True


def latest_checkpoint(directory: str | Path) -> str | None:
    """The complete ``checkpoint-N`` folder with the highest N in ``directory``, or None."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = []
    for child in directory.iterdir():
        match = CHECKPOINT_NAME.match(child.name)
        if match and child.is_dir() and is_complete(child):
            found.append((int(match.group(1)), child))
    return str(max(found)[1]) if found else None
