"""Standard fine-tuning: the task loss alone."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rxf.methods.base import Batch, LossOutput, Method, MethodConfig, register


@register
@dataclass
class StandardConfig(MethodConfig):
    """Plain fine-tuning (the paper's "Standard", the RoBERTa recipe)."""

    name = "standard"

    def build(self) -> Method:
        return Standard(self)


class Standard(Method):
    def compute_loss(
        self, model: nn.Module, batch: Batch, *, normalizer: int | float | torch.Tensor | None = None
    ) -> LossOutput:
        return self.clean_loss(model, batch, normalizer=normalizer)
