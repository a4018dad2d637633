"""Frozen sentence representations: which layer, which pooling, and a disk cache.

Every analysis in :mod:`rxf.probing` (linear probes, CKA, effective rank) reads the same
representation, set by one :class:`FeatureConfig`:

* ``layer``: an index into the encoder's ``hidden_states`` (0 is the embedding output, -1 the
  last hidden layer, the default);
* ``pooling``: ``"cls"`` (default) takes the first token ([CLS] for BERT, <s> for RoBERTa),
  the position a sequence-classification head reads; ``"mean"`` averages the non-padding
  tokens (attention_mask = 1), as sentence-transformers models are trained to be used.

The encoder runs in eval mode (dropout off) without gradients: the probe sees a frozen model,
as in the paper's probing experiments. Features are cached as ``.npy`` files keyed by a hash of
the checkpoint (path and modification time), the task, split and exact texts, layer, pooling
and max_length, so that each (checkpoint, task, split) is encoded once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rxf.errors import RxfError
from rxf.config import check_fields
from rxf.io import check_writable, replace_files, write_failure
from rxf.methods.base import check_choice, check_number
from rxf.noise import unwrap_model

POOLINGS = ("cls", "mean")


@dataclass
class FeatureConfig:
    """The representation every probe and similarity metric reads."""

    layer: int = -1  # index into hidden_states: 0 = embeddings, -1 = last hidden layer
    pooling: str = "cls"  # "cls": first token; "mean": mean over non-padding tokens
    max_length: int = 128  # tokens per example (pairs are truncated together)
    batch_size: int = 64

    def __post_init__(self) -> None:
        check_fields(self)
        check_number("layer", self.layer, integer=True)
        check_number("max_length", self.max_length, integer=True, positive=True)
        check_number("batch_size", self.batch_size, integer=True, positive=True)
        check_choice("pooling", self.pooling, POOLINGS)

    def describe(self) -> str:
        layer = "last hidden layer" if self.layer == -1 else f"hidden_states[{self.layer}]"
        pooled = "first ([CLS]) token" if self.pooling == "cls" else "mean over non-padding tokens"
        return f"{layer}, {pooled}, max_length {self.max_length}"


def encoder_of(model: nn.Module) -> nn.Module:
    """The encoder without its task head (``model.base_model``; the model itself if it has no head)."""
    model = unwrap_model(model)
    return getattr(model, "base_model", model)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(batch, length, hidden) -> (batch, hidden) by the first token or the mean of the unmasked tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


@torch.no_grad()
def encode(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None,
    config: FeatureConfig,
) -> np.ndarray:
    """Pooled fp32 features (N, hidden) of a model's encoder, in eval mode; its train/eval mode is restored."""
    encoder = encoder_of(model)
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    chunks: list[np.ndarray] = []
    try:
        for start in range(0, len(texts), config.batch_size):
            end = start + config.batch_size
            pairs = list(text_pairs[start:end]) if text_pairs is not None else None
            batch = tokenizer(
                list(texts[start:end]), pairs, truncation=True, max_length=config.max_length,
                padding=True, return_tensors="pt",
            ).to(device)
            hidden_states = encoder(**batch, output_hidden_states=True).hidden_states
            if not -len(hidden_states) <= config.layer < len(hidden_states):
                raise RxfError(
                    f"features.layer={config.layer} is out of range: this encoder has {len(hidden_states)} "
                    f"hidden states (0 = embeddings ... {len(hidden_states) - 1} = last layer, or -1)"
                )
            pooled = pool(hidden_states[config.layer].float(), batch["attention_mask"], config.pooling)
            chunks.append(pooled.cpu().numpy())
    finally:
        encoder.train(was_training)
    if not chunks:
        raise RxfError("no texts to encode")
    return np.concatenate(chunks)


def load_encoder(checkpoint: str) -> tuple[nn.Module, Any]:
    """The encoder (no task head) and tokenizer of a checkpoint directory, hub or packaged model name."""
    from transformers import AutoModel, AutoTokenizer

    from rxf.models.local import TOKENIZER_FILES, resolve_model

    location = resolve_model(checkpoint)
    if Path(location).is_dir() and not any((Path(location) / file).is_file() for file in TOKENIZER_FILES):
        raise RxfError(
            f"model directory {location} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...): save the "
            "tokenizer of the model it comes from into it (AutoTokenizer.from_pretrained(BASE).save_pretrained(DIR))"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        encoder = AutoModel.from_pretrained(location)
    except OSError as error:
        raise RxfError(f"cannot load checkpoint {checkpoint!r}: {str(error).splitlines()[0]}") from None
    return encoder.eval(), tokenizer


def checkpoint_fingerprint(checkpoint: str) -> str:
    """What identifies a checkpoint's weights: its path and newest file time, or its hub name."""
    from rxf.models.local import resolve_model

    location = Path(resolve_model(checkpoint))
    if not location.is_dir():
        return str(checkpoint)
    newest = max((f.stat().st_mtime_ns for f in location.iterdir() if f.is_file()), default=0)
    return f"{location.resolve()}@{newest}"


def texts_digest(texts: Sequence[str], text_pairs: Sequence[str] | None) -> str:
    digest = hashlib.sha256()
    for i, text in enumerate(texts):
        digest.update(text.encode())
        digest.update(b"\x1f" + (text_pairs[i].encode() if text_pairs is not None else b"") + b"\x1e")
    return digest.hexdigest()


class FeatureExtractor:
    """Features of (checkpoint, texts), computed once and cached on disk when ``cache_dir`` is set.

    One encoder is kept loaded at a time: experiments encode several splits of one checkpoint in a row.
    """

    def __init__(self, config: FeatureConfig, cache_dir: str | Path | None = None, option: str = "--cache-dir", what: str | None = None):
        """``option`` (and ``what``, see :func:`rxf.io.check_writable`) name ``cache_dir`` in a refusal."""
        self.config = config
        self.cache_dir = check_writable(cache_dir, option, folder=True, what=what) if cache_dir is not None else None
        self._loaded: tuple[str, nn.Module, Any] | None = None
        self.hits = 0
        self.misses = 0

    def __call__(
        self, checkpoint: str, texts: Sequence[str], text_pairs: Sequence[str] | None, what: str, cache: bool = True
    ) -> np.ndarray:
        """Features of ``texts`` (and ``text_pairs``) under ``checkpoint``; ``what`` names them (e.g. "glue/rte:train").

        ``cache=False`` for checkpoints that are about to be deleted (a chain's intermediate stages).
        """
        key = {
            "checkpoint": checkpoint_fingerprint(checkpoint),
            "what": what,
            "rows": len(texts),
            "texts": texts_digest(texts, text_pairs),
            **asdict(self.config),
        }
        key.pop("batch_size")  # does not change the features
        path = None
        if self.cache_dir is not None and cache:
            name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
            path = self.cache_dir / f"{name}.npy"
            if path.is_file():
                try:
                    features = np.load(path)  # allow_pickle=False: a cache file cannot run code
                except (OSError, ValueError, EOFError):
                    features = None  # a damaged cache entry (e.g. cut short by a full disk): computed again
                if features is not None and features.shape[0] == len(texts):
                    self.hits += 1
                    return features
        self.misses += 1
        encoder, tokenizer = self._encoder(checkpoint, texts)
        features = encode(encoder, tokenizer, texts, text_pairs, self.config)
        if path is not None:
            array = BytesIO()
            np.save(array, features)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Both files whole or neither (temporary names carry the pid: a cache folder can be shared).
                replace_files({path: array.getvalue(), path.with_suffix(".json"): json.dumps(key, indent=1)})
            except OSError as error:
                raise write_failure(error, path.parent, "the feature cache", "or choose another --cache-dir") from None
        return features

    def _encoder(self, checkpoint: str, texts: Sequence[str]) -> tuple[nn.Module, Any]:
        if self._loaded is None or self._loaded[0] != checkpoint:
            from rxf.models.local import check_tokenizer

            self._loaded = None  # free the previous encoder first
            encoder, tokenizer = load_encoder(checkpoint)
            check_tokenizer(tokenizer, texts, checkpoint)  # a degenerate tokenizer would encode [UNK]s
            self._loaded = (checkpoint, encoder, tokenizer)
        return self._loaded[1], self._loaded[2]

    def release(self) -> None:
        """Drop the loaded encoder (e.g. before its directory is deleted)."""
        self._loaded = None
