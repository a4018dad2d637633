"""The method API refuses, in one line, the inputs it would otherwise misread or fail on deep inside torch."""

import copy

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering, BertForTokenClassification

from rxf import RxfError, method_config
from rxf.divergence import symmetric_kl
from rxf.methods.base import build_method, logit_divergence, task_loss
from rxf.methods.r3f import R3FConfig
from rxf.methods.smart import SmartConfig
from tiny_models import tiny_bert, tiny_gpt2


def tiny_bert_config(**options):
    return BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=64, **options,
    )


# ---- the batch --------------------------------------------------------------------------------


MULTI_HOT = [[1.0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]


@pytest.mark.parametrize("name", ["r3f", "smart", "rdrop"])
def test_multi_hot_float_labels_train_multi_label_as_transformers_infers_it(name):
    # problem_type unset: transformers' forward takes float (batch, num_labels) labels as multi-label (BCE).
    model, batch = tiny_bert(dropout=0.1)
    batch["labels"] = torch.tensor(MULTI_HOT)
    if name == "rdrop":  # its task loss is the mean over two dropout passes: transformers' on the batch twice, same seed
        reference_batch = {key: torch.cat([value, value]) for key, value in batch.items()}
    else:  # R3F's and SMART's task loss is that of the clean pass
        reference_batch = batch
        model.eval()
    reference = copy.deepcopy(model)
    torch.manual_seed(1)
    expected = reference(**reference_batch).loss
    torch.manual_seed(1)
    out = method_config(name).build().compute_loss(model, batch)
    assert reference.config.problem_type == model.config.problem_type == "multi_label_classification"
    assert out.task_loss.item() == pytest.approx(expected.item(), abs=1e-6)
    assert out.regularizer is not None


def test_integer_labels_stay_single_label_classification():
    model, batch = tiny_bert()
    model.eval()
    reference = copy.deepcopy(model)
    expected = reference(**batch).loss
    out = method_config("r3f").build().compute_loss(model, batch)
    assert reference.config.problem_type == model.config.problem_type == "single_label_classification"
    assert out.task_loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_int32_class_ids_train_as_int64_ones():
    """torch's cross_entropy takes int64 targets only (transformers fails here: "expected ... Long"); numpy on
    some platforms and hand-made tensors give int32. (int16/int8 labels count as multi-label, as in transformers.)"""
    model, batch = tiny_bert()
    model.eval()
    method = method_config("r3f").build()
    expected = method.compute_loss(copy.deepcopy(model), batch).task_loss
    batch["labels"] = batch["labels"].to(torch.int32)
    assert method.compute_loss(model, batch).task_loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_float_labels_of_neither_kind_are_named_and_leave_problem_type_unset():
    model, batch = tiny_bert()
    batch["labels"] = torch.zeros(4, 2)
    with pytest.raises(RxfError, match=r"float32 labels of shape \(4, 2\) fit neither single-label classification nor multi-label.*\(4,\) or 0/1 targets of shape \(4, 3\)"):
        method_config("r3f").build().compute_loss(model, batch)
    assert model.config.problem_type is None


def test_a_task_type_given_is_not_overridden_by_the_labels():
    model, batch = tiny_bert()
    batch["labels"] = torch.tensor(MULTI_HOT)
    with pytest.raises(RxfError, match=r"float32 labels of shape \(4, 3\) do not fit task_type 'classification'.*task_type='multi_label'"):
        method_config("r3f", task_type="classification").build().compute_loss(model, batch)
    assert model.config.problem_type is None


def test_attention_mask_of_another_shape_than_input_ids():
    model, batch = tiny_bert()
    batch["attention_mask"] = batch["attention_mask"][:, :5]
    with pytest.raises(RxfError, match=r"attention_mask of shape \(4, 5\) does not match input_ids \(4, 10\)"):
        method_config("r3f").build().compute_loss(model, batch)


def test_empty_batch():
    model, batch = tiny_bert()
    batch = {key: value[:0] for key, value in batch.items()}
    with pytest.raises(RxfError, match="the batch is empty"):
        method_config("r3f").build().compute_loss(model, batch)


def test_question_answering_batch_is_refused_as_such():
    torch.manual_seed(0)
    model = BertForQuestionAnswering(tiny_bert_config())
    batch = {"input_ids": torch.randint(3, 100, (2, 8)), "start_positions": torch.tensor([1, 2]), "end_positions": torch.tensor([3, 4])}
    with pytest.raises(RxfError, match="question answering"):
        method_config("standard").build().compute_loss(model, batch)


# ---- task types and the task loss ---------------------------------------------------------------


def test_token_classification_divergence_counts_labelled_positions_only():
    torch.manual_seed(0)
    logits, other = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    labels = torch.tensor([[0, 2, -100, -100], [1, -100, -100, -100]])
    counted = labels != -100
    expected = symmetric_kl(logits[counted], other[counted])
    assert logit_divergence(symmetric_kl, logits, other, labels, "classification").item() == pytest.approx(expected.item())


def test_token_classification_trains_with_r3f_over_labelled_positions():
    torch.manual_seed(0)
    model = BertForTokenClassification(tiny_bert_config(num_labels=3))
    _, batch = tiny_bert()
    batch["labels"] = torch.randint(0, 3, (4, 10)).masked_fill(batch["attention_mask"] == 0, -100)
    out = method_config("r3f", sigma=1e-2).build().compute_loss(model, batch)
    assert out.regularizer.item() > 0


@pytest.mark.parametrize(
    "task_type, logits, labels, message",
    [
        ("classification", torch.zeros(4, 3), torch.zeros(4, 3), r"labels of shape \(4, 3\) \(float32\) do not fit classification logits of shape \(4, 3\).*task_type='multi_label'"),
        ("classification", torch.zeros(4, 3), torch.zeros(4), r"\(4,\) \(float32\) do not fit classification"),
        ("regression", torch.zeros(4, 1), torch.zeros(1), r"labels of shape \(1,\) \(float32\) do not fit regression logits of shape \(4, 1\)"),
        ("multi_label", torch.zeros(4, 3), torch.zeros(4), r"labels of shape \(4,\) \(float32\) do not fit multi_label"),
        ("causal_lm", torch.zeros(2, 5, 7), torch.zeros(2, 4, dtype=torch.long), r"labels of shape \(2, 4\) \(int64\) do not fit causal_lm"),
    ],
)
def test_task_loss_names_labels_that_do_not_fit_the_logits(task_type, logits, labels, message):
    with pytest.raises(RxfError, match=message):
        task_loss(logits, labels, task_type)


def test_task_loss_checks_task_type_and_label_smoothing():
    logits, labels = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(RxfError, match="task_type: 'clasification' must be one of .*did you mean 'classification'"):
        task_loss(logits, labels, "clasification")
    with pytest.raises(RxfError, match="label_smoothing: -1 must be a number >= 0"):
        task_loss(logits, labels, "classification", label_smoothing=-1)


@pytest.mark.parametrize("task_type, labels", [("regression", torch.zeros(4)), ("multi_label", torch.zeros(4, 3))])
def test_label_smoothing_is_refused_where_there_is_no_cross_entropy(task_type, labels):
    logits = torch.zeros(4, 1) if task_type == "regression" else torch.zeros(4, 3)
    with pytest.raises(RxfError, match=f"label_smoothing: 0.1 applies to cross-entropy tasks only, not {task_type}"):
        task_loss(logits, labels, task_type, label_smoothing=0.1)


@pytest.mark.parametrize("normalizer", [0, -5, float("nan"), "12", torch.tensor([2, 2]), True])
def test_normalizer_must_be_positive_and_finite(normalizer):
    model, batch = tiny_gpt2()
    with pytest.raises(RxfError, match="normalizer .* must be a positive finite number"):
        method_config("r3f").build().compute_loss(model, batch, normalizer=normalizer)
    logits, labels = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    with pytest.raises(RxfError, match="normalizer"):
        task_loss(logits, labels, "classification", normalizer=normalizer)


def test_task_type_that_contradicts_the_model():
    model, batch = tiny_bert()
    with pytest.raises(RxfError, match="task_type 'causal_lm' does not fit BertForSequenceClassification"):
        method_config("r3f", task_type="causal_lm").build().compute_loss(model, batch)
    model, batch = tiny_gpt2()
    with pytest.raises(RxfError, match="task_type 'classification' does not fit GPT2LMHeadModel, which is built for causal_lm"):
        method_config("r3f", task_type="classification").build().compute_loss(model, batch)


def test_regression_on_a_three_label_head_names_the_shapes():
    model, batch = tiny_bert(num_labels=3)
    batch["labels"] = batch["labels"].float()
    with pytest.raises(RxfError, match=r"labels of shape \(4,\) \(float32\) do not fit regression logits of shape \(4, 3\)"):
        method_config("r3f", task_type="regression").build().compute_loss(model, batch)


# ---- configs and building methods ---------------------------------------------------------------


def test_config_changed_after_creation_is_validated_again_when_built():
    config = R3FConfig()
    config.sigma = float("nan")
    with pytest.raises(RxfError, match="sigma: nan must be a finite number"):
        config.build()


def test_numpy_scalars_are_accepted_and_stored_as_python_numbers():
    config = SmartConfig(sigma=np.float32(1e-5), num_steps=np.int64(2), epsilon=np.float64(1e-5))
    assert type(config.sigma) is float and config.sigma == pytest.approx(1e-5)
    assert type(config.num_steps) is int and config.num_steps == 2
    assert type(config.epsilon) is float
    with pytest.raises(RxfError, match="num_steps"):
        SmartConfig(num_steps=np.float32(2.0))


def test_unknown_option_for_a_config_instance_is_named():
    with pytest.raises(RxfError, match="method 'r3f' has no option 'lamda' \\(did you mean 'lambda_'\\?\\)"):
        method_config(R3FConfig(), lamda=2)
    assert method_config(R3FConfig(), lambda_=2.0).lambda_ == 2.0


def test_options_for_a_built_method_are_refused():
    method = R3FConfig().build()
    with pytest.raises(RxfError, match="options lambda_ cannot be applied to a built method \\(r3f\\)"):
        build_method(method, lambda_=5.0)
    assert build_method(method) is method


def test_only_none_means_the_default_method():
    assert build_method(None).config.name == "standard"
    with pytest.raises(RxfError, match="unknown method ''"):
        build_method("")
