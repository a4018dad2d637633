"""Standard++ and the recipe settings a training loop reads from a method.

Standard and Standard++ have the same loss (the task loss); the paper's Standard++ is Standard
with "recently proposed best practices": bias correction in Adam and longer fine-tuning (Zhang
et al., 2020). Those are recipe settings, so a method exposes them for the training recipe:

>>> recipe_defaults("standard")
{'adam_bias_correction': True, 'epochs_multiplier': 1.0}
>>> recipe_defaults("standard", recipe="paper")
{'adam_bias_correction': False, 'epochs_multiplier': 1.0}
>>> recipe_defaults("standard++")
{'adam_bias_correction': True, 'epochs_multiplier': 2.0}

Two recipes (:data:`RECIPES`): ``"same"`` (the default) trains every method with the same
optimizer, bias-corrected AdamW, so that a comparison of methods compares regularisers only;
``"paper"`` is the paper's, where Standard is the RoBERTa recipe without bias correction.
Standard++ keeps its 2x budget in both: longer training is what defines it.

* ``adam_bias_correction``: build the optimizer with :class:`rxf.optim.AdamW` (``bias_correction=``
  this), e.g. via :func:`rxf.optim.adam_for`. Standard is the BERT/RoBERTa recipe without it;
  every other method (R3F/R4F were trained with fairseq's bias-corrected Adam; SMART and FreeLB
  with bias-corrected Adam/AdamW) uses it.
* ``epochs_multiplier``: multiply the task's number of epochs (or steps) by this.

A config field of the same name overrides the table (Standard++ has both as fields).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rxf.errors import RxfError
from rxf.methods.base import Method, MethodConfig, check_number, method_config, register
from rxf.methods.standard import Standard, StandardConfig

#: recipe name -> {method: what differs from DEFAULT_RECIPE}. A method's config field of the same
#: name (Standard++ has both) overrides the table.
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "same": {},
    "paper": {"standard": {"adam_bias_correction": False}},
}
DEFAULT_RECIPE: dict[str, Any] = {"adam_bias_correction": True, "epochs_multiplier": 1.0}


@register
@dataclass
class StandardPlusPlusConfig(StandardConfig):
    """Standard++: Standard's loss; bias-corrected Adam and longer training in the recipe."""

    name = "standard++"
    # Adam with bias correction (Standard's recipe has none).
    adam_bias_correction: bool = True
    # Train this many times the task's epochs (Zhang et al. 2020 fine-tune longer than 3 epochs).
    epochs_multiplier: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.adam_bias_correction, bool):
            raise RxfError(f"adam_bias_correction must be true or false, got {self.adam_bias_correction!r}")
        check_number("epochs_multiplier", self.epochs_multiplier, positive=True)

    def build(self) -> Method:
        return StandardPlusPlus(self)


class StandardPlusPlus(Standard):
    """Standard's loss; the difference lies in :func:`recipe_defaults`."""


def recipe_defaults(method: str | MethodConfig | Method, recipe: str = "same") -> dict[str, Any]:
    """``{"adam_bias_correction": bool, "epochs_multiplier": float}`` for a method (name, config or built)
    under a recipe of :data:`RECIPES`."""
    if recipe not in RECIPES:
        raise RxfError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    config = method.config if isinstance(method, Method) else method_config(method)
    settings = {**DEFAULT_RECIPE, **RECIPES[recipe].get(config.name, {})}
    fields = {f.name for f in dataclasses.fields(config)}
    for key in settings:
        if key in fields:
            settings[key] = getattr(config, key)
    return settings


def refuse_outside_train(method: str, command: str) -> None:
    """RxfError for Standard++ (by name) in a command that does not run rxf train's recipe, where it would silently
    be Standard. Such a command lists its methods without it (:data:`TRAIN_RECIPE_ONLY`)."""
    if method.lower() in TRAIN_RECIPE_ONLY:
        raise RxfError(
            f"method {method} is rxf train's recipe (Standard trained {StandardPlusPlusConfig.epochs_multiplier:g}x as "
            f"long), which {command} does not apply: train 'standard' with epochs (or max_steps) multiplied instead"
        )


#: Methods that are a training recipe rather than a loss: only rxf train applies them.
TRAIN_RECIPE_ONLY = ("standard++",)
