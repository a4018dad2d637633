"""Spectral normalisation of a classification head (R4F).

``W ← W / σ_max(W)`` on the head's linear layers, through ``torch.nn.utils.parametrizations``
(power iteration, one step per training forward), so that Lip(g) ≤ 1.

The head is what the model adds on top of its base model (``model.base_model``): BERT's
``classifier``, RoBERTa's ``classifier.dense`` and ``classifier.out_proj``, DistilBERT's
``pre_classifier`` and ``classifier``, GPT-2's ``score``. ``scope="final"`` normalises the last
projection only (the default), ``scope="head"`` every linear layer of the head, as the paper's
"all the weight matrices of g".

The power iteration is brought to convergence (:func:`refresh_spectral_norm`) before a model is
saved or evaluated, so that the saved head has σ_max ≤ 1 up to float error.

Checkpoints never carry the parametrisation: :func:`folded_state_dict` gives the plain
``…weight`` tensors (``W / σ`` as the model uses them), so a saved R4F model loads into the plain
transformers class, without rxf, and gives the same logits.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from rxf.errors import RxfError
from rxf.noise import unwrap_model

SpectralScope = Literal["final", "head"]


def head_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """(name, module) of the linear layers outside the base model, in registration order."""
    model = unwrap_model(model)
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        return []
    inside = {id(m) for m in base.modules()}
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and id(m) not in inside]


def classification_head(model: nn.Module, scope: SpectralScope = "final") -> list[tuple[str, nn.Linear]]:
    """The head linears R4F normalises; an RxfError if the model has no classification head."""
    linears = head_linears(model)
    num_labels = getattr(getattr(unwrap_model(model), "config", None), "num_labels", None)
    outputs = [(n, m) for n, m in linears if m.out_features == num_labels]
    if not outputs:
        raise RxfError(
            f"R4F needs a classification head, and {type(unwrap_model(model)).__name__} has none "
            "(no linear layer outside the base model projects to num_labels): use r3f instead"
        )
    if scope == "final":
        return outputs[-1:]
    if scope == "head":
        return linears
    raise RxfError(f"unknown spectral_norm_scope {scope!r}: choose 'final' or 'head'")


def apply_spectral_norm(model: nn.Module, scope: SpectralScope = "final", n_power_iterations: int = 1) -> list[str]:
    """Spectrally normalise the head in place; returns the names of the normalised layers."""
    names = []
    for name, module in classification_head(model, scope):
        if not parametrize.is_parametrized(module, "weight"):
            spectral_norm(module, n_power_iterations=n_power_iterations)
        names.append(name)
    return names


def refresh_spectral_norm(model: nn.Module) -> None:
    """Set the stored singular vectors to the exact top pair of the current weights.

    During training the vectors advance one power-iteration step per forward, *before* the
    optimizer moves the weights, so right after a step the estimate lags (σ is underestimated
    and ``W / σ`` can exceed 1 by about the step's relative change). rxf calls this before
    evaluating and saving, so the head the user gets has σ_max = 1 up to float error.
    """
    for module in unwrap_model(model).modules():
        if not parametrize.is_parametrized(module):
            continue
        for tensor_name, chain in module.parametrizations.items():
            for p in chain:
                if not (hasattr(p, "_u") and hasattr(p, "_v")):
                    continue
                with torch.no_grad():
                    weight = chain.original
                    if getattr(p, "dim", 0) != 0:
                        weight = weight.movedim(p.dim, 0)
                    u, _, vh = torch.linalg.svd(weight.flatten(1).float(), full_matrices=False)
                    p._u.copy_(u[:, 0].to(p._u.dtype))
                    p._v.copy_(vh[0].to(p._v.dtype))


def has_spectral_norm(model: nn.Module) -> bool:
    return any(parametrize.is_parametrized(m) for m in unwrap_model(model).modules())


def folded_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with every parametrised weight replaced by its current value.

    Keys come out as plain transformers expects them (``classifier.weight``), with the values
    the model computes with in eval mode (``W / σ`` from the stored power-iteration vectors).
    """
    model = unwrap_model(model)
    refresh_spectral_norm(model)
    state = {k: v for k, v in model.state_dict().items() if ".parametrizations." not in k}
    for name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        was_training = module.training
        module.eval()  # eval: read the stored estimate, don't advance the power iteration
        with torch.no_grad():
            for tensor_name in module.parametrizations:
                state[f"{name}.{tensor_name}" if name else tensor_name] = getattr(module, tensor_name).detach().clone()
        module.train(was_training)
    return state


def remove_spectral_norm(model: nn.Module) -> nn.Module:
    """Fold the parametrisation into the weights for good (after training), in place."""
    refresh_spectral_norm(model)
    for module in unwrap_model(model).modules():
        if parametrize.is_parametrized(module):
            was_training = module.training
            module.eval()
            for tensor_name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=True)
            module.train(was_training)
    return model


def largest_singular_value(weight: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(weight.detach().float(), ord=2).item()
