"""R-Drop (Liang et al., 2021): two dropout passes that must agree.

``L = ½ (task(f₁(x)) + task(f₂(x))) + α · ½ KL_sym(f₁(x) ‖ f₂(x))`` where f₁, f₂ are the model with
two independent dropout masks — the loss of the R-Drop paper's released BERT/GLUE code (task
losses averaged, symmetric KL halved).

The two passes run as one forward over the batch stacked on itself (dropout masks are drawn
per element, so the copies get independent masks), which costs less than two passes. With
dropout off (or in eval mode) both copies agree and the divergence is 0: R-Drop needs dropout, and
``compute_loss`` refuses a model in eval mode or with every dropout rate 0 (RxfError); ``prepare_model``
(which RxfTrainer calls when it is built) refuses the latter already.
The divergence follows the task type as for R3F (symmetric KL; squared error for regression),
in fp32, over labels ≠ −100 for token-level tasks.

Cost per step: one forward over 2× the batch, one backward through it (2 batch units each).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rxf.divergence import DIVERGENCES
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
    paired_losses,
    register,
    task_loss,
)
from rxf.methods.r3f import DIVERGENCE_REDUCTIONS, divergence_for, divergence_scale, doubled, refuse_without_dropout, require_dropout


@register
@dataclass
class RDropConfig(MethodConfig):
    """R-Drop hyper-parameters; the paper uses α ∈ {0.1, 0.5, 1} on GLUE."""

    name = "rdrop"
    # Weight α of the (halved) symmetric divergence.
    alpha: float = 1.0
    # "auto" picks from the task type; or one of sym_kl, js, mse, sym_bernoulli_kl.
    divergence: str = "auto"
    # Token-level tasks: "token_mean" or "sequence_sum" (summed over real target tokens, / sequences), as R3F.
    divergence_reduction: str = "token_mean"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("alpha", self.alpha, minimum=0.0)
        check_choice("divergence", self.divergence, ("auto", *DIVERGENCES))
        check_choice("divergence_reduction", self.divergence_reduction, DIVERGENCE_REDUCTIONS)

    def build(self) -> Method:
        return RDrop(self)


class RDrop(Method):
    config: RDropConfig
    regularizer_name = "rdrop_divergence"

    def prepare_model(self, model: nn.Module) -> nn.Module:
        if self.config.alpha > 0:
            refuse_without_dropout(model, "rdrop")
        return model

    def compute_loss(
        self, model: nn.Module, batch: Batch, *, normalizer: int | float | torch.Tensor | None = None
    ) -> LossOutput:
        config = self.config
        if config.alpha == 0:
            return self.clean_loss(model, batch, normalizer=normalizer)
        require_dropout(model, "rdrop")
        task_type = self.task_type(model, batch)
        inputs, labels = model_inputs(model, batch, task_type)
        n = labels.size(0)
        logits = output_logits(model(**doubled(inputs, n)))
        first, second = logits[:n], logits[n:]
        options = {"label_smoothing": config.label_smoothing, "normalizer": normalizer}
        divergence = divergence_for(config.divergence, task_type)
        scale = divergence_scale(labels, task_type, config.divergence_reduction, inputs)
        # The mean of the halves' task losses + α · half the divergence; token-level tasks: every
        # term in one chunked kernel over the doubled logits (rxf.vocab_losses).
        paired = paired_losses(logits, labels, task_type, divergence, (0.5, 0.5, 0.5 * config.alpha * scale), **options)
        if paired is not None:
            task_first, task_second, divergence_value, objective = paired
        else:
            task_first, task_second = task_loss(first, labels, task_type, **options), task_loss(second, labels, task_type, **options)
            divergence_value = logit_divergence(divergence, first, second, labels, task_type, normalizer=normalizer)
            objective = None
        loss = 0.5 * (task_first + task_second)
        regularizer = 0.5 * divergence_value * scale
        if objective is None:
            objective = loss + config.alpha * regularizer
        return LossOutput(
            loss=objective,
            task_loss=loss.detach(),
            regularizer=regularizer.detach(),
            logits=first.detach(),
        )
