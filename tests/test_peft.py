"""The methods on peft (LoRA) models: R4F normalises peft's trainable head copy and saves it folded."""

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import BertForSequenceClassification, TrainingArguments

from rxf import RxfError, RxfTrainer, method_config
from rxf.spectral import has_spectral_norm, is_parametrized, largest_singular_value, spectral_norm_folded
from tiny_models import tiny_bert, tiny_gpt2

peft = pytest.importorskip("peft")


def lora_classifier(tmp_path, **lora_options):
    """A tiny BERT classifier saved as the base model, and a LoRA model over it (the head in modules_to_save)."""
    model, batch = tiny_bert()
    model.save_pretrained(tmp_path / "base")
    options = {"task_type": peft.TaskType.SEQ_CLS, "r": 4, "target_modules": ["query", "value"], **lora_options}
    return peft.get_peft_model(model, peft.LoraConfig(**options)), batch


def logits(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def reloaded(tmp_path, adapter_dir):
    base = BertForSequenceClassification.from_pretrained(tmp_path / "base")
    return peft.PeftModel.from_pretrained(base, adapter_dir)


def train(tmp_path, model, batch, method, steps=3):
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=steps, learning_rate=1e-2,
        logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
    )
    data = Dataset.from_dict({k: v.tolist() * 4 for k, v in batch.items()})
    trainer = RxfTrainer(model=model, args=args, train_dataset=data, method=method)
    trainer.train()
    return trainer


def test_r4f_normalises_the_trainable_head_copy_inside_peft(tmp_path):
    model, _ = lora_classifier(tmp_path)
    method_config("r4f").build().prepare_model(model)
    wrapper = model.base_model.model.classifier
    assert is_parametrized(wrapper.modules_to_save["default"])
    assert not is_parametrized(wrapper.original_module)


def test_r4f_lora_adapter_saves_a_folded_head_that_reloads_with_identical_logits(tmp_path):
    model, batch = lora_classifier(tmp_path)
    trainer = train(tmp_path, model, batch, method_config("r4f", sigma=0.1))
    trainer.save_model(str(tmp_path / "adapter"))
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    head = saved["base_model.model.classifier.weight"]
    assert not any("parametrizations" in k for k in saved)
    assert largest_singular_value(head) == pytest.approx(1.0, abs=1e-4)
    assert any("lora_A" in k for k in saved)
    expected = logits(model, batch)  # after save_model: the power iteration has been brought to convergence
    torch.testing.assert_close(logits(reloaded(tmp_path, tmp_path / "adapter"), batch), expected, rtol=0, atol=0)


def test_r4f_applied_before_get_peft_model_saves_and_reloads(tmp_path):
    model, batch = tiny_bert()
    model.save_pretrained(tmp_path / "base")
    method_config("r4f").build().prepare_model(model)
    model = peft.get_peft_model(
        model, peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=4, target_modules=["query", "value"])
    )
    model.train()
    out = method_config("r3f", sigma=0.1).build().compute_loss(model, batch)
    out.loss.backward()
    with spectral_norm_folded(model):
        model.save_pretrained(tmp_path / "adapter")
    assert has_spectral_norm(model)  # the folded copies were swapped back
    torch.testing.assert_close(logits(reloaded(tmp_path, tmp_path / "adapter"), batch), logits(model, batch), rtol=0, atol=0)


def test_r4f_refuses_a_peft_head_that_is_not_trained_in_full(tmp_path):
    model, _ = lora_classifier(tmp_path, task_type=None)  # no modules_to_save: the head stays frozen
    with pytest.raises(RxfError, match="modules_to_save"):
        method_config("r4f").build().prepare_model(model)


def test_r4f_lora_resumes_its_spectral_norm_state(tmp_path):
    model, batch = lora_classifier(tmp_path)
    trainer = train(tmp_path, model, batch, method_config("r4f", sigma=0.1), steps=2)
    trainer._save_checkpoint(trainer.model, trial=None)
    checkpoint = tmp_path / "out" / "checkpoint-2"
    state = {k: v.clone() for k, v in model.state_dict().items() if "parametrizations" in k}
    assert state
    fresh, _ = lora_classifier(tmp_path / "fresh")
    method = method_config("r4f").build()
    method.prepare_model(fresh)
    resumed = RxfTrainer(model=fresh, args=trainer.args, train_dataset=trainer.train_dataset, method=method)
    resumed._load_from_checkpoint(str(checkpoint))
    for key, value in state.items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0)
    head = "base_model.model.classifier.modules_to_save.default.bias"
    torch.testing.assert_close(fresh.state_dict()[head], model.state_dict()[head], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["r3f", "r4f", "smart", "freelb", "neftune", "rdrop"])
@pytest.mark.usefixtures("without_dropout_check")
def test_only_lora_and_head_parameters_train(tmp_path, name):
    model, batch = lora_classifier(tmp_path)
    method = method_config(name).build()
    method.prepare_model(model)
    model.train()
    model.zero_grad()
    method.training_step(model, batch, backward=lambda loss: loss.backward())
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any("lora_" in n for n in with_grad) and any("modules_to_save" in n for n in with_grad)
    assert all("lora_" in n or "modules_to_save" in n for n in with_grad), sorted(with_grad)


@pytest.mark.parametrize("mode", ["both", "clean"])
@pytest.mark.usefixtures("without_dropout_check")
def test_r3f_noise_reaches_a_lora_causal_lm(mode):
    model, batch = tiny_gpt2()
    model = peft.get_peft_model(model, peft.LoraConfig(task_type=peft.TaskType.CAUSAL_LM, r=4, target_modules=["c_attn"]))
    model.train()
    zero = method_config("r3f", sigma=0.0, gradient_mode=mode).build().compute_loss(model, batch)
    noised = method_config("r3f", sigma=0.1, gradient_mode=mode).build().compute_loss(model, batch)
    assert zero.regularizer.item() == pytest.approx(0.0, abs=1e-12)
    assert noised.regularizer.item() > 1e-9


def test_rdrop_on_lora_needs_lora_dropout_when_the_base_has_none(tmp_path):
    """A base model with every dropout rate 0 (as SmolLM2's): LoRA's own dropout is what R-Drop compares."""
    model, batch = lora_classifier(tmp_path / "off", lora_dropout=0.0)
    with pytest.raises(RxfError, match="rdrop .* every dropout rate"):
        train(tmp_path / "off", model, batch, "rdrop")
    assert not (tmp_path / "off" / "out").exists()
    model, batch = lora_classifier(tmp_path / "on", lora_dropout=0.3)
    trainer = train(tmp_path / "on", model, batch, "rdrop", steps=1)
    # LoRA's B starts at 0, so its dropout changes nothing until training has moved B (here: at once).
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    model.train()
    assert trainer.rxf_method.compute_loss(model, batch).regularizer.item() > 0
