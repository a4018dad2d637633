"""Multi-process training: 2 CPU processes (gloo) match 1 process with the same global batch."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tiny_models import save_tiny_classifier_dir, write_sentiment_csv

TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")


def train(tmp_path, name, batch_size, processes, method):
    out = tmp_path / name
    command = [
        "-m", "rxf.cli", "train", "--model", str(tmp_path / "model"), "--train-file", str(tmp_path / "train.csv"),
        "--eval-file", str(tmp_path / "dev.csv"), "--method", method, "--max-steps", "6", "--lr", "1e-2",
        "--batch-size", str(batch_size), "--max-length", "16", "--seed", "1", "--no-progress", "--output-dir", str(out),
        "--set", "save_model=false", "--set", "keep_checkpoints=0", "--set", "logging_steps=2",
    ]
    # --standalone: a free port per launch (a fixed port could still be held by the previous launch).
    launcher = [sys.executable] if processes == 1 else [TORCHRUN, "--standalone", "--nproc_per_node", str(processes)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, *command], capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        # A rank's own error (e.g. gloo's) comes before torchrun's summary: show both.
        causes = [line for line in done.stderr.splitlines() if "Error" in line or "terminate" in line or "what()" in line]
        pytest.fail("\n".join(causes[:20]) + "\n...\n" + done.stderr[-2000:])
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not found")
@pytest.mark.parametrize("method,tolerance", [("standard", 1e-5), ("r3f", 1e-4)])
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, method, tolerance):
    """Tolerance: float round-off for standard; R3F adds noise drawn per rank (σ = 1e-5), so 1e-4."""
    save_tiny_classifier_dir(tmp_path / "model", dropout=0.0)
    write_sentiment_csv(tmp_path / "train.csv", rows=64, seed=0)
    write_sentiment_csv(tmp_path / "dev.csv", rows=16, seed=1)
    one = train(tmp_path, "one", batch_size=8, processes=1, method=method)
    two = train(tmp_path, "two", batch_size=4, processes=2, method=method)
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert [e["step"] for e in two["loss_curve"]] == [e["step"] for e in one["loss_curve"]] == [2, 4, 6]
    for a, b in zip(two["loss_curve"], one["loss_curve"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=tolerance)
    assert two["num_eval_examples"] == one["num_eval_examples"] == {"validation": 16}
    for key in ("eval_loss", "eval_accuracy"):
        assert two["final"][key] == pytest.approx(one["final"][key], rel=tolerance, abs=tolerance)


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not found")
def test_sft_with_lora_on_two_processes(tmp_path):
    """rxf sft under torchrun: both ranks train R3F on a LoRA model, rank 0 alone writes the run's files."""
    pytest.importorskip("trl")
    from tiny_chat import conversations, save_tiny_chat_llama, write_chat_jsonl

    save_tiny_chat_llama(tmp_path / "model")
    write_chat_jsonl(tmp_path / "train.jsonl", conversations(16, seed=1))
    write_chat_jsonl(tmp_path / "eval.jsonl", conversations(4, seed=2))
    out = tmp_path / "run"
    command = [
        TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "rxf.cli", "sft", "--model", str(tmp_path / "model"),
        "--train-file", str(tmp_path / "train.jsonl"), "--eval-file", str(tmp_path / "eval.jsonl"), "--lora-r", "4",
        "--merge-adapter", "--method", "r3f", "--sigma", "0.01", "--max-steps", "2", "--batch-size", "2",
        "--set", "logging_steps=1", "--no-progress", "--output-dir", str(out),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and any("r3f_divergence" in entry for entry in metrics["loss_curve"])
    assert (out / "adapter" / "adapter_model.safetensors").is_file() and (out / "merged" / "config.json").is_file()
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
