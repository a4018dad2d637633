import pytest
import torch

from rxf import RxfError, method_config
from rxf.methods.base import infer_task_type, model_inputs, task_loss, output_logits
from rxf.methods.r3f import R3F
from tiny_models import ARCHITECTURES, tiny_bert, tiny_gpt2


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.usefixtures("without_dropout_check")
def test_r3f_divergence_is_zero_without_noise_and_positive_with_it(arch):
    """With dropout off, the noised pass differs from the clean one only through the noise."""
    model, batch = ARCHITECTURES[arch]()
    model.train()  # training mode, but every dropout probability is 0
    without = method_config("r3f", sigma=0.0).build().compute_loss(model, batch).regularizer.item()
    assert without == pytest.approx(0.0, abs=1e-12)
    out = method_config("r3f", sigma=1e-1).build().compute_loss(model, batch)
    assert out.regularizer.item() > 1e-9
    assert out.loss.item() == pytest.approx(out.task_loss.item() + out.regularizer.item(), rel=1e-5)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_task_loss_matches_the_models_own_loss(arch):
    model, batch = ARCHITECTURES[arch]()
    model.eval()
    task_type = infer_task_type(model)
    with torch.no_grad():
        reference = model(**batch).loss
        inputs, labels = model_inputs(model, batch, task_type)
        ours = task_loss(output_logits(model(**inputs)), labels, task_type)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


def _grads(model, method, batch, seed=0):
    model.zero_grad()
    torch.manual_seed(seed)  # the same noise for every call
    method.compute_loss(model, batch).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode", ["both", "clean"])
@pytest.mark.parametrize("arch", ["bert", "bart", "gpt2"])
def test_divergence_gradient_reaches_embeddings_and_encoder(arch, mode):
    """grad(λ=1e6) − grad(λ=1) ∝ grad(divergence), with identical noise: it must reach embeddings and encoder.

    (λ is huge because the divergence of an untrained tiny model is ~1e-8.)"""
    model, batch = ARCHITECTURES[arch]()
    model.train()
    low = _grads(model, method_config("r3f", sigma=1.0, lambda_=1.0, gradient_mode=mode).build(), batch)
    high = _grads(model, method_config("r3f", sigma=1.0, lambda_=1e6, gradient_mode=mode).build(), batch)
    embedding = next(n for n, p in model.named_parameters() if p is model.get_input_embeddings().weight)
    # The first feed-forward weight of the first (encoder) layer.
    layer = next(n for n in high if any(k in n for k in ("0.intermediate.dense.weight", "0.fc1.weight", "0.mlp.c_fc.weight")))
    for name in (embedding, layer):
        divergence_grad = (high[name] - low[name]).abs().max().item()
        assert divergence_grad > 1e-3 * low[name].abs().max().item(), f"no divergence gradient at {name} ({mode})"


@pytest.mark.parametrize("mode,expected", [("both", True), ("clean", False)])
def test_gradient_flows_through_the_noised_pass_only_in_both_mode(mode, expected, monkeypatch):
    model, batch = tiny_bert()
    model.train()
    seen = []
    original = R3F.noised_logits

    def spy(self, *args, **kwargs):
        logits = original(self, *args, **kwargs)
        seen.append(logits.requires_grad)
        return logits

    monkeypatch.setattr(R3F, "noised_logits", spy)
    method_config("r3f", gradient_mode=mode).build().compute_loss(model, batch)
    assert seen == [expected]


def test_clean_mode_keeps_noise_out_of_the_graph():
    """In the faster mode, d(divergence)/d(noised logits) is never computed: the graph holds one pass."""
    model, batch = tiny_bert()
    model.train()
    out = method_config("r3f", sigma=1e-1, gradient_mode="clean").build().compute_loss(model, batch)
    assert out.logits.shape == (4, 3)  # clean logits of the batch, not a doubled batch


def test_lambda_zero_is_standard():
    model, batch = tiny_bert()
    model.train()
    out = method_config("r3f", lambda_=0.0).build().compute_loss(model, batch)
    ref = method_config("standard").build().compute_loss(model, batch)
    assert out.loss.item() == pytest.approx(ref.loss.item())
    assert out.regularizer is None


def test_regression_uses_squared_error():
    model, batch = tiny_bert(num_labels=1)
    model.train()
    assert infer_task_type(model) == "regression"
    out = method_config("r3f", sigma=1e-1).build().compute_loss(model, batch)
    assert out.regularizer.item() > 0
    assert out.task_loss.item() == pytest.approx(
        torch.nn.functional.mse_loss(out.logits.squeeze(-1), batch["labels"]).item(), rel=1e-5
    )


def test_causal_lm_divergence_ignores_prompt_and_padding(monkeypatch):
    """The mask handed to the divergence is exactly the shifted labels != -100."""
    model, batch = tiny_gpt2()
    model.train()
    import rxf.methods.r3f as r3f_module

    masks = []
    real = r3f_module.divergence_for

    def capture(name, task_type):
        fn = real(name, task_type)

        def wrapped(p, q, mask, **kw):
            masks.append(mask)
            return fn(p, q, mask, **kw)

        return wrapped

    monkeypatch.setattr(r3f_module, "divergence_for", capture)
    method_config("r3f").build().compute_loss(model, batch)
    assert torch.equal(masks[0], batch["labels"][:, 1:] != -100)


@pytest.mark.parametrize(
    "options,field",
    [
        ({"lambda_": -1.0}, "lambda_"),
        ({"sigma": -1e-5}, "sigma"),
        ({"noise_type": "gauss"}, "noise_type"),
        ({"gradient_mode": "fast"}, "gradient_mode"),
        ({"divergence": "kl"}, "divergence"),
        ({"lambda_": "big"}, "lambda_"),
        ({"task_type": "ner"}, "task_type"),
        ({"lamda_": 1.0}, "lamda_"),
    ],
)
def test_bad_options_name_the_field(options, field):
    with pytest.raises(RxfError, match=field):
        method_config("r3f", **options)


def test_unknown_method_suggests_the_closest():
    with pytest.raises(RxfError, match="did you mean 'r3f'"):
        method_config("r3g")


@pytest.mark.parametrize("name", ["r3f", "smart", "rdrop"])
@pytest.mark.parametrize("arch", ["gpt2", "bart", "bert"])
def test_sequence_sum_is_token_mean_times_mean_target_tokens(arch, name):
    """fairseq's normalisation for generation (sum over real tokens / sequences) against ours (mean over real tokens)."""
    model, batch = ARCHITECTURES[arch]()
    model.train()
    if name == "rdrop":  # R-Drop's divergence needs dropout
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.1
            elif isinstance(getattr(module, "dropout", None), float):  # BART's functional dropout
                module.dropout = 0.1
    task_type = infer_task_type(model)
    options = {"r3f": {"sigma": 0.1}, "smart": {"epsilon": 0.1, "step_size": 0.1}, "rdrop": {}}[name]
    values = {}
    for reduction in ("token_mean", "sequence_sum"):
        method = method_config(name, divergence_reduction=reduction, **options).build()
        method.noise_seed = 0
        torch.manual_seed(0)  # the same dropout masks
        values[reduction] = method.compute_loss(model, batch).regularizer.item()
    assert values["token_mean"] > 0
    if task_type == "classification":
        expected = 1.0  # one position per sequence
    else:
        targets = batch["labels"][:, 1:] if task_type == "causal_lm" else batch["labels"]
        expected = (targets != -100).sum().item() / batch["labels"].size(0)
        assert expected > 1
    assert values["sequence_sum"] / values["token_mean"] == pytest.approx(expected, rel=1e-5)


def test_sequence_sum_under_accumulation_weights_micro_batches_by_their_tokens():
    """With a normalizer N (the accumulated batch's tokens), a micro-batch with t tokens and B sequences gives ΣKL/B · t/N."""
    model, batch = tiny_gpt2()
    model.train()
    tokens = (batch["labels"][:, 1:] != -100).sum().item()
    results = {}
    for reduction in ("token_mean", "sequence_sum"):
        method = method_config("r3f", sigma=0.1, divergence_reduction=reduction).build()
        method.noise_seed = 0
        results[reduction] = method.compute_loss(model, batch, normalizer=3 * tokens).regularizer.item()
    summed = results["token_mean"] * 3 * tokens  # ΣKL over the micro-batch
    assert results["sequence_sum"] == pytest.approx(summed / batch["labels"].size(0) * tokens / (3 * tokens), rel=1e-5)


def test_divergence_reduction_is_validated():
    with pytest.raises(RxfError, match="divergence_reduction"):
        method_config("r3f", divergence_reduction="sum")
