"""R3F: parametric noise on the token embeddings and a symmetric divergence (the paper's Eq. 3–4).

``L = task_loss(g·f(x)) + λ · KL_sym(g·f(x) ‖ g·f(x + z))``, ``z ~ N(0, σ²I)`` or ``U(−σ, σ)``.

Gradient modes:

* ``"both"`` (the paper's formulation, default): both passes keep gradients. They run as one
  forward pass over the batch and its copy (twice the batch size, noise on the copy only),
  which costs less than two passes of the original size; dropout masks stay independent.
* ``"clean"`` (faster): the noised pass runs under ``torch.no_grad()`` and serves as a fixed
  target; gradients flow through the clean pass only. Cost per step ≈ 4/3 of Standard instead
  of ≈ 2 (the backward runs through one graph instead of two).

The divergence is chosen from the task type unless set: symmetric KL for classification and
token-level tasks (over labels ≠ −100 only), squared error for regression (our extension), a
symmetric Bernoulli KL for multi-label heads. It is computed in fp32.

For token-level tasks ``divergence_reduction`` says how the token divergences are reduced:

* ``"token_mean"`` (default): averaged over the real target tokens, like the task loss;
* ``"sequence_sum"``: summed over the real target tokens and divided by the number of sequences,
  as fairseq's R3F for generation (``label_smoothed_cross_entropy_r3f``) does, so the paper's
  summarization λ grid {0.001, 0.01, 0.1} means what it meant there. It is ``token_mean`` × the
  mean number of real target tokens per sequence. Under gradient accumulation each micro-batch
  counts by its share of the accumulated batch's tokens, as in fairseq.

Classification reduces over one position per sequence, where the two agree.

At σ = 0 the two passes differ only by their dropout masks (R-Drop, as the GLUE sweep's
``r3f-sigma0`` row runs it): ``compute_loss`` then refuses a model in eval mode or without dropout.
R4F's ``compute_loss`` refuses a model whose head ``prepare_model`` has not normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rxf.divergence import DIVERGENCES, Divergence
from rxf.errors import RxfError
from rxf.methods.base import (
    Batch,
    LossOutput,
    Method,
    MethodConfig,
    TaskType,
    check_choice,
    check_number,
    logit_divergence,
    model_inputs,
    output_logits,
    paired_losses,
    register,
    target_mask,
    task_loss,
)
from rxf.dropout import dropout_places
from rxf.noise import NOISE_TYPES, embedding_noise, unwrap_model

GRADIENT_MODES = ("both", "clean")
DEFAULT_DIVERGENCE: dict[str, str] = {
    "classification": "sym_kl",
    "seq2seq": "sym_kl",
    "causal_lm": "sym_kl",
    "regression": "mse",
    "multi_label": "sym_bernoulli_kl",
}


DIVERGENCE_REDUCTIONS = ("token_mean", "sequence_sum")


def divergence_for(name: str, task_type: TaskType) -> Divergence:
    return DIVERGENCES[DEFAULT_DIVERGENCE[task_type] if name == "auto" else name]


def sequence_count(inputs: dict[str, Any], rows: int) -> int | torch.Tensor:
    """Sequences in a batch: its rows, or the sequences packed into them (varlen offsets, position restarts)."""
    offsets = inputs.get("cu_seq_lens_q")
    if offsets is not None:
        return offsets.numel() - 1
    positions = inputs.get("position_ids")
    if positions is not None and positions.dim() == 2 and positions.size(0) == rows:
        return (positions == 0).sum()
    return rows


def reduced(
    divergence: torch.Tensor, labels: torch.Tensor, task_type: TaskType, reduction: str, inputs: dict[str, Any]
) -> torch.Tensor:
    """A divergence averaged over target tokens (``logit_divergence``), reduced as ``reduction`` says.

    ``sequence_sum`` multiplies by the micro-batch's real target tokens over its sequences (packed
    ones counted one by one): the sum over tokens divided by the sequences, or, with a normalizer
    (the accumulated batch's tokens), that weighted by the micro-batch's share of them — fairseq's
    R3F under gradient accumulation.
    """
    return divergence * divergence_scale(labels, task_type, reduction, inputs)


def divergence_scale(labels: torch.Tensor, task_type: TaskType, reduction: str, inputs: dict[str, Any]) -> float | torch.Tensor:
    """What :func:`reduced` multiplies a token-averaged divergence by: 1, or target tokens over sequences."""
    mask = target_mask(labels, task_type)
    if reduction == "token_mean" or mask is None:
        return 1.0
    return mask.sum() / sequence_count(inputs, labels.size(0))


def require_dropout(model: nn.Module, what: str, otherwise: str = "") -> None:
    """RxfError unless dropout is active: two passes that differ only by their dropout masks agree without it.

    ``what`` names the method; ``otherwise`` adds another way out (R3F: noise).
    """
    if not model.training:
        raise RxfError(f"{what} compares two passes that differ by their dropout masks, and the model is in eval mode: call model.train()")
    refuse_without_dropout(model, what, otherwise)


def refuse_without_dropout(model: nn.Module, what: str, otherwise: str = "") -> None:
    """RxfError when every dropout rate of ``model`` is 0; ``prepare_model`` calls it so that a trainer refuses
    before it loads data, not at the first step."""
    if not any(getattr(module, name) > 0 for module, name in dropout_places(model)):
        raise RxfError(
            f"{what} compares two passes that differ by their dropout masks, and every dropout rate of "
            f"{type(unwrap_model(model)).__name__} is 0, so the divergence is 0: set one with "
            f"rxf.dropout.set_dropout(model, 0.1){otherwise}"
        )


# Varlen-attention metadata of packed (padding-free) batches: offsets of the sequences in the
# flattened batch (TRL's padding-free collator, transformers' DataCollatorWithFlattening).
SEQUENCE_OFFSETS = ("cu_seq_lens_q", "cu_seq_lens_k")


def doubled(inputs: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """Each batch tensor stacked on itself along the batch dimension: one pass equivalent to two.

    A packed batch's sequence offsets (``cu_seq_lens_q/k``) are extended so that the copy's
    sequences follow the original's in the flattened batch, as a varlen (flash-attention) kernel
    reads them; ``max_length_q/k`` stay as they are.
    """
    out = {}
    for key, value in inputs.items():
        if key in SEQUENCE_OFFSETS and torch.is_tensor(value):
            out[key] = torch.cat([value, value[1:] + value[-1]])
        elif torch.is_tensor(value) and value.dim() > 0 and value.size(0) == batch_size:
            out[key] = torch.cat([value, value])
        else:
            out[key] = value
    return out


@register
@dataclass
class R3FConfig(MethodConfig):
    """R3F hyper-parameters. Paper grid: λ ∈ {0.1, 0.5, 1, 5} (GLUE), {0.001, 0.01, 0.1} (summarization)."""

    name = "r3f"
    # Weight λ of the divergence term.
    lambda_: float = 1.0
    # Noise scale σ: the standard deviation (normal) or the half-width (uniform).
    sigma: float = 1e-5
    noise_type: str = "normal"
    # "both": gradients through both passes (the paper); "clean": the noised pass is a no-grad target (faster).
    gradient_mode: str = "both"
    # "auto" picks from the task type; or one of sym_kl, js, mse, sym_bernoulli_kl.
    divergence: str = "auto"
    # Token-level tasks: "token_mean" (over real target tokens) or "sequence_sum" (fairseq's: summed, / sequences).
    divergence_reduction: str = "token_mean"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("lambda_", self.lambda_, minimum=0.0)
        check_number("sigma", self.sigma, minimum=0.0)
        check_choice("noise_type", self.noise_type, NOISE_TYPES)
        check_choice("gradient_mode", self.gradient_mode, GRADIENT_MODES)
        check_choice("divergence", self.divergence, ("auto", *DIVERGENCES))
        check_choice("divergence_reduction", self.divergence_reduction, DIVERGENCE_REDUCTIONS)

    def build(self) -> Method:
        return R3F(self)


class R3F(Method):
    config: R3FConfig
    regularizer_name = "r3f_divergence"

    def prepare_model(self, model: nn.Module) -> nn.Module:
        if self.config.sigma == 0 and self.config.lambda_ > 0:  # R-Drop: without dropout the divergence is 0
            refuse_without_dropout(model, f"{self.config.name} with sigma=0", ", or set sigma > 0")
        return model

    def noised_logits(self, model: nn.Module, inputs: dict[str, Any], rows: slice | None = None) -> torch.Tensor:
        config = self.config
        with embedding_noise(model, config.sigma, config.noise_type, rows=rows, generator=self.noise_generator) as applied:  # type: ignore[arg-type]
            logits = output_logits(model(**inputs))
        applied.check(self.config.name)
        return logits

    def compute_loss(
        self, model: nn.Module, batch: Batch, *, normalizer: int | float | torch.Tensor | None = None
    ) -> LossOutput:
        config = self.config
        if config.lambda_ == 0:
            return self.clean_loss(model, batch, normalizer=normalizer)
        if config.sigma == 0:  # R-Drop, as the GLUE sweep's r3f-sigma0 row runs it
            require_dropout(model, f"{config.name} with sigma=0", ", or set sigma > 0")
        task_type = self.task_type(model, batch)
        inputs, labels = model_inputs(model, batch, task_type)
        divergence = divergence_for(config.divergence, task_type)
        scale = divergence_scale(labels, task_type, config.divergence_reduction, inputs)
        # Token-level tasks: the task loss and the divergence in one chunked kernel, one gradient buffer (rxf.vocab_losses).
        options = {"label_smoothing": config.label_smoothing, "normalizer": normalizer}
        coefficients = (1.0, 0.0, config.lambda_ * scale)  # the task loss of the clean pass, λ · the divergence
        if config.gradient_mode == "both":
            n = labels.size(0)
            logits = self.noised_logits(model, doubled(inputs, n), rows=slice(n, None))
            clean, noised = logits[:n], logits[n:]
            paired = paired_losses(logits, labels, task_type, divergence, coefficients, **options)
        else:
            clean = output_logits(model(**inputs))
            with torch.no_grad():
                noised = self.noised_logits(model, inputs)
            paired = paired_losses(clean, labels, task_type, divergence, coefficients, other=noised, **options)
        if paired is not None:
            loss, _, regularizer, objective = paired
            regularizer = regularizer * scale
        else:
            loss = task_loss(clean, labels, task_type, **options)
            regularizer = logit_divergence(divergence, clean, noised, labels, task_type, normalizer=normalizer) * scale
            objective = loss + config.lambda_ * regularizer
        return LossOutput(loss=objective, task_loss=loss.detach(), regularizer=regularizer.detach(), logits=clean.detach())


@register
@dataclass
class R4FConfig(R3FConfig):
    """R4F: R3F plus a spectrally normalised classification head (Lip(g) ≤ 1)."""

    name = "r4f"
    # "final": the head's last projection (default); "head": every linear layer of the head.
    spectral_norm_scope: str = "final"
    n_power_iterations: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("spectral_norm_scope", self.spectral_norm_scope, ("final", "head"))
        check_number("n_power_iterations", self.n_power_iterations, integer=True, positive=True)

    def build(self) -> Method:
        return R4F(self)


class R4F(R3F):
    config: R4FConfig

    def prepare_model(self, model: nn.Module) -> nn.Module:
        from rxf.spectral import apply_spectral_norm

        super().prepare_model(model)
        task_type = self.task_type(model)
        if task_type in ("seq2seq", "causal_lm"):
            raise RxfError(
                f"R4F is not defined for generation ({task_type}): the output layer has no classification head; use r3f"
            )
        apply_spectral_norm(model, self.config.spectral_norm_scope, self.config.n_power_iterations)  # type: ignore[arg-type]
        return model

    def compute_loss(
        self, model: nn.Module, batch: Batch, *, normalizer: int | float | torch.Tensor | None = None
    ) -> LossOutput:
        from rxf.spectral import has_spectral_norm

        if not has_spectral_norm(model):  # R3F, silently, otherwise
            raise RxfError(
                "r4f: the model's classification head is not spectrally normalised: call "
                "model = method.prepare_model(model) before training (RxfTrainer does)"
            )
        return super().compute_loss(model, batch, normalizer=normalizer)
