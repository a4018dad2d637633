"""rxf.dropout.set_dropout: with dropout 0, a model in training mode is deterministic; its config says so."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from rxf.dropout import set_dropout
from tiny_models import tiny_bert


def _two_passes_differ(model, batch) -> bool:
    model.train()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return not torch.equal(model(**inputs).logits, model(**inputs).logits)


def test_dropout_zero_makes_training_passes_equal_and_is_recorded():
    model, batch = tiny_bert(dropout=0.1)
    assert _two_passes_differ(model, batch)  # the tiny model has dropout: the test can fail
    assert set_dropout(model, 0.0) > 0
    assert not _two_passes_differ(model, batch)
    assert model.config.hidden_dropout_prob == 0.0 and model.config.attention_probs_dropout_prob == 0.0


def test_float_dropout_attributes_are_set_too():
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, attention_dropout=0.5)
    model = LlamaForCausalLM(config)
    set_dropout(model, 0.0)
    rates = [m.attention_dropout for m in model.modules() if hasattr(m, "attention_dropout")]
    assert rates and all(rate == 0.0 for rate in rates)
    assert model.config.attention_dropout == 0.0


def test_out_of_range_is_refused():
    model, _ = tiny_bert()
    with pytest.raises(ValueError, match="dropout must be in"):
        set_dropout(model, 1.0)


@pytest.mark.parametrize("kind", ["Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"])
def test_every_kind_of_dropout_module_is_set(kind):
    """Not only nn.Dropout: the other torch.nn dropout modules (no common public class) are set too."""
    dropout = getattr(torch.nn, kind)(0.3)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), dropout)
    assert set_dropout(model, 0.0) == 1 and dropout.p == 0.0
