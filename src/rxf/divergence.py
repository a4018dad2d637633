"""Divergences between the clean and the perturbed outputs of a model.

All of them are computed in fp32 whatever the model's dtype (the perturbations they measure are
tiny, and a bf16 softmax would round them away), over the positions an optional boolean mask
selects (padding and ``-100`` label positions never count), and reduced as

* ``"mean"``: the sum over selected positions divided by their number, or by ``normalizer``
  when given (Trainer's ``num_items_in_batch``, to average over a whole accumulated batch);
* ``"sum"``: the sum over selected positions;
* ``"none"``: one value per selected position.

The last dimension of logits is the distribution (classes or vocabulary).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from rxf.errors import RxfError

Reduction = Literal["mean", "sum", "none"]
Normalizer = int | float | torch.Tensor | None
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise RxfError(f"reduction {reduction!r} must be one of {', '.join(REDUCTIONS)}")


def check_normalizer(normalizer: Normalizer) -> None:
    """RxfError unless ``normalizer`` is None, a positive finite number, or a one-element numeric tensor.

    A tensor's value is not read: it is Trainer's count of the accumulated batch's items, and reading
    it from a GPU would stall every step (a batch without a counted item gives 0/0, as in transformers).
    """
    if normalizer is None:
        return
    if torch.is_tensor(normalizer):
        valid = normalizer.numel() == 1 and normalizer.dtype != torch.bool
    else:
        valid = isinstance(normalizer, numbers.Real) and not isinstance(normalizer, bool)
        valid = valid and math.isfinite(normalizer) and normalizer > 0
    if not valid:
        shown = f"tensor of shape {tuple(normalizer.shape)} ({normalizer.dtype})" if torch.is_tensor(normalizer) else repr(normalizer)
        raise RxfError(
            f"normalizer {shown} must be a positive finite number or a one-element tensor (the count of items the loss "
            "is averaged over)"
        )


def check_same_shape(logits_p: torch.Tensor, logits_q: torch.Tensor) -> None:
    # Broadcasting two different shapes would compare unrelated positions and still give a number.
    if logits_p.shape != logits_q.shape:
        raise ValueError(f"logit shapes differ: {tuple(logits_p.shape)} and {tuple(logits_q.shape)}")


def _select(x: torch.Tensor, mask: torch.Tensor | None, event_dims: int) -> torch.Tensor:
    """Flatten to (positions, *event) in fp32, keeping only the positions where mask is True."""
    x = x.float()
    if mask is not None:
        if mask.shape != x.shape[: x.dim() - event_dims]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match positions {tuple(x.shape[: x.dim() - event_dims])}")
        return x[mask.bool()]
    return x.reshape(-1, *x.shape[x.dim() - event_dims :]) if event_dims else x.reshape(-1)


def reduce_positions(per_position: torch.Tensor, reduction: Reduction, normalizer: Normalizer) -> torch.Tensor:
    """Per-position values reduced as the module docstring says (``"mean"``, ``"sum"``, ``"none"``)."""
    check_reduction(reduction)
    check_normalizer(normalizer)
    if reduction == "none":
        return per_position
    total = per_position.sum()
    if reduction == "sum":
        return total
    if normalizer is not None:
        return total / normalizer
    # An empty selection (e.g. a batch whose labels are all -100) contributes 0, not NaN.
    return total / max(per_position.numel(), 1)


def symmetric_kl(
    logits_p: torch.Tensor,
    logits_q: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    normalizer: Normalizer = None,
) -> torch.Tensor:
    """KL(P‖Q) + KL(Q‖P) between the softmax distributions of two logit tensors.

    Uses the identity KL(P‖Q) + KL(Q‖P) = Σ (p − q)(log p − log q), which needs one softmax
    per side and no division.
    """
    check_same_shape(logits_p, logits_q)
    log_p = F.log_softmax(_select(logits_p, mask, 1), dim=-1)
    log_q = F.log_softmax(_select(logits_q, mask, 1), dim=-1)
    per_position = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(-1)
    return reduce_positions(per_position, reduction, normalizer)


def js_divergence(
    logits_p: torch.Tensor,
    logits_q: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    normalizer: Normalizer = None,
) -> torch.Tensor:
    """Jensen–Shannon divergence ½ KL(P‖M) + ½ KL(Q‖M), M = ½(P + Q)."""
    check_same_shape(logits_p, logits_q)
    log_p = F.log_softmax(_select(logits_p, mask, 1), dim=-1)
    log_q = F.log_softmax(_select(logits_q, mask, 1), dim=-1)
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
    per_position = 0.5 * (
        (log_p.exp() * (log_p - log_m)).sum(-1) + (log_q.exp() * (log_q - log_m)).sum(-1)
    )
    return reduce_positions(per_position, reduction, normalizer)


def symmetric_bernoulli_kl(
    logits_p: torch.Tensor,
    logits_q: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    normalizer: Normalizer = None,
) -> torch.Tensor:
    """Symmetric KL between independent Bernoullis (multi-label heads), summed over labels."""
    check_same_shape(logits_p, logits_q)
    p, q = _select(logits_p, mask, 1), _select(logits_q, mask, 1)
    # For a Bernoulli, log p − log(1−p) = logit, so Σ (p − q)(log p − log q) over {1, 0} is (p − q)(logit_p − logit_q).
    per_position = ((torch.sigmoid(p) - torch.sigmoid(q)) * (p - q)).sum(-1)
    return reduce_positions(per_position, reduction, normalizer)


def squared_error(
    scores_p: torch.Tensor,
    scores_q: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    normalizer: Normalizer = None,
) -> torch.Tensor:
    """(p − q)² for regression heads, summed over output dimensions.

    Our extension (the paper skips regression): it is the symmetric KL between two Gaussians of
    equal unit variance centred on the two predictions, up to a factor of 2.
    """
    if scores_p.dim() == 1:  # (batch,) scores: one output dimension
        scores_p, scores_q = scores_p.unsqueeze(-1), scores_q.unsqueeze(-1)
    check_same_shape(scores_p, scores_q)
    p, q = _select(scores_p, mask, 1), _select(scores_q, mask, 1)
    per_position = (p - q).pow(2).sum(-1)
    return reduce_positions(per_position, reduction, normalizer)


Divergence = Callable[..., torch.Tensor]

DIVERGENCES: dict[str, Divergence] = {
    "sym_kl": symmetric_kl,
    "js": js_divergence,
    "sym_bernoulli_kl": symmetric_bernoulli_kl,
    "mse": squared_error,
}
