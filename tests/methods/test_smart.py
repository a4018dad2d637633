import pytest
import torch

from rxf import RxfError, method_config
from rxf.divergence import symmetric_kl
from rxf.methods.base import infer_task_type, model_inputs, output_logits
from rxf.methods.perturb import ball_norms, embedding_delta
from tiny_models import ARCHITECTURES, tiny_bert

# Large enough for the tiny model's divergence to stand far above rounding; η = 10 ε as in SMART's defaults (100 ε).
OPTIONS = dict(epsilon=0.02, sigma=0.002, step_size=0.2)


def _setup(arch="bert"):
    model, batch = ARCHITECTURES[arch]()
    model.train()  # dropout probabilities are 0: passes differ only through δ
    inputs, labels = model_inputs(model, batch, infer_task_type(model))
    with torch.no_grad():
        clean = output_logits(model(**inputs))
    return model, inputs, labels, clean


def _divergence_at(model, inputs, clean, delta):
    with torch.no_grad(), embedding_delta(model, delta):
        return symmetric_kl(clean, output_logits(model(**inputs)), reduction="sum").item()


@pytest.mark.parametrize("granularity", ["token", "sequence"])
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_ascent_beats_random_perturbations_of_the_same_norm(norm, granularity):
    model, inputs, labels, clean = _setup()
    torch.manual_seed(0)
    method = method_config("smart", norm=norm, granularity=granularity, **OPTIONS).build()
    delta = method.perturbation(model, inputs, clean, labels)
    adversarial = _divergence_at(model, inputs, clean, delta)
    # Random signs on δ*'s own magnitudes: exactly the same L2 and L∞ norm for every token and sequence.
    generator = torch.Generator().manual_seed(1)
    randoms = [
        _divergence_at(model, inputs, clean, delta * (torch.randint(0, 2, delta.shape, generator=generator) * 2 - 1))
        for _ in range(8)
    ]
    assert adversarial > 1e-8
    assert adversarial > 2 * max(randoms), (adversarial, randoms)


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("granularity", ["token", "sequence"])
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_perturbation_lies_in_the_ball_reaches_its_surface_and_spares_padding(norm, granularity, steps):
    model, inputs, labels, clean = _setup()
    torch.manual_seed(0)
    method = method_config("smart", norm=norm, granularity=granularity, num_steps=steps, **OPTIONS).build()
    delta = method.perturbation(model, inputs, clean, labels)
    assert delta.dtype == torch.float32 and not delta.requires_grad
    norms = ball_norms(delta, norm, granularity)
    epsilon = OPTIONS["epsilon"]
    assert norms.max().item() <= epsilon * (1 + 1e-5)
    # The ascent step (η = 10 ε) carries δ to the surface of its ball: it did something.
    real = ball_norms(delta[:, :4], norm, granularity)  # every row's first 4 tokens are real
    assert real.min().item() > 0.99 * epsilon if granularity == "token" else norms.min().item() > 0.99 * epsilon
    padding = inputs["attention_mask"] == 0
    assert padding.any()
    assert delta[padding].abs().max().item() == 0.0


def test_inner_gradient_leaves_parameter_gradients_untouched():
    model, inputs, labels, clean = _setup()
    method_config("smart", **OPTIONS).build().perturbation(model, inputs, clean, labels)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("arch", ["bert", "bart", "gpt2"])
def test_smart_loss_is_task_plus_lambda_divergence(arch):
    model, batch = ARCHITECTURES[arch]()
    model.train()
    out = method_config("smart", lambda_=3.0, **OPTIONS).build().compute_loss(model, batch)
    assert out.regularizer.item() > 0
    assert out.loss.item() == pytest.approx(out.task_loss.item() + 3.0 * out.regularizer.item(), rel=1e-5)
    out.loss.backward()
    assert model.get_input_embeddings().weight.grad is not None


def test_the_divergence_gradient_flows_into_the_model():
    """grad(λ=1e4) − grad(λ=0) ∝ grad(divergence) must be non-zero at the embeddings (same δ through the seed)."""
    grads = []
    for lam in (0.0, 1e4):
        model, batch = tiny_bert()
        model.train()
        torch.manual_seed(0)
        method_config("smart", lambda_=lam, **OPTIONS).build().compute_loss(model, batch).loss.backward()
        grads.append(model.bert.encoder.layer[0].intermediate.dense.weight.grad.clone())
    assert (grads[1] - grads[0]).abs().max() > 1e-3 * grads[0].abs().max()


def test_regression_uses_squared_error():
    model, batch = tiny_bert(num_labels=1)
    model.train()
    out = method_config("smart", **OPTIONS).build().compute_loss(model, batch)
    assert out.regularizer.item() > 0


def _sgd_step(model, batch, lr=0.5):
    model.zero_grad()
    model(**batch).loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= lr * p.grad


def test_bregman_term_is_zero_at_start_and_changes_the_loss_after_an_update():
    model, batch = tiny_bert()
    model.train()
    smart = method_config("smart", lambda_=0.0, bregman_mu=2.0, teacher_momentum=0.9).build()
    standard = method_config("standard").build()
    first = smart.compute_loss(model, batch)
    assert smart.last_bregman.item() == pytest.approx(0.0, abs=1e-10)  # the teacher is a copy of the model
    assert first.loss.item() == pytest.approx(standard.compute_loss(model, batch).loss.item(), rel=1e-6)

    before = model.classifier.weight.detach().clone()
    _sgd_step(model, batch)
    out = smart.compute_loss(model, batch)
    plain = standard.compute_loss(model, batch).loss.item()
    assert smart.last_bregman.item() > 1e-6
    assert out.loss.item() == pytest.approx(plain + 2.0 * smart.last_bregman.item(), rel=1e-5)
    # θ̃ = β θ̃ + (1 − β) θ, once per parameter update
    expected = 0.9 * before + 0.1 * model.classifier.weight.detach()
    assert torch.allclose(smart.teacher.classifier.weight, expected, atol=1e-6)
    smart.compute_loss(model, batch)  # no update in between (gradient accumulation): the teacher stays
    assert torch.allclose(smart.teacher.classifier.weight, expected, atol=1e-6)
    assert all(not p.requires_grad for p in smart.teacher.parameters())


def test_bregman_teacher_is_rebuilt_for_another_model():
    """One method object used for two models (CV folds, seeds): the second is not pulled toward the first."""
    smart = method_config("smart", lambda_=0.0, bregman_mu=1.0).build()
    first, batch = tiny_bert()
    first.train()
    smart.compute_loss(first, batch)
    second, _ = tiny_bert()
    with torch.no_grad():
        second.classifier.weight.add_(1.0)  # another model, with other weights
    second.train()
    smart.compute_loss(second, batch)
    assert smart.last_bregman.item() == pytest.approx(0.0, abs=1e-10)  # a fresh teacher: a copy of the second
    torch.testing.assert_close(smart.teacher.classifier.weight, second.classifier.weight)


def test_reentrant_gradient_checkpointing_is_a_clear_error():
    model, batch = tiny_bert()
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    with pytest.raises(RxfError, match=r"^smart takes gradients .* gradient_checkpointing_kwargs=\{'use_reentrant': False\}"):
        method_config("smart", **OPTIONS).build().compute_loss(model, batch)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert method_config("smart", **OPTIONS).build().compute_loss(model, batch).regularizer.item() > 0


def test_bregman_term_gets_gradient_through_the_student_only():
    model, batch = tiny_bert()
    model.train()
    smart = method_config("smart", lambda_=0.0, bregman_mu=1.0).build()
    smart.compute_loss(model, batch)
    _sgd_step(model, batch)
    model.zero_grad()
    smart.compute_loss(model, batch).loss.backward()
    assert model.classifier.weight.grad is not None
    assert all(p.grad is None for p in smart.teacher.parameters())


@pytest.mark.parametrize(
    "options,field",
    [
        ({"epsilon": -1e-5}, "epsilon"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"num_steps": 0}, "num_steps"),
        ({"num_steps": 1.5}, "num_steps"),
        ({"norm": "l1"}, "norm"),
        ({"granularity": "batch"}, "granularity"),
        ({"step_size": 0}, "step_size"),
        ({"sigma": -1.0}, "sigma"),
        ({"lambda_": -1.0}, "lambda_"),
        ({"bregman_mu": -1.0}, "bregman_mu"),
        ({"teacher_momentum": 1.0}, "teacher_momentum"),
        ({"divergence": "kl"}, "divergence"),
    ],
)
def test_bad_options_name_the_field(options, field):
    with pytest.raises(RxfError, match=field):
        method_config("smart", **options)


def test_random_start_comes_from_the_methods_noise_generator_when_seeded():
    from rxf.methods.base import Method

    if not hasattr(Method, "noise_generator"):
        pytest.skip("this core has no per-method noise generators")
    model, inputs, labels, clean = _setup()
    deltas = []
    for global_seed in (1, 2):
        method = method_config("smart", **OPTIONS).build()
        method.noise_seed = 123
        torch.manual_seed(global_seed)  # must not matter
        deltas.append(method.perturbation(model, inputs, clean, labels))
    assert torch.equal(deltas[0], deltas[1])
