"""Every registered method trains a few steps inside RxfTrainer on a tiny model."""

import copy

import pytest
import torch
from datasets import Dataset
from transformers import TrainingArguments

from rxf import METHODS, RxfTrainer
from rxf.methods.freelb import FreeLB
from tiny_models import tiny_bert

OPTIONS = {"smart": {"epsilon": 1e-2, "bregman_mu": 1.0}, "freelb": {"adv_steps": 2}}


def _trainer(tmp_path, method, labels=None, **overrides):
    model, batch = tiny_bert(dropout=0.1)
    if labels is not None:
        batch["labels"] = labels
    values = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3,
        logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
    )
    values.update(overrides)
    data = Dataset.from_dict({k: v.tolist() * 4 for k, v in batch.items()})
    return model, RxfTrainer(
        model=model, args=TrainingArguments(**values), train_dataset=data, eval_dataset=data, method=method
    )


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


@pytest.mark.parametrize("name", ["r3f", "smart"])
def test_multi_hot_float_labels_evaluate_and_train_multi_label(name, tmp_path):
    # problem_type unset, as transformers leaves it: the labels make it multi-label, in evaluation as in training.
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    model, trainer = _trainer(tmp_path, name, labels=labels, max_steps=1, per_device_eval_batch_size=4)
    reference = copy.deepcopy(model).eval()
    _, batch = tiny_bert()
    expected = reference(**{**batch, "labels": labels}).loss.item()
    assert trainer.evaluate()["eval_loss"] == pytest.approx(expected, abs=1e-5)
    assert model.config.problem_type == "multi_label_classification"
    trainer.train()
    assert trainer.state.global_step == 1


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


def _logged_parts(tmp_path, model_builder, data, method, batch_size, accumulation):
    model, _ = model_builder()
    args = TrainingArguments(
        output_dir=str(tmp_path / f"out{batch_size}"), per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=1e-3, logging_steps=1,
        report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
    )
    trainer = RxfTrainer(model=model, args=args, train_dataset=data, method=method)
    trainer.train()
    return next(entry for entry in trainer.state.log_history if "loss" in entry)


def _eight_rows(batch):
    """Eight rows from a tiny batch (its rows repeated): micro-batches of 4 hold different numbers of target tokens."""
    return Dataset.from_dict({k: (v.tolist() * 8)[:8] for k, v in batch.items()})


ACCUMULATION_CASES = [(arch, name) for arch in ("bert", "gpt2", "bart") for name in ("r3f", "rdrop", "freelb")] + [
    (arch, name) for arch in ("gpt2", "bart") for name in ("smart", "neftune")
]


@pytest.mark.parametrize("arch,name", ACCUMULATION_CASES)
@pytest.mark.usefixtures("without_dropout_check")
def test_gradient_accumulation_logs_the_unaccumulated_parts(tmp_path, arch, name):
    """Batch 8 × GA 1 and batch 4 × GA 2 see the same 8 rows (and noise): every logged part agrees."""
    from rxf import method_config
    from tiny_models import ARCHITECTURES

    builder = ARCHITECTURES[arch]
    if name == "rdrop":  # R-Drop needs dropout; with it off its divergence is 0 in both runs, which still must agree
        method = method_config("rdrop")
    elif name == "freelb":
        method = method_config("freelb", adv_steps=2)
    elif name == "smart":
        method = method_config("smart", epsilon=0.1, step_size=0.1)
    elif name == "neftune":
        method = method_config("neftune", alpha=5.0)
    else:
        method = method_config("r3f", sigma=0.1, noise_type="uniform")
    data = _eight_rows(builder()[1])
    whole = _logged_parts(tmp_path, builder, data, method, batch_size=8, accumulation=1)
    accumulated = _logged_parts(tmp_path, builder, data, method, batch_size=4, accumulation=2)
    keys = [k for k in whole if k in ("loss", "task_loss") or k.endswith(("_divergence", "_loss"))]
    assert "task_loss" in keys and len(keys) >= (2 if name == "neftune" else 3)
    for key in keys:
        assert accumulated[key] == pytest.approx(whole[key], rel=1e-4, abs=1e-8), key


@pytest.mark.parametrize("name", ["r3f", "smart", "freelb", "neftune"])
def test_batches_of_inputs_embeds_train_as_input_ids_do(tmp_path, name):
    """A dataset of inputs_embeds (the embedding output for the same ids) logs what the input_ids dataset logs."""
    from rxf import method_config
    from tiny_models import ARCHITECTURES

    model, batch = ARCHITECTURES["bert"]()
    with torch.no_grad():
        embeds = model.get_input_embeddings()(batch["input_ids"])
    with_embeds = {"inputs_embeds": embeds, **{k: v for k, v in batch.items() if k != "input_ids"}}
    options = {"r3f": {"sigma": 0.1}, "smart": {"epsilon": 0.1, "step_size": 0.1}}.get(name, {})
    logged = [
        _logged_parts(tmp_path / kind, ARCHITECTURES["bert"], _eight_rows(data), method_config(name, **options), 4, 2)
        for kind, data in (("ids", batch), ("embeds", with_embeds))
    ]
    keys = [k for k in logged[0] if k in ("loss", "task_loss") or k.endswith(("_divergence", "_loss"))]
    for key in keys:
        assert logged[1][key] == pytest.approx(logged[0][key], rel=1e-5), key
    if name in ("r3f", "smart"):
        assert logged[1][f"{name}_divergence"] > 0


def test_sequence_sum_in_rxf_trainer_logs_token_mean_times_mean_target_tokens(tmp_path):
    from rxf import method_config
    from tiny_models import ARCHITECTURES

    data = _eight_rows(ARCHITECTURES["gpt2"]()[1])
    logged = {
        reduction: _logged_parts(
            tmp_path / reduction, ARCHITECTURES["gpt2"], data,
            method_config("r3f", sigma=0.1, noise_type="uniform", divergence_reduction=reduction), 8, 1,
        )["r3f_divergence"]
        for reduction in ("token_mean", "sequence_sum")
    }
    labels = torch.tensor(data["labels"])
    mean_tokens = (labels[:, 1:] != -100).sum().item() / len(labels)
    assert logged["token_mean"] > 0
    assert logged["sequence_sum"] == pytest.approx(logged["token_mean"] * mean_tokens, rel=1e-3)
