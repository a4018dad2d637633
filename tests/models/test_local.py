"""rxf.models.local: what every training verb gets from a model name or directory."""

import huggingface_hub
import pytest
import torch
from transformers import BertModel

from rxf import hub
from rxf.errors import RxfError
from rxf.models import local
from rxf.models.local import load_classifier
from tiny_glue import tiny_bert_dir


def test_a_half_precision_checkpoint_trains_fp32_weights(tmp_path):
    path = tiny_bert_dir(tmp_path / "model")
    BertModel.from_pretrained(path).to(torch.bfloat16).save_pretrained(path)  # as many hub checkpoints are saved
    model, _ = load_classifier(str(path), 2, ["no", "yes"])
    assert {p.dtype for p in model.parameters()} == {torch.float32}


# --- a hub name while the hub cannot be reached: a cached copy at once, or one clear error ---------


@pytest.fixture
def hub_down(monkeypatch, tmp_path):
    """The hub not off by setting, but unreachable; an empty Hugging Face cache of our own."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(hub, "reachable", lambda: False)
    return tmp_path / "hub-cache"


def test_an_uncached_hub_model_fails_at_once_naming_model_and_network(hub_down, monkeypatch):
    import transformers

    def must_not_load(*args, **kwargs):  # it would wait out huggingface_hub's retries (a minute)
        raise AssertionError("from_pretrained was called")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", must_not_load)
    with pytest.raises(RxfError, match=r"model 'someone/missing-model' .*not in the local Hugging Face cache, and the "
                                       r"hub cannot be reached"):
        load_classifier("someone/missing-model", 2, ["no", "yes"])


def test_a_cached_hub_model_loads_from_its_snapshot_when_the_hub_is_down(hub_down):
    snapshot = hub_down / "models--someone--cached-model" / "snapshots" / "abc123"
    tiny_bert_dir(snapshot)
    (hub_down / "models--someone--cached-model" / "refs").mkdir()
    (hub_down / "models--someone--cached-model" / "refs" / "main").write_text("abc123")
    assert local.resolve_model("someone/cached-model") == str(snapshot)
    model, tokenizer = load_classifier("someone/cached-model", 2, ["no", "yes"])
    assert model.config.num_labels == 2 and len(tokenizer) > 0


def test_a_hub_name_stays_a_name_when_the_hub_answers_or_is_off(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "reachable", lambda: True)
    assert local.resolve_model("someone/model") == "someone/model"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # transformers fails fast itself then
    monkeypatch.setattr(hub, "reachable", lambda: pytest.fail("the hub was asked while off"))
    assert local.resolve_model("someone/model") == "someone/model"

