"""Token cross-entropy and token divergences over a vocabulary, at the memory of the logits alone.

The plain PyTorch way (``F.cross_entropy`` on fp32 logits, :func:`rxf.divergence.symmetric_kl`)
keeps several [positions, V] fp32 tensors alive until the backward pass: an fp32 copy of the
logits, the log-softmax of each side, their exponentials and products. With a 128k-token
vocabulary each of them is larger than the whole transformer's activations, and they, not the
model, set the cost of R3F and R-Drop on a small LM.

Here one autograd function walks the selected positions (labels ≠ −100) in chunks of about
``CHUNK_ELEMENTS`` fp32 values, reusing a few chunk-sized buffers, and keeps for backward nothing
but the logits (already alive) and one log-sum-exp per position and side. The gradient goes
into one buffer of the logits' shape and dtype — the buffer the LM head's backward needs anyway:
a divergence's gradient is written there in the forward pass, while its softmaxes are at hand
(the backward scales it by the upstream gradient), and the cross-entropy's gradient is
recomputed chunk by chunk in the backward pass (a softmax and a subtraction) and added to it.
Beyond the logits, the extra memory is that buffer and the chunk buffers. R3F "both" and
R-Drop pass the logits of their doubled batch whole (:func:`paired_token_losses`), so both
halves' gradients share the one buffer.

When the terms' weights are known in the forward pass — a reduced value (``"mean"``, ``"sum"``),
or the objective c₁·CE₁ + c₂·CE₂ + c₃·divergence that the methods pass as ``coefficients`` — the
whole gradient is written in the forward pass, while every softmax is at hand, and the backward
pass only scales it by the upstream gradient: no second pass over the vocabulary. The
per-position values are then returned for logging only.

Gradients are closed forms, checked against autograd through the reference implementations
(``rxf.divergence``, ``rxf.methods.base.reference_task_loss``) in tests/test_vocab_losses.py:

* cross-entropy with label smoothing ε: ``lse − (1−ε)·x_y − ε·mean(x)``;
  ∂/∂x = softmax(x) − (1−ε)·onehot(y) − ε/V;
* symmetric KL ``Σ (p − q)(log p − log q)``, with d = log p − log q (or the raw a − b: the
  per-row constant cancels, as Σ (p − q) = 0 and Σ p = 1):
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

from rxf.divergence import Normalizer, Reduction, check_normalizer, check_reduction

# fp32 values per chunk: 2^18 = 1 MiB (2 positions of a 128,256-token vocabulary), so that a chunk's
# few buffers stay in the CPU's cache (measured faster than 2^21 and 2^16).
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


class _Workspace:
    """Chunk-sized fp32 buffers, allocated once per call and reused for every chunk.

    A fresh temporary per operation and chunk would make the allocator map and fault in new
    pages over and over (as much memory traffic as the whole [positions, V] tensor per temporary);
    reusing a few buffers keeps the kernels' memory traffic to the logits and the gradient.
    """

    def __init__(self, rows: int, vocab: int, device: torch.device):
        self.shape, self.device = (rows, vocab), device
        self.buffers: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, rows: int) -> torch.Tensor:
        if name not in self.buffers:
            self.buffers[name] = torch.empty(self.shape, dtype=torch.float32, device=self.device)
        return self.buffers[name][:rows]


def _take(side: torch.Tensor, rows: slice | torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """The chunk's logits in fp32: a view of fp32 logits when the rows are contiguous, else a copy into ``buffer``."""
    if isinstance(rows, slice):
        return side[rows] if side.dtype == torch.float32 else buffer.copy_(side[rows])
    if side.dtype == torch.float32:
        return torch.index_select(side, 0, rows, out=buffer)
    return buffer.copy_(side.index_select(0, rows))


def _target(out: torch.Tensor, rows: slice | torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """Where to compute the chunk's gradient: straight into ``out`` when it is an fp32 slice, else ``buffer`` (then :func:`_put`)."""
    return out[rows] if isinstance(rows, slice) and out.dtype == torch.float32 else buffer


def _put(out: torch.Tensor, rows: slice | torch.Tensor, values: torch.Tensor) -> None:
    if isinstance(rows, slice):
        if values.data_ptr() != out[rows].data_ptr():
            out[rows].copy_(values)
    else:
        out.index_copy_(0, rows, values.to(out.dtype))


def _rowdot(a: torch.Tensor, b: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """Σ_j a_ij b_ij per row, shape (rows, 1), the products written into ``buffer`` (no new temporary).

    Not ``bmm`` of (rows, 1, V) by (rows, V, 1): on CPU that ran 4× slower than a product and a sum
    (measured on 2 × 128,256 fp32 rows, one thread), and it was a quarter of R3F's loss time.
    """
    return torch.mul(a, b, out=buffer).sum(-1, keepdim=True)


def _log_sum_exp(x: torch.Tensor, exp_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log Σ exp x per row, shape (rows, 1); exp(x − max) written into ``exp_out``; its row sums, (rows, 1))."""
    top = x.amax(-1, keepdim=True)
    shifted = torch.sub(x, top, out=exp_out).exp_()
    total = shifted.sum(-1, keepdim=True)
    return torch.log(total).add_(top), shifted, total


def _cross_entropy(x: torch.Tensor, lse: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """lse − (1−ε)·x_y − ε·mean(x) per row: the smoothed cross-entropy, from the raw logits."""
    picked = x.gather(-1, targets.unsqueeze(-1))
    if smoothing:
        return (lse - (1 - smoothing) * picked - smoothing * x.mean(-1, keepdim=True)).squeeze(-1)
    return (lse - picked).squeeze(-1)


def _subtract_targets(grad: torch.Tensor, targets: torch.Tensor, smoothing: float, weight: torch.Tensor) -> torch.Tensor:
    """grad − weight · ((1−ε)·onehot(y) + ε/V): the rest of the cross-entropy's gradient after weight · softmax."""
    grad[torch.arange(grad.size(0), device=grad.device), targets] -= weight.squeeze(-1) * (1.0 - smoothing)
    if smoothing:
        grad.sub_(weight * (smoothing / grad.size(-1)))
    return grad


def _divergence_rows(kind: str, a, b, lse_a, lse_b, p, q, work: _Workspace, grads: tuple = (None, None), weights=None):
    """Per-row divergence between softmax(a) = p and softmax(b) = q; ∂/∂a and ∂/∂b written into ``grads``
    (out_a, out_b), where not None (see the module docstring for the forms).

    ``weights`` = (w_div, w_ce_a, w_ce_b) (w_ce None where a side has no cross-entropy): the
    gradients written are then those of w_div · divergence + w_ce · (the softmax part of each
    side's cross-entropy), in the same passes for symmetric KL.
    """
    rows = a.size(0)
    w_div, w_ce_a, w_ce_b = weights if weights is not None else (None, None, None)
    if kind == "sym_kl":
        # d = log p − log q up to a constant per row, which cancels: Σ (p − q) = 0 and Σ p = 1.
        d = torch.sub(a, b, out=work("d", rows))
        # s = p − q is kept on its own: for the near-equal distributions of R3F (σ = 1e-5), folding
        # it into p ⊙ (…) would lose it to rounding.
        s = torch.sub(p, q, out=work("s", rows))
        dot = work("dot", rows)
        values = _rowdot(s, d, dot).squeeze(-1)
        if weights is None:
            if grads[0] is not None:
                torch.sub(d, _rowdot(p, d, dot), out=grads[0]).mul_(p).add_(s)
            if grads[1] is not None:
                torch.sub(_rowdot(q, d, dot), d, out=grads[1]).mul_(q).sub_(s)
            return values
        # w_div · (p ⊙ (d − ⟨p, d⟩) + s) + w_ce · p  =  p ⊙ (w_div · (d − ⟨p, d⟩) + w_ce) + w_div · s
        if grads[0] is not None:
            bias = -w_div * _rowdot(p, d, dot) + (w_ce_a if w_ce_a is not None else 0.0)
            torch.addcmul(bias, d, w_div, out=grads[0]).mul_(p).addcmul_(s, w_div)
        # w_div · (−q ⊙ (d − ⟨q, d⟩) − s) + w_ce · q  =  q ⊙ (w_div · (⟨q, d⟩ − d) + w_ce) − w_div · s
        if grads[1] is not None:
            bias = w_div * _rowdot(q, d, dot) + (w_ce_b if w_ce_b is not None else 0.0)
            torch.addcmul(bias, d, -w_div, out=grads[1]).mul_(q).addcmul_(s, -w_div)
        return values
    log_p = torch.sub(a, lse_a, out=work("log_p", rows))
    log_q = torch.sub(b, lse_b, out=work("log_q", rows))
    log_m = torch.logaddexp(log_p, log_q, out=work("m", rows)).sub_(LOG_2)
    r_p, r_q = log_p.sub_(log_m), log_q.sub_(log_m)
    dot = work("dot", rows)
    kl_p, kl_q = _rowdot(p, r_p, dot), _rowdot(q, r_q, dot)
    for grad, r, kl, prob, w_ce in ((grads[0], r_p, kl_p, p, w_ce_a), (grads[1], r_q, kl_q, q, w_ce_b)):
        if grad is not None:
            torch.sub(r, kl, out=grad).mul_(prob).mul_(0.5 if weights is None else 0.5 * w_div)
            if w_ce is not None:
                grad.addcmul_(prob, w_ce)
    return 0.5 * (kl_p + kl_q).squeeze(-1)


def _add_rows(out: torch.Tensor, rows: slice | torch.Tensor, values: torch.Tensor) -> None:
    if isinstance(rows, slice):
        out[rows].add_(values)
    else:
        out.index_add_(0, rows, values.to(out.dtype))


class _TokenLosses(torch.autograd.Function):
    """Per-position cross-entropy of each side and divergence between the sides, chunked.

    ``stacked``: (S, N, V) with S = 1 (one side) or 2 (the two sides of a doubled batch, so
    that their gradients share one buffer); ``partner``: (1, N, V) or None, the second side
    when it is a separate tensor (e.g. R3F's no-grad noised pass; it gets no cross-entropy).
    ``index``: the N-row positions that count. Outputs: cross-entropy of side 1 and side 2
    (empty without targets or a second stacked side) and the divergence (empty without one),
    each of shape (len(index),).

    The divergence's gradient is computed in the forward pass (its softmaxes are at hand then)
    into the buffer that becomes the logits' gradient; the backward scales it by the upstream
    gradient and adds the cross-entropy's gradient, recomputed per chunk (a softmax and a
    subtraction). Memory: the logits, that buffer, a few chunk-sized buffers.
    """

    @staticmethod
    def forward(ctx, stacked, partner, targets, index, spec: _Spec, weights=None):  # type: ignore[override]
        sides = [stacked[0]] + ([stacked[1]] if stacked.size(0) == 2 else []) + ([partner[0]] if partner is not None else [])
        count, device = index.numel(), stacked.device
        work = _Workspace(spec.chunk_rows, stacked.size(-1), device)
        lses = [torch.empty(count, dtype=torch.float32, device=device) for _ in sides]
        # Cross-entropy for the sides of `stacked` (a separate partner is a target, without one).
        cross_entropy = [
            torch.empty(count if targets is not None and i < stacked.size(0) else 0, dtype=torch.float32, device=device)
            for i in range(len(sides))
        ]
        divergence = torch.empty(count if spec.divergence else 0, dtype=torch.float32, device=device)
        # Weighted: the whole objective's gradient is written in this pass (its weights are known);
        # otherwise only the divergence's, and the cross-entropy's is recomputed in the backward pass.
        weighted = weights is not None
        ce_weights = [weights[i] if weighted and cross_entropy[i].numel() else None for i in range(len(sides))]
        # Buffers for the gradients (the inputs' gradients to be), for the inputs that need one.
        want_stacked, want_partner = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        early = weighted or spec.divergence
        stacked_grad = _zeros_outside(stacked, index, dim=1) if early and want_stacked else None
        partner_grad = _zeros_outside(partner, index, dim=1) if early and want_partner and partner is not None else None
        grad_sides = [stacked_grad[i] if stacked_grad is not None else None for i in range(stacked.size(0))]
        if partner is not None:
            grad_sides.append(partner_grad[0] if partner_grad is not None else None)
        for chunk, rows in _chunks(index, spec.chunk_rows):
            size = chunk.stop - chunk.start
            logits, lse, probs, totals = [], [], [], []
            for i, side in enumerate(sides):
                x = _take(side, rows, work(f"x{i}", size))
                side_lse, shifted, total = _log_sum_exp(x, work(f"p{i}", size))
                lses[i][chunk] = side_lse.squeeze(-1)
                logits.append(x)
                lse.append(side_lse)
                # softmax, exp(x − max) / Σ, where a divergence needs it; the weighted cross-entropy alone scales by w / Σ.
                probs.append(shifted.div_(total) if spec.divergence else shifted)
                totals.append(total)
                if cross_entropy[i].numel():
                    cross_entropy[i][chunk] = _cross_entropy(x, side_lse, targets[index[chunk]], spec.label_smoothing)
            if not spec.divergence and not weighted:
                continue
            grads = tuple(_target(out, rows, work(f"g{i}", size)) if out is not None else None for i, out in enumerate(grad_sides))
            if spec.divergence:
                divergence[chunk] = _divergence_rows(
                    spec.divergence, logits[0], logits[1], lse[0], lse[1], probs[0], probs[1], work, grads[:2],
                    (weights[2], ce_weights[0], ce_weights[1]) if weighted else None,
                )
            elif grads[0] is not None:  # weighted cross-entropy alone: w · softmax = exp(x − max) · (w / Σ)
                torch.mul(probs[0], weights[0] / totals[0], out=grads[0])
            for i, (out, grad) in enumerate(zip(grad_sides, grads)):
                if out is None:
                    continue
                if ce_weights[i] is not None:
                    _subtract_targets(grad, targets[index[chunk]], spec.label_smoothing, ce_weights[i].expand(size, 1))
                _put(out, rows, grad)
        ctx.spec = spec
        ctx.weighted = weighted
        ctx.two_stacked = stacked.size(0) == 2
        ctx.divergence_grads = (stacked_grad, partner_grad)
        ctx.partner_shape = None if partner is None else partner.shape
        ctx.save_for_backward(stacked, targets, index, *lses)
        ctx.set_materialize_grads(False)
        ce_second = cross_entropy[1] if len(sides) == 2 else divergence.new_empty(0)
        if not weighted:
            return cross_entropy[0], ce_second, divergence, divergence.new_empty(0)
        objective = weights[0] * cross_entropy[0].sum()
        if ce_second.numel():
            objective = objective + weights[1] * ce_second.sum()
        if divergence.numel():
            objective = objective + weights[2] * divergence.sum()
        ctx.mark_non_differentiable(cross_entropy[0], ce_second, divergence)
        return cross_entropy[0], ce_second, divergence, objective

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ce_first, grad_ce_second, grad_divergence, grad_objective):  # type: ignore[override]
        stacked, targets, index, *lses = ctx.saved_tensors
        spec: _Spec = ctx.spec
        want_stacked, want_partner = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_stacked, grad_partner = ctx.divergence_grads
        ctx.divergence_grads = (None, None)
        if ctx.weighted:  # the objective's gradient is already there: scale it by the upstream gradient
            for grad in (grad_stacked, grad_partner):
                # Skipping a product by 1 needs the value on the host: free on CPU, a device sync elsewhere.
                on_host = grad is not None and grad.device.type == "cpu"
                if grad is not None and grad_objective is not None and not (on_host and float(grad_objective) == 1.0):
                    grad.mul_(grad_objective.to(grad.dtype))
            if grad_objective is None:
                grad_stacked = grad_partner = None
            return grad_stacked, grad_partner, None, None, None, None
        if grad_divergence is not None and grad_divergence.numel():
            # The stored gradients of the divergence, times the upstream gradient of each position.
            weight = torch.zeros(stacked.size(1), dtype=torch.float32, device=stacked.device)
            weight[index] = grad_divergence
            for grad in (grad_stacked, grad_partner):
                if grad is not None:
                    grad.mul_(weight.unsqueeze(-1).to(grad.dtype))
            fresh = False
        else:  # the divergence is not used: start from nothing
            grad_stacked = _zeros_outside(stacked, index, dim=1) if want_stacked else None
            grad_partner = torch.zeros(ctx.partner_shape, dtype=stacked.dtype, device=stacked.device) if want_partner else None
            fresh = True
        # The cross-entropy's gradient, recomputed per chunk, for the sides of `stacked` whose cross-entropy is used.
        ce_sides = [(0, grad_ce_first)] + ([(1, grad_ce_second)] if ctx.two_stacked else [])
        ce_sides = [(i, g) for i, g in ce_sides if g is not None and g.numel() and want_stacked]
        work = _Workspace(spec.chunk_rows, stacked.size(-1), stacked.device)
        for chunk, rows in _chunks(index, spec.chunk_rows):
            size = chunk.stop - chunk.start
            for i, g in ce_sides:
                weight = g[chunk].unsqueeze(-1)
                x = _take(stacked[i], rows, work("x", size))
                out = _target(grad_stacked[i], rows, work("p", size)) if fresh else work("p", size)
                grad = torch.sub(x, lses[i][chunk].unsqueeze(-1), out=out).exp_().mul_(weight)
                _subtract_targets(grad, targets[index[chunk]], spec.label_smoothing, weight)
                (_put if fresh else _add_rows)(grad_stacked[i], rows, grad)
        if fresh and grad_stacked is not None:
            used = {i for i, _ in ce_sides}
            for i in range(stacked.size(0)):
                if i not in used:  # no term gave this side a gradient
                    grad_stacked[i].zero_()
        return grad_stacked, grad_partner, None, None, None, None


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


def _position_weights(coefficients, reduction: Reduction, normalizer: Normalizer, count: int, device) -> torch.Tensor:
    """Per-position weights (3,) of c₁·CE₁ + c₂·CE₂ + c₃·divergence, each term reduced as ``reduction`` says
    over ``count`` positions (rxf.divergence.reduce_positions: a sum, divided by the normalizer or the count)."""
    check_reduction(reduction)
    check_normalizer(normalizer)
    if reduction == "sum":
        denominator = 1.0
    elif normalizer is not None:
        denominator = normalizer
    else:
        denominator = max(count, 1)
    return torch.stack([torch.as_tensor(c, dtype=torch.float32, device=device) for c in coefficients]) / torch.as_tensor(
        denominator, dtype=torch.float32, device=device
    )


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
    if reduction == "none":
        per_position, _, _, _ = _TokenLosses.apply(_rows(logits).unsqueeze(0), None, targets, index, spec)
        return per_position
    # A reduced value: its gradient is computed in the forward pass (no recomputation in the backward).
    weights = _position_weights((1.0, 0.0, 0.0), reduction, normalizer, index.numel(), logits.device)
    return _TokenLosses.apply(_rows(logits).unsqueeze(0), None, targets, index, spec, weights)[3]


def _divergence(kind, logits_p, logits_q, mask, reduction, normalizer) -> torch.Tensor:
    _check_mask(mask, logits_p)
    if logits_q.shape != logits_p.shape:
        raise ValueError(f"logit shapes differ: {tuple(logits_p.shape)} and {tuple(logits_q.shape)}")
    index = _selected(mask, logits_p.numel() // logits_p.size(-1), logits_p.device)
    spec = _spec(logits_p.size(-1), divergence=kind)
    sides = _rows(logits_p).unsqueeze(0), _rows(logits_q).unsqueeze(0)
    if reduction == "none":
        return _TokenLosses.apply(*sides, None, index, spec)[2]
    weights = _position_weights((0.0, 0.0, 1.0), reduction, normalizer, index.numel(), logits_p.device)
    return _TokenLosses.apply(*sides, None, index, spec, weights)[3]


def chunked_symmetric_kl(logits_p, logits_q, mask=None, reduction: Reduction = "mean", normalizer: Normalizer = None):
    """:func:`rxf.divergence.symmetric_kl`, same arguments and values, without [positions, V] temporaries."""
    return _divergence("sym_kl", logits_p, logits_q, mask, reduction, normalizer)


def chunked_js_divergence(logits_p, logits_q, mask=None, reduction: Reduction = "mean", normalizer: Normalizer = None):
    """:func:`rxf.divergence.js_divergence`, same arguments and values, without [positions, V] temporaries."""
    return _divergence("js", logits_p, logits_q, mask, reduction, normalizer)


@dataclass
class PairedTokenLosses:
    """Per counted position: the cross-entropy of each half of a doubled batch, and their divergence;
    with coefficients, also their weighted sum (the objective, the only term with a gradient then)."""

    cross_entropy_first: torch.Tensor
    cross_entropy_second: torch.Tensor
    divergence: torch.Tensor
    objective: torch.Tensor | None = None


def paired_token_losses(
    logits: torch.Tensor,
    labels: torch.Tensor,
    divergence: str,
    *,
    partner: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    coefficients: tuple | None = None,
    normalizer: Normalizer = None,
) -> PairedTokenLosses:
    """The losses of a batch run twice (R3F, R-Drop): cross-entropy and divergence in one kernel, one gradient buffer.

    Without ``partner``, ``logits`` is (2B, …, V), the first B rows one pass and the last B rows
    the other, and ``labels`` (B, …) is aligned with each half: slicing the halves apart would
    cost two extra full-size buffers in the backward pass (each slice's gradient is scattered
    into zeros of the whole shape). With ``partner`` (same shape as ``logits``, e.g. a no-grad
    target), the divergence is between the two tensors and only ``logits`` gets a
    cross-entropy (``cross_entropy_second`` is empty). Values per counted position, in the
    order of ``labels[labels != -100]``.

    ``coefficients`` (c₁, c₂, c₃): also return ``objective`` = c₁·CE₁ + c₂·CE₂ + c₃·divergence, each
    averaged over the counted positions (or summed and divided by ``normalizer``). Its gradient is
    computed in the forward pass, where every softmax is at hand, so the backward pass only scales
    it: the per-position values are then for logging only (no gradient).
    """
    if divergence not in VOCAB_DIVERGENCES:
        raise ValueError(f"divergence must be one of {VOCAB_DIVERGENCES}, got {divergence!r}")
    targets = labels.reshape(-1)
    index = (targets != IGNORE_INDEX).nonzero().squeeze(-1)
    spec = _spec(logits.size(-1), label_smoothing, divergence)
    weights = None if coefficients is None else _position_weights(coefficients, "mean", normalizer, index.numel(), logits.device)
    if partner is not None:
        if partner.shape != logits.shape or labels.shape != logits.shape[:-1]:
            raise ValueError(f"logits {tuple(logits.shape)}, partner {tuple(partner.shape)} and labels {tuple(labels.shape)} do not align")
        sides = _rows(logits).unsqueeze(0), _rows(partner).unsqueeze(0)
    else:
        half = logits.size(0) // 2
        if logits.size(0) != 2 * half or labels.shape != (half, *logits.shape[1:-1]):
            raise ValueError(f"logits {tuple(logits.shape)} are not two halves aligned with labels {tuple(labels.shape)}")
        sides = logits.reshape(2, -1, logits.size(-1)), None
    first, second, div, objective = _TokenLosses.apply(*sides, targets, index, spec, weights)
    return PairedTokenLosses(first, second, div, objective if weights is not None else None)


def chunked_version(divergence):
    """The chunked equivalent of a divergence of :mod:`rxf.divergence`, or None if it has none."""
    from rxf.divergence import js_divergence, symmetric_kl

    return {symmetric_kl: chunked_symmetric_kl, js_divergence: chunked_js_divergence}.get(divergence)
