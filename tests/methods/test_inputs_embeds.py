"""Every embedding-perturbation method works on a batch that brings ``inputs_embeds`` instead of ``input_ids``.

``inputs_embeds`` is the word-embedding output (for BART with ``scale_embedding``, already
scaled), so the perturbation must land on it exactly as the embedding hook puts it on the
module's output: the same embeddings and the same noise give the same losses.
"""

import pytest
import torch

from rxf import method_config
from rxf.noise import token_embedding
from tiny_models import tiny_bart, tiny_bert, tiny_gpt2

def tiny_gemma():
    """Gemma scales its embeddings by √d inside the embedding module, so inputs_embeds come scaled."""
    from transformers import GemmaConfig, GemmaForCausalLM

    config = GemmaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=64, attention_dropout=0.0, pad_token_id=0,
    )
    torch.manual_seed(0)
    _, batch = tiny_gpt2()
    return GemmaForCausalLM(config), batch


ARCHS = {
    "bert": tiny_bert,
    "bart_scaled": lambda: tiny_bart(scale_embedding=True),
    "gpt2": tiny_gpt2,
    "gemma": tiny_gemma,
}
METHODS = {
    "r3f": {"sigma": 0.1},
    "r3f_clean": {"sigma": 0.1, "gradient_mode": "clean"},
    "r4f": {"sigma": 0.1},
    "smart": {"epsilon": 0.1, "sigma": 0.01, "step_size": 0.1},
    "freelb": {"adv_steps": 2},
    "neftune": {"alpha": 5.0},
}


def embeds_batch(model, batch):
    """The batch with input_ids replaced by the embedding module's output for them."""
    embedding, _ = token_embedding(model)
    out = {k: v for k, v in batch.items() if k != "input_ids"}
    out["inputs_embeds"] = embedding(batch["input_ids"])
    if model.config.is_encoder_decoder:
        out["decoder_input_ids"] = model.prepare_decoder_input_ids_from_labels(labels=batch["labels"])
    return out


def run(model, batch, name, **options):
    """The method's output on ``batch`` with a fixed noise seed; FreeLB through training_step."""
    base = name.split("_")[0]
    method = method_config(base, **options).build()
    method.prepare_model(model)
    method.noise_seed = 0
    if method.multi_backward:
        return method.training_step(model, batch, backward=lambda loss: loss.backward())
    return method.compute_loss(model, batch)


def parts(out):
    return [out.loss.item(), out.task_loss.item(), *([] if out.regularizer is None else [out.regularizer.item()])]


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("name", sorted(METHODS))
def test_inputs_embeds_gives_the_input_ids_result(arch, name):
    model, batch = ARCHS[arch]()
    if name == "r4f" and arch != "bert":
        pytest.skip("R4F needs a classification head")
    model.train()  # dropout is off in the tiny models: only the perturbation differs between passes
    with_ids = parts(run(model, batch, name, **METHODS[name]))
    model, _ = ARCHS[arch]()  # the same weights again (R4F's power iteration moved the first copy's)
    model.train()
    with_embeds = parts(run(model, embeds_batch(model, batch), name, **METHODS[name]))
    assert with_embeds == pytest.approx(with_ids, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("mode", ["both", "clean"])
@pytest.mark.usefixtures("without_dropout_check")
def test_r3f_noise_reaches_inputs_embeds(arch, mode):
    """σ > 0 changes the logits (the divergence is > 0), σ = 0 does not (it is 0)."""
    model, batch = ARCHS[arch]()
    model.train()
    batch = embeds_batch(model, batch)
    assert run(model, batch, "r3f", sigma=0.0, gradient_mode=mode).regularizer.item() == pytest.approx(0, abs=1e-12)
    assert run(model, batch, "r3f", sigma=0.1, gradient_mode=mode).regularizer.item() > 1e-9


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_perturbation_methods_change_the_loss_on_inputs_embeds(arch):
    model, batch = ARCHS[arch]()
    model.train()
    batch = embeds_batch(model, batch)
    standard = run(model, batch, "standard").loss.item()
    assert run(model, batch, "smart", **METHODS["smart"]).regularizer.item() > 1e-9
    assert run(model, batch, "neftune", alpha=0.0).loss.item() == pytest.approx(standard, rel=1e-6)
    assert abs(run(model, batch, "neftune", alpha=50.0).loss.item() - standard) > 1e-6 * standard
    freelb = run(model, batch, "freelb", adv_init_mag=0.0, adv_lr=1.0, adv_max_norm=0.0)
    assert freelb.task_loss.item() == pytest.approx(standard, rel=1e-6)  # δ₀ = 0: the clean loss
    assert freelb.regularizer.item() > freelb.task_loss.item()  # the ascent step raised the loss


@pytest.mark.parametrize("name", ["r3f", "smart", "freelb", "neftune"])
def test_gradients_reach_the_embedding_table_through_inputs_embeds(name):
    """A caller's inputs_embeds = embedding(input_ids) keeps its graph: the table gets the input_ids path's gradient."""
    grads = []
    for use_embeds in (False, True):
        model, batch = tiny_bert()
        model.train()
        model.zero_grad()
        out = run(model, embeds_batch(model, batch) if use_embeds else batch, name, **METHODS.get(name, {}))
        if not method_config(name).build().multi_backward:
            out.loss.backward()
        grads.append(model.get_input_embeddings().weight.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-8)
