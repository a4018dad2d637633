import pytest
import torch
from datasets import Dataset
from transformers import BertForSequenceClassification, Seq2SeqTrainingArguments, TrainingArguments

from rxf import R3FConfig, R4FConfig, RxfSeq2SeqTrainer, RxfTrainer
from rxf.spectral import largest_singular_value
from tiny_models import classification_batch, seq2seq_batch, tiny_bart, tiny_bert


def rows(batch, n_copies=4):
    return Dataset.from_dict({k: v.tolist() * n_copies for k, v in batch.items()})


def arguments(tmp_path, kind=TrainingArguments, **overrides):
    values = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=4, learning_rate=1e-3,
        logging_steps=2, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
    )
    values.update(overrides)
    return kind(**values)


class LogCapture:
    def __init__(self):
        self.logs = []

    def __call__(self, trainer):
        original = trainer.log

        def log(logs, *args, **kwargs):
            result = original(logs, *args, **kwargs)  # the mixin adds its keys to logs
            self.logs.append(dict(logs))
            return result

        trainer.log = log


def test_trainer_logs_task_loss_and_divergence_separately(tmp_path):
    model, batch = tiny_bert()
    trainer = RxfTrainer(model=model, args=arguments(tmp_path), train_dataset=rows(batch), method=R3FConfig(sigma=1e-1))
    capture = LogCapture()
    capture(trainer)
    trainer.train()
    training_logs = [log for log in capture.logs if "loss" in log]
    assert training_logs and all("task_loss" in log and "r3f_divergence" in log for log in training_logs)
    assert all(log["r3f_divergence"] > 0 for log in training_logs)


def test_trainer_accepts_a_method_name_and_evaluates_with_the_models_loss(tmp_path):
    model, batch = tiny_bert()
    trainer = RxfTrainer(
        model=model, args=arguments(tmp_path), train_dataset=rows(batch), eval_dataset=rows(batch, 1), method="r3f"
    )
    trainer.train()
    metrics = trainer.evaluate()
    with torch.no_grad():
        model.eval()
        expected = model(**{k: v for k, v in batch.items()}).loss.item()
    assert metrics["eval_loss"] == pytest.approx(expected, rel=1e-4)


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    """With dropout off, 2×2 accumulated equals one batch of 4 (R3F with σ = 0, so the update is deterministic)."""
    results = []
    for batch_size, accumulation in ((4, 1), (2, 2)):
        model, batch = tiny_bert()
        args = arguments(
            tmp_path / f"b{batch_size}", per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation,
            max_steps=1, learning_rate=1e-2, seed=0, dataloader_drop_last=False,
        )
        trainer = RxfTrainer(model=model, args=args, train_dataset=rows(batch, 1), method=R3FConfig(sigma=0.0))
        trainer.train()
        results.append(model.classifier.weight.detach().clone())
    assert torch.allclose(results[0], results[1], atol=1e-5)


def test_r4f_trainer_saves_plain_transformers_weights(tmp_path):
    model, batch = tiny_bert()
    trainer = RxfTrainer(model=model, args=arguments(tmp_path), train_dataset=rows(batch), method=R4FConfig(sigma=1e-2))
    trainer.train()
    trainer.save_model(str(tmp_path / "saved"))
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        expected = model(**inputs).logits
    assert largest_singular_value(model.classifier.weight) <= 1 + 1e-3
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**inputs).logits, expected, atol=1e-5)
    assert largest_singular_value(reloaded.classifier.weight) <= 1 + 1e-3


def test_seq2seq_trainer_runs_r3f(tmp_path):
    model, batch = tiny_bart()
    trainer = RxfSeq2SeqTrainer(
        model=model,
        args=arguments(tmp_path, Seq2SeqTrainingArguments),
        train_dataset=rows(batch),
        method=R3FConfig(sigma=1e-2, label_smoothing=0.1),
    )
    capture = LogCapture()
    capture(trainer)
    trainer.train()
    assert any("r3f_divergence" in log for log in capture.logs)
