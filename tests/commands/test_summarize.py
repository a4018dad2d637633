"""`rxf summarize` end to end on tiny models built in the test, offline."""

import json

import pytest

from rxf.cli import main
from tiny_summarization import save_tiny_bart, save_tiny_llama, toy_pairs, write_csv


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("summarize")
    write_csv(root / "train.csv", toy_pairs(24), columns=("article", "headline"))
    write_csv(root / "eval.csv", toy_pairs(6, seed=1), columns=("article", "headline"))
    return {"root": root, "bart": save_tiny_bart(root / "bart"), "llama": save_tiny_llama(root / "llama")}


def test_summarize_with_a_yaml_config_flags_and_overrides(workspace, capsys):
    root = workspace["root"]
    config = root / "run.yaml"
    config.write_text(
        f"model: {workspace['bart']}\ntask: null\ntrain_file: {root / 'train.csv'}\neval_file: {root / 'eval.csv'}\n"
        "document_column: article\nsummary_column: headline\nmethod: r3f\n"
        "method_options:\n  lambda_: 0.5\n  sigma: 1.0e-3\n  label_smoothing: 0.2\n"
        "num_beams: 2\nmax_new_tokens: 4\nwarmup_steps: 1\nsave_model: false\n"
    )
    out = root / "standard"
    code = main(["summarize", "--config", str(config), "--method", "standard", "--max-steps", "2",
                 "--seed", "3", "--output-dir", str(out), "--no-progress", "--set", "length_penalty=1.5"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # --method standard drops the config's R3F options but keeps its label smoothing.
    assert metrics["method_config"] == {"method": "standard", "task_type": None, "label_smoothing": 0.2}
    assert metrics["seed"] == 3 and metrics["config"]["length_penalty"] == 1.5 and metrics["final"]["step"] == 2
    assert metrics["num_eval_examples"] == 6 and not (out / "model").exists()
    assert '"rouge1"' in capsys.readouterr().out


def test_summarize_scores_a_model_without_training_and_tabulates_runs(workspace, capsys):
    root = workspace["root"]
    out = root / "zero-shot"
    code = main(["summarize", "--model", str(workspace["llama"]), "--task", "csv", "--eval-file", str(root / "eval.csv"),
                 "--document-column", "article", "--summary-column", "headline", "--max-steps", "0",
                 "--num-beams", "1", "--max-new-tokens", "3", "--output-dir", str(out), "--no-progress",
                 "--set", "save_model=false"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["decoder_only"] and metrics["train_runtime_s"] == 0 and metrics["history"][0]["step"] == 0
    assert len((out / "predictions-validation.jsonl").read_text().splitlines()) == 6
    capsys.readouterr()
    table_file = root / "table.md"
    assert main(["summarize", "--table", str(out), "--table-out", str(table_file)]) == 0
    assert "| zero-shot | 1 |" in capsys.readouterr().out and "| zero-shot |" in table_file.read_text()


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--set", "num_beam=2"], ["num_beam", "num_beams"]),
        (["--method", "r4f"], ["R4F", "r3f"]),
        (["--task", "gigawrd"], ["gigawrd", "gigaword"]),
        (["--lambda", "-1"], ["lambda_"]),
        (["--max-steps", "x"], ["--max-steps", "int"]),
        (["--model", "./no/such/model", "--task", "csv", "--train-file", "TRAIN", "--document-column", "article",
          "--summary-column", "headline"], ["model path", "does not exist"]),
        (["--task", "csv", "--train-file", "TRAIN", "--document-column", "body"], ["no column 'body'", "article"]),
        (["--table", "/no/such/run"], ["/no/such/run", "does not exist"]),
    ],
)
def test_mistakes_are_one_line_errors(workspace, capsys, argv, words):
    argv = [str(workspace["root"] / "train.csv") if a == "TRAIN" else a for a in argv]
    out = str(workspace["root"] / "never")
    assert main(["summarize", *argv, "--output-dir", out, "--no-progress"]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("rxf: error:") and "\n" not in message
    assert all(word in message for word in words), message
