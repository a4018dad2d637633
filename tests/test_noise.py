import warnings

import pytest
import torch

import rxf.functional as F
from rxf import RxfError
from rxf.methods.base import model_inputs, infer_task_type, output_logits
from rxf.noise import NoisePrecisionWarning, embedding_noise, half_ulp, sample_noise
from tiny_models import ARCHITECTURES, tiny_bart, tiny_bert, tiny_t5


def logits_of(model, batch, sigma=None, noise_type="normal"):
    inputs, _ = model_inputs(model, batch, infer_task_type(model))
    with torch.no_grad():
        if sigma is None:
            return output_logits(model(**inputs))
        with embedding_noise(model, sigma, noise_type):
            return output_logits(model(**inputs))


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("noise_type", ["normal", "uniform"])
def test_noise_reaches_the_model(arch, noise_type):
    """The fairseq bug: noise that never reaches the model. With dropout off, σ > 0 must move the logits."""
    model, batch = ARCHITECTURES[arch]()
    model.eval()
    clean = logits_of(model, batch)
    assert torch.equal(logits_of(model, batch), clean), "the model itself must be deterministic here"
    assert torch.equal(logits_of(model, batch, sigma=0.0, noise_type=noise_type), clean)
    noised = logits_of(model, batch, sigma=1e-2, noise_type=noise_type)
    assert not torch.allclose(noised, clean), f"noise did not reach {arch}'s logits"


def test_hook_is_removed_after_the_context():
    model, batch = tiny_bert()
    model.eval()
    clean = logits_of(model, batch)
    logits_of(model, batch, sigma=1.0)
    assert torch.equal(logits_of(model, batch), clean)
    assert not model.get_input_embeddings()._forward_hooks


def test_noise_distribution_and_scale():
    z = sample_noise((200_000,), 0.5, "uniform", generator=torch.Generator().manual_seed(0))
    assert z.dtype == torch.float32 and z.abs().max() <= 0.5 and z.abs().max() > 0.49
    z = sample_noise((200_000,), 0.5, "normal", generator=torch.Generator().manual_seed(0))
    assert abs(z.std().item() - 0.5) < 0.01 and abs(z.mean().item()) < 0.01
    with pytest.raises(ValueError, match="noise_type"):
        sample_noise((3,), 0.5, "laplace")


def _encoder_decoder_inputs(model, batch):
    """Record what the first encoder and decoder layers receive."""
    seen = {}
    enc, dec = model.get_encoder(), model.get_decoder()
    layers = {"encoder": (enc.block if hasattr(enc, "block") else enc.layers)[0],
              "decoder": (dec.block if hasattr(dec, "block") else dec.layers)[0]}
    handles = [
        layer.register_forward_pre_hook(lambda m, a, kw, name=name: seen.__setitem__(name, (a[0] if a else kw["hidden_states"]).clone()), with_kwargs=True)
        for name, layer in layers.items()
    ]
    return seen, handles


@pytest.mark.parametrize("builder", [tiny_t5, tiny_bart])
def test_encoder_decoder_noise_on_encoder_tokens_only(builder):
    """T5 shares one embedding module between encoder and decoder: only the encoder's tokens get noise."""
    model, batch = builder()
    model.eval()
    seen, handles = _encoder_decoder_inputs(model, batch)
    logits_of(model, batch)
    clean = dict(seen)
    logits_of(model, batch, sigma=1e-2)
    for h in handles:
        h.remove()
    assert not torch.allclose(seen["encoder"], clean["encoder"])
    assert torch.equal(seen["decoder"], clean["decoder"])


def test_noise_added_before_embedding_scale():
    """BART scales token embeddings by sqrt(d_model) inside the module: the noise is scaled with them."""
    model, batch = tiny_bart(scale_embedding=True)
    model.eval()
    embedding = model.get_encoder().get_input_embeddings()
    scale = float(embedding.embed_scale)
    assert scale == pytest.approx(4.0)
    inputs, _ = model_inputs(model, batch, "seq2seq")
    outputs = []

    def record(_m, _a, out):
        outputs.append(out.detach().clone())

    sigma = 1e-2
    with torch.no_grad(), embedding_noise(model, sigma, "uniform"):
        handle = embedding.register_forward_hook(record)  # runs after the noise hook
        model(**inputs)
    handle.remove()
    with torch.no_grad():
        clean = model.get_encoder().get_input_embeddings()(inputs["input_ids"])
    delta = (outputs[0] - clean).abs()
    assert delta.max() <= sigma * scale * (1 + 1e-4)
    assert delta.max() > sigma * scale * 0.9  # uniform noise on ~500 values reaches near its bound


def test_precision_warning_in_bf16_and_not_in_fp32():
    model, batch = tiny_bert()
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoisePrecisionWarning)
        logits_of(model, batch, sigma=1e-5)  # fp32: noise survives
    model = model.to(torch.bfloat16)
    with pytest.warns(NoisePrecisionWarning, match="bfloat16"):
        logits_of(model, batch, sigma=1e-5)


def test_half_ulp():
    assert half_ulp(1.0, torch.bfloat16) == pytest.approx(2**-8)
    assert half_ulp(0.03, torch.float16) == pytest.approx(2**-6 * 2**-10 / 2)
    assert half_ulp(0.0, torch.bfloat16) == 0.0


def test_noise_on_some_rows_leaves_the_other_rows_bit_exact_in_fp64():
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4).double()

        def get_input_embeddings(self):
            return self.embed

        def forward(self, input_ids):
            return self.embed(input_ids)

    model = Tiny()
    ids = torch.tensor([[1, 2, 3], [1, 2, 3]])
    clean = model(ids)
    with embedding_noise(model, 1e-3, rows=slice(1, None)):
        noised = model(ids)
    assert noised.dtype == torch.float64
    assert torch.equal(noised[0], clean[0])
    assert not torch.equal(noised[1], clean[1])


@pytest.mark.parametrize("method", ["r3f", "smart", "neftune"])
def test_a_compiled_model_is_refused_up_front(method):
    """A compiled model may run without the hooks added since compilation (no noise, silently): rxf refuses it
    (benchmarks/compile_hooks.py measures what torch 2.13 does)."""
    model, batch = tiny_bert()
    compiled = torch.compile(model, backend="eager")  # compiles lazily, at its first call: never, here
    with pytest.raises(RxfError, match=r"the model is torch.compile'd \(OptimizedModule\).*pass the uncompiled model.*torch_compile"):
        F.method(method).compute_loss(compiled, batch)


def test_r3f_says_when_its_noise_did_not_reach_the_model():
    model, batch = tiny_bert()
    unused = torch.nn.Embedding(100, 32)
    model.get_input_embeddings = lambda: unused  # hooks land on a module the forward never calls
    with pytest.raises(RxfError, match="r3f: the model neither called its token embeddings.*torch.compile'd"):
        F.method("r3f").compute_loss(model, batch)


@pytest.mark.parametrize(
    "sigma, noise_type, message",
    [
        (float("nan"), "normal", "sigma: nan must be a number >= 0"),
        (-1.0, "normal", "sigma: -1.0 must be a number >= 0"),
        ("1e-5", "normal", "sigma: '1e-5' must be a number >= 0"),
        (1e-5, "gaussian", "noise_type: 'gaussian' must be one of normal, uniform"),
    ],
)
def test_embedding_noise_checks_its_arguments_on_entry(sigma, noise_type, message):
    model, _ = tiny_bert()
    with pytest.raises(RxfError, match=message):
        with embedding_noise(model, sigma, noise_type):
            pass
