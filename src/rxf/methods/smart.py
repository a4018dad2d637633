"""SMART (Jiang et al., 2020): adversarial smoothness on the token embeddings, with projection.

``L = task_loss(f(x)) + λ · D(f(x), f(x + δ*))  [+ μ · D(f(x; θ), f(x; θ̃))]`` where

* δ starts as N(0, σ²) noise on the real tokens (δ = 0 on padding) and takes ``num_steps``
  ascent steps ``δ ← Π_ε(δ + η · g/‖g‖)`` with ``g = ∇_δ D(f(x + δ), f(x)ᵀ)`` (the clean logits
  as a fixed target). Π_ε is the *projection* onto the ε-ball (L2 or L∞, per token or per
  sequence) — mt-dnn and smart-pytorch only normalise δ and use ε as a divide-by-zero guard,
  so their δ has norm ≈ 1 whatever ε says. The step is normalised by the norm of the ball, as
  in SMART's Algorithm 1 (which uses L∞).
* The inner gradient is ``torch.autograd.grad`` of an fp32 divergence with respect to δ only: it
  leaves the parameters' ``.grad`` untouched, needs no loss scaling (a GradScaler only scales
  the outer loss) and, the step being normalised, does not depend on the loss's scale.
* D is the symmetric KL for classification and token-level tasks (over labels ≠ −100), squared
  error for regression — the same choice as R3F (:func:`rxf.methods.r3f.divergence_for`).
  The final divergence keeps gradients through both the clean and the perturbed pass.
* The Bregman proximal point term (off by default, ``bregman_mu > 0`` turns it on; the SMART
  paper uses μ = 1, β = 0.99) compares the student's clean logits with those of a teacher θ̃, an
  exponential moving average of the parameters: ``θ̃ ← β θ̃ + (1 − β) θ`` once per optimizer
  step (detected from the parameters' version counters, so gradient accumulation does not
  update it twice). The teacher is a full copy of the model, in eval mode, without gradients;
  it is not checkpointed (a resumed run restarts it from the resumed weights). Used with another
  model (CV folds, seeds), the method builds a new teacher from that model.
* Half precision: δ of ε = 1e-5 rounds away in bf16/fp16 activations (the precision warning of
  :mod:`rxf.noise` says so) and the inner gradient may underflow; train SMART in fp32.

Cost per step with S ascent steps (counted by :func:`rxf.cost.count_passes`): S + 2 forward
passes (clean, S ascent, final), all recording a graph, and S + 1 backward sweeps (S through
the activations only, to δ; one full). The paper's Table 1 says 1 + S forwards; that leaves out
either the clean pass or the final one. The teacher adds one no-grad forward when on.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rxf.divergence import DIVERGENCES
from rxf.errors import RxfError
from rxf.methods.base import (
    Batch,
    LossOutput,
    Method,
    MethodConfig,
    check_choice,
    check_number,
    logit_divergence,
    model_inputs,
    output_logits,
    prediction_logits,
    register,
    target_mask,
    task_loss,
)
from rxf.methods.perturb import (
    GRANULARITIES,
    NORMS,
    embedding_delta,
    embedding_dim,
    noise_generator,
    normalized,
    packed_sequences,
    project,
    token_mask,
)
from rxf.methods.r3f import DIVERGENCE_REDUCTIONS, divergence_for, reduced
from rxf.noise import unwrap_model


def inner_gradient(inner: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``torch.autograd.grad(inner, delta)``, with torch's error about reentrant checkpointing made an RxfError."""
    try:
        return torch.autograd.grad(inner, delta)
    except RuntimeError as error:
        if "use_reentrant" not in str(error):
            raise
        raise RxfError(
            "smart takes gradients with respect to δ, which reentrant gradient checkpointing cannot give: use "
            "gradient_checkpointing_kwargs={'use_reentrant': False} (TrainingArguments or gradient_checkpointing_enable)"
        ) from None


@register
@dataclass
class SmartConfig(MethodConfig):
    """SMART hyper-parameters; defaults from the SMART paper (λ = 1, ε = σ = 1e-5, η = 1e-3, S = 1)."""

    name = "smart"
    # Weight λ of the adversarial divergence.
    lambda_: float = 1.0
    # Radius ε of the ball δ is projected onto.
    epsilon: float = 1e-5
    # Standard deviation σ of δ's random start.
    sigma: float = 1e-5
    # Ascent step size η (the step is η · g/‖g‖).
    step_size: float = 1e-3
    # Number S of ascent steps (≥ 1).
    num_steps: int = 1
    # The ball's norm: "linf" (SMART's) or "l2".
    norm: str = "linf"
    # One ball per "token" or per "sequence".
    granularity: str = "token"
    # "auto" picks from the task type; or one of sym_kl, js, mse, sym_bernoulli_kl.
    divergence: str = "auto"
    # Token-level tasks: "token_mean" or "sequence_sum" (summed over real target tokens, / sequences), as R3F.
    divergence_reduction: str = "token_mean"
    # Weight μ of the Bregman proximal term (0 = off). SMART's paper uses 1.
    bregman_mu: float = 0.0
    # β of the teacher's moving average θ̃ ← β θ̃ + (1 − β) θ.
    teacher_momentum: float = 0.99

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("lambda_", self.lambda_, minimum=0.0)
        check_number("epsilon", self.epsilon, positive=True)
        check_number("sigma", self.sigma, minimum=0.0)
        check_number("step_size", self.step_size, positive=True)
        check_number("num_steps", self.num_steps, integer=True, positive=True)
        check_choice("norm", self.norm, NORMS)
        check_choice("granularity", self.granularity, GRANULARITIES)
        check_choice("divergence", self.divergence, ("auto", *DIVERGENCES))
        check_choice("divergence_reduction", self.divergence_reduction, DIVERGENCE_REDUCTIONS)
        check_number("bregman_mu", self.bregman_mu, minimum=0.0)
        check_number("teacher_momentum", self.teacher_momentum, minimum=0.0, below=1.0)

    def build(self) -> Method:
        return Smart(self)


class Smart(Method):
    config: SmartConfig
    regularizer_name = "smart_divergence"

    def __init__(self, config: SmartConfig):
        super().__init__(config)
        self.teacher: nn.Module | None = None
        self._teacher_source: weakref.ref[nn.Module] | None = None  # the model the teacher averages
        self._teacher_version: int | None = None
        #: The Bregman term of the last step (detached), for logging; None when off.
        self.last_bregman: torch.Tensor | None = None

    # ---- the adversarial perturbation ---------------------------------------------------------

    def perturbation(
        self, model: nn.Module, inputs: dict[str, Any], clean: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """δ* after S projected ascent steps (fp32, detached, 0 on padding), given the clean logits."""
        config = self.config
        task_type = self.task_type(model)
        divergence = divergence_for(config.divergence, task_type)
        mask = token_mask(inputs)
        target = prediction_logits(clean.detach(), task_type)
        positions = target_mask(labels, task_type)
        sequences = packed_sequences(inputs, mask)  # a packed row's sequences are balls of their own
        shape = (*mask.shape, embedding_dim(model))
        generator = noise_generator(self, mask.device)
        delta = torch.randn(shape, dtype=torch.float32, device=mask.device, generator=generator)
        delta = delta * config.sigma * mask.unsqueeze(-1)
        for _ in range(config.num_steps):
            delta.requires_grad_(True)
            with torch.enable_grad(), embedding_delta(model, delta, magnitude=config.epsilon) as applied:
                perturbed = output_logits(model(**inputs))
            applied.check("smart")
            # Sum, not mean: the step is normalised, and a sum keeps tiny divergences away from underflow.
            inner = divergence(prediction_logits(perturbed, task_type), target, positions, reduction="sum")
            (grad,) = inner_gradient(inner, delta)
            step = normalized(grad, config.norm, config.granularity, mask, sequences)
            delta = project(
                delta.detach() + config.step_size * step, config.epsilon, config.norm, config.granularity, mask, sequences
            )
        return delta.detach()

    # ---- the Bregman proximal term ------------------------------------------------------------

    @staticmethod
    def _version(model: nn.Module) -> int:
        # Optimizer steps update parameters in place, which bumps their version counters.
        return sum(p._version for p in model.parameters())

    @torch.no_grad()
    def update_teacher(self, model: nn.Module) -> nn.Module:
        """Create the teacher on first use, and anew for another model (CV folds, seeds); fold the current
        parameters into its average once per update of them."""
        inner = unwrap_model(model)
        if self.teacher is None or self._teacher_source is None or self._teacher_source() is not inner:
            self.teacher = copy.deepcopy(inner).eval().requires_grad_(False)
            self._teacher_source = weakref.ref(inner)
            self._teacher_version = self._version(inner)
            return self.teacher
        version = self._version(inner)
        if version != self._teacher_version:
            beta = self.config.teacher_momentum
            for t, p in zip(self.teacher.parameters(), inner.parameters(), strict=True):
                t.lerp_(p.detach().to(t.dtype), 1.0 - beta)
            for t, b in zip(self.teacher.buffers(), inner.buffers(), strict=True):
                t.copy_(b)
            self._teacher_version = version
        return self.teacher

    # ---- the loss -----------------------------------------------------------------------------

    def compute_loss(
        self, model: nn.Module, batch: Batch, *, normalizer: int | float | torch.Tensor | None = None
    ) -> LossOutput:
        config = self.config
        task_type = self.task_type(model, batch)
        inputs, labels = model_inputs(model, batch, task_type)
        teacher = self.update_teacher(model) if config.bregman_mu > 0 else None
        clean = output_logits(model(**inputs))
        loss = task_loss(clean, labels, task_type, label_smoothing=config.label_smoothing, normalizer=normalizer)
        divergence = divergence_for(config.divergence, task_type)
        total = loss
        regularizer = None
        if config.lambda_ > 0:
            delta = self.perturbation(model, inputs, clean, labels)
            with embedding_delta(model, delta) as applied:
                perturbed = output_logits(model(**inputs))
            applied.check("smart")
            regularizer = logit_divergence(divergence, clean, perturbed, labels, task_type, normalizer=normalizer)
            regularizer = reduced(regularizer, labels, task_type, config.divergence_reduction, inputs)
            total = total + config.lambda_ * regularizer
        self.last_bregman = None
        if teacher is not None:
            with torch.no_grad():
                teacher_logits = output_logits(teacher(**inputs))
            bregman = logit_divergence(divergence, clean, teacher_logits, labels, task_type, normalizer=normalizer)
            bregman = reduced(bregman, labels, task_type, config.divergence_reduction, inputs)
            total = total + config.bregman_mu * bregman
            self.last_bregman = bregman.detach()
        return LossOutput(
            loss=total,
            task_loss=loss.detach(),
            regularizer=None if regularizer is None else regularizer.detach(),
            logits=clean.detach(),
        )
