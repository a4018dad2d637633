"""`rxf sft` end to end on a tiny Llama and a tiny chat JSONL, offline."""

import json

import pytest

from rxf.cli import main
from tiny_chat import conversations, save_tiny_chat_llama, write_chat_jsonl

pytest.importorskip("trl")
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    write_chat_jsonl(root / "train.jsonl", conversations(16))
    write_chat_jsonl(root / "eval.jsonl", conversations(4, seed=1))
    return {"root": root, "model": save_tiny_chat_llama(root / "llama")}


def test_sft_with_lora_neftune_and_packing_from_the_command_line(workspace, capsys):
    root = workspace["root"]
    config = root / "run.yaml"
    config.write_text(f"model: {workspace['model']}\ntrain_file: {root / 'train.jsonl'}\neval_file: {root / 'eval.jsonl'}\n")
    out = root / "neftune"
    code = main([
        "sft", "--config", str(config), "--method", "neftune", "--alpha", "10", "--lora-r", "4", "--packing",
        "--max-steps", "2", "--batch-size", "4", "--output-dir", str(out), "--no-progress", "--set", "logging_steps=1",
    ])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method_config"]["method"] == "neftune" and metrics["method_config"]["alpha"] == 10.0
    assert metrics["lora"]["r"] == 4 and metrics["packing"] and metrics["global_step"] == 2
    assert metrics["final_eval_loss"] > 0
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    printed = capsys.readouterr().out
    assert '"final_eval_loss"' in printed and "adapter/" in printed


def test_bad_input_is_one_line_and_exit_status_2(workspace, capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "red"}\n')
    code = main(["sft", "--model", str(workspace["model"]), "--train-file", str(bad), "--output-dir", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("rxf: error:") and "line 1: field 'completion' is missing" in err and len(err.strip().splitlines()) == 1

    code = main(["sft", "--method", "rdrop", "--train-file", str(bad), "--output-dir", str(tmp_path / "o")])
    assert code == 2 and "R-Drop compares two dropout passes" in capsys.readouterr().err
