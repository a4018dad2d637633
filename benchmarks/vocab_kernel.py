"""The symmetric-KL kernel of rxf.vocab_losses on its own: what its row dot products and its
gradient-in-the-forward path cost (docs/benchmarks.md, "How").

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/vocab_kernel.py

Rows, CPU time of the fastest of 3 repetitions, one thread, [1,024 × 128,256] fp32 logits:

* row dot of a (2, 128,256) chunk: ``bmm`` of (rows, 1, V) by (rows, V, 1), against the product
  into a buffer and a sum that the kernel uses;
* R3F "clean" loss, forward + backward: per-position values reduced afterwards (the gradient of
  the cross-entropy recomputed in the backward pass), against ``coefficients`` (the whole
  gradient written in the forward pass), and plain PyTorch cross-entropy for scale.
"""

from __future__ import annotations

import time

import torch

from rxf.vocab_losses import paired_token_losses

torch.set_num_threads(1)
N, V = 1024, 128_256


def fastest(fn, repeats: int = 3, inner: int = 1) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(inner):
            fn()
        times.append((time.process_time() - start) / inner)
    return min(times)


def main() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, V, generator=g), torch.randn(2, V, generator=g)
    buffer = torch.empty(2, V)
    bmm = fastest(lambda: torch.bmm(a.unsqueeze(1), b.unsqueeze(2)), inner=200)
    product = fastest(lambda: torch.mul(a, b, out=buffer).sum(-1), inner=200)
    print(f"row dot, 2 x {V}: bmm {bmm * 1e6:.0f} us, product + sum {product * 1e6:.0f} us")

    clean = (torch.randn(N, V, generator=g) * 2).requires_grad_()
    noised = clean.detach() + 1e-3 * torch.randn(N, V, generator=g)
    labels = torch.randint(0, V, (1, N), generator=g)
    sides = clean.view(1, N, V), labels, "sym_kl"

    def per_position():
        out = paired_token_losses(*sides, partner=noised.view(1, N, V))
        (out.cross_entropy_first.mean() + 0.1 * out.divergence.mean()).backward()
        clean.grad = None

    def weighted():
        paired_token_losses(*sides, partner=noised.view(1, N, V), coefficients=(1.0, 0.0, 0.1)).objective.backward()
        clean.grad = None

    def plain_cross_entropy():
        torch.nn.functional.cross_entropy(clean, labels.view(-1)).backward()
        clean.grad = None

    for name, fn in (("per-position values", per_position), ("coefficients", weighted), ("F.cross_entropy", plain_cross_entropy)):
        print(f"R3F clean loss, {N} x {V}, forward + backward, {name}: {fastest(fn):.3f} s")


if __name__ == "__main__":
    main()
