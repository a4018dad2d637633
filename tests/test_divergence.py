import numpy as np
import pytest
import torch

from rxf import RxfError
from rxf.divergence import js_divergence, squared_error, symmetric_bernoulli_kl, symmetric_kl
from rxf.vocab_losses import chunked_symmetric_kl


def kl_by_definition(p_logits, q_logits):
    """Σ p log(p/q), in float64, per row."""
    p = torch.softmax(p_logits.double(), -1)
    q = torch.softmax(q_logits.double(), -1)
    return (p * (p.log() - q.log())).sum(-1)


def test_symmetric_kl_matches_definition():
    g = torch.Generator().manual_seed(0)
    p, q = torch.randn(5, 7, generator=g) * 3, torch.randn(5, 7, generator=g) * 3
    expected = kl_by_definition(p, q) + kl_by_definition(q, p)
    assert torch.allclose(symmetric_kl(p, q, reduction="none").double(), expected, atol=1e-5)
    assert symmetric_kl(p, q).item() == pytest.approx(expected.mean().item(), rel=1e-5)
    assert symmetric_kl(p, q, reduction="sum").item() == pytest.approx(expected.sum().item(), rel=1e-5)
    assert symmetric_kl(p, q, normalizer=10).item() == pytest.approx(expected.sum().item() / 10, rel=1e-5)
    assert symmetric_kl(p, q).item() == pytest.approx(symmetric_kl(q, p).item(), rel=1e-6)
    assert symmetric_kl(p, p).item() == pytest.approx(0.0, abs=1e-7)


def test_masked_positions_do_not_contribute():
    g = torch.Generator().manual_seed(1)
    p, q = torch.randn(2, 6, 11, generator=g), torch.randn(2, 6, 11, generator=g)
    labels = torch.randint(0, 11, (2, 6), generator=g)
    labels[0, 4:] = -100
    labels[1, 0] = -100
    mask = labels != -100
    value = symmetric_kl(p, q, mask)
    # Garbage at the masked positions changes nothing.
    p2, q2 = p.clone(), q.clone()
    p2[~mask] = 1e4 * torch.randn_like(p2[~mask])
    q2[~mask] = -1e4
    assert symmetric_kl(p2, q2, mask).item() == pytest.approx(value.item(), rel=1e-6)
    expected = (kl_by_definition(p, q) + kl_by_definition(q, p))[mask].mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def test_divergence_is_fp32_for_half_inputs():
    p = torch.randn(4, 5).to(torch.bfloat16)
    q = (p.float() + 1e-3).to(torch.bfloat16)
    for fn in (symmetric_kl, js_divergence, symmetric_bernoulli_kl, squared_error):
        assert fn(p, q).dtype == torch.float32


def test_js_bernoulli_and_squared_error_by_definition():
    g = torch.Generator().manual_seed(2)
    p, q = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    P, Q = torch.softmax(p.double(), -1), torch.softmax(q.double(), -1)
    M = (P + Q) / 2
    js = 0.5 * (P * (P / M).log()).sum(-1) + 0.5 * (Q * (Q / M).log()).sum(-1)
    assert js_divergence(p, q).item() == pytest.approx(js.mean().item(), rel=1e-5)

    sp, sq = torch.sigmoid(p.double()), torch.sigmoid(q.double())
    bern = lambda a, b: a * (a / b).log() + (1 - a) * ((1 - a) / (1 - b)).log()
    expected = (bern(sp, sq) + bern(sq, sp)).sum(-1).mean()
    assert symmetric_bernoulli_kl(p, q).item() == pytest.approx(expected.item(), rel=1e-5)

    a, b = torch.tensor([[1.0], [2.0]]), torch.tensor([[1.5], [0.0]])
    assert squared_error(a, b).item() == pytest.approx((0.25 + 4.0) / 2)
    assert squared_error(a.squeeze(-1), b.squeeze(-1)).item() == pytest.approx((0.25 + 4.0) / 2)


def test_empty_selection_is_zero_not_nan():
    p = torch.randn(2, 3, 5)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    assert symmetric_kl(p, p + 1, mask).item() == 0.0


@pytest.mark.parametrize("divergence", [symmetric_kl, js_divergence, symmetric_bernoulli_kl])
@pytest.mark.parametrize("shapes", [((4, 3), (1, 3)), ((2, 6, 3), (6, 2, 3))])
def test_logit_shapes_must_be_equal(divergence, shapes):
    """Broadcasting would compare unrelated positions and still give a number."""
    with pytest.raises(ValueError, match=r"logit shapes differ: \(\d+, .*\) and \(\d+, .*\)"):
        divergence(torch.zeros(shapes[0]), torch.zeros(shapes[1]))


def test_squared_error_shapes_must_be_equal():
    with pytest.raises(ValueError, match=r"logit shapes differ: \(4, 1\) and \(1, 1\)"):
        squared_error(torch.zeros(4), torch.zeros(1))
    assert squared_error(torch.zeros(4), torch.ones(4)).item() == 1.0


@pytest.mark.parametrize("reduction", ["batchmean", "avg", "MEAN"])
def test_unknown_reduction_is_refused(reduction):
    with pytest.raises(RxfError, match=f"reduction '{reduction}' must be one of mean, sum, none"):
        symmetric_kl(torch.zeros(4, 3), torch.ones(4, 3), reduction=reduction)
    with pytest.raises(RxfError, match="reduction"):
        chunked_symmetric_kl(torch.zeros(4, 3), torch.ones(4, 3), reduction=reduction)


@pytest.mark.parametrize("normalizer", [0, -5.0, float("nan"), float("inf"), "12", True, torch.tensor([1.0, 2.0]), torch.tensor(True)])
def test_normalizer_must_be_positive_and_finite(normalizer):
    with pytest.raises(RxfError, match="normalizer .* must be a positive finite number"):
        symmetric_kl(torch.zeros(4, 3), torch.ones(4, 3), normalizer=normalizer)
    with pytest.raises(RxfError, match="normalizer"):
        chunked_symmetric_kl(torch.zeros(4, 3), torch.ones(4, 3), normalizer=normalizer)


@pytest.mark.parametrize("normalizer", [2, 2.0, np.float32(2.0), torch.tensor(2), torch.tensor(2.0)])
def test_valid_normalizers(normalizer):
    assert symmetric_kl(torch.zeros(4, 3), torch.zeros(4, 3), normalizer=normalizer).item() == 0.0
