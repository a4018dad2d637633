import math

import pytest
import torch

from rxf import RxfError, method_config
from rxf.methods import recipe_defaults
from rxf.optim import AdamW, adam_for
from tiny_models import tiny_bert


def test_standard_plus_plus_has_standards_loss():
    model, batch = tiny_bert()
    model.train()
    plus = method_config("standard++").build().compute_loss(model, batch)
    plain = method_config("standard").build().compute_loss(model, batch)
    assert plus.loss.item() == pytest.approx(plain.loss.item())


def test_paper_recipe_standard_without_bias_correction_standard_plus_plus_with_it_and_longer():
    assert recipe_defaults("standard", "paper") == {"adam_bias_correction": False, "epochs_multiplier": 1.0}
    assert recipe_defaults("standard++", "paper") == {"adam_bias_correction": True, "epochs_multiplier": 2.0}
    assert recipe_defaults(method_config("standard++", epochs_multiplier=3.0))["epochs_multiplier"] == 3.0
    for name in ("r3f", "r4f", "smart", "freelb", "rdrop", "neftune"):
        assert recipe_defaults(method_config(name).build(), "paper")["adam_bias_correction"] is True


def test_same_recipe_gives_every_method_the_same_optimizer():
    for name in ("standard", "standard++", "r3f", "r4f", "smart", "freelb", "rdrop", "neftune"):
        assert recipe_defaults(name)["adam_bias_correction"] is True
        assert adam_for(name, [torch.nn.Parameter(torch.zeros(2))], lr=1e-3).defaults["bias_correction"] is True
    assert adam_for("standard", [torch.nn.Parameter(torch.zeros(2))], "paper", lr=1e-3).defaults["bias_correction"] is False
    with pytest.raises(RxfError, match="recipe must be one of same, paper"):
        recipe_defaults("standard", "fairseq")


def _run(optimizer_class, steps=3, **options):
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(5, 3))
    optimizer = optimizer_class([param], **options)
    for step in range(steps):
        optimizer.zero_grad()
        (param.sin() * (step + 1)).sum().backward()
        optimizer.step()
    return param.detach()


def test_bias_corrected_adamw_is_torchs():
    options = dict(lr=1e-2, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    ours = _run(AdamW, bias_correction=True, **options)
    theirs = _run(torch.optim.AdamW, **options)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_without_bias_correction_the_first_step_is_shrunk():
    """Step 1 without bias correction moves each weight by lr·(1 − β₁)/√(1 − β₂), not lr."""
    lr = 1e-2
    start = _run(AdamW, steps=0)
    moved = (_run(AdamW, steps=1, lr=lr, eps=0.0, weight_decay=0.0, bias_correction=False) - start).abs()
    assert torch.allclose(moved, torch.full_like(moved, lr * 0.1 / math.sqrt(0.02)), rtol=1e-4)
    corrected = (_run(AdamW, steps=1, lr=lr, eps=0.0, weight_decay=0.0, bias_correction=True) - start).abs()
    assert torch.allclose(corrected, torch.full_like(corrected, lr), rtol=1e-4)


def test_adam_for_follows_the_recipe():
    param = torch.nn.Parameter(torch.zeros(2))
    assert adam_for("standard", [param], "paper").defaults["bias_correction"] is False
    assert adam_for("standard", [param]).defaults["bias_correction"] is True
    assert adam_for("standard++", [param], "paper").defaults["bias_correction"] is True


@pytest.mark.parametrize(
    "options,field",
    [({"epochs_multiplier": 0}, "epochs_multiplier"), ({"adam_bias_correction": "yes"}, "adam_bias_correction")],
)
def test_bad_options_name_the_field(options, field):
    with pytest.raises(RxfError, match=field):
        method_config("standard++", **options)
