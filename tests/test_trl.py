"""RxfSFTTrainer: rxf methods inside TRL's SFTTrainer, on a tiny Llama and a word-level tokenizer built here."""

import pytest
import torch

trl = pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

from rxf import RxfError, method_config  # noqa: E402
from rxf.trl import RxfSFTTrainer, token_metrics  # noqa: E402

WORDS = "the a cat dog sat ran on mat fast slow big small red blue user assistant question answer".split()
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|> ' }}"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] + ' </s>' }}{% endgeneration %}"
    "{% else %}{{ m['content'] + ' ' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}"
)


def tokenizer():
    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_llama(tok):
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def sentence(i):
    return " ".join(WORDS[(i * 3 + k) % 14] for k in range(3 + i % 4))


DATASETS = {
    "text": lambda: Dataset.from_dict({"text": [sentence(i) for i in range(16)]}),
    "messages": lambda: Dataset.from_dict({"messages": [
        [{"role": "user", "content": sentence(i)}, {"role": "assistant", "content": sentence(i + 1)}] for i in range(16)
    ]}),
    "prompt_completion": lambda: Dataset.from_dict(
        {"prompt": [sentence(i) for i in range(16)], "completion": [" " + sentence(i + 1) for i in range(16)]}
    ),
}


def sft_trainer(tmp_path, data="text", method="r3f", method_options=None, peft_config=None, **config):
    tok = tokenizer()
    values = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3,
        logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, max_length=32,
        bf16=False,
    )
    values.update(config)
    options = {"sigma": 0.1} if method == "r3f" else {}
    options.update(method_options or {})
    return RxfSFTTrainer(
        model=tiny_llama(tok), args=trl.SFTConfig(**values), train_dataset=DATASETS[data](), processing_class=tok,
        peft_config=peft_config, method=method_config(method, **options),
    )


def training_logs(trainer):
    return [entry for entry in trainer.state.log_history if "task_loss" in entry]


@pytest.mark.parametrize("data", sorted(DATASETS))
def test_sft_trains_with_r3f_and_keeps_trls_metrics(tmp_path, data):
    trainer = sft_trainer(tmp_path, data)
    trainer.train()
    logs = training_logs(trainer)
    assert len(logs) == 2
    for entry in logs:
        assert entry["r3f_divergence"] > 0
        assert 0 <= entry["mean_token_accuracy"] <= 1 and entry["entropy"] > 0 and entry["num_tokens"] > 0


def test_metrics_are_trls_computed_from_the_clean_pass(tmp_path):
    """entropy and mean_token_accuracy equal SFTTrainer's own on the clean logits of the same batch."""
    trainer = sft_trainer(tmp_path, "messages", assistant_only_loss=True)
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model.train()
    trainer.compute_loss(model, dict(batch), num_items_in_batch=(batch["labels"][:, 1:] != -100).sum())
    ours = {k: trainer._metrics["train"][k][-1] for k in ("entropy", "mean_token_accuracy")}
    model.eval()  # TRL's own computation, on a clean forward (dropout is 0 in the tiny model)
    trl.SFTTrainer.compute_loss(trainer, model, dict(batch))
    theirs = {k: trainer._metrics["eval"][k][-1] for k in ("entropy", "mean_token_accuracy")}
    assert ours == pytest.approx(theirs, rel=1e-4)
    # assistant_only_loss: only the assistant's tokens count, so fewer than all real tokens
    assert (batch["labels"] != -100).sum() < batch["attention_mask"].sum()


def test_token_metrics_count_only_target_positions():
    logits = torch.zeros(1, 4, 5)
    logits[0, 0, 2] = logits[0, 1, 3] = 10.0  # confident, correct for the first two targets
    labels = torch.tensor([[-100, 2, 4, -100]])  # targets at positions 1 and 2 → predicted from positions 0, 1
    entropy, correct, counted = token_metrics(logits, labels)
    assert counted.item() == 2 and correct.item() == 1
    assert entropy.item() == pytest.approx(2 * (-(torch.softmax(logits[0, 0], -1) * torch.log_softmax(logits[0, 0], -1)).sum().item()), rel=1e-5)


def test_token_metrics_in_chunks_equal_the_whole(monkeypatch):
    import rxf.trl

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 9, 11, generator=g).to(torch.bfloat16)
    labels = torch.randint(0, 11, (3, 9), generator=g)
    labels[0, :4] = labels[2, 6:] = -100
    whole = token_metrics(logits, labels)
    monkeypatch.setattr(rxf.trl, "METRICS_CHUNK_ELEMENTS", 2 * 11)  # 2 positions per chunk
    chunked = token_metrics(logits, labels)
    selected = logits[:, :-1][labels[:, 1:] != -100].float()
    log_p = torch.log_softmax(selected, -1)
    assert chunked[0].item() == pytest.approx(-(log_p.exp() * log_p).sum().item(), rel=1e-5)
    assert chunked[0].item() == pytest.approx(whole[0].item(), rel=1e-5)
    assert chunked[1].item() == whole[1].item() == (selected.argmax(-1) == labels[:, 1:][labels[:, 1:] != -100]).sum().item()


@pytest.mark.parametrize("method", ["r3f", "smart", "freelb", "rdrop", "neftune"])
@pytest.mark.usefixtures("without_dropout_check")  # the tiny Llama's dropout is 0
def test_every_method_trains_in_sft_with_packing(tmp_path, method):
    trainer = sft_trainer(tmp_path, "text", method=method, packing=True, per_device_train_batch_size=2)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "position_ids" in batch and batch["input_ids"].size(0) == 1  # packed, padding-free
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    logs = training_logs(trainer)
    assert logs and all(torch.isfinite(torch.tensor(entry["loss"])) and "mean_token_accuracy" in entry for entry in logs)
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


@pytest.mark.parametrize("packing", [False, True])
def test_sft_with_peft_config_trains_only_the_adapter(tmp_path, packing):
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = sft_trainer(tmp_path, "prompt_completion", peft_config=config, packing=packing)
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    lora = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    params = dict(trainer.model.named_parameters())
    assert all(torch.equal(value, params[n]) for n, value in frozen.items())
    assert any(not torch.equal(value, params[n]) for n, value in lora.items())
    assert all(entry["r3f_divergence"] > 0 for entry in training_logs(trainer))


@pytest.mark.parametrize("method", ["r3f", "smart", "freelb", "neftune"])
def test_neftune_noise_alpha_is_refused_with_perturbation_methods(tmp_path, method):
    with pytest.raises(RxfError, match="neftune_noise_alpha"):
        sft_trainer(tmp_path, method=method, neftune_noise_alpha=5.0)


@pytest.mark.usefixtures("without_dropout_check")
def test_neftune_noise_alpha_composes_with_rdrop(tmp_path):
    trainer = sft_trainer(tmp_path, method="rdrop", neftune_noise_alpha=5.0)
    trainer.train()
    assert training_logs(trainer)


def test_evaluation_is_sfttrainers(tmp_path):
    trainer = sft_trainer(tmp_path, "text", eval_strategy="no")
    trainer.train()
    metrics = trainer.evaluate(eval_dataset=trainer.train_dataset)
    assert {"eval_loss", "eval_entropy", "eval_mean_token_accuracy"} <= set(metrics)


def test_sft_gradient_accumulation_logs_the_unaccumulated_values(tmp_path):
    logged = []
    for batch_size, accumulation in ((8, 1), (4, 2)):
        trainer = sft_trainer(
            tmp_path / str(batch_size), "text", per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation, max_steps=1,
        )
        trainer.train()
        logged.append(training_logs(trainer)[0])
    for key in ("loss", "task_loss", "r3f_divergence", "num_tokens"):
        assert logged[1][key] == pytest.approx(logged[0][key], rel=1e-4), key


@pytest.mark.parametrize(
    "options,named", [({"loss_type": "dft"}, "loss_type"), ({"label_smoothing_factor": 0.1}, "label_smoothing")]
)
def test_other_sft_losses_are_refused_not_silently_replaced(tmp_path, options, named):
    with pytest.raises(RxfError, match=named):
        sft_trainer(tmp_path, **options)


@pytest.mark.parametrize("option", ["loss_type", "label_smoothing_factor", "compute_loss_func"])
def test_other_sft_losses_are_refused_before_anything_is_prepared(tmp_path, monkeypatch, option):
    """Before the method prepares the model and SFTTrainer the data, and before output_dir is created."""
    import rxf.trainer

    def prepared(*args, **kwargs):
        raise AssertionError("the trainer was being built before the refusal")

    monkeypatch.setattr(rxf.trainer, "build_method", prepared)  # the mixin builds the method before anything else
    settings = {"loss_type": {"loss_type": "dft"}, "label_smoothing_factor": {"label_smoothing_factor": 0.1}}.get(option, {})
    loss = (lambda outputs, labels, num_items_in_batch=None: outputs.loss) if option == "compute_loss_func" else None
    tok = tokenizer()
    args = trl.SFTConfig(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, **settings)
    with pytest.raises(RxfError, match=option):
        RxfSFTTrainer(tiny_llama(tok), args, train_dataset=DATASETS["text"](), processing_class=tok,
                      compute_loss_func=loss, method="r3f")
    assert not (tmp_path / "out").exists()


def test_an_sft_trainer_without_a_method_warns_at_the_callers_line(tmp_path):
    tok = tokenizer()
    args = trl.SFTConfig(output_dir=str(tmp_path / "out"), max_steps=1, report_to="none", use_cpu=True, bf16=False)
    with pytest.warns(UserWarning, match="RxfSFTTrainer got no method=, so it trains Standard") as caught:
        RxfSFTTrainer(model=tiny_llama(tok), args=args, train_dataset=DATASETS["text"](), processing_class=tok)
    assert [w.filename for w in caught if "got no method=" in str(w.message)] == [__file__]  # not rxf/trl.py
