"""`rxf summarize` on bad input and faults (fuzz audit 2): its --table and --table-out, a run's result files,
and models that cannot do what the settings ask. Each failure is one line, exit 2, and leaves what was there."""

from __future__ import annotations

import json
import pathlib

import pytest

from fuzz.conftest import assert_clean_failure, snapshot
from tiny_summarization import save_tiny_bart, save_tiny_llama, toy_pairs, write_csv


def write_run(folder: pathlib.Path, method: str = "standard", seed: int = 1, rouge1: float = 30.0, **changes) -> pathlib.Path:
    """A finished summarize run's metrics.json (the fields the table reads), in ``folder``."""
    final = {"step": 10, "rouge1": rouge1, "rouge2": 10.0, "rougeL": 28.0, "rougeLsum": 28.0, "summary_words": 8.0}
    run = {"method": method, "seed": seed, "final": final, "train_runtime_s": 5.0, "config": {"max_steps": 10},
           "method_config": {"lambda_": 0.1, "sigma": 1e-5, "noise_type": "normal"}, **changes}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(run))
    return folder


# ---- --table-out: never a run's file, a folder or a file of the user's; written whole -------------


@pytest.mark.parametrize(
    "where,words",
    [
        ("run/metrics.json", ["is the run metrics", "run/metrics.json"]),
        ("run/table.md", ["inside the run folder"]),
        (".", ["is a folder, not a file"]),
        ("data.csv/table.md", ["cannot be created", "data.csv is a file, not a folder"]),
        ("data.csv", ["data.csv exists and is not a table"]),
    ],
)
def test_table_out_never_overwrites_a_run_or_a_file(run_in_process, tmp_path, where, words):
    run = write_run(tmp_path / "run")
    (tmp_path / "data.csv").write_text("text,label\nprecious,1\n")
    before = snapshot(tmp_path)
    result = run_in_process(["summarize", "--table", run, "--table-out", tmp_path / where])
    assert_clean_failure(result, "--table-out", *words)
    assert snapshot(tmp_path) == before


def test_table_out_in_a_new_folder_creates_it_as_predict_does(run_in_process, tmp_path):
    run = write_run(tmp_path / "run")
    result = run_in_process(["summarize", "--table", run, "--table-out", tmp_path / "tables" / "new" / "table.md"])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tables" / "new" / "table.md").read_text().startswith("| method | seed |")


def test_table_out_replaces_an_earlier_table_whole_or_not_at_all(run_in_process, tmp_path, full_disk):
    run, out = write_run(tmp_path / "run"), tmp_path / "table.md"
    assert run_in_process(["summarize", "--table", run, "--table-out", out]).returncode == 0
    assert run_in_process(["summarize", "--table", run, "--table-out", out]).returncode == 0  # an earlier table: replaced
    other = write_run(tmp_path / "other", seed=2)
    before = snapshot(tmp_path)
    with full_disk():
        result = run_in_process(["summarize", "--table", other, run, "--table-out", out])
    assert_clean_failure(result, "could not write table.md", "no space left on device")
    assert snapshot(tmp_path) == before  # the earlier table as it was, no temporary file


# ---- --table: each run once, every record checked ---------------------------------------------


def test_the_same_run_given_twice_counts_once_and_a_copy_is_refused(run_in_process, tmp_path):
    run = write_run(tmp_path / "run")
    result = run_in_process(["summarize", "--table", run, run / "metrics.json"])
    assert result.returncode == 0 and "counted once" in result.stderr
    assert "| standard | 1 | 30.00 ± 0.00 |" in result.stdout
    copy = write_run(tmp_path / "copy")
    assert_clean_failure(run_in_process(["summarize", "--table", run, copy]), "both standard seed 1", "one run per seed")


@pytest.mark.parametrize(
    "record,words",
    [
        ({}, ["'method'", "missing"]),
        ([1, 2], ["must be a mapping", "(it is [1, 2])"]),
        ({"final": {"rouge1": "high"}}, ["'final.rouge1'", "finite number", "'high'"]),
        ({"final": {"rouge1": float("nan")}}, ["'final.rouge1'", "nan"]),
        ({"final": None}, ["'final'", "mapping"]),  # another verb's metrics.json: no 'final'
        ({"config": {"max_steps": "ten"}}, ["'config.max_steps'", "whole number"]),
        ({"method": "r3f", "method_config": {}}, ["'method_config.lambda_'"]),
        ({"train_runtime_s": None}, ["'train_runtime_s'"]),
    ],
)
def test_a_bad_run_record_is_one_line_naming_file_and_field(run_in_process, tmp_path, record, words):
    path = write_run(tmp_path / "run") / "metrics.json"
    if isinstance(record, dict) and record:
        good = json.loads(path.read_text())
        if "final" in record and isinstance(record["final"], dict):
            record = {"final": {**good["final"], **record["final"]}}
        record = {**good, **record}
    path.write_text(json.dumps(record))
    assert_clean_failure(run_in_process(["summarize", "--table", path]), str(path), *words)


# ---- a run: settings the model cannot follow, result files in the way or not written ------------


def save_tiny_encoder_with_eos(folder):
    """A BERT whose tokenizer has an end-of-sequence token, as RoBERTa's has: it passes the EOS check
    that refused a plain BERT, so only the encoder-only check stops it."""
    from transformers import BertConfig, BertForMaskedLM
    from tiny_summarization import word_tokenizer

    tokenizer = word_tokenizer(add_bos_eos=True)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("summarize-fuzz")
    return {
        "bart": save_tiny_bart(root / "bart"), "llama": save_tiny_llama(root / "llama"),
        "encoder": save_tiny_encoder_with_eos(root / "encoder"),
        "train": write_csv(root / "train.csv", toy_pairs(16)), "eval": write_csv(root / "eval.csv", toy_pairs(4, seed=1)),
    }


def summarize_args(workspace, model: str, out) -> list:
    return ["summarize", "--model", workspace[model], "--task", "csv", "--train-file", workspace["train"],
            "--eval-file", workspace["eval"], "--max-steps", "1", "--batch-size", "4", "--num-beams", "1",
            "--max-new-tokens", "4", "--max-source-length", "32", "--max-target-length", "16", "--no-progress",
            "--output-dir", out, "--set", "save_model=false"]


@pytest.mark.parametrize(
    "model,extra,words",
    [
        ("llama", ["--set", "chat_template=true"], ["chat_template", "has no chat template"]),
        ("llama", ["--warm-start"], ["warm_start", "encoder-only"]),
        ("bart", ["--warm-start"], ["warm_start", "encoder-decoder already"]),
        ("encoder", [], ["encoder-only", "bidirectional", "warm_start"]),
    ],
)
def test_settings_the_model_cannot_follow_are_one_line(run_in_process, workspace, tmp_path, model, extra, words):
    result = run_in_process(summarize_args(workspace, model, tmp_path / "run") + extra)
    assert_clean_failure(result, *words)
    assert not (tmp_path / "run").exists()


def test_a_folder_in_the_way_of_the_predictions_is_refused_before_training(run_in_process, workspace, tmp_path):
    (tmp_path / "run" / "predictions-validation.jsonl").mkdir(parents=True)
    before = snapshot(tmp_path)
    result = run_in_process(summarize_args(workspace, "bart", tmp_path / "run"))
    assert_clean_failure(result, "predictions-validation.jsonl is a folder")
    assert snapshot(tmp_path) == before and sorted(p.name for p in (tmp_path / "run").iterdir()) == ["predictions-validation.jsonl"]


def test_a_failed_write_of_the_results_is_one_line_and_leaves_no_part(run_in_process, workspace, tmp_path, full_disk):
    out = tmp_path / "run"
    with full_disk(".predictions-"):  # the predictions file does not fit
        result = run_in_process(summarize_args(workspace, "bart", out))
    assert_clean_failure(result, "could not write the run's results", "no space left on device", "run the same command again")
    assert not [p.name for p in out.iterdir() if p.is_file() and p.name != "run.json"]  # no metrics, no half file, no temp
    assert run_in_process(summarize_args(workspace, "bart", out)).returncode == 0  # the same command then finishes
    assert json.loads((out / "run.json").read_text())["status"] == "finished" and (out / "metrics.json").is_file()


def test_warm_start_keeps_the_loaders_own_message(run_in_process, workspace, tmp_path):
    # rxf's own errors are ValueErrors too: they must not be rewritten as "not an encoder-only model"
    args = summarize_args(workspace, "bart", tmp_path / "run")
    args[args.index("--model") + 1] = tmp_path / "no-such-model"
    line = assert_clean_failure(run_in_process([*args, "--warm-start"]), "no-such-model", "does not exist")
    assert "encoder-only" not in line
