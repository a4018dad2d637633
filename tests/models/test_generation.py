"""rxf.models.generation: loading models that generate text from GGUF files, and what a missing one says."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from rxf.errors import RxfError


def test_gguf_file_loads_as_a_plain_trainable_model(tmp_path):
    import gguf

    from rxf.models.generation import load_generation_model, packaged_gguf
    from rxf.trainer import RxfTrainer
    from tiny_summarization import write_tiny_gguf
    from transformers import TrainingArguments

    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    model, tokenizer = load_generation_model(str(path), dropout=0.1)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.attention_dropout == 0.1
    assert not model.is_quantized and not hasattr(model.config, "quantization_config")
    written = torch.from_numpy(gguf.GGUFReader(str(path)).get_tensor(0).data.copy())
    assert torch.equal(model.get_input_embeddings().weight, written)  # fp32 in the file: loaded exactly
    assert tokenizer.decode(tokenizer("the theme")["input_ids"]) == "the theme" and tokenizer.eos_token == "</s>"
    RxfTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "t"), use_cpu=True, report_to="none"), method="r3f")
    model.save_pretrained(tmp_path / "saved")  # a plain checkpoint: loads without the GGUF file
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert torch.equal(reloaded.model.layers[0].mlp.up_proj.weight, model.model.layers[0].mlp.up_proj.weight)
    assert packaged_gguf("no-such-model") is None


def test_missing_model_is_an_rxf_error(tmp_path):
    from rxf.models.generation import load_generation_model

    with pytest.raises(RxfError, match="does not exist"):
        load_generation_model(str(tmp_path / "nothing.gguf"))
    with pytest.raises(RxfError, match="does not exist"):
        load_generation_model("./no/such/model")
