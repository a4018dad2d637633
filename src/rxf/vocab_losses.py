"""Token cross-entropy and token divergences over a vocabulary, at the memory of the logits alone.

The plain PyTorch way (``F.cross_entropy`` on fp32 logits, :func:`rxf.divergence.symmetric_kl`)
keeps several [positions, V] fp32 tensors alive until the backward pass: an fp32 copy of the
logits, the log-softmax of each side, their exponentials and products. With a 128k-token
vocabulary each of them is larger than the whole transformer's activations, and they, not the
model, set the cost of R3F and R-Drop on a small LM.

Here one autograd function walks the selected positions (labels ≠ −100) in chunks of about
``CHUNK_ELEMENTS`` fp32 values, computes the values, and keeps nothing but the logits (already
alive) and one log-sum-exp per position and side. Its backward recomputes each chunk's softmax
and writes the gradient straight into one buffer of the logits' shape and dtype: the buffer the
LM head's backward needs anyway. Beyond the logits, the extra memory is that buffer and a chunk.

Gradients are closed forms, checked against autograd through the reference implementations
(``rxf.divergence``, ``rxf.methods.base.reference_task_loss``) in tests/test_vocab_losses.py:

* cross-entropy with label smoothing ε: ``lse − (1−ε)·x_y − ε·mean(x)``;
  ∂/∂x = softmax(x) − (1−ε)·onehot(y) − ε/V;
* symmetric KL ``Σ (p − q)(log p − log q)``, with d = log p − log q:
  ∂/∂a = p ⊙ (d − ⟨p, d⟩) + (p − q) and ∂/∂b = −q ⊙ (d − ⟨q, d⟩) − (p − q);
* Jensen–Shannon with r_p = log p − log m, m = ½(p + q): ∂/∂a = ½ p ⊙ (r_p − ⟨p, r_p⟩), the same for b.

Everything is computed in fp32, whatever the logits' dtype; gradients are cast back to it.

The public functions return values *per selected position* (reduction ``"none"``) or reduced
like :mod:`rxf.divergence` (``"sum"``, ``"mean"``, ``normalizer``), so any reduction over
positions or sequences can be built on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from rxf.divergence import Normalizer, Reduction, reduce_positions

# fp32 values per chunk: 2^18 = 1 MiB (2 positions of a 128,256-token vocabulary), so that a chunk's
# temporaries stay in the CPU's cache: measured faster than 2^21 (benchmarks/llm_cost.py, docs/benchmarks.md).
CHUNK_ELEMENTS = 1 << 18
IGNORE_INDEX = -100
LOG_2 = math.log(2.0)
VOCAB_DIVERGENCES = ("sym_kl", "js")


@dataclass(frozen=True)
class _Spec:
    label_smoothing: float
    divergence: str | None  # "sym_kl", "js" or None
    chunk_rows: int


def _chunks(index: torch.Tensor, size: int):
    """(positions in ``index``, rows of the logits) per chunk; rows are a slice (a view, no copy) when contiguous."""
    for start in range(0, index.numel(), size):
        chunk = slice(start, min(start + size, index.numel()))
        rows = index[chunk]
        first, last = int(rows[0]), int(rows[-1])
        yield chunk, (slice(first, last + 1) if last - first + 1 == rows.numel() else rows)


def _take(side: torch.Tensor, rows: slice | torch.Tensor) -> torch.Tensor:
    return side[rows] if isinstance(rows, slice) else side.index_select(0, rows)


def _put(out: torch.Tensor, rows: slice | torch.Tensor, values: torch.Tensor) -> None:
    if isinstance(rows, slice):
        out[rows].copy_(values)
    else:
        out.index_copy_(0, rows, values.to(out.dtype))


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ_j a_ij b_ij per row, shape (rows, 1), without an (rows, V) temporary."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).squeeze(-1)


def _divergence_values(log_p: torch.Tensor, log_q: torch.Tensor, kind: str) -> torch.Tensor:
    """Per row; consumes log_p and log_q (overwritten)."""
    if kind == "sym_kl":
        d = log_p - log_q
        return _rowdot(log_p.exp_().sub_(log_q.exp_()), d).squeeze(-1)
    log_m = torch.logaddexp(log_p, log_q).sub_(LOG_2)
    r_p, r_q = log_p - log_m, log_q - log_m
    return 0.5 * (_rowdot(log_p.exp_(), r_p) + _rowdot(log_q.exp_(), r_q)).squeeze(-1)


def _divergence_grads(log_p, log_q, kind: str, weight: torch.Tensor):
    """(∂/∂a, ∂/∂b) of the per-row divergence times ``weight`` (rows, 1), and (p, q); consumes log_p and log_q."""
    if kind == "sym_kl":
        d = log_p - log_q
        p, q = log_p.exp_(), log_q.exp_()
        s = p - q
        grad_p = (d - _rowdot(p, d)).mul_(p).add_(s).mul_(weight)
        grad_q = d.sub_(_rowdot(q, d)).mul_(q).add_(s).neg_().mul_(weight)
        return grad_p, grad_q, p, q
    log_m = torch.logaddexp(log_p, log_q).sub_(LOG_2)
    r_p, r_q = log_p - log_m, log_m.neg_().add_(log_q)
    p, q = log_p.exp_(), log_q.exp_()
    grad_p = r_p.sub_(_rowdot(p, r_p)).mul_(p).mul_(0.5 * weight)
    grad_q = r_q.sub_(_rowdot(q, r_q)).mul_(q).mul_(0.5 * weight)
    return grad_p, grad_q, p, q


def _add_cross_entropy_grad(grad, probs, targets, smoothing: float, weight):
    """grad + weight · (softmax − (1−ε)·onehot − ε/V); with grad None, built in place over ``probs``."""
    grad = probs.mul_(weight) if grad is None else grad.addcmul_(probs, weight)
    grad[torch.arange(grad.size(0), device=grad.device), targets] -= weight.squeeze(-1) * (1.0 - smoothing)
    if smoothing:
        grad.sub_(weight * (smoothing / grad.size(-1)))
    return grad


class _TokenLosses(torch.autograd.Function):
    """Per-position cross-entropy of each side and divergence between the sides, chunked.

    ``stacked``: (S, N, V) with S = 1 (one side) or 2 (the two sides of a doubled batch, so
    that their gradients share one buffer); ``partner``: (1, N, V) or None, the second side
    when it is a separate tensor. ``index``: the N-row positions that count.
    Outputs: cross-entropy of side 1 and side 2 (empty without targets or a second side) and
    the divergence (empty without one), each of shape (len(index),).
    """

    @staticmethod
    def forward(ctx, stacked, partner, targets, index, spec: _Spec):  # type: ignore[override]
        sides = [stacked[0]] + ([stacked[1]] if stacked.size(0) == 2 else []) + ([partner[0]] if partner is not None else [])
        count, device = index.numel(), stacked.device
        lses = [torch.empty(count, dtype=torch.float32, device=device) for _ in sides]
        cross_entropy = [torch.empty(count if targets is not None else 0, dtype=torch.float32, device=device) for _ in sides]
        divergence = torch.empty(count if spec.divergence else 0, dtype=torch.float32, device=device)
        for chunk, rows in _chunks(index, spec.chunk_rows):
            log_probs = []
            for side, lse, ce in zip(sides, lses, cross_entropy):
                x = _take(side, rows).float()
                lse[chunk] = torch.logsumexp(x, -1)
                log_p = x - lse[chunk].unsqueeze(-1)
                log_probs.append(log_p)
                if targets is not None:
                    nll = -log_p.gather(-1, targets[index[chunk]].unsqueeze(-1)).squeeze(-1)
                    smoothing = spec.label_smoothing
                    ce[chunk] = (1 - smoothing) * nll - smoothing * log_p.mean(-1) if smoothing else nll
            if spec.divergence:
                divergence[chunk] = _divergence_values(log_probs[0], log_probs[1], spec.divergence)
        ctx.spec = spec
        ctx.two_stacked = stacked.size(0) == 2
        ctx.has_partner = partner is not None
        ctx.save_for_backward(stacked, partner, targets, index, *lses)
        ctx.set_materialize_grads(False)
        ce_first = cross_entropy[0]
        ce_second = cross_entropy[1] if len(sides) == 2 else divergence.new_empty(0)
        return ce_first, ce_second, divergence

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ce_first, grad_ce_second, grad_divergence):  # type: ignore[override]
        stacked, partner, targets, index, *lses = ctx.saved_tensors
        spec: _Spec = ctx.spec
        want_stacked, want_partner = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_stacked = _zeros_outside(stacked, index, dim=1) if want_stacked else None
        grad_partner = _zeros_outside(partner, index, dim=1) if want_partner else None
        sides = [stacked[0]] + ([stacked[1]] if ctx.two_stacked else []) + ([partner[0]] if ctx.has_partner else [])
        outputs = (
            [grad_stacked[0] if want_stacked else None]
            + ([grad_stacked[1] if want_stacked else None] if ctx.two_stacked else [])
            + ([grad_partner[0] if want_partner else None] if ctx.has_partner else [])
        )
        grad_ce = [g if g is not None and g.numel() else None for g in (grad_ce_first, grad_ce_second)]
        if grad_divergence is not None and grad_divergence.numel() == 0:
            grad_divergence = None
        for chunk, rows in _chunks(index, spec.chunk_rows):
            log_probs = [_take(side, rows).float() - lse[chunk].unsqueeze(-1) for side, lse in zip(sides, lses)]
            grads: list[torch.Tensor | None] = [None] * len(sides)
            probs: list[torch.Tensor | None] = [None] * len(sides)
            if grad_divergence is not None:
                weight = grad_divergence[chunk].unsqueeze(-1)
                grads[0], grads[1], probs[0], probs[1] = _divergence_grads(log_probs[0], log_probs[1], spec.divergence, weight)
            for i, g in enumerate(grad_ce[: len(sides)]):
                if g is None or outputs[i] is None:
                    continue
                p = probs[i] if probs[i] is not None else log_probs[i].exp_()
                y = targets[index[chunk]]
                grads[i] = _add_cross_entropy_grad(grads[i], p, y, spec.label_smoothing, g[chunk].unsqueeze(-1))
            for out, grad in zip(outputs, grads):
                if out is not None:
                    if grad is None:  # this side gets no gradient from any term
                        grad = out.new_zeros(1, out.size(-1)).expand(chunk.stop - chunk.start, -1)
                    _put(out, rows, grad)
        return grad_stacked, grad_partner, None, None, None


def _zeros_outside(logits: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """A gradient buffer like ``logits``: uninitialised where ``index`` rows will be written, 0 elsewhere."""
    grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
    keep = torch.ones(logits.size(dim), dtype=torch.bool, device=logits.device)
    keep[index] = False
    grad.index_fill_(dim, keep.nonzero().squeeze(-1), 0.0)
    return grad


def _rows(logits: torch.Tensor) -> torch.Tensor:
    """(…, V) → (positions, V), a view when the logits are contiguous (no copy of the logits)."""
    return logits.reshape(-1, logits.size(-1))


def _spec(vocab: int, label_smoothing: float = 0.0, divergence: str | None = None) -> _Spec:
    return _Spec(float(label_smoothing), divergence, max(1, CHUNK_ELEMENTS // max(vocab, 1)))


def _selected(mask: torch.Tensor | None, positions: int, device: torch.device) -> torch.Tensor:
    if mask is None:
        return torch.arange(positions, device=device)
    return mask.reshape(-1).nonzero().squeeze(-1)


def _check_mask(mask: torch.Tensor | None, logits: torch.Tensor) -> None:
    if mask is not None and mask.shape != logits.shape[:-1]:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match positions {tuple(logits.shape[:-1])}")


# ---- public functions -----------------------------------------------------------------------


def token_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
    normalizer: Normalizer = None,
) -> torch.Tensor:
    """Cross-entropy of (…, V) logits against (…) labels aligned with them, −100 ignored.

    Equal to ``F.cross_entropy(..., ignore_index=-100, label_smoothing=ε)`` over the counted
    positions, reduced as in :mod:`rxf.divergence` (``"none"``: one value per counted position).
    """
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"labels shape {tuple(labels.shape)} does not match positions {tuple(logits.shape[:-1])}")
    targets = labels.reshape(-1)
    index = (targets != IGNORE_INDEX).nonzero().squeeze(-1)
    spec = _spec(logits.size(-1), label_smoothing)
    per_position, _, _ = _TokenLosses.apply(_rows(logits).unsqueeze(0), None, targets, index, spec)
    return reduce_positions(per_position, reduction, normalizer)


def _divergence(kind, logits_p, logits_q, mask, reduction, normalizer) -> torch.Tensor:
    _check_mask(mask, logits_p)
    if logits_q.shape != logits_p.shape:
        raise ValueError(f"logit shapes differ: {tuple(logits_p.shape)} and {tuple(logits_q.shape)}")
    index = _selected(mask, logits_p.numel() // logits_p.size(-1), logits_p.device)
    spec = _spec(logits_p.size(-1), divergence=kind)
    _, _, per_position = _TokenLosses.apply(_rows(logits_p).unsqueeze(0), _rows(logits_q).unsqueeze(0), None, index, spec)
    return reduce_positions(per_position, reduction, normalizer)


def chunked_symmetric_kl(logits_p, logits_q, mask=None, reduction: Reduction = "mean", normalizer: Normalizer = None):
    """:func:`rxf.divergence.symmetric_kl`, same arguments and values, without [positions, V] temporaries."""
    return _divergence("sym_kl", logits_p, logits_q, mask, reduction, normalizer)


def chunked_js_divergence(logits_p, logits_q, mask=None, reduction: Reduction = "mean", normalizer: Normalizer = None):
    """:func:`rxf.divergence.js_divergence`, same arguments and values, without [positions, V] temporaries."""
    return _divergence("js", logits_p, logits_q, mask, reduction, normalizer)


@dataclass
class PairedTokenLosses:
    """Per counted position: the cross-entropy of each half of a doubled batch, and their divergence."""

    cross_entropy_first: torch.Tensor
    cross_entropy_second: torch.Tensor
    divergence: torch.Tensor


def paired_token_losses(
    logits: torch.Tensor, labels: torch.Tensor, divergence: str, *, label_smoothing: float = 0.0
) -> PairedTokenLosses:
    """The losses of a batch run twice in one forward pass (R3F, R-Drop), without slicing the logits.

    ``logits``: (2B, …, V), the first B rows one pass and the last B rows the other; ``labels``:
    (B, …) aligned with each half. Slicing the halves apart would cost two extra full-size
    buffers in the backward pass (each slice's gradient is scattered into zeros of the whole
    shape); here both halves' gradients go into one buffer. Values per counted position, in
    the order of ``labels[labels != -100]``.
    """
    if divergence not in VOCAB_DIVERGENCES:
        raise ValueError(f"divergence must be one of {VOCAB_DIVERGENCES}, got {divergence!r}")
    half = logits.size(0) // 2
    if logits.size(0) != 2 * half or labels.shape != (half, *logits.shape[1:-1]):
        raise ValueError(f"logits {tuple(logits.shape)} are not two halves aligned with labels {tuple(labels.shape)}")
    targets = labels.reshape(-1)
    index = (targets != IGNORE_INDEX).nonzero().squeeze(-1)
    spec = _spec(logits.size(-1), label_smoothing, divergence)
    stacked = logits.reshape(2, -1, logits.size(-1))
    first, second, div = _TokenLosses.apply(stacked, None, targets, index, spec)
    return PairedTokenLosses(first, second, div)


def chunked_version(divergence):
    """The chunked equivalent of a divergence of :mod:`rxf.divergence`, or None if it has none."""
    from rxf.divergence import js_divergence, symmetric_kl

    return {symmetric_kl: chunked_symmetric_kl, js_divergence: chunked_js_divergence}.get(divergence)
