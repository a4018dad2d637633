"""Packed (padding-free) batches: the doubled batch of R3F's "both" mode (and R-Drop) equals two separate passes.

TRL's padding-free collator packs a batch into one row with ``position_ids`` restarting at each
sequence, plus the varlen metadata ``cu_seq_lens_q/k`` and ``max_length_q/k`` that flash
attention reads instead of a mask. Flash attention does not run on CPU, so the test registers a
reference varlen attention that, like the flash kernels, takes the sequences of the *flattened*
batch from ``cu_seq_lens_q``: tokens the offsets leave out attend to nothing, and their logits are
NaN.
"""

import pytest
import torch
from transformers import AttentionInterface, LlamaConfig, LlamaForCausalLM

from rxf import method_config
from rxf.divergence import symmetric_kl
from rxf.methods.base import output_logits, prediction_logits, target_mask, task_loss
from rxf.methods.r3f import doubled
from rxf.noise import embedding_noise

LENGTHS = (4, 3, 5)


def varlen_reference_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Causal attention within the sequences that ``cu_seq_lens_q`` marks in the flattened batch (query: B, H, T, D)."""
    batch, heads, length, dim = query.shape
    offsets = kwargs["cu_seq_lens_q"].long()
    flat = [t.transpose(0, 1).reshape(heads, batch * length, -1) for t in (query, key, value)]
    position = torch.arange(batch * length)
    sequence = torch.searchsorted(offsets, position, right=True)  # 1..len(offsets)-1 inside, else outside
    inside = (position < offsets[-1])[:, None]
    allowed = (sequence[:, None] == sequence[None, :]) & (position[:, None] >= position[None, :]) & inside & inside.T
    scores = flat[0] @ flat[1].transpose(-1, -2) * (scaling if scaling is not None else dim**-0.5)
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    out = (weights @ flat[2]).reshape(heads, batch, length, dim).permute(1, 2, 0, 3)
    return out, None


AttentionInterface.register("rxf_varlen_reference", varlen_reference_attention)


def tiny_llama(attention: str):
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, attention_dropout=0.0,
    )
    config._attn_implementation = attention
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def packed_batch(with_metadata: bool) -> dict:
    """Three sequences in one row, as TRL's DataCollatorForLanguageModeling(padding_free=True) makes them."""
    ids = torch.randint(3, 64, (1, sum(LENGTHS)), generator=torch.Generator().manual_seed(0))
    positions = torch.cat([torch.arange(n) for n in LENGTHS])[None]
    labels = ids.clone()
    labels[positions == 0] = -100
    batch = {"input_ids": ids, "position_ids": positions, "labels": labels}
    if with_metadata:
        offsets = torch.tensor([0, *torch.tensor(LENGTHS).cumsum(0).tolist()], dtype=torch.int32)
        batch |= {"cu_seq_lens_q": offsets, "cu_seq_lens_k": offsets, "max_length_q": max(LENGTHS), "max_length_k": max(LENGTHS)}
    return batch


def test_doubling_extends_the_sequence_offsets():
    batch = packed_batch(with_metadata=True)
    inputs = doubled({k: v for k, v in batch.items() if k != "labels"}, batch_size=1)
    assert inputs["input_ids"].shape == (2, 12)
    assert inputs["cu_seq_lens_q"].tolist() == [0, 4, 7, 12, 16, 19, 24]
    assert torch.equal(inputs["cu_seq_lens_k"], inputs["cu_seq_lens_q"])
    assert inputs["max_length_q"] == inputs["max_length_k"] == 5
    # The offsets are where the flattened doubled batch's positions restart.
    flat = inputs["position_ids"].reshape(-1)
    starts = torch.cat([(flat == 0).nonzero().flatten(), torch.tensor([flat.numel()])])
    assert starts.tolist() == inputs["cu_seq_lens_q"].tolist()


def two_pass_reference(model, batch, sigma, lambda_):
    """R3F from two separate forward passes, with the noise the method's seeded generator draws."""
    inputs = {k: v for k, v in batch.items() if k != "labels"} | {"use_cache": False}  # else packed sequences mix
    labels = batch["labels"]
    clean = output_logits(model(**inputs))
    generator = torch.Generator().manual_seed(0)
    with embedding_noise(model, sigma, generator=generator):
        noised = output_logits(model(**inputs))
    loss = task_loss(clean, labels, "causal_lm")
    mask = target_mask(labels, "causal_lm")
    divergence = symmetric_kl(prediction_logits(clean, "causal_lm"), prediction_logits(noised, "causal_lm"), mask)
    return loss + lambda_ * divergence, loss, divergence


@pytest.mark.parametrize("attention,with_metadata", [("rxf_varlen_reference", True), ("sdpa", False)])
def test_r3f_doubled_packed_batch_equals_two_separate_passes(attention, with_metadata):
    model = tiny_llama(attention)
    model.train()
    batch = packed_batch(with_metadata)
    method = method_config("r3f", sigma=0.1, lambda_=10.0).build()
    method.noise_seed = 0
    out = method.compute_loss(model, batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    loss, task, divergence = two_pass_reference(model, batch, sigma=0.1, lambda_=10.0)
    loss.backward()
    assert torch.isfinite(out.loss)
    assert out.regularizer.item() > 1e-9
    assert out.task_loss.item() == pytest.approx(task.item(), rel=1e-5)
    assert out.regularizer.item() == pytest.approx(divergence.item(), rel=1e-4)
    for name, param in model.named_parameters():
        torch.testing.assert_close(grads[name], param.grad, rtol=1e-4, atol=1e-7, msg=name)


def test_packed_sequences_stay_apart_in_the_reference_attention():
    """The reference kernel really reads the offsets: one sequence's logits do not depend on another's tokens."""
    model = tiny_llama("rxf_varlen_reference").eval()
    batch = packed_batch(with_metadata=True)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    changed = dict(inputs, input_ids=inputs["input_ids"].clone())
    changed["input_ids"][0, :4] = 3  # rewrite the first sequence
    with torch.no_grad():
        before, after = model(**inputs).logits, model(**changed).logits
    torch.testing.assert_close(before[0, 4:], after[0, 4:])
    assert not torch.allclose(before[0, :4], after[0, :4])


@pytest.mark.parametrize("name", ["standard", "r3f", "rdrop", "smart", "freelb", "neftune"])
@pytest.mark.usefixtures("without_dropout_check")
def test_packed_sequences_stay_apart_with_the_models_kv_cache_setting(name):
    """A causal LM's config says use_cache=True (as Llama's does): the methods' training passes still
    keep packed sequences apart (sdpa, positions only: transformers finds the sequences only without a cache)."""
    model = tiny_llama("sdpa")
    assert model.config.use_cache
    model.train()
    batch = packed_batch(with_metadata=False)
    changed = dict(batch, input_ids=batch["input_ids"].clone())
    changed["input_ids"][0, :4] = 3  # rewrite the first sequence
    logits = []
    for inputs in (batch, changed):
        method = method_config(name).build()
        method.noise_seed = 0
        torch.manual_seed(0)
        out = method.training_step(model, inputs, lambda loss: loss.backward())
        logits.append(out.logits)
    torch.testing.assert_close(logits[0][0, 4:], logits[1][0, 4:])
    assert not torch.allclose(logits[0][0, :4], logits[1][0, :4])


@pytest.mark.parametrize("name", ["r3f", "rdrop"])
@pytest.mark.usefixtures("without_dropout_check")
def test_doubled_packed_batch_in_rxf_trainer(tmp_path, name):
    """Under RxfTrainer with TRL's padding-free collator: finite losses, and R3F's divergence is > 0."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import TrainingArguments
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from rxf import RxfTrainer

    model = tiny_llama("rxf_varlen_reference")
    rows = [torch.randint(3, 64, (n,), generator=torch.Generator().manual_seed(n)).tolist() for n in (4, 3, 5, 6)]
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, logging_steps=1, report_to="none",
        save_strategy="no", use_cpu=True, disable_tqdm=True, remove_unused_columns=False,
    )
    trainer = RxfTrainer(
        model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": rows}),
        data_collator=DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True),
        method=method_config(name, **({"sigma": 0.1} if name == "r3f" else {})),
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "task_loss" in entry]
    assert logged and all(torch.isfinite(torch.tensor(entry["loss"])) for entry in logged)
    if name == "r3f":
        assert all(entry["r3f_divergence"] > 0 for entry in logged)


@pytest.mark.parametrize("with_metadata", [True, False])
def test_sequence_sum_counts_packed_sequences(with_metadata):
    """fairseq's normalisation divides by sequences: the three packed in one row, not the row."""
    model = tiny_llama("rxf_varlen_reference" if with_metadata else "sdpa")
    model.train()
    batch = packed_batch(with_metadata)
    values = {}
    for reduction in ("token_mean", "sequence_sum"):
        method = method_config("r3f", sigma=0.1, divergence_reduction=reduction).build()
        method.noise_seed = 0
        values[reduction] = method.compute_loss(model, batch).regularizer.item()
    targets = (batch["labels"][:, 1:] != -100).sum().item()
    assert values["sequence_sum"] / values["token_mean"] == pytest.approx(targets / len(LENGTHS), rel=1e-5)


def packed_delta():
    """δ over the packed batch, far outside any small ball, and the sequence id of each token."""
    from rxf.methods.perturb import packed_sequences, token_mask

    batch = packed_batch(with_metadata=True)
    mask = token_mask(batch)
    sequences = packed_sequences(batch, mask)
    delta = torch.randn(1, sum(LENGTHS), 8, generator=torch.Generator().manual_seed(0))
    return delta, mask, sequences


def test_packed_sequences_are_found_from_offsets_and_positions():
    from rxf.methods.perturb import packed_sequences, token_mask

    for with_metadata in (True, False):
        batch = packed_batch(with_metadata)
        sequences = packed_sequences(batch, token_mask(batch))
        assert sequences.tolist() == [[0] * 4 + [1] * 3 + [2] * 5]
    padded = {"input_ids": torch.ones(2, 5, dtype=torch.long), "position_ids": torch.arange(5).expand(2, 5)}
    assert packed_sequences(padded, token_mask(padded)) is None  # one sequence per row


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_a_packed_sequence_is_a_ball_of_its_own(norm):
    from rxf.methods.perturb import ball_norms, normalized, project

    delta, mask, sequences = packed_delta()
    delta[0, 4:7] *= 1e-6  # the second sequence lies inside the ball already
    projected = project(delta, 0.5, norm, "sequence", mask, sequences)
    norms = ball_norms(projected, norm, "sequence", sequences)[0, :, 0]
    for ids in (slice(0, 4), slice(7, 12)):
        assert torch.allclose(norms[ids], torch.tensor(0.5))  # each rescaled onto its own surface
    torch.testing.assert_close(projected[0, 4:7], delta[0, 4:7])  # untouched by its neighbours' norms
    unit = ball_norms(normalized(delta, norm, "sequence", mask, sequences), norm, "sequence", sequences)
    torch.testing.assert_close(unit, torch.ones_like(unit))


def test_freelb_start_is_sized_per_packed_sequence():
    from rxf.methods.perturb import ball_norms

    _, mask, sequences = packed_delta()
    model = tiny_llama("sdpa")
    method = method_config("freelb", adv_init_mag=0.3, adv_max_norm=0.0).build()
    method.noise_seed = 0
    norms = ball_norms(method.initial_delta(model, mask, sequences), "l2", "sequence", sequences)[0, :, 0]
    # ‖δ₀‖₂ ≈ mag/√3 for every sequence, short or long (as for each row of a padded batch)
    assert norms.unique().numel() == 3
    assert torch.allclose(norms, torch.full_like(norms, 0.3 / 3**0.5), rtol=0.25)


@pytest.mark.parametrize("name", ["smart", "freelb"])
def test_adversarial_methods_run_on_packed_batches(name):
    model = tiny_llama("rxf_varlen_reference")
    model.train()
    options = {"smart": {"epsilon": 0.1, "step_size": 0.1, "granularity": "sequence", "norm": "l2"}, "freelb": {}}[name]
    method = method_config(name, **options).build()
    out = method.training_step(model, packed_batch(with_metadata=True), backward=lambda loss: loss.backward())
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if name == "smart":
        assert out.regularizer.item() > 0
