import math

import pytest
import torch

from rxf import RxfError, method_config
from rxf.methods.neftune import neftune_scale, sequence_lengths
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
    lengths = sequence_lengths({"input_ids": torch.ones_like(mask), "attention_mask": mask})
    assert lengths.tolist() == [[4] * 8, [8] * 8]
    scale = neftune_scale(lengths, 16, 10.0)[:, 0, 0]
    assert scale.tolist() == pytest.approx([10 / math.sqrt(4 * 16), 10 / math.sqrt(8 * 16)])


def packed_batch():
    """Three sequences of lengths 2, 5 and 3 packed into one row, as DataCollatorWithFlattening makes it."""
    from transformers import DataCollatorWithFlattening

    features = [{"input_ids": list(range(3, 3 + n))} for n in (2, 5, 3)]
    return DataCollatorWithFlattening(return_flash_attn_kwargs=True, return_seq_idx=True)(features)


@pytest.mark.parametrize("boundaries", ["position_ids", "cu_seq_lens_q", "seq_idx"])
def test_packed_sub_sequences_get_their_own_length(boundaries):
    batch = packed_batch()
    inputs = {"input_ids": batch["input_ids"], boundaries: batch[boundaries]}
    assert sequence_lengths(inputs).tolist() == [[2, 2, 5, 5, 5, 5, 5, 3, 3, 3]]


def test_differs_from_transformers_hook_on_a_packed_batch():
    """transformers' hook scales every packed sub-sequence by the whole row's length (issue 34659); rxf by its own."""
    from transformers.integrations.neftune import neftune_post_forward_hook

    model, _ = tiny_gpt2()
    model.train()
    batch = packed_batch()
    alpha, d = 5.0, model.config.n_embd
    embedding = model.get_input_embeddings()
    clean = embedding(batch["input_ids"]).detach()

    embedding.neftune_noise_alpha = alpha
    handle = embedding.register_forward_hook(neftune_post_forward_hook)
    hooked = embedding(batch["input_ids"]).detach() - clean
    handle.remove()
    row_bound = alpha / math.sqrt(10 * d)  # the packed row's 10 tokens
    assert hooked.abs().max() <= row_bound * (1 + 1e-5)

    # What GPT-2 adds the positions to (dropout is 0): the token embeddings, noised or not.
    seen = []
    model.transformer.drop.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    packed = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "labels": batch["labels"]}
    method = method_config("neftune", alpha=alpha).build()
    model.eval()
    method.compute_loss(model, packed)  # eval mode: no noise
    model.train()
    method.compute_loss(model, packed)
    ours = seen[1] - seen[0]
    for start, stop in ((0, 2), (2, 7), (7, 10)):
        bound = alpha / math.sqrt((stop - start) * d)
        values = ours[0, start:stop]
        assert values.abs().max() <= bound * (1 + 1e-5)
        assert values.abs().max() > 0.8 * bound  # the sub-sequence's full scale, not the row's
    # The 2-token sequence gets √5 times the noise amplitude transformers' hook gives it.
    assert ours[0, :2].abs().max() > 2 * hooked[0, :2].abs().max()


def test_runs_on_a_causal_lm():
    model, batch = tiny_gpt2()
    model.train()
    out = method_config("neftune").build().compute_loss(model, batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_bad_alpha_names_the_field():
    with pytest.raises(RxfError, match="alpha"):
        method_config("neftune", alpha=-1.0)
