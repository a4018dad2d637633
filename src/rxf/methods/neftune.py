"""NEFTune (Jain et al., 2023): uniform noise on the token embeddings while training, nothing else.

``x_emb ← x_emb + (α / √(L·d)) · ε``, ``ε ~ U(−1, 1)``, with d the embedding width and L the
sequence's length. Here L is each sequence's *real* length and padding positions get no noise,
so a sequence gets the noise it would get alone, however it is batched:

* padded batches: L is the row's attention-mask sum (transformers' hook uses the padded width
  of the batch, so short sequences get too little noise, and noises the padding);
* packed batches (several sequences in one row, as DataCollatorWithFlattening and TRL's
  ``packing=True`` make them): L is each sub-sequence's length, found from ``seq_idx``,
  ``cu_seq_lens_q`` or the resets of ``position_ids`` (transformers' hook scales every
  sub-sequence by the whole packed row's length: transformers issue 34659).

The noise is added in fp32 through the embedding hook, in training mode only: in eval mode the
loss is Standard's. No divergence term; the loss is the task loss on the noised pass.

Cost per step: Standard's (one forward, one backward).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


def sequence_starts(inputs: Mapping[str, Any], shape: torch.Size, device: torch.device) -> torch.Tensor:
    """(batch, length) bool: True where a sequence starts. One sequence per row unless the batch is packed."""
    starts = torch.zeros(shape, dtype=torch.bool, device=device)
    starts[:, 0] = True
    if inputs.get("seq_idx") is not None:
        seq_idx = inputs["seq_idx"].to(device)
        starts[:, 1:] |= seq_idx[:, 1:] != seq_idx[:, :-1]
    elif inputs.get("cu_seq_lens_q") is not None:
        # Offsets into the flattened batch (one packed row, as DataCollatorWithFlattening makes it).
        offsets = inputs["cu_seq_lens_q"].to(device).long()[:-1]
        starts.view(-1)[offsets[offsets < starts.numel()]] = True
    elif inputs.get("position_ids") is not None:
        positions = inputs["position_ids"].to(device).expand(shape)
        starts[:, 1:] |= positions[:, 1:] != positions[:, :-1] + 1
    return starts


def sequence_lengths(inputs: Mapping[str, Any]) -> torch.Tensor:
    """(batch, length): for each token, the number of real tokens of the sequence it belongs to."""
    mask = token_mask(inputs)
    batch, length = mask.shape
    segment = sequence_starts(inputs, mask.shape, mask.device).long().cumsum(1) - 1  # 0-based within the row
    segment = segment + torch.arange(batch, device=mask.device).unsqueeze(1) * length  # unique over the batch
    totals = torch.zeros(batch * length, dtype=mask.dtype, device=mask.device)
    totals.scatter_add_(0, segment.reshape(-1), mask.reshape(-1))
    return totals[segment]


def neftune_scale(lengths: torch.Tensor, dim: int, alpha: float) -> torch.Tensor:
    """α/√(L·d) per token, shape (batch, length, 1), from the lengths of :func:`sequence_lengths` (L ≥ 1)."""
    return (alpha / (lengths.clamp_min(1) * dim).sqrt()).unsqueeze(-1)


class NEFTune(Method):
    config: NEFTuneConfig

    def compute_loss(
        self, model: nn.Module, batch: Batch, *, normalizer: int | float | torch.Tensor | None = None
    ) -> LossOutput:
        config = self.config
        if not model.training or config.alpha == 0:
            return self.clean_loss(model, batch, normalizer=normalizer)
        task_type = self.task_type(model, batch)
        inputs, labels = model_inputs(model, batch, task_type)
        mask = token_mask(inputs)
        lengths = sequence_lengths(inputs)

        def noise(embeddings: torch.Tensor) -> torch.Tensor:
            scale = neftune_scale(lengths, embeddings.size(-1), config.alpha)
            generator = noise_generator(self, embeddings.device)
            uniform = torch.rand(embeddings.shape, dtype=torch.float32, device=embeddings.device, generator=generator) * 2 - 1
            return uniform * scale * mask.unsqueeze(-1)

        # The smallest scale in the batch (longest sequence), for the precision warning.
        smallest = config.alpha / (max(float(lengths.max()), 1.0) * embedding_dim(model)) ** 0.5
        with embedding_delta(model, noise, magnitude=smallest) as applied:
            logits = output_logits(model(**inputs))
        applied.check("neftune")
        loss = task_loss(logits, labels, task_type, label_smoothing=config.label_smoothing, normalizer=normalizer)
        return LossOutput(loss=loss, task_loss=loss.detach(), logits=logits.detach())
