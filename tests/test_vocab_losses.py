"""The chunked vocabulary losses against the plain-PyTorch references, values and gradients."""

import pytest
import torch
import torch.nn.functional as F

import rxf.vocab_losses as vocab_losses
from rxf.divergence import js_divergence, symmetric_kl
from rxf.methods.base import logit_divergence, reference_task_loss, target_mask, task_loss
from rxf.vocab_losses import (
    chunked_js_divergence,
    chunked_symmetric_kl,
    paired_token_losses,
    token_cross_entropy,
)

REFERENCES = {"sym_kl": (symmetric_kl, chunked_symmetric_kl), "js": (js_divergence, chunked_js_divergence)}


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    # 3 positions of a 37-token vocabulary per chunk: many chunks and a ragged last one.
    monkeypatch.setattr(vocab_losses, "CHUNK_ELEMENTS", 3 * 37)


def batch(seed=0, shape=(3, 7), vocab=37, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(*shape, vocab, generator=g) * 3).to(dtype)
    other = (logits.float() + torch.randn(*shape, vocab, generator=g)).to(dtype)
    labels = torch.randint(0, vocab, shape, generator=g)
    labels[0, :3] = -100  # a prompt
    labels[2, 5:] = -100  # padding
    return logits, other, labels


def value_and_grads(fn, *tensors):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    value = fn(*leaves)
    weight = torch.linspace(0.5, 1.5, value.numel()).reshape(value.shape)  # a non-uniform upstream gradient
    (value * weight).sum().backward()
    return value.detach(), [leaf.grad for leaf in leaves]


def assert_close(actual, expected, rel=1e-5):
    scale = expected.abs().max().clamp_min(1e-12)
    assert (actual.double() - expected.double()).abs().max() <= rel * scale, (actual, expected)


@pytest.mark.parametrize("task_type", ["causal_lm", "seq2seq"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("normalizer", [None, 11])
def test_task_loss_equals_reference(task_type, label_smoothing, normalizer):
    logits, _, labels = batch()
    options = {"label_smoothing": label_smoothing, "normalizer": normalizer}
    value, (grad,) = value_and_grads(lambda x: task_loss(x, labels, task_type, **options), logits)
    expected, (expected_grad,) = value_and_grads(lambda x: reference_task_loss(x, labels, task_type, **options), logits)
    assert_close(value, expected)
    assert_close(grad, expected_grad)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["sym_kl", "js"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_divergences_equal_reference_with_masks(kind, reduction):
    logits, other, labels = batch(1)
    mask = labels != -100
    reference, chunked = REFERENCES[kind]
    value, grads = value_and_grads(lambda p, q: chunked(p, q, mask, reduction=reduction), logits, other)
    expected, expected_grads = value_and_grads(lambda p, q: reference(p, q, mask, reduction=reduction), logits, other)
    assert_close(value, expected)
    for grad, expected_grad in zip(grads, expected_grads):
        assert_close(grad, expected_grad)
    # Masked positions get exactly no gradient.
    assert grads[0][~mask].abs().max() == 0 and grads[1][~mask].abs().max() == 0


@pytest.mark.parametrize("kind", ["sym_kl", "js"])
def test_logit_divergence_uses_the_chunked_kernel_with_the_causal_shift(kind, monkeypatch):
    logits, other, labels = batch(2)
    reference, _ = REFERENCES[kind]
    mask = target_mask(labels, "causal_lm")
    value, grads = value_and_grads(
        lambda p, q: logit_divergence(reference, p, q, labels, "causal_lm", normalizer=9), logits, other
    )
    expected, expected_grads = value_and_grads(lambda p, q: reference(p[:, :-1], q[:, :-1], mask, normalizer=9), logits, other)
    assert_close(value, expected)
    for grad, expected_grad in zip(grads, expected_grads):
        assert_close(grad, expected_grad)
    # And it really is the chunked kernel: with the kernel broken, the value changes.
    monkeypatch.setattr(vocab_losses, "_divergence_rows", lambda kind, a, *rest: torch.zeros(a.size(0)))
    assert logit_divergence(reference, logits, other, labels, "causal_lm").item() == 0.0


@pytest.mark.parametrize("kind", ["sym_kl", "js"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_paired_losses_equal_reference_on_the_halves(kind, label_smoothing):
    logits, other, labels = batch(3)
    doubled = torch.cat([logits, other])
    mask = labels != -100
    reference, _ = REFERENCES[kind]
    n = labels.size(0)

    def chunked(x):
        out = paired_token_losses(x, labels, kind, label_smoothing=label_smoothing)
        return torch.stack([out.cross_entropy_first.sum(), 0.3 * out.cross_entropy_second.sum(), 2.0 * out.divergence.sum()])

    def plain(x):
        ce = lambda half: F.cross_entropy(half[mask], labels[mask], reduction="sum", label_smoothing=label_smoothing)
        return torch.stack([ce(x[:n]), 0.3 * ce(x[n:]), 2.0 * reference(x[:n], x[n:], mask, reduction="sum")])

    value, (grad,) = value_and_grads(chunked, doubled)
    expected, (expected_grad,) = value_and_grads(plain, doubled)
    assert_close(value, expected)
    assert_close(grad, expected_grad)


@pytest.mark.parametrize("kind", ["sym_kl", "js"])
def test_losses_against_a_no_grad_partner_equal_reference(kind):
    """R3F "clean": cross-entropy of the clean pass and its divergence from a fixed (no-grad) noised pass, in one kernel."""
    logits, other, labels = batch(8)
    mask = labels != -100
    reference, _ = REFERENCES[kind]

    def chunked(x):
        out = paired_token_losses(x, labels, kind, partner=other, label_smoothing=0.1)
        assert out.cross_entropy_second.numel() == 0
        return torch.stack([out.cross_entropy_first.sum(), 3.0 * out.divergence.sum()])

    def plain(x):
        ce = F.cross_entropy(x[mask], labels[mask], reduction="sum", label_smoothing=0.1)
        return torch.stack([ce, 3.0 * reference(x, other, mask, reduction="sum")])

    value, (grad,) = value_and_grads(chunked, logits)
    expected, (expected_grad,) = value_and_grads(plain, logits)
    assert_close(value, expected)
    assert_close(grad, expected_grad)


def weighted_reference(kind, x, labels, partner, coefficients, label_smoothing, normalizer, dtype=torch.float32):
    """c₁·CE₁ + c₂·CE₂ + c₃·divergence in plain PyTorch (``dtype``), each term averaged over the
    counted positions or summed and divided by ``normalizer``."""
    mask = labels != -100
    x = x.to(dtype)
    n = labels.size(0)
    first, second = (x, partner.to(dtype)) if partner is not None else (x[:n], x[n:])
    denominator = normalizer if normalizer is not None else mask.sum()
    ce = lambda side: F.cross_entropy(side[mask], labels[mask], reduction="sum", label_smoothing=label_smoothing)
    divergence = REFERENCES[kind][0](first, second, mask, reduction="sum")
    total = coefficients[0] * ce(first) + coefficients[2] * divergence
    if partner is None:
        total = total + coefficients[1] * ce(second)
    return total / denominator


@pytest.mark.parametrize("kind", ["sym_kl", "js"])
@pytest.mark.parametrize("with_partner", [False, True], ids=["doubled", "partner"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("normalizer", [None, 13])
def test_weighted_objective_equals_reference_with_its_gradient(kind, with_partner, label_smoothing, normalizer):
    """The objective whose gradient is written in the forward pass: value, gradient, and an upstream scale."""
    logits, other, labels = batch(9)
    x = logits if with_partner else torch.cat([logits, other])
    partner = other if with_partner else None
    coefficients = (1.0, 0.3, 2.5)

    def chunked(x):
        out = paired_token_losses(x, labels, kind, partner=partner, label_smoothing=label_smoothing,
                                  coefficients=coefficients, normalizer=normalizer)
        assert not out.divergence.requires_grad and not out.cross_entropy_first.requires_grad
        return out.objective

    value, (grad,) = value_and_grads(chunked, x)
    expected, (expected_grad,) = value_and_grads(
        lambda x: weighted_reference(kind, x, labels, partner, coefficients, label_smoothing, normalizer), x
    )
    # value_and_grads back-propagates an upstream gradient of 0.5 (as gradient accumulation or loss
    # scaling would): the stored gradient is scaled; an upstream 1 takes it as it is.
    assert_close(value, expected)
    assert_close(grad, expected_grad)
    leaf = x.detach().clone().requires_grad_()
    chunked(leaf).backward()
    assert_close(leaf.grad, expected_grad / 0.5)


@pytest.mark.parametrize("with_partner", [False, True], ids=["doubled", "partner"])
def test_weighted_gradient_keeps_the_divergence_of_nearly_equal_passes(with_partner):
    """R3F at σ = 1e-5: the passes' softmaxes differ by ~1e-5, and the divergence's part of the gradient
    must survive next to the cross-entropy's (checked against float64 autograd)."""
    logits, _, labels = batch(10)
    g = torch.Generator().manual_seed(11)
    other = logits + 1e-5 * torch.randn(logits.shape, generator=g)
    x = logits if with_partner else torch.cat([logits, other])
    partner = other if with_partner else None
    coefficients = (0.0, 0.0, 1.0)  # the divergence alone: its gradient is ~1e-5 of the logits' scale

    def chunked(x):
        return paired_token_losses(x, labels, "sym_kl", partner=partner, coefficients=coefficients).objective

    def float64_sym_kl(x):  # rxf.divergence computes in fp32; this is the float64 truth
        first, second = (x, partner.double()) if partner is not None else (x[: labels.size(0)], x[labels.size(0) :])
        log_p, log_q = (F.log_softmax(side[labels != -100], dim=-1) for side in (first, second))
        return ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum() / (labels != -100).sum()

    _, (grad,) = value_and_grads(chunked, x)
    _, (fp32_grad,) = value_and_grads(lambda x: weighted_reference("sym_kl", x, labels, partner, coefficients, 0.0, None), x)
    _, (exact,) = value_and_grads(float64_sym_kl, x.double())
    # The two softmaxes differ by ~1e-5 here and each carries ~1e-7 rounding in fp32: the kernel
    # must get this gradient as well as plain PyTorch in fp32 does.
    error = (grad.double() - exact).abs().max()
    fp32_error = (fp32_grad.double() - exact).abs().max()
    assert exact.abs().max() > 0 and error <= 2 * fp32_error, (error, fp32_error, exact.abs().max())
    assert error <= 0.05 * exact.abs().max()


def test_reduced_losses_compute_their_gradient_in_the_forward_pass(monkeypatch):
    """A reduced cross-entropy or divergence is the weighted objective: the backward pass does no softmax."""
    logits, other, labels = batch(12)
    leaves = logits.clone().requires_grad_(), other.clone().requires_grad_()
    loss = token_cross_entropy(leaves[0], labels) + chunked_symmetric_kl(*leaves, labels != -100)
    monkeypatch.setattr(vocab_losses, "_log_sum_exp", lambda *a: pytest.fail("the backward pass recomputed a softmax"))
    loss.backward()
    assert leaves[0].grad.abs().sum() > 0 and leaves[1].grad.abs().sum() > 0


def test_bf16_logits_compute_in_fp32_and_return_bf16_gradients():
    logits, other, labels = batch(4, dtype=torch.bfloat16)
    value, (grad,) = value_and_grads(lambda x: task_loss(x, labels, "causal_lm", label_smoothing=0.1), logits)
    expected, (expected_grad,) = value_and_grads(lambda x: reference_task_loss(x, labels, "causal_lm", label_smoothing=0.1), logits)
    assert value.dtype == torch.float32 and grad.dtype == torch.bfloat16
    assert_close(value, expected)
    # Both compute the gradient in fp32 and round it to bf16 once: at most one bf16 rounding apart.
    assert_close(grad, expected_grad, rel=2**-8)
    mask = labels != -100
    value, grads = value_and_grads(lambda p, q: chunked_symmetric_kl(p, q, mask), logits, other)
    expected, expected_grads = value_and_grads(lambda p, q: symmetric_kl(p, q, mask), logits, other)
    assert_close(value, expected)
    for g, e in zip(grads, expected_grads):
        assert g.dtype == torch.bfloat16
        assert_close(g, e, rel=2**-8)


def test_no_counted_position_gives_zero_and_zero_gradient():
    logits, other, labels = batch(5)
    labels[:] = -100
    value, (grad,) = value_and_grads(lambda x: token_cross_entropy(x, labels), logits)
    assert value.item() == 0.0 and grad.abs().max() == 0
    assert chunked_symmetric_kl(logits, other, labels != -100).item() == 0.0


def test_only_the_logits_and_one_value_per_position_are_kept_for_backward():
    """The bound of the issue: nothing of size [positions, V] is saved beyond the logits themselves."""
    logits, other, labels = batch(6, shape=(4, 32), vocab=1000)
    logits.requires_grad_()
    saved: list[torch.Tensor] = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    def extra_bytes(fn):
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        own = {logits.data_ptr(), other.data_ptr()}
        return sum(t.numel() * t.element_size() for t in saved if t.data_ptr() not in own)

    logits_bytes = logits.numel() * logits.element_size()
    chunked = extra_bytes(lambda: task_loss(logits, labels, "causal_lm") + chunked_symmetric_kl(logits, other, labels != -100))
    reference = extra_bytes(lambda: reference_task_loss(logits, labels, "causal_lm") + symmetric_kl(logits, other, labels != -100))
    assert chunked < 0.01 * logits_bytes
    assert reference > logits_bytes  # the reference keeps several [positions, V] tensors


def test_shape_mistakes_are_named():
    logits, other, labels = batch(7)
    with pytest.raises(ValueError, match="labels shape"):
        token_cross_entropy(logits, labels[:, 1:])
    with pytest.raises(ValueError, match="mask shape"):
        chunked_symmetric_kl(logits, other, labels[:, 1:] != -100)
    with pytest.raises(ValueError, match="two halves"):
        paired_token_losses(logits, labels, "sym_kl")


@pytest.mark.parametrize(
    "name, options",
    [
        ("standard", {}),
        ("r3f", {"gradient_mode": "both", "sigma": 1e-2}),
        ("r3f", {"gradient_mode": "clean", "sigma": 1e-2}),
        ("rdrop", {}),
        ("r3f", {"gradient_mode": "both", "sigma": 1e-2, "divergence": "js", "label_smoothing": 0.1}),
    ],
)
def test_methods_use_the_kernels_on_causal_lms_with_the_reference_result(name, options, monkeypatch):
    """R3F, R-Drop and Standard give the loss and gradients of the plain-PyTorch losses, through the chunked kernels."""
    import rxf.methods.base as base
    import rxf.methods.r3f as r3f
    import rxf.methods.rdrop as rdrop
    from rxf import method_config
    from tiny_models import tiny_gpt2

    model, batch = tiny_gpt2()
    model.train()
    if name == "rdrop":  # R-Drop needs dropout; the same seed gives both runs the same masks
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.1

    def run():
        method = method_config(name, **options).build()
        method.noise_seed = 0
        torch.manual_seed(0)
        model.zero_grad()
        out = method.compute_loss(model, batch)
        out.loss.backward()
        return out.loss.detach(), [p.grad.clone() for p in model.parameters()]

    calls = []
    apply = vocab_losses._TokenLosses.apply
    monkeypatch.setattr(vocab_losses._TokenLosses, "apply", lambda *a: calls.append(1) or apply(*a))
    loss, grads = run()
    assert calls, "the chunked kernels were not used"

    for module in (base, r3f, rdrop):
        monkeypatch.setattr(module, "task_loss", base.reference_task_loss, raising=False)
        monkeypatch.setattr(module, "paired_losses", lambda *a, **k: None, raising=False)
    monkeypatch.setattr(base, "chunked_version", lambda divergence: None)
    calls.clear()
    expected, expected_grads = run()
    assert not calls
    assert_close(loss, expected)
    for grad, expected_grad in zip(grads, expected_grads):
        assert_close(grad, expected_grad)
