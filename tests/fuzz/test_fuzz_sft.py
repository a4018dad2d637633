"""Fuzz cases of ``rxf sft`` (audit 2): bad input ends in one clean line, and ``--overwrite`` never
removes a finished run before the new one is known to start.

The runs go in-process (``run_in_process``: the same ``main`` as the ``rxf`` script) on the tiny
chat Llama of tests/tiny_chat.py; the encoder-only case uses the fuzz suite's tiny BERT.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fuzz.conftest import assert_clean_failure, snapshot
from tiny_chat import conversations, save_tiny_chat_llama, write_chat_jsonl

pytest.importorskip("trl")
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def chat(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sft")
    return {
        "root": root,
        "model": save_tiny_chat_llama(root / "llama"),
        "train": write_chat_jsonl(root / "train.jsonl", conversations(8)),
        "eval": write_chat_jsonl(root / "eval.jsonl", conversations(2, seed=1)),
    }


def sft_args(chat: dict[str, Path], output_dir: Path, *more) -> list:
    return [
        "sft", "--model", chat["model"], "--train-file", chat["train"], "--eval-file", chat["eval"],
        "--max-steps", "1", "--batch-size", "2", "--max-length", "32", "--no-progress", "--set", "logging_steps=1",
        "--output-dir", output_dir, *more,
    ]


@pytest.fixture(scope="module")
def finished_lora_run(chat) -> Path:
    """A finished LoRA run, trained once for the module."""
    from rxf.cli import main

    out = chat["root"] / "finished"
    assert main([str(a) for a in sft_args(chat, out, "--lora-r", "2")]) == 0
    assert (out / "adapter").is_dir() and (out / "metrics.json").is_file()
    return out


@pytest.mark.parametrize(
    "targets, fragments",
    [
        ("[nope_proj]", ["lora_target_modules", "'nope_proj' matches no module", "q_proj"]),
        ("[q_proj, nope_proj]", ["lora_target_modules", "'nope_proj' matches no module"]),
        ("[]", ["lora_target_modules", "names no module"]),
        ("'nope.*'", ["lora_target_modules", "'nope.*' matches no module"]),
        ("[layers]", ["lora_target_modules", "'layers' matches", "which LoRA cannot adapt"]),
        ("[self_attn]", ["lora_target_modules", "'self_attn' matches", "LlamaAttention", "which LoRA cannot adapt"]),
        ("[rotary_emb]", ["lora_target_modules", "'rotary_emb' matches", "which LoRA cannot adapt"]),
        ("[input_layernorm]", ["lora_target_modules", "'input_layernorm' matches", "LlamaRMSNorm"]),
        ("'(unclosed'", ["lora_target_modules", "not a regular expression"]),
    ],
)
def test_overwrite_with_bad_lora_targets_leaves_the_finished_run_byte_for_byte(
    chat, finished_lora_run, run_in_process, targets, fragments
):
    before = snapshot(finished_lora_run)
    result = run_in_process(sft_args(chat, finished_lora_run, "--lora-r", "2", "--overwrite",
                                     "--set", f"lora_target_modules={targets}"))
    assert_clean_failure(result, *fragments)
    assert snapshot(finished_lora_run) == before


def test_lora_targets_that_name_layers_train(chat, run_in_process, tmp_path):
    result = run_in_process(sft_args(chat, tmp_path / "o", "--lora-r", "2", "--set", "lora_target_modules=[q_proj, v_proj]"))
    assert result.returncode == 0, result.stderr[-3000:]
    adapter = json.loads((tmp_path / "o" / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]


def test_an_encoder_only_model_is_refused_before_training(tiny_model, run_in_process, tmp_path):
    train = tmp_path / "pc.jsonl"
    train.write_text("".join(json.dumps({"prompt": "the cat sat", "completion": "good"}) + "\n" for _ in range(6)))
    result = run_in_process(["sft", "--model", tiny_model, "--train-file", train, "--max-steps", "1",
                             "--no-progress", "--output-dir", tmp_path / "o"])
    assert_clean_failure(result, str(tiny_model), "encoder-only", "bidirectional")
    assert not (tmp_path / "o").exists()


def test_an_eval_file_left_empty_by_max_length_is_refused(chat, run_in_process, tmp_path):
    long_eval = tmp_path / "long.jsonl"
    long_eval.write_text("".join(json.dumps({"prompt": " ".join(["red"] * 60), "completion": "red"}) + "\n" for _ in range(3)))
    args = sft_args(chat, tmp_path / "o")
    args[args.index("--eval-file") + 1] = long_eval
    result = run_in_process(args)
    assert_clean_failure(result, f"eval_file {long_eval}", "max_length=32", "nothing could be evaluated")
    assert not (tmp_path / "o").exists()


def chat_file(tmp_path: Path, case: str) -> Path:
    """A train file that is bad in the way ``case`` says."""
    good = "".join(json.dumps(record) + "\n" for record in conversations(4))
    path = tmp_path / "chats.jsonl"
    if case == "latin1":
        path.write_bytes(good.encode() + '{"prompt": "caf\xe9", "completion": "red"}\n'.encode("latin-1"))
    elif case == "utf16":
        path.write_bytes(good.encode("utf-16"))
    elif case == "surrogate":
        path.write_text(good + '{"prompt": "red \\ud800 cat", "completion": "red"}\n')
    elif case == "surrogate_message":
        path.write_text(good + '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "\\udfff"}]}\n')
    elif case == "folder":
        path.mkdir()
    elif case == "fifo":
        os.mkfifo(path)
    elif case == "array":
        path = path.with_suffix(".json")
        path.write_text(json.dumps(conversations(4), indent=2))
    return path


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("latin1", [", line 5: byte 0xe9 is not UTF-8"]),
        ("utf16", [", line 1: byte 0xff", "UTF-16"]),
        ("surrogate", [", line 5: field 'prompt'", "surrogate"]),
        ("surrogate_message", [", line 5: field 'messages'[1].content", "surrogate"]),
        ("folder", [" is a folder, not a file"]),
        ("fifo", [" is a FIFO (named pipe), not a regular file"]),
        ("array", [", line 1: ", "one JSON array", "JSON Lines"]),
    ],
)
def test_unreadable_train_files_are_one_line(chat, run_in_process, tmp_path, case, fragments):
    path = chat_file(tmp_path, case)
    result = run_in_process(["sft", "--model", chat["model"], "--train-file", path, "--output-dir", tmp_path / "o"])
    line = assert_clean_failure(result, *fragments)
    assert f"train_file {path}" in line
    assert not (tmp_path / "o").exists()


def test_a_bad_eval_file_is_named_as_the_eval_file(chat, run_in_process, tmp_path):
    path = chat_file(tmp_path, "latin1")
    result = run_in_process(sft_args(chat, tmp_path / "o") + ["--eval-file", path])
    assert_clean_failure(result, f"eval_file {path}, line 5", "not UTF-8")


@pytest.mark.parametrize("option, field", [("--output-dir", "output_dir"), ("--train-file", "train_file"),
                                           ("--model", "model"), ("--eval-file", "eval_file")])
def test_an_empty_path_is_refused(chat, run_in_process, tmp_path, monkeypatch, option, field):
    monkeypatch.chdir(tmp_path)
    result = run_in_process(sft_args(chat, tmp_path / "o") + [option, ""])
    assert_clean_failure(result, field, "non-empty string")
    assert os.listdir(tmp_path) == []


def test_a_folder_in_the_way_of_config_yaml_is_one_line(chat, run_in_process, tmp_path):
    out = tmp_path / "o"
    (out / "config.yaml").mkdir(parents=True)
    result = run_in_process(sft_args(chat, out))
    assert_clean_failure(result, "config.yaml", "folder")


@pytest.mark.parametrize("router_loss, fragments", [
    (0.001, ["Mixture-of-Experts", "router_aux_loss_coef"]),
    # Without the router loss, peft's all-linear LoRA of the experts refuses lora_dropout: also before the run starts.
    (0.0, ["LoRA", "does not fit", "lora_dropout != 0"]),
])
def test_overwrite_with_a_mixture_of_experts_model_leaves_the_finished_run(
    chat, finished_lora_run, run_in_process, tmp_path, router_loss, fragments
):
    from transformers import MixtralConfig, MixtralForCausalLM

    from tiny_chat import chat_tokenizer

    tokenizer = chat_tokenizer()
    config = MixtralConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, num_local_experts=2, num_experts_per_tok=1,
                           max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id, router_aux_loss_coef=router_loss)
    MixtralForCausalLM(config).save_pretrained(tmp_path / "moe")
    tokenizer.save_pretrained(tmp_path / "moe")
    before = snapshot(finished_lora_run)
    args = sft_args(chat, finished_lora_run, "--lora-r", "2", "--overwrite")
    args[args.index("--model") + 1] = tmp_path / "moe"
    assert_clean_failure(run_in_process(args), str(tmp_path / "moe"), *fragments)
    assert snapshot(finished_lora_run) == before


@pytest.mark.parametrize("method, trainable, more, fragments", [
    ("bitsandbytes", True, [], ["is quantized (bitsandbytes)", "set lora_r"]),
    ("fp8", False, ["--lora-r", "2"], ["is quantized (fp8)", "cannot fine-tune"]),
    ("gptq", True, ["--lora-r", "2", "--merge-adapter"], ["is quantized (gptq)", "cannot merge", "merge_adapter"]),
], ids=["full-fine-tuning", "not-trainable", "gptq-merge"])
def test_overwrite_with_what_a_quantized_model_cannot_do_leaves_the_finished_run(
    chat, finished_lora_run, run_in_process, monkeypatch, method, trainable, more, fragments
):
    """transformers refuses these when the trainer is built, peft the merge after training: rxf before the run starts.
    The model's quantizer is a stand-in: quantizing needs bitsandbytes or GPTQ kernels, and mostly a GPU."""
    from types import SimpleNamespace

    import rxf.models.generation

    real_load = rxf.models.generation.load_generation_model

    def load_quantized(*args, **kwargs):
        model, tokenizer = real_load(*args, **kwargs)
        model.hf_quantizer = SimpleNamespace(is_trainable=trainable, is_qat_trainable=False,
                                             quantization_config=SimpleNamespace(quant_method=method))
        model.is_quantized, model.quantization_method = True, method
        return model, tokenizer

    monkeypatch.setattr(rxf.models.generation, "load_generation_model", load_quantized)
    before = snapshot(finished_lora_run)
    assert_clean_failure(run_in_process(sft_args(chat, finished_lora_run, *more, "--overwrite")), *fragments)
    assert snapshot(finished_lora_run) == before


def test_overwrite_whose_trainer_refuses_the_model_leaves_the_finished_run(chat, finished_lora_run, run_in_process, monkeypatch):
    """What rxf cannot check before the run starts (peft refusing a quantized layer type it cannot wrap, when
    the trainer is built): the earlier run, set aside at the start, is put back byte for byte."""
    import rxf.trl

    def refuse(*args, **kwargs):
        raise ValueError("Target module QuantLinear() is not supported.")

    monkeypatch.setattr(rxf.trl.RxfSFTTrainer, "__init__", refuse)
    before = snapshot(finished_lora_run)
    result = run_in_process(sft_args(chat, finished_lora_run, "--lora-r", "2", "--seed", "7", "--overwrite"))
    assert result.returncode != 0 and "QuantLinear" in result.stderr
    assert snapshot(finished_lora_run) == before
