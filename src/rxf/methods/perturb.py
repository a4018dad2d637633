"""Given perturbations δ on the token embeddings, and the norm balls they live in.

:func:`rxf.noise.embedding_noise` samples fresh noise at each forward pass; the adversarial
methods (SMART, FreeLB) and NEFTune need to choose δ themselves — SMART and FreeLB take gradients
with respect to it — so they use :func:`rxf.noise.embedding_delta` (re-exported here), on which
``embedding_noise`` is built, with a tensor they own. The hook sits on the output of ``get_input_embeddings()`` (before
positions, scaling and LayerNorm; the encoder's only, for encoder-decoder models), adds δ in
fp32 and casts back, and multiplies δ by the module's ``embed_scale`` so that δ is added
*before* scaling. A batch that brings ``inputs_embeds`` (the word-embedding output) gets δ on
them, with the same scaling. rxf never builds ``inputs_embeds`` itself: some code bases (mt-dnn's
SMART, the smart-pytorch README) feed it with the *full* embedding output, applying positions and
LayerNorm twice.

The ball helpers work on δ of shape ``(batch, length, dim)`` with a ``(batch, length)`` mask of
real tokens. Norms are computed in fp32. ``granularity`` says what one ball is:

* ``"token"``: each token's δ lies in its own ball (‖δ_t‖ ≤ ε for every real token t);
* ``"sequence"``: the whole sequence's δ, flattened over real tokens, lies in one ball.

For the L∞ norm both granularities describe the same set (every element in [−ε, ε]); they
still differ in how an ascent step is normalised. In a packed (padding-free) batch, where one row
holds several sequences, a ``"sequence"`` ball is each packed sequence (``sequences``, from
:func:`packed_sequences`), as it would be for the same sequences in a padded batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from rxf.errors import RxfError
from rxf.noise import AppliedDelta, Delta, embedding_delta, token_embedding  # noqa: F401 (re-exported)

NORMS: tuple[str, ...] = ("l2", "linf")
GRANULARITIES: tuple[str, ...] = ("token", "sequence")



def noise_generator(method: Any, device: torch.device | str) -> torch.Generator | None:
    """The method's own noise generator on ``device`` (``Method.noise_generator``: one stream per rank,
    saved in checkpoints by RxfTrainer), or None for torch's global RNG."""
    get = getattr(method, "noise_generator", None)
    return get(device) if callable(get) else None


def embedding_dim(model: nn.Module) -> int:
    embedding, _ = token_embedding(model)
    weight = getattr(embedding, "weight", None)
    if weight is None:
        raise TypeError(f"{type(embedding).__name__} has no weight: cannot size an embedding perturbation")
    return int(weight.shape[-1])


def token_mask(inputs: Mapping[str, Any]) -> torch.Tensor:
    """``(batch, length)`` float mask of real tokens: the attention mask, or all ones."""
    tokens = inputs.get("input_ids")
    if tokens is None and inputs.get("inputs_embeds") is not None:
        tokens = inputs["inputs_embeds"][..., 0]
    if tokens is None:
        raise RxfError("embedding perturbations need input_ids or inputs_embeds in the batch")
    mask = inputs.get("attention_mask")
    if mask is None:
        return torch.ones(tokens.shape, dtype=torch.float32, device=tokens.device)
    return mask.to(device=tokens.device, dtype=torch.float32)


def packed_sequences(inputs: Mapping[str, Any], mask: torch.Tensor) -> torch.Tensor | None:
    """(batch, length) id of the sequence each token belongs to, unique over the batch, for a batch that packs
    several sequences into a row (varlen offsets, ``seq_idx`` or position restarts); None for one per row."""
    if all(inputs.get(key) is None for key in ("cu_seq_lens_q", "seq_idx", "position_ids")):
        return None
    from rxf.methods.neftune import sequence_starts  # (neftune imports this module)

    starts = sequence_starts(inputs, mask.shape, mask.device)
    if not starts[:, 1:].any():
        return None
    return starts.long().reshape(-1).cumsum(0).reshape(mask.shape) - 1


def tokens_per_ball(mask: torch.Tensor, granularity: str, sequences: torch.Tensor | None = None) -> torch.Tensor:
    """Real tokens in the ball of each position: (batch, length), or (batch, 1) for unpacked sequences."""
    if granularity == "token":
        return torch.ones_like(mask)
    if sequences is None:
        return mask.sum(1, keepdim=True)
    totals = torch.zeros(int(sequences.max()) + 1, dtype=mask.dtype, device=mask.device)
    return totals.scatter_add_(0, sequences.reshape(-1), mask.reshape(-1))[sequences]


def _flatten(x: torch.Tensor, granularity: str) -> torch.Tensor:
    """(batch, length, dim) → (units, elements): one row per ball."""
    return x.reshape(x.size(0), x.size(1), -1) if granularity == "token" else x.reshape(x.size(0), 1, -1)


def ball_norms(delta: torch.Tensor, norm: str, granularity: str, sequences: torch.Tensor | None = None) -> torch.Tensor:
    """fp32 norm of each ball's δ: shape (batch, length, 1) for tokens and packed sequences, (batch, 1, 1) for sequences."""
    if granularity == "sequence" and sequences is not None:
        delta = delta.float().reshape(*sequences.shape, -1)
        per_token = delta.pow(2).sum(-1) if norm == "l2" else delta.abs().amax(-1)
        totals = torch.zeros(int(sequences.max()) + 1, dtype=torch.float32, device=delta.device)
        ids, values = sequences.reshape(-1), per_token.reshape(-1)
        totals = totals.scatter_add(0, ids, values).sqrt() if norm == "l2" else totals.scatter_reduce(0, ids, values, "amax")
        return totals[sequences].unsqueeze(-1)
    flat = _flatten(delta.float(), granularity)
    if norm == "l2":
        return flat.norm(dim=-1, keepdim=True)
    return flat.abs().amax(dim=-1, keepdim=True)


def _per_element(values: torch.Tensor, like: torch.Tensor, granularity: str) -> torch.Tensor:
    """Broadcast one value per ball (or per position) back over (batch, length, dim)."""
    if granularity == "token" or values.shape[:2] == like.shape[:2]:
        return values.reshape(like.size(0), like.size(1), *([1] * (like.dim() - 2)))
    return values.reshape(like.size(0), *([1] * (like.dim() - 1)))


def project(
    delta: torch.Tensor,
    epsilon: float,
    norm: str,
    granularity: str,
    mask: torch.Tensor | None = None,
    sequences: torch.Tensor | None = None,
) -> torch.Tensor:
    """The Euclidean projection of δ (fp32) onto {‖δ‖ ≤ ε} per ball; masked positions set to 0."""
    delta = delta.float()
    if mask is not None:
        delta = delta * mask.unsqueeze(-1)
    if norm == "linf":
        return delta.clamp(-epsilon, epsilon)
    norms = _per_element(ball_norms(delta, norm, granularity, sequences), delta, granularity)
    # Inside the ball: unchanged (factor 1); outside: rescaled onto its surface.
    return delta * (epsilon / norms.clamp_min(torch.finfo(torch.float32).tiny)).clamp(max=1.0)


def normalized(
    grad: torch.Tensor, norm: str, granularity: str, mask: torch.Tensor | None = None, sequences: torch.Tensor | None = None
) -> torch.Tensor:
    """g / ‖g‖ per ball (fp32), the ascent direction of SMART and FreeLB; 0 where g is 0, masked or not finite.

    Normalising makes the step independent of the loss scale, so a gradient scaled by a
    GradScaler (FreeLB reads δ.grad after a scaled backward) gives the same step.
    """
    grad = torch.nan_to_num(grad.float(), nan=0.0, posinf=0.0, neginf=0.0)
    if mask is not None:
        grad = grad * mask.unsqueeze(-1)
    tiny = torch.finfo(torch.float32).tiny
    # Divide by the largest |g| first: squaring a tiny gradient (‖g‖₂) would underflow.
    grad = grad / _per_element(ball_norms(grad, "linf", granularity, sequences), grad, granularity).clamp_min(tiny)
    if norm == "l2":
        grad = grad / _per_element(ball_norms(grad, "l2", granularity, sequences), grad, granularity).clamp_min(tiny)
    return grad
