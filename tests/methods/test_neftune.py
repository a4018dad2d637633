import math

import pytest
import torch

from rxf import RxfError, method_config
from rxf.methods.neftune import neftune_scale
from tiny_models import tiny_bert, tiny_gpt2


def _embedding_sums(model):
    """What BERT's embedding LayerNorm receives: word + position + token-type embeddings."""
    seen = []
    model.bert.embeddings.LayerNorm.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    return seen


def test_noise_is_added_in_training_only_at_the_documented_scale():
    model, batch = tiny_bert()
    seen = _embedding_sums(model)
    method = method_config("neftune", alpha=5.0).build()
    model.eval()
    with torch.no_grad():
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    clean = seen.pop()

    method.compute_loss(model, batch)  # eval mode: no noise
    assert torch.equal(seen.pop(), clean)

    model.train()  # dropout is 0: only the noise changes the embeddings
    torch.manual_seed(0)
    method.compute_loss(model, batch)
    noise = seen.pop() - clean
    mask = batch["attention_mask"].bool()
    d = model.config.hidden_size
    assert noise[~mask].abs().max().item() == 0.0  # padding untouched
    for row in range(noise.size(0)):
        length = int(mask[row].sum())  # the real length: row 0 has 5 of 10 tokens
        bound = 5.0 / math.sqrt(length * d)
        values = noise[row, :length]
        assert values.abs().max().item() <= bound * (1 + 1e-5)
        assert values.abs().max().item() > 0.9 * bound
        assert values.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.2)  # U(−b, b) has std b/√3


def test_noise_changes_the_loss_in_training():
    model, batch = tiny_bert()
    model.train()
    standard = method_config("standard").build().compute_loss(model, batch).loss.item()
    noised = method_config("neftune", alpha=15.0).build().compute_loss(model, batch).loss.item()
    assert noised != pytest.approx(standard, rel=1e-6)


def test_scale_uses_real_lengths():
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0], [1] * 8])
    scale = neftune_scale(mask, 16, 10.0).flatten()
    assert scale.tolist() == pytest.approx([10 / math.sqrt(4 * 16), 10 / math.sqrt(8 * 16)])


def test_runs_on_a_causal_lm():
    model, batch = tiny_gpt2()
    model.train()
    out = method_config("neftune").build().compute_loss(model, batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_bad_alpha_names_the_field():
    with pytest.raises(RxfError, match="alpha"):
        method_config("neftune", alpha=-1.0)
