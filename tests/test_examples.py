"""The examples in examples/ run as written."""

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_functional_loop_example_runs():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "functional_loop.py"), "--max-steps", "2", "--max-train-samples", "32"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "step 0: task loss" in done.stdout and "dev accuracy" in done.stdout


def test_trainer_example_runs(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "trainer.py"), "--method", "r4f", "--max-steps", "2", "--max-train-samples", "32",
         "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'eval_accuracy'" in done.stdout
    from safetensors import safe_open

    with safe_open(tmp_path / "out" / "model" / "model.safetensors", "pt") as saved:  # R4F's head, folded: plain weights
        names = list(saved.keys())
    assert "classifier.weight" in names and not [name for name in names if "parametrizations" in name]
