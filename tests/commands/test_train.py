"""`rxf train` end to end on the packaged model, offline, with a shortened budget."""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from rxf.cli import main
from shared_data import GLUE_DIR, needs_glue

SHORT = ["--max-steps", "3", "--max-train-samples", "48", "--max-eval-samples", "24", "--no-progress"]


def test_default_train_runs_end_to_end_offline(tmp_path):
    """The README's default job, shortened: packaged MiniLM, BBC news, R3F; metrics JSON + safetensors."""
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "rxf.cli", "train", *SHORT, "--output-dir", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "bbc_news" and metrics["method"] == "r3f"
    assert metrics["num_eval_examples"] == {"validation": 24}
    assert metrics["peak_rss_mib"] > 100  # the process's peak memory is recorded (Linux: VmHWM)
    assert 0.0 <= metrics["final"]["eval_accuracy"] <= 1.0
    assert metrics["loss_curve"] and "r3f_divergence" in metrics["loss_curve"][-1]
    assert (out / "model" / "model.safetensors").is_file()
    model = AutoModelForSequenceClassification.from_pretrained(out / "model")
    assert model.config.num_labels == 5 and model.config.id2label[0]


@needs_glue
def test_train_on_glue_tsv_with_r4f(tmp_path):
    out = tmp_path / "rte"
    code = main(["train", "--task", "glue/rte", "--data-dir", str(GLUE_DIR), "--method", "r4f", *SHORT, "--output-dir", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method_config"]["method"] == "r4f"
    weights = AutoModelForSequenceClassification.from_pretrained(out / "model").classifier.weight
    assert torch.linalg.matrix_norm(weights, ord=2).item() <= 1 + 1e-3


def test_train_on_csv_files_with_a_yaml_config_and_overrides(tmp_path):
    rows = ["text,label"] + [f"sample {i} {'good' if i % 2 else 'bad'} text,{'pos' if i % 2 else 'neg'}" for i in range(40)]
    (tmp_path / "train.csv").write_text("\n".join(rows))
    config = tmp_path / "run.yaml"
    config.write_text(
        f"task: null\ntrain_file: {tmp_path / 'train.csv'}\nmethod: r3f\nmethod_options:\n  lambda_: 0.5\n"
        f"output_dir: {tmp_path / 'csv'}\nsave_model: false\n"
    )
    code = main(["train", "--config", str(config), "--sigma", "1e-4", "--set", "max_steps=2", "--no-progress"])
    assert code == 0
    metrics = json.loads((tmp_path / "csv" / "metrics.json").read_text())
    assert metrics["method_config"]["lambda_"] == 0.5 and metrics["method_config"]["sigma"] == 1e-4
    assert not (tmp_path / "csv" / "model").exists()


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--method", "r3ff"], ["method", "(from --method)", "r3f"]),
        (["--lambda", "-1"], ["lambda_", ">= 0"]),
        (["--sigma", "-0.1"], ["sigma"]),
        (["--lambda", "big"], ["--lambda", "float"]),
        (["--max-steps", "1.5"], ["--max-steps", "int"]),
        (["--set", "max_steps=-2.5"], ["max_steps", "whole number"]),
        (["--set", "learning_rat=1e-3"], ["learning_rat", "learning_rate"]),
        (["--set", "nonsense"], ["--set", "key=value"]),
        (["--noise-type", "gaussian"], ["noise_type"]),
        (["--model", "./no/such/model"], ["model path", "does not exist"]),
        (["--task", "glue/rtee"], ["rtee", "glue/rte"]),
        (["--batch-size", "0"], ["batch_size", "> 0"]),
        (["--set", "method_options.lamda_=1"], ["lamda_", "lambda_"]),
        (["--output-dir", "/proc/rxf-cannot-write"], ["output_dir", "cannot be written"]),
    ],
)
def test_bad_input_exits_2_with_a_message_naming_the_problem(argv, words, capsys, tmp_path):
    if "--output-dir" not in argv:
        argv = [*argv, "--output-dir", str(tmp_path / "out")]
    assert main(["train", *argv, "--no-progress"]) == 2
    message = capsys.readouterr().err
    assert message.startswith("rxf: error:") and message.count("\n") == 1
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    "below, words",
    [(False, ["afile is a file, not a folder", "choose another output_dir, or move that file away"]),
     (True, ["afile/run cannot be created:", "afile is a file, not a folder", "choose another output_dir, or move that file away"])],
    ids=["the-file-itself", "a-folder-below-it"],
)
def test_an_output_dir_in_the_way_of_a_file_says_so(below, words, capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["train", "--output-dir", str(afile / "run" if below else afile), "--no-progress"]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and all(word in message for word in words), message
    assert afile.read_text() == "x"


def test_config_file_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "epochz" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    bad.write_text("a: [1,\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_methods_lists_the_registry(capsys):
    assert main(["methods"]) == 0
    listing = capsys.readouterr().out
    assert "r3f:" in listing and "r4f:" in listing and "lambda_=1.0" in listing


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny model directory and data files, good and bad."""
    from tiny_models import save_tiny_classifier_dir, write_sentiment_csv

    root = tmp_path_factory.mktemp("bad-input")
    save_tiny_classifier_dir(root / "model")
    write_sentiment_csv(root / "train.csv", rows=24)
    (root / "empty.csv").write_text("")
    (root / "dev_unknown_label.csv").write_text("text,label\ngood movie,pos\nbad film,meh\n")
    glue = root / "glue" / "RTE"
    glue.mkdir(parents=True)
    (glue / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two fields\n")
    (glue / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    (root / "no_config").mkdir()
    mismatch = root / "mismatch"
    save_tiny_classifier_dir(mismatch)
    from transformers import BertTokenizerFast

    (root / "big_vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(200)]))
    BertTokenizerFast(vocab=str(root / "big_vocab.txt")).save_pretrained(mismatch)
    return root


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--train-file", "{root}/empty.csv"], ["empty.csv", "empty"]),
        (["--train-file", "{root}/missing.csv"], ["missing.csv"]),
        (["--train-file", "{root}/train.csv", "--text-column", "review"], ["review", "train.csv", "text"]),
        (["--train-file", "{root}/train.csv", "--eval-file", "{root}/dev_unknown_label.csv"], ["dev_unknown_label.csv", "meh"]),
        (["--task", "glue/rte", "--data-dir", "{root}/glue"], ["train.tsv", "line 3"]),
        (["--task", "glue/qnli", "--data-dir", "{root}/glue"], ["QNLI", "train"]),
        (["--train-file", "{root}/train.csv", "--model", "{root}/no_config"], ["no_config", "config.json"]),
        (["--train-file", "{root}/train.csv", "--model", "{root}/mismatch"], ["tokenizer", "do not match"]),
        (["--train-file", "{root}/train.csv", "--set", "keep_checkpoints=-1"], ["keep_checkpoints"]),
        (["--train-file", "{root}/train.csv", "--set", "on_nonfinite=ignore"], ["on_nonfinite", "stop"]),
        (["--train-file", "{root}/train.csv", "--eval-steps", "0"], ["eval_steps", "> 0"]),
        (["--train-file", "{root}/train.csv", "--task-type", "ranking"], ["ranking"]),
        (["--train-file", "{root}/train.csv", "--gradient-mode", "fast"], ["gradient_mode", "both"]),
    ],
)
def test_bad_data_and_model_inputs_exit_2_naming_the_problem(files, argv, words, capsys):
    argv = [a.replace("{root}", str(files)) for a in argv]
    code = main(["train", *argv, "--model" if "--model" not in argv else "--seed", str(files / "model") if "--model" not in argv else "0",
                 "--max-steps", "1", "--no-progress", "--output-dir", str(files / "out")])
    message = capsys.readouterr().err
    assert code == 2, message
    assert message.startswith("rxf: error:") and message.count("\n") == 1, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    "method,recipe,steps,bias_correction",
    [("standard", "same", 2, True), ("standard", "paper", 2, False), ("standard++", "paper", 4, True), ("r3f", "paper", 2, True)],
)
def test_the_methods_recipe_sets_optimizer_and_budget(files, method, recipe, steps, bias_correction, tmp_path):
    """The same optimizer for every method by default; the paper's recipe: Standard's Adam without
    bias correction, Standard++ bias-corrected and twice the updates."""
    out = tmp_path / f"{method}-{recipe}"
    code = main(["train", "--model", str(files / "model"), "--train-file", str(files / "train.csv"), "--method", method,
                 "--recipe", recipe, "--max-steps", "2", "--set", "learning_rate=3e-5", "--no-progress", "--output-dir", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"]["name"] == recipe
    assert metrics["recipe"]["adam_bias_correction"] is bias_correction
    assert metrics["final"]["step"] == steps
    assert metrics["config"]["learning_rate"] == 3e-5
