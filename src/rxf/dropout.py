"""Set a model's dropout everywhere, for runs that switch it off (or change it) at fine-tuning time.

    set_dropout(model, 0.0)   # every dropout module and every float dropout rate a module reads

Models read dropout in two ways: dropout modules (``nn.Dropout``, ``nn.Dropout2d``, ...; BERT's
attention passes ``self.dropout.p`` to the attention kernel too) and plain float attributes such as
Llama's ``attention_dropout``. Both are set, and so is the config (so that a saved model says what
it was trained with).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


# Every dropout module of torch.nn (they share no public base class): their rate is ``p``.
DROPOUT_MODULES = (
    torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.AlphaDropout,
    torch.nn.FeatureAlphaDropout,
)


def dropout_places(model: torch.nn.Module) -> Iterator[tuple[torch.nn.Module, str]]:
    """(module, attribute) of every dropout rate the model reads: ``p`` of its dropout modules and float attributes named ``*dropout*``."""
    for module in model.modules():
        if isinstance(module, DROPOUT_MODULES):
            yield module, "p"
            continue
        for name, value in vars(module).items():
            if "dropout" in name and isinstance(value, float) and not isinstance(value, bool):
                yield module, name


def set_dropout(model: torch.nn.Module, p: float) -> int:
    """Set every dropout rate of ``model`` to ``p``; return how many places were set."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    places = list(dropout_places(model))
    for module, name in places:
        setattr(module, name, p)
    changed = len(places)
    config = getattr(model, "config", None)
    if config is not None:
        for name, value in config.to_dict().items():
            if ("dropout" in name or name.endswith("_pdrop")) and isinstance(value, float):
                setattr(config, name, p)
    return changed
