import copy

import pytest
import torch
from transformers import BertForSequenceClassification

from rxf import RxfError, method_config
from rxf.spectral import (
    classification_head,
    folded_state_dict,
    has_spectral_norm,
    head_linears,
    largest_singular_value,
    refresh_spectral_norm,
    remove_spectral_norm,
)
from tiny_models import tiny_bert, tiny_distilbert, tiny_gpt2, tiny_roberta


def test_head_discovery():
    assert [n for n, _ in head_linears(tiny_bert()[0])] == ["classifier"]
    assert [n for n, _ in head_linears(tiny_roberta()[0])] == ["classifier.dense", "classifier.out_proj"]
    assert [n for n, _ in classification_head(tiny_distilbert()[0], "final")] == ["classifier"]
    assert [n for n, _ in classification_head(tiny_distilbert()[0], "head")] == ["pre_classifier", "classifier"]


def test_r4f_on_a_model_without_head_is_a_clear_error():
    with pytest.raises(RxfError, match="R4F"):
        method_config("r4f").build().prepare_model(tiny_gpt2()[0])


def test_r4f_at_lambda_zero_is_standard_with_a_normalised_head():
    """The `sn-head` row of configs/glue-full/cpu-sn-stsb.yaml: R4F at λ 0 normalises the head and
    trains on the task loss of one forward pass, with no noise and no divergence."""
    model, batch = tiny_bert(num_labels=1)
    with torch.no_grad():
        model.classifier.weight.mul_(50)  # far from 1, so the normalisation shows
    model.eval()  # no dropout: the two losses differ only in the head
    reference = method_config("standard").build().compute_loss(model, batch).loss.item()
    method = method_config("r4f", lambda_=0.0).build()
    method.prepare_model(model)
    assert largest_singular_value(model.classifier.weight) == pytest.approx(1.0, abs=1e-3)
    passes = []
    model.register_forward_hook(lambda *_: passes.append(1))
    out = method.compute_loss(model, batch)
    assert len(passes) == 1 and out.regularizer is None
    assert out.loss.item() != pytest.approx(reference)  # the normalised head, not the raw one


@pytest.mark.parametrize("scope,lr,refresh", [("final", 1e-3, False), ("head", 1e-3, False), ("head", 1e-2, True)])
def test_head_spectral_norm_stays_at_most_one_during_training(scope, lr, refresh):
    """σ_max(head) ≤ 1 + 1e-3 after training steps; at a huge learning rate, after the refresh rxf runs before eval/save."""
    model, batch = tiny_roberta()
    with torch.no_grad():  # start far from 1, so normalisation has work to do
        model.classifier.out_proj.weight.mul_(50)
        model.classifier.dense.weight.mul_(50)
    method = method_config("r4f", spectral_norm_scope=scope, sigma=1e-2).build()
    method.prepare_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(20):
        out = method.compute_loss(model, batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    if refresh:
        refresh_spectral_norm(model)
    model.eval()
    names = ["classifier.out_proj"] + (["classifier.dense"] if scope == "head" else [])
    for name in names:
        sigma = largest_singular_value(model.get_submodule(name).weight)
        assert sigma <= 1 + 1e-3, f"{name}: largest singular value {sigma}"
        assert sigma > 0.9
    if scope == "final":
        assert largest_singular_value(model.classifier.dense.weight) > 10


def trained_r4f_bert(**options):
    model, batch = tiny_bert()
    method = method_config("r4f", sigma=1e-2, **options).build()
    model = method.prepare_model(model)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        method.compute_loss(model, batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, {k: v for k, v in batch.items() if k != "labels"}


def test_saved_r4f_model_loads_in_plain_transformers(tmp_path):
    model, inputs = trained_r4f_bert()
    state = folded_state_dict(model)  # brings the spectral-norm estimate up to date, as saving does
    model.eval()
    with torch.no_grad():
        expected = model(**inputs).logits
    model.save_pretrained(tmp_path, state_dict=state)
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert not any("parametrizations" in k for k in reloaded.state_dict())
    with torch.no_grad():
        assert torch.allclose(reloaded(**inputs).logits, expected, atol=1e-6)
    # Folding in place gives the same plain model.
    remove_spectral_norm(model)
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, expected, atol=1e-6)
    assert "classifier.weight" in model.state_dict()


def test_save_pretrained_of_a_prepared_model_saves_the_folded_head(tmp_path):
    """A custom loop's model.save_pretrained() reloads in plain transformers with the trained head."""
    model, inputs = trained_r4f_bert()
    model.save_pretrained(tmp_path)  # brings the spectral-norm estimate up to date, as RxfTrainer's save does
    assert has_spectral_norm(model)  # still training-ready
    model.eval()
    with torch.no_grad():
        expected = model(**inputs).logits
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert "classifier.weight" in reloaded.state_dict() and not any("parametrizations" in k for k in reloaded.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, expected, rtol=0, atol=0)


def test_a_prepared_model_can_still_be_copied():
    model, _ = trained_r4f_bert()
    copied = copy.deepcopy(model)
    assert copied.save_pretrained.model is copied  # saves itself, not the original


def test_r4f_without_prepare_model_is_refused():
    model, batch = tiny_bert()
    with pytest.raises(RxfError, match=r"r4f: .*not spectrally normalised: call model = method.prepare_model\(model\)"):
        method_config("r4f").build().compute_loss(model, batch)


def test_preparing_again_with_other_settings_is_refused():
    model, _ = tiny_distilbert()  # two head layers: pre_classifier, classifier
    method_config("r4f").build().prepare_model(model)
    method_config("r4f").build().prepare_model(model)  # the same settings: nothing changes
    for options in ({"n_power_iterations": 5}, {"spectral_norm_scope": "head"}):
        with pytest.raises(RxfError, match="already spectrally normalised .*remove_spectral_norm"):
            method_config("r4f", **options).build().prepare_model(model)
    remove_spectral_norm(model)
    method_config("r4f", n_power_iterations=5).build().prepare_model(model)
    assert model.classifier.parametrizations.weight[0].n_power_iterations == 5
