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
* A batch that brings its own ``inputs_embeds`` (the word-embedding output, computed by the
  caller) bypasses the embedding module, so the noise goes on ``inputs_embeds`` itself, through a
  pre-hook on the model's forward, with the same scale handling: the same embeddings and the
  same noise give the same result as ``input_ids``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from rxf.config import is_finite_number
from rxf.errors import RxfError, closest

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


COMPILED_MODEL_HINT = (
    "pass the uncompiled model (under a Trainer, leave TrainingArguments(torch_compile=...) off: "
    "it hands a compiled model to compute_loss)"
)


def refuse_compiled(model: nn.Module) -> None:
    """RxfError if ``model``, or a wrapper around it, is torch.compile'd.

    Dynamo does not guard on hooks added after compilation by default (``skip_nnmodule_hook_guards``), so a
    compiled model may run the graph it traced without them: the perturbation would silently not be
    applied. On torch 2.13 R3F's hooks were measured to run and SMART's, FreeLB's and NEFTune's not
    (``benchmarks/compile_hooks.py``). ``torch.compile`` wraps a module in an OptimizedModule, which keeps
    the original as ``_orig_mod``.
    """
    wrapper: Any = model
    while isinstance(wrapper, nn.Module):
        if isinstance(getattr(wrapper, "_orig_mod", None), nn.Module):
            raise RxfError(
                f"the model is torch.compile'd ({type(wrapper).__name__}), and rxf's embedding perturbations "
                f"(r3f, r4f, smart, freelb, neftune) use hooks a compiled model may not run: {COMPILED_MODEL_HINT}"
            )
        wrapper = getattr(wrapper, "module", None)


def token_embedding(model: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """The module whose output gets noise, and the encoder to arm it with (encoder-decoder models only)."""
    refuse_compiled(model)
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


@dataclass
class AppliedDelta:
    """What :func:`embedding_delta` did: how many embedding calls got δ."""

    calls: int = 0

    def check(self, method: str) -> None:
        """RxfError if the perturbation never reached the model (it would silently do nothing)."""
        if self.calls == 0:
            raise RxfError(
                f"{method}: the model neither called its token embeddings nor received inputs_embeds, so the "
                "perturbation was not applied; pass input_ids or inputs_embeds in the batch, or, if the model "
                f"is torch.compile'd (which may not run hooks added after compilation), {COMPILED_MODEL_HINT}"
            )


Delta = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def embedding_delta(model: nn.Module, delta: Delta, *, magnitude: float | None = None) -> Iterator[AppliedDelta]:
    """While active, add ``delta`` to the token-embedding output of ``model``'s forward passes.

    ``delta`` is a tensor of the embedding output's shape (kept in fp32; gradients flow into
    it), or a function of the embedding output returning one (sampled per call). It is added
    in fp32, multiplied by the module's ``embed_scale`` (so that it lands *before* scaling),
    and cast back. A ``magnitude`` (typical |δ|) enables the precision warning when δ would
    round away in the model's compute dtype. For encoder-decoder models only the encoder's
    embedding calls get δ. A forward called with ``inputs_embeds`` (the embedding output the
    caller computed) gets δ on ``inputs_embeds``, the same way.
    """
    embedding, encoder = token_embedding(model)
    scale = getattr(embedding, "embed_scale", 1.0)
    scale = float(scale) if not torch.is_tensor(scale) else scale.float()
    armed = encoder is None
    embeddings_given = False  # this forward brought inputs_embeds: the embedding module's output is not the input
    applied = AppliedDelta()

    def perturbed(embeddings: torch.Tensor) -> torch.Tensor:
        if applied.calls == 0 and magnitude is not None:
            check_noise_precision(magnitude, embeddings)
        applied.calls += 1
        d = delta(embeddings) if callable(delta) else delta
        if d.shape != embeddings.shape:
            raise RxfError(f"perturbation of shape {tuple(d.shape)} does not match the embeddings {tuple(embeddings.shape)}")
        # At least fp32 (fp64 models stay fp64), then back to the model's dtype.
        compute = torch.promote_types(embeddings.dtype, torch.float32)
        return (embeddings.to(compute) + d.to(compute) * scale).to(embeddings.dtype)

    def add_delta(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not armed or embeddings_given:
            return None
        return perturbed(output)

    def add_delta_to_given(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        nonlocal embeddings_given
        if kwargs.get("inputs_embeds") is None:
            return None
        embeddings_given = True
        return args, {**kwargs, "inputs_embeds": perturbed(kwargs["inputs_embeds"])}

    def end_of_forward(*_args: Any) -> None:
        nonlocal embeddings_given
        embeddings_given = False

    def arm(*_args: Any) -> None:
        nonlocal armed
        armed = True

    def disarm(*_args: Any) -> None:
        nonlocal armed
        armed = False

    handles = [
        embedding.register_forward_hook(add_delta),
        model.register_forward_pre_hook(add_delta_to_given, with_kwargs=True),
        model.register_forward_hook(end_of_forward, always_call=True),  # also after a forward that raised
    ]
    if encoder is not None:
        handles += [encoder.register_forward_pre_hook(arm), encoder.register_forward_hook(disarm)]
    try:
        yield applied
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def embedding_noise(
    model: nn.Module,
    sigma: float,
    noise_type: NoiseType = "normal",
    *,
    rows: slice | None = None,
    generator: torch.Generator | Callable[[torch.device], torch.Generator | None] | None = None,
) -> Iterator[AppliedDelta]:
    """While active, add fresh noise (:func:`sample_noise`) to the token embeddings of ``model``'s forward passes.

    ``rows`` restricts the noise to a slice of the batch dimension (R3F runs the clean and the
    noised copy of a batch as one forward pass of twice the batch size). ``generator`` is a
    torch.Generator, or a function of the device giving one (``Method.noise_generator``);
    None uses torch's global RNG. Yields the :class:`AppliedDelta`, whose ``check`` says whether
    the noise reached the model.
    """
    if not (is_finite_number(sigma) and sigma >= 0):
        raise RxfError(f"sigma: {sigma!r} must be a number >= 0")
    if noise_type not in NOISE_TYPES:
        raise RxfError(f"noise_type: {noise_type!r} must be one of {', '.join(NOISE_TYPES)}{closest(str(noise_type), NOISE_TYPES)}")

    def sample(output: torch.Tensor) -> torch.Tensor:
        rng = generator(output.device) if callable(generator) else generator
        if rows is None:
            return sample_noise(output.shape, sigma, noise_type, device=output.device, generator=rng)
        noise = torch.zeros(output.shape, dtype=torch.float32, device=output.device)
        noise[rows] = sample_noise(noise[rows].shape, sigma, noise_type, device=output.device, generator=rng)
        return noise

    with embedding_delta(model, sample, magnitude=sigma) as applied:
        yield applied
