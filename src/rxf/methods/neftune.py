"""NEFTune (Jain et al., 2023): uniform noise on the token embeddings while training, nothing else.

``x_emb ← x_emb + (α / √(L·d)) · ε``, ``ε ~ U(−1, 1)``, with d the embedding width and L the
sequence's length. Here L is each sequence's *real* length (its attention-mask sum) and padding
positions get no noise, so a short sequence padded into a long batch gets the noise it would
get alone (implementations that use the padded length give it less). The noise is added in
fp32 through the embedding hook, in training mode only: in eval mode the loss is Standard's.
No divergence term; the loss is the task loss on the noised pass.

Cost per step: Standard's (one forward, one backward).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rxf.methods.base import (
    Batch,
    LossOutput,
    Method,
    MethodConfig,
    check_number,
    model_inputs,
    output_logits,
    register,
    task_loss,
)
from rxf.methods.perturb import embedding_delta, embedding_dim, noise_generator, token_mask


@register
@dataclass
class NEFTuneConfig(MethodConfig):
    """NEFTune hyper-parameters; the paper uses α ∈ {5, 10, 15}."""

    name = "neftune"
    # Noise scale α: each element is U(−1, 1) · α/√(L·d).
    alpha: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("alpha", self.alpha, minimum=0.0)

    def build(self) -> Method:
        return NEFTune(self)


def neftune_scale(mask: torch.Tensor, dim: int, alpha: float) -> torch.Tensor:
    """α/√(L·d) per sequence, shape (batch, 1, 1), L = real tokens of the sequence (≥ 1)."""
    lengths = mask.float().sum(1).clamp_min(1)
    return (alpha / (lengths * dim).sqrt()).reshape(-1, 1, 1)


class NEFTune(Method):
    config: NEFTuneConfig

    def compute_loss(
        self, model: nn.Module, batch: Batch, *, normalizer: int | float | torch.Tensor | None = None
    ) -> LossOutput:
        config = self.config
        if not model.training or config.alpha == 0:
            return self.clean_loss(model, batch, normalizer=normalizer)
        task_type = self.task_type(model)
        inputs, labels = model_inputs(model, batch, task_type)
        mask = token_mask(inputs)

        def noise(embeddings: torch.Tensor) -> torch.Tensor:
            scale = neftune_scale(mask, embeddings.size(-1), config.alpha)
            generator = noise_generator(self, embeddings.device)
            uniform = torch.rand(embeddings.shape, dtype=torch.float32, device=embeddings.device, generator=generator) * 2 - 1
            return uniform * scale * mask.unsqueeze(-1)

        # The smallest scale in the batch (longest sequence), for the precision warning.
        smallest = config.alpha / (mask.size(1) * embedding_dim(model)) ** 0.5
        with embedding_delta(model, noise, magnitude=smallest) as applied:
            logits = output_logits(model(**inputs))
        applied.check("neftune")
        loss = task_loss(logits, labels, task_type, label_smoothing=config.label_smoothing, normalizer=normalizer)
        return LossOutput(loss=loss, task_loss=loss.detach(), logits=logits.detach())
