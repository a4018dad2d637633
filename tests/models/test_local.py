"""rxf.models.local.load_classifier: what every training verb gets from a model directory."""

import torch
from transformers import BertModel

from rxf.models.local import load_classifier
from tiny_glue import tiny_bert_dir


def test_a_half_precision_checkpoint_trains_fp32_weights(tmp_path):
    path = tiny_bert_dir(tmp_path / "model")
    BertModel.from_pretrained(path).to(torch.bfloat16).save_pretrained(path)  # as many hub checkpoints are saved
    model, _ = load_classifier(str(path), 2, ["no", "yes"])
    assert {p.dtype for p in model.parameters()} == {torch.float32}
