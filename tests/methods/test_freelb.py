import contextlib

import pytest
import torch

import rxf.methods.freelb as freelb_module
from rxf import RxfError, method_config
from rxf.cost import count_passes
from rxf.methods.perturb import ball_norms
from tiny_models import ARCHITECTURES, tiny_bert


def _step(model, method, batch, seed=0, **kwargs):
    """One FreeLB step; returns the parameter gradients and the number of backward calls."""
    model.zero_grad()
    torch.manual_seed(seed)
    calls = []

    def backward(loss):
        calls.append(loss.item())
        loss.backward()

    out = method.training_step(model, batch, backward, **kwargs)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads, calls


def _spy_deltas(monkeypatch):
    deltas = []
    real = freelb_module.embedding_delta

    def spy(model, delta, **kwargs):
        deltas.append(delta.detach().clone())
        return real(model, delta, **kwargs)

    monkeypatch.setattr(freelb_module, "embedding_delta", spy)
    return deltas


@pytest.mark.parametrize("granularity", ["sequence", "token"])
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_delta_stays_in_its_bound_moves_between_steps_and_spares_padding(norm, granularity, monkeypatch):
    model, batch = tiny_bert()
    model.train()
    deltas = _spy_deltas(monkeypatch)
    bound = 0.05
    method = method_config(
        "freelb", adv_steps=3, adv_lr=1.0, adv_init_mag=0.01, adv_max_norm=bound, norm=norm, granularity=granularity
    ).build()
    _step(model, method, batch)
    assert len(deltas) == 3
    padding = batch["attention_mask"] == 0
    for delta in deltas:
        assert ball_norms(delta, norm, granularity).max().item() <= bound * (1 + 1e-5)
        assert delta[padding].abs().max().item() == 0.0
    # The ascent moved δ, out to the bound (α ≫ bound).
    assert (deltas[1] - deltas[0]).abs().max().item() > 1e-3
    assert ball_norms(deltas[-1], norm, granularity).max().item() > 0.99 * bound


def test_parameter_gradients_differ_from_standard_and_equal_it_with_one_clean_step():
    model, batch = tiny_bert()
    model.train()
    standard = method_config("standard").build()
    _, reference, _ = _step(model, standard, batch)
    _, adversarial, calls = _step(model, method_config("freelb", adv_steps=2, adv_init_mag=0.0, adv_lr=0.5).build(), batch)
    assert len(calls) == 2
    name = "bert.encoder.layer.0.intermediate.dense.weight"
    assert (adversarial[name] - reference[name]).abs().max() > 1e-3 * reference[name].abs().max()
    # K = 1 from δ = 0 is Standard: same gradients (the test above is not comparing noise with noise).
    _, one, _ = _step(model, method_config("freelb", adv_steps=1, adv_init_mag=0.0).build(), batch)
    for key in reference:
        assert torch.allclose(one[key], reference[key], atol=1e-6), key


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_k_backward_passes_counted_and_loss_scaled_by_k(steps):
    model, batch = tiny_bert()
    model.train()
    with count_passes(model) as counts:
        out, _, calls = _step(model, method_config("freelb", adv_steps=steps).build(), batch)
    assert counts.forward_calls == steps and counts.backward_sweeps == steps
    assert len(calls) == steps
    assert sum(calls) == pytest.approx(out.loss.item(), rel=1e-5)  # Σ L_k/K = mean L_k


class FakeAccelerator:
    def __init__(self):
        self.entered = 0

    @contextlib.contextmanager
    def no_sync(self, model):
        self.entered += 1
        model.in_no_sync = True
        try:
            yield
        finally:
            model.in_no_sync = False


def _record_sync_state(model):
    seen = []
    model.in_no_sync = False
    model.register_forward_pre_hook(lambda module, args: seen.append(module.in_no_sync))
    return seen


@pytest.mark.parametrize("steps", [1, 3])
def test_all_but_the_last_step_run_under_the_accelerators_no_sync(steps):
    model, batch = tiny_bert()
    model.train()
    seen = _record_sync_state(model)
    accelerator = FakeAccelerator()
    _step(model, method_config("freelb", adv_steps=steps).build(), batch, accelerator=accelerator)
    assert accelerator.entered == steps - 1
    assert seen == [True] * (steps - 1) + [False]


def test_without_an_accelerator_the_models_own_no_sync_is_used():
    model, batch = tiny_bert()
    model.train()
    seen = _record_sync_state(model)
    fake = FakeAccelerator()
    model.no_sync = lambda: fake.no_sync(model)
    _step(model, method_config("freelb", adv_steps=2).build(), batch)
    assert seen == [True, False]


@pytest.mark.parametrize("arch", ["bart", "gpt2", "t5"])
def test_runs_on_other_architectures(arch):
    model, batch = ARCHITECTURES[arch]()
    model.train()
    out, grads, calls = _step(model, method_config("freelb", adv_steps=2).build(), batch)
    assert len(calls) == 2 and torch.isfinite(out.loss) and grads


def test_non_finite_delta_gradient_does_not_poison_delta(monkeypatch):
    """An fp16 overflow (inf in δ.grad) must not turn δ into NaN: the GradScaler skips that step anyway."""
    model, batch = tiny_bert()
    model.train()
    deltas = _spy_deltas(monkeypatch)

    def backward(loss):
        (loss * float("inf")).backward()

    method_config("freelb", adv_steps=2).build().training_step(model, batch, backward)
    assert all(torch.isfinite(d).all() for d in deltas)


def test_compute_loss_points_to_training_step():
    model, batch = tiny_bert()
    with pytest.raises(RxfError, match="training_step"):
        method_config("freelb").build().compute_loss(model, batch)


@pytest.mark.parametrize(
    "options,field",
    [
        ({"adv_steps": 0}, "adv_steps"),
        ({"adv_lr": -0.1}, "adv_lr"),
        ({"adv_init_mag": -1.0}, "adv_init_mag"),
        ({"adv_max_norm": -1.0}, "adv_max_norm"),
        ({"norm": "l1"}, "norm"),
        ({"granularity": "word"}, "granularity"),
    ],
)
def test_bad_options_name_the_field(options, field):
    with pytest.raises(RxfError, match=field):
        method_config("freelb", **options)
