"""rxf.history: history.jsonl written as the run goes (kept by a crash, not doubled by a resume), history.png, report_to."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from transformers import TrainerCallback

from rxf.errors import RxfError
from rxf.history import check_report_to, plot_history, read_history
from rxf.train import TrainConfig, run_training
from tiny_glue import WORDS, tiny_bert_dir


def sentiment_csv(path: Path, n: int = 48) -> Path:
    rng = random.Random(0)
    rows = ["text,label"]
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        rows.append(f"{' '.join(rng.choice(WORDS) for _ in range(5))} {'good' if i % 2 else 'bad'},{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


def config(tmp_path: Path, **fields) -> TrainConfig:
    values = {
        "model": str(tiny_bert_dir(tmp_path / "bert")), "task": None, "train_file": str(sentiment_csv(tmp_path / "train.csv")),
        "max_steps": 6, "eval_steps": 3, "logging_steps": 1, "batch_size": 8, "max_length": 16, "learning_rate": 1e-3,
        "output_dir": str(tmp_path / "run"), "progress_bar": False, "save_model": False, **fields,
    }
    return TrainConfig.from_dict(values)


def test_history_file_and_plot_match_the_run(tmp_path):
    result = run_training(config(tmp_path, method="r3f"))
    out = tmp_path / "run"
    entries = read_history(out)
    train = [e for e in entries if "loss" in e]
    evals = [e for e in entries if "eval_accuracy" in e]
    assert [e["step"] for e in train] == [1, 2, 3, 4, 5, 6]
    for entry in train:  # the loss, its parts and the learning rate at every logged step
        assert {"task_loss", "r3f_divergence", "learning_rate", "wall_time_s"} <= set(entry)
        assert entry["r3f_divergence"] >= 0
    assert [e["step"] for e in evals] == [3, 6]
    # the same numbers as metrics.json, which is built from the trainer's own log history
    assert train == result["loss_curve"] and evals == result["history"]
    png = (out / "history.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


class CrashAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.global_step == self.step and "loss" in (logs or {}):
            raise RuntimeError("simulated crash")


def test_a_crash_keeps_the_history_and_a_resume_does_not_double_it(tmp_path):
    # checkpoints at every evaluation (step 3); the crash comes after step 4 was logged
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(config(tmp_path, method="standard"), extra_callbacks=[CrashAt(4)])
    kept = read_history(tmp_path / "run")
    assert [e["step"] for e in kept if "loss" in e] == [1, 2, 3, 4]
    assert not (tmp_path / "run" / "history.png").exists()

    run_training(config(tmp_path, method="standard"))  # resumes from checkpoint-3
    entries = read_history(tmp_path / "run")
    assert [e["step"] for e in entries if "loss" in e] == [1, 2, 3, 4, 5, 6]  # step 4 once, from the resumed run
    assert [e["step"] for e in entries if "eval_loss" in e] == [3, 6]
    assert (tmp_path / "run" / "history.png").is_file()


def test_plot_history_reads_a_torn_file(tmp_path):
    lines = [{"loss": 1.0 - i / 10, "task_loss": 0.9 - i / 10, "learning_rate": 1e-3, "step": i} for i in range(1, 6)]
    lines.append({"eval_loss": 0.5, "eval_accuracy": 0.75, "step": 5})
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"loss": 0.')
    entries = read_history(tmp_path)
    assert entries == lines
    assert plot_history(entries, tmp_path / "h.png", "torn").read_bytes().startswith(b"\x89PNG")


def test_report_to_is_checked_and_tensorboard_gets_the_run(tmp_path):
    pytest.importorskip("tensorboard")
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

    assert check_report_to(None) == [] and check_report_to(["none"]) == [] and check_report_to("tensorboard") == ["tensorboard"]
    with pytest.raises(RxfError, match=r"report_to 'tensorbord' \(did you mean 'tensorboard'\?\) is not an integration"):
        check_report_to(["tensorbord"])
    missing = [name for name in INTEGRATION_TO_CALLBACK if name not in get_available_reporting_integrations()]
    if missing:
        with pytest.raises(RxfError, match=rf"report_to '{missing[0]}': its package is not installed"):
            TrainConfig.from_dict({"report_to": [missing[0]]})

    run_training(config(tmp_path, method="standard", report_to=["tensorboard"], max_steps=3))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(events[0]))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert {"train/loss", "train/task_loss", "eval/accuracy"} <= set(tags)
    assert [s.step for s in accumulator.Scalars("train/loss")] == [1, 2, 3]
