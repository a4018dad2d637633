"""Noise on a model's token embeddings, through a forward hook.

R3F perturbs the output of the word-embedding lookup, before position embeddings, scaling and
LayerNorm. Hooking ``get_input_embeddings()`` reaches exactly that point in every Hugging Face
model without touching its forward signature (fairseq's released R3F passed the noised
embeddings through ``**kwargs`` that the encoder ignored, so its noise never reached the model).

* Noise is sampled and added in fp32, then cast to the embedding's dtype. When that dtype (or
  the autocast dtype) cannot represent a perturbation of size σ on typical embedding values, a
  :class:`NoisePrecisionWarning` says so once.
* Embedding modules that scale their own output (BART's ``embed_scale``) get noise scaled by the
  same factor, so that the noise is added *before* scaling, as in the paper.
* For encoder-decoder models the noise goes on the encoder's tokens only, even when encoder and
  decoder share one embedding module (T5): the hook is armed only while the encoder runs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

NoiseType = Literal["normal", "uniform"]
NOISE_TYPES: tuple[str, ...] = ("normal", "uniform")


class NoisePrecisionWarning(UserWarning):
    """The embedding noise is smaller than the rounding step of the model's compute dtype."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP/FSDP/DeepSpeed/torch.compile wrappers (which expose ``.module`` or ``._orig_mod``)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def token_embedding(model: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """The module whose output gets noise, and the encoder to arm it with (encoder-decoder models only)."""
    model = unwrap_model(model)
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        encoder = model.get_encoder()
        return encoder.get_input_embeddings(), encoder
    if not hasattr(model, "get_input_embeddings"):
        raise TypeError(f"{type(model).__name__} has no get_input_embeddings(): cannot place embedding noise")
    return model.get_input_embeddings(), None


def sample_noise(
    shape: torch.Size | tuple[int, ...],
    sigma: float,
    noise_type: NoiseType = "normal",
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """fp32 noise: N(0, σ²) or U(−σ, σ)."""
    if noise_type == "normal":
        return torch.randn(shape, dtype=torch.float32, device=device, generator=generator) * sigma
    if noise_type == "uniform":
        return (torch.rand(shape, dtype=torch.float32, device=device, generator=generator) * 2 - 1) * sigma
    raise ValueError(f"unknown noise_type {noise_type!r}; choose one of {NOISE_TYPES}")


def compute_dtype(output: torch.Tensor) -> torch.dtype:
    """The dtype the model computes in after this tensor: its own, or the autocast dtype."""
    if output.dtype == torch.float32 and torch.is_autocast_enabled(output.device.type):
        return torch.get_autocast_dtype(output.device.type)
    return output.dtype


def half_ulp(magnitude: float, dtype: torch.dtype) -> float:
    """Half the spacing between representable numbers of ``dtype`` near ``magnitude``."""
    if magnitude <= 0 or not dtype.is_floating_point:
        return 0.0
    return 2.0 ** math.floor(math.log2(magnitude)) * torch.finfo(dtype).eps / 2


def check_noise_precision(sigma: float, embeddings: torch.Tensor) -> float | None:
    """Warn if noise of size σ rounds away on typical embedding values; return that half-ulp if so."""
    dtype = compute_dtype(embeddings)
    if dtype == torch.float32 or dtype == torch.float64 or sigma <= 0:
        return None
    typical = embeddings.detach().float().abs().median().item()
    limit = half_ulp(typical, dtype)
    if sigma < limit:
        warnings.warn(
            f"embedding noise sigma={sigma:g} is below half an ulp ({limit:.2g}) of typical embedding values "
            f"(|x|≈{typical:.2g}) in {dtype}: most of the noise rounds away in the model. Train the model in "
            f"fp32 (autocast keeps the embedding output in fp32 but rounds at the next matmul), or raise sigma.",
            NoisePrecisionWarning,
            stacklevel=2,
        )
        return limit
    return None


@contextmanager
def embedding_noise(
    model: nn.Module,
    sigma: float,
    noise_type: NoiseType = "normal",
    *,
    rows: slice | None = None,
    generator: torch.Generator | Callable[[torch.device], torch.Generator | None] | None = None,
) -> Iterator[None]:
    """While active, add noise to the token embeddings of ``model``'s forward passes.

    ``rows`` restricts the noise to a slice of the batch dimension (R3F runs the clean and the
    noised copy of a batch as one forward pass of twice the batch size). ``generator`` is a
    torch.Generator, or a function of the device giving one (``Method.noise_generator``);
    None uses torch's global RNG.
    """
    embedding, encoder = token_embedding(model)
    scale = getattr(embedding, "embed_scale", 1.0)
    scale = float(scale) if not torch.is_tensor(scale) else scale.float()
    armed = encoder is None
    checked = False

    def add_noise(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        nonlocal checked
        if not armed:
            return None
        if not checked:
            check_noise_precision(sigma, output)
            checked = True
        target = output if rows is None else output[rows]
        rng = generator(output.device) if callable(generator) else generator
        noise = sample_noise(target.shape, sigma, noise_type, device=output.device, generator=rng) * scale
        noised = (target.float() + noise).to(output.dtype)
        if rows is None:
            return noised
        output = output.clone()
        output[rows] = noised
        return output

    def arm(*_args) -> None:
        nonlocal armed
        armed = True

    def disarm(*_args) -> None:
        nonlocal armed
        armed = False

    handles = [embedding.register_forward_hook(add_noise)]
    if encoder is not None:
        handles += [encoder.register_forward_pre_hook(arm), encoder.register_forward_hook(disarm)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
