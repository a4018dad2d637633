"""A short training run of every method, checked against stored loss values (torchtune-style).

Each method trains a tiny BERT (dropout 0.1) for a few AdamW steps on fixed batches with every
random source seeded; the per-step loss, task loss and regulariser must match
``tests/data/loss_curves.json``. This catches silent changes to a method's numerics (a changed
divergence, noise scale, ascent step, recipe...) that the property tests would let through.

The weights are set here from a seeded generator, not by transformers' initialisation, so that
a transformers release that changes its init does not move the curves. After an intended change,
regenerate and review the diff::

    RXF_REGENERATE_LOSS_CURVES=1 python -m pytest tests/test_loss_curves.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from rxf.functional import method as build
from rxf.optim import adam_for
from tiny_models import classification_batch, tiny_bert

STORED = Path(__file__).parent / "data" / "loss_curves.json"
REGENERATE = os.environ.get("RXF_REGENERATE_LOSS_CURVES") == "1"
STEPS = 4

# name -> (method, options); every registered method at settings where it acts on a tiny model.
RUNS: dict[str, tuple[str, dict]] = {
    "standard": ("standard", {}),
    "standard++": ("standard++", {}),
    "r3f": ("r3f", {"lambda_": 1.0, "sigma": 1e-2}),
    "r3f-clean": ("r3f", {"lambda_": 1.0, "sigma": 1e-2, "gradient_mode": "clean"}),
    "r4f": ("r4f", {"lambda_": 1.0, "sigma": 1e-2}),
    "smart": ("smart", {"lambda_": 1.0, "epsilon": 1e-1, "step_size": 1e-2, "sigma": 1e-2}),
    "smart-bregman": ("smart", {"lambda_": 1.0, "epsilon": 1e-1, "step_size": 1e-2, "sigma": 1e-2, "bregman_mu": 1.0}),
    "freelb": ("freelb", {}),
    "rdrop": ("rdrop", {}),
    "neftune": ("neftune", {}),
}


def seeded_weights(model: torch.nn.Module) -> None:
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            if name.endswith("LayerNorm.weight"):
                parameter.fill_(1.0)
            elif name.endswith("bias"):
                parameter.zero_()
            else:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


def train_curve(method_name: str, options: dict) -> list[dict[str, float]]:
    model, _ = tiny_bert(num_labels=3, dropout=0.1)
    seeded_weights(model)
    method = build(method_name, **options)
    method.noise_seed = 7
    model = method.prepare_model(model)
    model.train()
    optimizer = adam_for(method, model.parameters(), "paper", lr=1e-2)  # the paper recipe: Standard has no bias correction
    torch.manual_seed(0)  # dropout masks (and any noise drawn from the global RNG)
    curve = []
    for step in range(STEPS):
        batch = classification_batch(num_labels=3, batch=4, length=10 + step)
        out = method.training_step(model, batch, backward=lambda loss: loss.backward())
        optimizer.step()
        optimizer.zero_grad()
        curve.append(
            {
                "loss": float(out.loss.detach()),
                "task_loss": float(out.task_loss),
                "regularizer": None if out.regularizer is None else float(out.regularizer),
            }
        )
    return curve


@pytest.fixture(scope="module")
def stored() -> dict:
    if REGENERATE:
        STORED.write_text(json.dumps({name: train_curve(*run) for name, run in RUNS.items()}, indent=1) + "\n")
    return json.loads(STORED.read_text())


def test_every_registered_method_has_a_stored_curve():
    from rxf.methods.base import METHODS

    assert {method for method, _ in RUNS.values()} == set(METHODS)


@pytest.mark.parametrize("name", list(RUNS))
def test_loss_curve_matches_the_stored_values(name, stored):
    curve = train_curve(*RUNS[name])
    expected = stored[name]
    assert len(curve) == len(expected) == STEPS
    for step, (got, want) in enumerate(zip(curve, expected)):
        for key in ("loss", "task_loss", "regularizer"):
            if want[key] is None:
                assert got[key] is None, f"{name} step {step}: {key}"
            else:
                assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), f"{name} step {step}: {key}"


def test_stored_curves_differ_from_standard(stored):
    # A method that silently did nothing would reproduce Standard's curve (same seeds, same batches).
    for name in RUNS:
        if name != "standard":
            assert [s["loss"] for s in stored[name]] != pytest.approx([s["loss"] for s in stored["standard"]], rel=1e-3), name
