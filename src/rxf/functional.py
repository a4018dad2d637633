"""The methods for hand-written training loops (plain PyTorch or accelerate).

Build a method once, let it prepare the model (R4F adds spectral normalisation), then ask it
for the loss of each batch::

    method = rxf.functional.method("r3f", lambda_=1.0, sigma=1e-5)
    model = method.prepare_model(model)
    for batch in loader:                       # batches with input_ids, attention_mask, labels
        out = method.compute_loss(model, batch)
        accelerator.backward(out.loss)         # or out.loss.backward()
        optimizer.step(); optimizer.zero_grad()

Methods with several backward passes per step (FreeLB) need ``method.training_step(model,
batch, backward=accelerator.backward)`` instead; it works for every method, so a loop that
always calls it works for all of them. ``out.task_loss`` and ``out.regularizer`` are the two
parts of the loss, detached, for logging.

The building blocks are exported too: :func:`embedding_noise`, :func:`symmetric_kl`,
:func:`apply_spectral_norm`, :func:`folded_state_dict`, and :func:`spectral_norm_folded` (save a
peft model trained with R4F: ``with spectral_norm_folded(model): model.save_pretrained(path)``).

Batches may bring ``inputs_embeds`` instead of ``input_ids``; token-level tasks under gradient
accumulation pass ``normalizer=`` the accumulated batch's target-token count.
"""

from __future__ import annotations

from typing import Any

from rxf.divergence import js_divergence, squared_error, symmetric_bernoulli_kl, symmetric_kl
from rxf.methods.base import LossOutput, Method, MethodConfig, build_method, task_loss
from rxf.noise import embedding_noise, sample_noise
from rxf.spectral import apply_spectral_norm, folded_state_dict, remove_spectral_norm, spectral_norm_folded


def method(name: str | MethodConfig = "r3f", **options: Any) -> Method:
    """A ready-to-use method by name (``"standard"``, ``"r3f"``, ``"r4f"``, …) or config."""
    return build_method(name, **options)


__all__ = [
    "LossOutput",
    "apply_spectral_norm",
    "embedding_noise",
    "folded_state_dict",
    "js_divergence",
    "method",
    "remove_spectral_norm",
    "sample_noise",
    "spectral_norm_folded",
    "squared_error",
    "symmetric_bernoulli_kl",
    "symmetric_kl",
    "task_loss",
]
