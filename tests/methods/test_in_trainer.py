"""Every registered method trains a few steps inside RxfTrainer on a tiny model."""

import pytest
import torch
from datasets import Dataset
from transformers import TrainingArguments

from rxf import METHODS, RxfTrainer
from rxf.methods.freelb import FreeLB
from tiny_models import tiny_bert

OPTIONS = {"smart": {"epsilon": 1e-2, "bregman_mu": 1.0}, "freelb": {"adv_steps": 2}}


def _trainer(tmp_path, method, **overrides):
    model, batch = tiny_bert(dropout=0.1)
    values = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3,
        logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
    )
    values.update(overrides)
    data = Dataset.from_dict({k: v.tolist() * 4 for k, v in batch.items()})
    return model, RxfTrainer(model=model, args=TrainingArguments(**values), train_dataset=data, method=method)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_trains_in_rxf_trainer(name, tmp_path):
    from rxf import method_config

    model, trainer = _trainer(tmp_path, method_config(name, **OPTIONS.get(name, {})))
    before = model.bert.encoder.layer[0].intermediate.dense.weight.detach().clone()
    logs = []
    original = trainer.log
    trainer.log = lambda entry, *a, **k: (original(entry, *a, **k), logs.append(dict(entry)))
    trainer.train()
    after = model.bert.encoder.layer[0].intermediate.dense.weight.detach()
    assert not torch.allclose(before, after)
    losses = [entry for entry in logs if "loss" in entry]
    assert losses and all("task_loss" in entry and torch.isfinite(torch.tensor(entry["loss"])) for entry in losses)


def test_trainer_hands_freelb_its_accelerator_with_gradient_accumulation(tmp_path, monkeypatch):
    seen = []
    real = FreeLB.training_step

    def spy(self, model, batch, backward, *, normalizer=None, accelerator=None):
        seen.append(accelerator)
        return real(self, model, batch, backward, normalizer=normalizer, accelerator=accelerator)

    monkeypatch.setattr(FreeLB, "training_step", spy)
    _, trainer = _trainer(tmp_path, "freelb", per_device_train_batch_size=2, gradient_accumulation_steps=2)
    trainer.train()
    assert len(seen) == 4 and all(a is trainer.accelerator for a in seen)
