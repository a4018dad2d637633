import pytest
import torch

from rxf import RxfError, method_config
from rxf.dropout import set_dropout
from tiny_models import ARCHITECTURES, tiny_bert


def test_rdrop_changes_the_loss_with_dropout_on():
    model, batch = tiny_bert(dropout=0.3)
    model.train()
    torch.manual_seed(0)
    out = method_config("rdrop", alpha=1000.0).build().compute_loss(model, batch)
    torch.manual_seed(0)
    standard = method_config("standard").build().compute_loss(model, batch)
    assert out.regularizer.item() > 1e-6
    assert out.loss.item() == pytest.approx(out.task_loss.item() + 1000.0 * out.regularizer.item(), rel=1e-5)
    # (α is large because an untrained tiny model's two dropout passes differ by ~1e-4 in KL.)
    assert out.loss.item() - standard.loss.item() > 0.01


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_rdrop_without_dropout_is_refused(arch):
    """Every dropout rate 0, or eval mode: the two copies are the same function, the divergence 0 (Standard at 2× cost)."""
    model, batch = ARCHITECTURES[arch]()  # every dropout probability is 0
    model.train()
    with pytest.raises(RxfError, match=r"rdrop .* every dropout rate of \w+ is 0.*set_dropout\(model, 0.1\)$"):
        method_config("rdrop").build().compute_loss(model, batch)
    set_dropout(model, 0.1)
    model.eval()
    with pytest.raises(RxfError, match=r"rdrop .* the model is in eval mode: call model.train\(\)"):
        method_config("rdrop").build().compute_loss(model, batch)
    model.train()
    assert method_config("rdrop").build().compute_loss(model, batch).regularizer.item() > 0


def test_r3f_with_sigma_zero_is_rdrop_and_needs_dropout_too():
    """The GLUE sweep's r3f-sigma0 row; with σ > 0 and dropout 0 (the r3f-nodrop row) R3F trains on the noise."""
    model, batch = tiny_bert()
    model.train()
    with pytest.raises(RxfError, match=r"r3f with sigma=0 .* every dropout rate .*, or set sigma > 0"):
        method_config("r3f", sigma=0.0).build().compute_loss(model, batch)
    assert method_config("r3f", sigma=0.1).build().compute_loss(model, batch).regularizer.item() > 0
    set_dropout(model, 0.1)
    assert method_config("r3f", sigma=0.0).build().compute_loss(model, batch).regularizer.item() > 0


def test_rdrop_is_half_the_symmetric_kl_of_two_independent_dropout_passes():
    """The divergence term is ½ KL_sym between the two halves of one doubled pass (masks independent)."""
    model, batch = tiny_bert(dropout=0.3)
    model.train()
    captured = []
    model.register_forward_hook(lambda module, args, output: captured.append(output.logits.detach()))
    out = method_config("rdrop").build().compute_loss(model, batch)
    from rxf.divergence import symmetric_kl

    (logits,) = captured
    first, second = logits[:4], logits[4:]
    assert not torch.allclose(first, second)
    assert out.regularizer.item() == pytest.approx(0.5 * symmetric_kl(first, second).item(), rel=1e-5)


def test_rdrop_gradient_reaches_the_model():
    model, batch = tiny_bert(dropout=0.3)
    model.train()
    method_config("rdrop").build().compute_loss(model, batch).loss.backward()
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_regression_uses_squared_error():
    model, batch = tiny_bert(num_labels=1, dropout=0.3)
    model.train()
    out = method_config("rdrop").build().compute_loss(model, batch)
    assert out.regularizer.item() > 0


@pytest.mark.parametrize("options,field", [({"alpha": -1.0}, "alpha"), ({"divergence": "l2"}, "divergence")])
def test_bad_options_name_the_field(options, field):
    with pytest.raises(RxfError, match=field):
        method_config("rdrop", **options)


@pytest.mark.parametrize("method", [
    method_config("rdrop"), method_config("r3f", sigma=0.0), method_config("r4f", sigma=0.0),
])
def test_a_trainer_refuses_rdrop_without_dropout_when_it_is_built(method, tmp_path):
    """Refused before the Trainer loads data or creates output_dir, not at the first step."""
    from datasets import Dataset
    from transformers import TrainingArguments

    from rxf import RxfTrainer

    model, batch = tiny_bert()  # every dropout probability is 0
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=1, report_to="none", use_cpu=True)
    data = Dataset.from_dict({k: v.tolist() for k, v in batch.items()})
    with pytest.raises(RxfError, match=r"with sigma=0 .* every dropout rate|rdrop .* every dropout rate"):
        RxfTrainer(model=model, args=args, train_dataset=data, method=method)
    assert not (tmp_path / "out").exists()
    with pytest.raises(RxfError, match="every dropout rate"):
        method.build().prepare_model(model)  # the functional tier's first call
    set_dropout(model, 0.1)
    assert method.build().prepare_model(model) is model


def test_rdrop_at_weight_zero_needs_no_dropout():
    model, _ = tiny_bert()
    assert method_config("rdrop", alpha=0.0).build().prepare_model(model) is model
    assert method_config("r3f", sigma=0.0, lambda_=0.0).build().prepare_model(model) is model
    assert method_config("r3f").build().prepare_model(model) is model  # σ > 0: the noise differs the passes
