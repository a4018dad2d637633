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
transformers class, without rxf, and gives the same logits. :func:`apply_spectral_norm` makes the
model's own ``save_pretrained`` (and so ``push_to_hub``) save that way too.

With a peft model (LoRA …), the head is the trainable copy peft keeps in ``modules_to_save``
(``task_type="SEQ_CLS"`` puts the classifier there): that copy is normalised, not the frozen
original beside it, and the saved adapter carries the folded head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from rxf.errors import RxfError
from rxf.noise import unwrap_model

SpectralScope = Literal["final", "head"]


def transformers_model(model: nn.Module) -> nn.Module:
    """The transformers model inside DDP/compile wrappers and a peft model (``PeftModel.get_base_model()``)."""
    model = unwrap_model(model)
    if hasattr(model, "peft_config") and callable(getattr(model, "get_base_model", None)):
        return model.get_base_model()
    return model


def peft_frozen_modules(model: nn.Module) -> set[int]:
    """ids of the modules peft keeps beside the trained ones: the original of a ``modules_to_save``
    wrapper and its inactive adapters' copies, and everything inside a LoRA-adapted layer."""
    frozen: set[int] = set()
    for module in model.modules():
        if hasattr(module, "original_module") and isinstance(getattr(module, "modules_to_save", None), nn.ModuleDict):
            active = set(getattr(module, "active_adapters", None) or [getattr(module, "active_adapter", "default")])
            frozen |= {id(m) for m in module.original_module.modules()}
            for adapter, copy in module.modules_to_save.items():
                if adapter not in active:
                    frozen |= {id(m) for m in copy.modules()}
        elif hasattr(module, "base_layer") and hasattr(module, "lora_A"):
            frozen |= {id(m) for m in module.modules()}
    return frozen


def head_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """(name, module) of the linear layers outside the base model, in registration order."""
    model = transformers_model(model)
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        return []
    inside = {id(m) for m in base.modules()} | peft_frozen_modules(model)
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and id(m) not in inside]


def classification_head(model: nn.Module, scope: SpectralScope = "final") -> list[tuple[str, nn.Linear]]:
    """The head linears R4F normalises; an RxfError if the model has no classification head."""
    linears = head_linears(model)
    inner = transformers_model(model)
    num_labels = getattr(getattr(inner, "config", None), "num_labels", None)
    outputs = [(n, m) for n, m in linears if m.out_features == num_labels]
    peft_model = inner is not unwrap_model(model)
    if peft_model and not all(m.weight.requires_grad for _, m in outputs):
        outputs = []  # peft froze it: normalised, it would change the logits without being saved with the adapter
    if not outputs and peft_model:
        raise RxfError(
            f"R4F needs the classification head of the peft model trained in full, and {type(inner).__name__}'s is "
            "not: list it in modules_to_save (LoraConfig(task_type='SEQ_CLS') does) rather than adapting it with LoRA"
        )
    if not outputs:
        raise RxfError(
            f"R4F needs a classification head, and {type(inner).__name__} has none "
            "(no linear layer outside the base model projects to num_labels): use r3f instead"
        )
    if scope == "final":
        return outputs[-1:]
    if scope == "head":
        return linears
    raise RxfError(f"unknown spectral_norm_scope {scope!r}: choose 'final' or 'head'")


def is_parametrized(module: nn.Module) -> bool:
    """Whether the module itself holds a parametrisation (peft's wrappers forward the attribute to the module they wrap)."""
    return isinstance(module._modules.get("parametrizations"), nn.ModuleDict)


def apply_spectral_norm(model: nn.Module, scope: SpectralScope = "final", n_power_iterations: int = 1) -> list[str]:
    """Spectrally normalise the head in place; returns the names of the normalised layers.

    Applying it again with the same settings changes nothing; with other settings it raises an
    RxfError rather than keep the first ones silently. The model's ``save_pretrained`` (which
    ``push_to_hub`` calls) saves the folded weights from then on (:class:`FoldedSave`).
    """
    head = classification_head(model, scope)
    check_same_settings(model, [name for name, _ in head], scope, n_power_iterations)
    for _, module in head:
        if not parametrize.is_parametrized(module, "weight"):
            spectral_norm(module, n_power_iterations=n_power_iterations)
    for saver in {id(m): m for m in (unwrap_model(model), transformers_model(model))}.values():
        if callable(getattr(saver, "save_pretrained", None)) and not isinstance(saver.__dict__.get("save_pretrained"), FoldedSave):
            saver.save_pretrained = FoldedSave(saver)
    return [name for name, _ in head]


def check_same_settings(model: nn.Module, names: list[str], scope: SpectralScope, n_power_iterations: int) -> None:
    """RxfError if the head is already normalised otherwise than ``scope`` and ``n_power_iterations`` ask."""
    normalised = {name: m for name, m in head_linears(model) if is_parametrized(m)}
    if not normalised:
        return
    iterations = {p.n_power_iterations for m in normalised.values() for p in m.parametrizations.weight if hasattr(p, "n_power_iterations")}
    if set(normalised) != set(names) or iterations != {n_power_iterations}:
        raise RxfError(
            f"the head is already spectrally normalised ({', '.join(normalised)}, n_power_iterations="
            f"{', '.join(map(str, sorted(iterations)))}), not as spectral_norm_scope={scope!r}, n_power_iterations="
            f"{n_power_iterations} ask: prepare the model with the same settings, or call remove_spectral_norm(model) first"
        )


class FoldedSave:
    """A model's ``save_pretrained`` that saves the spectral norm folded in (plain ``W / σ``, see
    :func:`spectral_norm_folded`), so that plain transformers (or peft) reloads the trained head.

    Set on the model instance by :func:`apply_spectral_norm`; a class rather than a closure so that
    the model can still be pickled and deep-copied.
    """

    def __init__(self, model: nn.Module):
        self.model = model

    def __call__(self, *args, **kwargs):
        with spectral_norm_folded(self.model):
            return type(self.model).save_pretrained(self.model, *args, **kwargs)


def refresh_spectral_norm(model: nn.Module) -> None:
    """Set the stored singular vectors to the exact top pair of the current weights.

    During training the vectors advance one power-iteration step per forward, *before* the
    optimizer moves the weights, so right after a step the estimate lags (σ is underestimated
    and ``W / σ`` can exceed 1 by about the step's relative change). rxf calls this before
    evaluating and saving, so the head the user gets has σ_max = 1 up to float error.
    """
    for module in unwrap_model(model).modules():
        if not is_parametrized(module):
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
    return any(is_parametrized(m) for m in unwrap_model(model).modules())


def folded_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with every parametrised weight replaced by its current value.

    Keys come out as plain transformers expects them (``classifier.weight``), with the values
    the model computes with in eval mode (``W / σ`` from the stored power-iteration vectors).
    """
    model = unwrap_model(model)
    refresh_spectral_norm(model)
    state = {k: v for k, v in model.state_dict().items() if ".parametrizations." not in k}
    for name, module in model.named_modules():
        if not is_parametrized(module):
            continue
        was_training = module.training
        module.eval()  # eval: read the stored estimate, don't advance the power iteration
        with torch.no_grad():
            for tensor_name in module.parametrizations:
                state[f"{name}.{tensor_name}" if name else tensor_name] = getattr(module, tensor_name).detach().clone()
        module.train(was_training)
    return state


def plain_linear(module: nn.Linear) -> nn.Linear:
    """A plain ``nn.Linear`` copy of a normalised linear layer, with the weight ``W / σ`` it computes with."""
    weight = folded_weight(module)
    plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        plain.weight.copy_(weight)
        if module.bias is not None:
            plain.bias.copy_(module.bias)
    plain.train(module.training)
    return plain


def folded_weight(module: nn.Module) -> torch.Tensor:
    """The weight a normalised module computes with in eval mode (no power-iteration step), detached."""
    was_training = module.training
    module.eval()
    with torch.no_grad():
        weight = module.weight.detach().clone()
    module.train(was_training)
    return weight


@contextmanager
def spectral_norm_folded(model: nn.Module) -> Iterator[None]:
    """While active, each spectrally normalised module is swapped for a plain copy holding ``W / σ``.

    For savers that read the modules themselves rather than a state dict (peft's
    ``save_pretrained`` asks each ``modules_to_save`` copy for its own keys), e.g.
    ``with spectral_norm_folded(peft_model): peft_model.save_pretrained(path)``. The parametrised
    modules are put back (same parameters, so an optimizer holding them is unaffected), with the
    copies' bias, which a loader may have written; their weight's state (W, u, v) is left as it was.
    """
    model = unwrap_model(model)
    refresh_spectral_norm(model)
    swapped = [
        (parent, child, module, plain_linear(module))
        for parent in model.modules()
        for child, module in parent.named_children()
        if is_parametrized(module)
    ]
    for parent, child, _, plain in swapped:
        setattr(parent, child, plain)
    try:
        yield
    finally:
        for parent, child, module, plain in swapped:
            setattr(parent, child, module)
            if module.bias is not None:  # a loader may have written it (the weight's state comes from elsewhere)
                with torch.no_grad():
                    module.bias.copy_(plain.bias)


def remove_spectral_norm(model: nn.Module) -> nn.Module:
    """Fold the parametrisation into the weights for good (after training), in place."""
    refresh_spectral_norm(model)
    for module in unwrap_model(model).modules():
        if is_parametrized(module):
            was_training = module.training
            module.eval()
            for tensor_name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=True)
            module.train(was_training)
    return model


def largest_singular_value(weight: torch.Tensor) -> float:
    return torch.linalg.matrix_norm(weight.detach().float(), ord=2).item()
