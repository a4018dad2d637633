"""Finding the checkpoint to resume from: the newest sound one, and whether it fits the run.

RxfTrainer writes each checkpoint into ``<dir>/.staging`` and renames it to ``checkpoint-N``
only when every file is in place, so a run killed while saving leaves at most a ``.staging``
folder, which is ignored (and replaced at the next save). A ``checkpoint-N`` folder can still be
damaged afterwards: a rotation killed half-way through deleting it, a disk that filled up, a file
removed by hand. So a checkpoint counts only if :func:`checkpoint_problem` finds nothing wrong:
its ``trainer_state.json`` parses, its weights, optimizer, scheduler and RNG files are there, and
none of its files is cut short (checked by their structure, without loading them).

:func:`find_resumable` picks the newest sound checkpoint and lists the damaged ones newer than
it, which the caller reports (and removes, so that rotation never keeps a damaged checkpoint in
place of a sound one). :func:`incompatibility` says what differs between a checkpoint and the
model it would be loaded into (the number of labels, a tensor's shape), so a checkpoint of
another run is refused with a sentence instead of failing inside ``load_state_dict``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rxf.io import safetensors_header, torch_file_code, torch_file_problem

CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
ADAPTER_FILE = "adapter_model.safetensors"
# Folders that distributed engines write instead of optimizer.pt / model.safetensors.
ENGINE_FOLDERS = ("global_step", "pytorch_model_fsdp", "optimizer_")


def _weight_files(checkpoint: Path) -> list[Path]:
    """The checkpoint's safetensors weight files: model.safetensors, the shards its index lists, or a peft adapter."""
    if (checkpoint / WEIGHTS_FILE).is_file():
        return [checkpoint / WEIGHTS_FILE]
    if (checkpoint / ADAPTER_FILE).is_file():  # peft: a LoRA run's checkpoint holds the adapter only
        return [checkpoint / ADAPTER_FILE]
    index = checkpoint / WEIGHTS_INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        return [checkpoint / name for name in sorted(set(weight_map.values()))]
    return []


def checkpoint_problem(checkpoint: str | Path) -> str | None:
    """What is wrong with a checkpoint folder ("optimizer.pt is truncated or damaged"), or None if it is sound."""
    checkpoint = Path(checkpoint)
    try:
        children = list(checkpoint.iterdir())
        state = checkpoint / "trainer_state.json"
        if not state.is_file():
            return "trainer_state.json is missing"
        try:
            json.loads(state.read_text())
        except (ValueError, UnicodeDecodeError):
            return "trainer_state.json is damaged"
        if not any(child.is_dir() and child.name.startswith(ENGINE_FOLDERS) for child in children):
            try:
                weights = _weight_files(checkpoint)
            except (ValueError, UnicodeDecodeError):
                return f"{WEIGHTS_INDEX} is damaged"
            if not weights:
                return f"its model weights ({WEIGHTS_FILE}) are missing"
            for path in weights:
                if not path.is_file():
                    return f"{path.name} is missing"
            for required in ("optimizer.pt", "scheduler.pt"):
                if not (checkpoint / required).is_file():
                    return f"{required} is missing"
            if not any(checkpoint.glob("rng_state*.pth")):
                return "rng_state.pth is missing"
        for path in sorted(children):
            if not path.is_file():
                continue
            if path.suffix == ".safetensors":
                try:
                    safetensors_header(path)
                except ValueError as error:
                    return f"{path.name} {error}"
            elif path.suffix in (".pt", ".pth"):
                problem = torch_file_problem(path)
                if problem:
                    return f"{path.name} {problem}"
    except OSError as error:
        return f"it cannot be read ({error.strerror or error})"
    return None


def checkpoint_step(checkpoint: str | Path) -> int:
    """The update N a ``checkpoint-N`` folder was saved at."""
    match = CHECKPOINT_NAME.match(Path(checkpoint).name)
    if match is None:
        raise ValueError(f"{checkpoint} is not a checkpoint-N folder")
    return int(match.group(1))


def _numbered(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for child in directory.iterdir():
        match = CHECKPOINT_NAME.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def find_resumable(directory: str | Path) -> tuple[str | None, list[tuple[Path, str]]]:
    """(the newest sound ``checkpoint-N`` in ``directory`` or None, [(damaged checkpoint newer than it, its problem)])."""
    directory = Path(directory)
    if not directory.is_dir():
        return None, []
    damaged: list[tuple[Path, str]] = []
    for _, checkpoint in reversed(_numbered(directory)):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return str(checkpoint), damaged
        damaged.append((checkpoint, problem))
    return None, damaged


def newest_sound_checkpoint(directory: str | Path, main_process: bool = True) -> str | None:
    """The newest sound checkpoint in ``directory`` to resume from; damaged newer ones are reported and
    removed (else checkpoint rotation could keep one of them in place of a sound one)."""
    import shutil

    from rxf.rundir import warn

    latest, damaged = find_resumable(directory)
    for checkpoint, problem in damaged:
        if main_process:
            instead = f"resuming from {Path(latest).name} instead" if latest else "starting over"
            warn(f"{checkpoint} is damaged ({problem}): {instead}; it is removed")
            shutil.rmtree(checkpoint, ignore_errors=True)
    if latest is not None:
        refuse_code(Path(latest))
    return latest


def refuse_code(checkpoint: Path) -> None:
    """Refuse a checkpoint whose optimizer, scheduler or RNG file would call code when loaded.

    Trainer loads them weights-only, which would refuse such a file too, but with a
    traceback from inside torch. Such a file is not damage (rxf never writes one): it was put there,
    so it is left in place for its owner to look at, and the run stops instead of skipping it.
    """
    from rxf.errors import RxfError

    for path in sorted(checkpoint.glob("*.pt*")):
        if path.suffix in (".pt", ".pth") and (code := torch_file_code(path)):
            raise RxfError(
                f"{path} would call {', '.join(code)} when loaded, not only build tensors; rxf does not load "
                f"it: rxf never writes such a file, so look at where it came from. To go on, remove "
                f"{checkpoint.name} (the run resumes from the checkpoint before it) or pass --overwrite to start over"
            )


def latest_checkpoint(directory: str | Path) -> str | None:
    """The sound ``checkpoint-N`` folder with the highest N in ``directory``, or None."""
    return find_resumable(directory)[0]


def _labels(config: dict[str, Any]) -> list[str] | None:
    id2label = config.get("id2label")
    if isinstance(id2label, dict):
        return [str(id2label[key]) for key in sorted(id2label, key=lambda k: int(k))]
    return None


def incompatibility(checkpoint: str | Path, model: Any) -> str | None:
    """What differs between ``checkpoint`` and ``model`` (a plain transformers model), or None if it fits."""
    checkpoint = Path(checkpoint)
    config_path = checkpoint / "config.json"
    if config_path.is_file():
        try:
            saved = json.loads(config_path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            saved = {}
        here = model.config.to_dict()
        if saved.get("model_type") and saved.get("model_type") != here.get("model_type"):
            return f"it holds a {saved['model_type']} model, this run a {here.get('model_type')} model"
        theirs, ours = _labels(saved), _labels(here)
        if theirs is not None and ours is not None and theirs != ours and saved.get("problem_type") != "regression":
            return (
                f"it was trained with {len(theirs)} labels ({', '.join(theirs[:8])}), "
                f"this run has {len(ours)} ({', '.join(ours[:8])})"
            )
    shapes = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    for path in _weight_files(checkpoint):
        for name, entry in safetensors_header(path).items():
            if name == "__metadata__":
                continue
            if name not in shapes:
                return f"it has weights this run's model lacks ({name})"
            if list(entry["shape"]) != shapes[name]:
                return f"{name} has shape {list(entry['shape'])} there, {shapes[name]} in this run's model"
    return None
