"""Adam with decoupled weight decay and a switch for bias correction.

The paper's two non-regularised baselines differ only in their training recipe, not in their loss:

* **Standard** is the BERT/RoBERTa fine-tuning recipe, whose Adam (BERT's ``AdamWeightDecay``,
  ``BertAdam``) has *no* bias correction: early updates are scaled by (1 − β₁)/√(1 − β₂)
  instead of 1 — with the paper's β = (0.9, 0.98), about 0.71 of the learning rate at step 1,
  drifting to 1 as the moment estimates warm up;
* **Standard++** adds bias correction and trains longer (Zhang et al., 2020, "Revisiting
  few-sample BERT fine-tuning").

:func:`rxf.methods.recipe_defaults` says which a method uses under a recipe (``"same"``, the
default: bias correction for every method; ``"paper"``: Standard without it);
:func:`adam_for` builds the matching optimizer. ``RxfTrainer`` builds
Hugging Face's AdamW (bias-corrected) unless given ``optimizers=(adam_for(method, ...), None)``.

With ``bias_correction=True`` this is ``torch.optim.AdamW`` (tested to match it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from rxf.errors import RxfError


class AdamW(torch.optim.Optimizer):
    """AdamW; ``bias_correction=False`` gives the BERT/RoBERTa-recipe update ``lr · m / (√v + eps)``."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-5,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        bias_correction: bool = True,
    ):
        if lr < 0:
            raise RxfError(f"lr must be >= 0, got {lr!r}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise RxfError(f"betas must lie in [0, 1), got {betas!r}")
        if eps < 0:
            raise RxfError(f"eps must be >= 0, got {eps!r}")
        if weight_decay < 0:
            raise RxfError(f"weight_decay must be >= 0, got {weight_decay!r}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "bias_correction": bias_correction}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RxfError("rxf.optim.AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                exp_avg, exp_avg_sq, grad = state["exp_avg"], state["exp_avg_sq"], p.grad
                if group["weight_decay"]:
                    p.mul_(1 - lr * group["weight_decay"])
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                if group["bias_correction"]:
                    step = state["step"]
                    denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
                    p.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**step))
                else:
                    p.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(eps), value=-lr)
        return loss


def adam_for(
    method: Any, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], recipe: str = "same", **options: Any
) -> AdamW:
    """The AdamW a method's recipe asks for (bias correction per :func:`rxf.methods.recipe_defaults`)."""
    from rxf.methods.recipe import recipe_defaults

    return AdamW(params, bias_correction=recipe_defaults(method, recipe)["adam_bias_correction"], **options)
