"""FreeLB (Zhu et al., 2020): K adversarial ascent steps on the embeddings, gradients accumulated.

For each batch, δ starts small and uniform (on real tokens only) and, for k = 1 … K:

1. forward at x + δ_{k−1}, task loss L_k;
2. ``backward(L_k / K)``: the parameters' gradients *accumulate* over the K steps (the "free"
   part: the same backward gives ∇_θ and ∇_δ);
3. ``δ_k = Π(δ_{k−1} + α · g/‖g‖)`` with ``g = ∇_δ L_k``, projected onto the ball of radius
   ``adv_max_norm`` (0 = no bound).

The optimizer then steps once with the average of the K gradients. It is a multi-backward
method: it implements :meth:`training_step` (``compute_loss`` is not available), so use it
through :class:`rxf.RxfTrainer` or ``method.training_step(model, batch, backward)``.

* Norms and δ are fp32 (FreeLB's reference code reports NaNs in fp16); a non-finite δ gradient
  (an fp16 overflow that the GradScaler will skip anyway) counts as 0. δ.grad comes from the
  scaled backward under a GradScaler; the step is normalised, so the scale cancels.
* Under DDP, the first K − 1 forward/backward pairs run under ``no_sync`` so gradients are
  all-reduced once, at the last step: ``accelerator.no_sync(model)`` when an ``accelerator``
  is given (RxfTrainer passes its own), else ``model.no_sync()`` when the model has it.
* The FreeLB paper also proposes reusing one dropout mask across the K steps; that is not
  implemented (dropout masks are independent, as in most re-implementations).

Cost per step (counted by :func:`rxf.cost.count_passes`): K forwards and K full backwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rxf.errors import RxfError
from rxf.methods.base import (
    Batch,
    LossOutput,
    Method,
    MethodConfig,
    check_choice,
    check_number,
    model_inputs,
    output_logits,
    register,
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
    tokens_per_ball,
)


@register
@dataclass
class FreeLBConfig(MethodConfig):
    """FreeLB hyper-parameters (FreeLB's scripts sweep α, the initial and the maximum norm per task)."""

    name = "freelb"
    # Number K of ascent steps (= forward/backward pairs per training step).
    adv_steps: int = 2
    # Ascent step size α (the step is α · g/‖g‖).
    adv_lr: float = 0.1
    # Size of δ's uniform random start: its ‖·‖ is about adv_init_mag/√3 (l2) or ≤ adv_init_mag (linf). 0: start at δ = 0.
    adv_init_mag: float = 0.1
    # Radius of the ball δ is projected onto; 0 = unbounded.
    adv_max_norm: float = 0.3
    # "l2" (FreeLB's default) or "linf".
    norm: str = "l2"
    # One ball per "sequence" (FreeLB's) or per "token".
    granularity: str = "sequence"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("adv_steps", self.adv_steps, integer=True, positive=True)
        check_number("adv_lr", self.adv_lr, positive=True)
        check_number("adv_init_mag", self.adv_init_mag, minimum=0.0)
        check_number("adv_max_norm", self.adv_max_norm, minimum=0.0)
        check_choice("norm", self.norm, NORMS)
        check_choice("granularity", self.granularity, GRANULARITIES)

    def build(self) -> Method:
        return FreeLB(self)


class _AddGradient(torch.autograd.Function):
    """Identity forward; the backward adds a gradient gathered elsewhere (see :meth:`FreeLB.training_step`)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(extra)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (extra,) = ctx.saved_tensors
        return grad + extra.to(grad.dtype), None


def sync_context(model: nn.Module, accelerator: Any = None) -> contextlib.AbstractContextManager:
    """A context that suspends DDP's gradient all-reduce: the accelerator's, the model's own, or none."""
    if accelerator is not None:
        return accelerator.no_sync(model)
    if hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


class FreeLB(Method):
    config: FreeLBConfig
    multi_backward = True
    # Logged: task_loss is the loss at δ₀ (the random start), freelb_last_loss the loss at the last ascent point.
    regularizer_name = "freelb_last_loss"

    def initial_delta(self, model: nn.Module, mask: torch.Tensor, sequences: torch.Tensor | None = None) -> torch.Tensor:
        """δ₀: uniform, zero on padding, inside the ball (fp32)."""
        config = self.config
        shape = (*mask.shape, embedding_dim(model))
        uniform = torch.rand(shape, dtype=torch.float32, device=mask.device, generator=noise_generator(self, mask.device))
        delta = (uniform * 2 - 1) * mask.unsqueeze(-1)
        if config.norm == "l2":
            # FreeLB's scaling: each element ~ U(−1, 1)·mag/√(elements in the ball), so ‖δ‖₂ ≈ mag/√3.
            per_ball = tokens_per_ball(mask, config.granularity, sequences)
            scale = config.adv_init_mag / (per_ball * shape[-1]).clamp_min(1).sqrt()
            delta = delta * scale.unsqueeze(-1)
        else:
            delta = delta * config.adv_init_mag
        return self.bound(delta, mask, sequences)

    def bound(self, delta: torch.Tensor, mask: torch.Tensor, sequences: torch.Tensor | None = None) -> torch.Tensor:
        config = self.config
        if config.adv_max_norm > 0:
            return project(delta, config.adv_max_norm, config.norm, config.granularity, mask, sequences)
        return delta * mask.unsqueeze(-1)

    def compute_loss(
        self, model: nn.Module, batch: Batch, *, normalizer: int | float | torch.Tensor | None = None
    ) -> LossOutput:
        raise RxfError(
            "freelb runs several backward passes per step: call method.training_step(model, batch, backward) "
            "(RxfTrainer does), not compute_loss"
        )

    def training_step(
        self,
        model: nn.Module,
        batch: Batch,
        backward: Callable[[torch.Tensor], None],
        *,
        normalizer: int | float | torch.Tensor | None = None,
        accelerator: Any = None,
    ) -> LossOutput:
        """K forward/backward pairs; ``backward`` is called K times with loss/K (gradients accumulate)."""
        config = self.config
        task_type = self.task_type(model, batch)
        inputs, labels = model_inputs(model, batch, task_type)
        mask = token_mask(inputs)
        sequences = packed_sequences(inputs, mask)
        steps = config.adv_steps
        delta = self.initial_delta(model, mask, sequences)
        # inputs_embeds computed by the caller (embedding(input_ids)) carry a graph that only one backward
        # may run through: the first K − 1 steps start from a detached copy, whose gradients the last
        # step's backward carries into the caller's graph.
        given = inputs.get("inputs_embeds")
        through_copy = given is not None and given.grad_fn is not None and steps > 1
        if through_copy:
            copy = given.detach().requires_grad_(True)
        losses: list[torch.Tensor] = []
        first_logits = None
        for k in range(steps):
            last = k == steps - 1
            if through_copy and not last:
                inputs["inputs_embeds"] = copy
            elif through_copy:  # the last backward runs through the caller's graph, with the earlier steps' gradients
                inputs["inputs_embeds"] = given if copy.grad is None else _AddGradient.apply(given, copy.grad)
            delta.requires_grad_(True)
            with contextlib.nullcontext() if last else sync_context(model, accelerator):
                with embedding_delta(model, delta) as applied:
                    logits = output_logits(model(**inputs))
                applied.check("freelb")
                loss = task_loss(logits, labels, task_type, label_smoothing=config.label_smoothing, normalizer=normalizer)
                backward(loss / steps)
            losses.append(loss.detach())
            if first_logits is None:
                first_logits = logits.detach()
            if not last:
                grad = delta.grad if delta.grad is not None else torch.zeros_like(delta)
                step = normalized(grad, config.norm, config.granularity, mask, sequences)
                delta = self.bound(delta.detach() + config.adv_lr * step, mask, sequences)
        mean = torch.stack(losses).mean()
        return LossOutput(loss=mean, task_loss=losses[0], regularizer=losses[-1], logits=first_logits)
