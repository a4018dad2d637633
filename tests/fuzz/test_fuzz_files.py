"""Fuzz cases of issue 13, classes 4, 5, 6 and 9: files, models, max_length, data that cannot train.

Each bad input ends with exit status 2 and one line on stderr that names the file (and line, where
there is one), the cause and a fix, before any training. Most run in-process (``run_in_process``:
the same ``main`` as the ``rxf`` script); the FIFO cases run ``rxf`` in a separate process with a
timeout, since a reader that opened the FIFO would block.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from fuzz.conftest import assert_clean_failure, run_cli, snapshot

FAST = ["--max-steps", "2", "--eval-steps", "2", "--batch-size", "4", "--max-length", "16", "--no-progress"]


def train(model, data, out, *extra) -> list:
    return ["train", "--model", model, "--train-file", data, *FAST, "--output-dir", out, *extra]


def rows(labels, texts=None) -> str:
    texts = texts or [f"the cat sat {'good' if i % 2 else 'bad'}" for i in range(len(labels))]
    return "text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(texts, labels))


# ---- class 4: files ----------------------------------------------------------------------------


def test_config_that_is_a_folder(run_in_process, tmp_path):
    line = assert_clean_failure(run_in_process(["train", "--config", tmp_path]), str(tmp_path), "is a folder")
    assert "does not exist" not in line


def test_config_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    assert_clean_failure(run_cli(["train", "--config", fifo], timeout=120), "config.yaml", "FIFO")


def test_train_file_that_is_a_fifo_is_refused_without_blocking(tmp_path, tiny_model):
    fifo = tmp_path / "train.csv"
    os.mkfifo(fifo)
    assert_clean_failure(run_cli(train(tiny_model, fifo, tmp_path / "out"), timeout=120), "train.csv", "FIFO")
    assert not (tmp_path / "out").exists()


def test_config_with_latin1_bytes(run_in_process, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_bytes("seed: 1\n# r\xe9sum\xe9 of the run\n".encode("latin-1"))
    assert_clean_failure(run_in_process(["train", "--config", config]), "run.yaml", "line 2", "not UTF-8", "Latin-1")


def test_config_with_a_yaml_syntax_error_names_the_line(run_in_process, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("seed: 1\nmethod: [r3f\nlearning_rate: 1e-5\n")
    assert_clean_failure(run_in_process(["train", "--config", config]), "run.yaml", "line", "not valid YAML")


def test_unreadable_config(run_in_process, tmp_path, monkeypatch):
    config = tmp_path / "run.yaml"
    config.write_text("seed: 1\n")
    real_access = os.access
    # As root, chmod 000 does not deny reading: the permission check is made to fail instead.
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(config) else real_access(p, mode))
    assert_clean_failure(run_in_process(["train", "--config", config]), "run.yaml", "permission denied")


def test_unreadable_train_file(run_in_process, tmp_path, tiny_model, tiny_csv, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tiny_csv) else real_access(p, mode))
    result = run_in_process(train(tiny_model, tiny_csv, tmp_path / "out"))
    assert_clean_failure(result, "train.csv", "permission denied")


def test_train_file_that_is_a_folder(run_in_process, tmp_path, tiny_model):
    (tmp_path / "data.csv").mkdir()
    assert_clean_failure(run_in_process(train(tiny_model, tmp_path / "data.csv", tmp_path / "out")), "data.csv", "folder")


def test_latin1_csv_names_line_and_encoding(run_in_process, tmp_path, tiny_model):
    data = tmp_path / "train.csv"
    data.write_bytes(rows(["pos", "neg"] * 10, [f"caf\xe9 {i}" if i == 6 else "the cat sat" for i in range(20)]).encode("latin-1"))
    result = run_in_process(train(tiny_model, data, tmp_path / "out"))
    assert_clean_failure(result, "train.csv", "line 8", "0xe9", "Latin-1", "UTF-8")


def test_utf16_csv(run_in_process, tmp_path, tiny_model):
    data = tmp_path / "train.csv"
    data.write_bytes(rows(["pos", "neg"] * 10).encode("utf-16"))
    assert_clean_failure(run_in_process(train(tiny_model, data, tmp_path / "out")), "train.csv", "line 1", "UTF-16")


def test_malformed_jsonl_line_is_named(run_in_process, tmp_path, tiny_model):
    data = tmp_path / "train.jsonl"
    lines = [json.dumps({"text": "the cat sat", "label": i % 2}) for i in range(20)]
    lines[12] = '{"text": "the cat sat", "label": 1'
    data.write_text("\n".join(lines) + "\n")
    assert_clean_failure(run_in_process(train(tiny_model, data, tmp_path / "out")), "train.jsonl", "line 13", "JSON")


def test_malformed_json_array_names_the_line(run_in_process, tmp_path, tiny_model):
    data = tmp_path / "train.json"
    data.write_text('[\n{"text": "a", "label": 1},\n{"text": "b" "label": 0}\n]\n')
    assert_clean_failure(run_in_process(train(tiny_model, data, tmp_path / "out")), "train.json", "line 3", "JSON")


def test_glue_tsv_with_bytes_that_are_not_utf8(run_in_process, tmp_path, tiny_model):
    from tiny_glue import tiny_rte_dir

    glue = tiny_rte_dir(tmp_path / "glue")
    path = glue / "RTE" / "train.tsv"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4].replace(b"the", b"th\xe9", 1)
    path.write_bytes(b"".join(lines))
    args = ["train", "--model", tiny_model, "--task", "glue/rte", "--data-dir", glue, *FAST, "--output-dir", tmp_path / "out"]
    assert_clean_failure(run_in_process(args), "train.tsv", "line 5", "not UTF-8")


def test_run_record_that_is_not_utf8(run_in_process, tmp_path):
    from tiny_glue import fake_record, write_records

    runs = write_records(tmp_path / "sweep", [fake_record("glue/rte", "r3f", 1, [0.6], 0.5)])
    record = next((runs / "records").glob("*.json"))
    record.write_bytes(record.read_bytes().replace(b'"r3f"', b'"r3f\xff"'))
    result = run_in_process(["report", "--runs", runs, "--output-dir", tmp_path / "report"])
    assert_clean_failure(result, record.name, "line 1", "not UTF-8")


def test_missing_eval_file(run_in_process, tmp_path, tiny_model, tiny_csv):
    result = run_in_process(train(tiny_model, tiny_csv, tmp_path / "out", "--eval-file", tmp_path / "dev.csv"))
    assert_clean_failure(result, "dev.csv", "does not exist")


# ---- class 5: models ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory):
    """Copies of a tiny model, each broken in one way."""
    from transformers import BertTokenizerFast

    from tiny_glue import tiny_bert_dir

    root = tmp_path_factory.mktemp("models")
    base = tiny_bert_dir(root / "base")

    def copy(name: str) -> Path:
        return Path(shutil.copytree(base, root / name))

    truncated = copy("truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    unknown_type = copy("unknown_type")
    config = json.loads((unknown_type / "config.json").read_text())
    (unknown_type / "config.json").write_text(json.dumps({**config, "model_type": "bertish"}))

    pickled = copy("pickled")
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()

    no_tokenizer = copy("no_tokenizer")
    for path in no_tokenizer.iterdir():
        if path.name not in ("config.json", "model.safetensors"):
            path.unlink()

    other_words = copy("other_words")  # a tokenizer, but of a vocabulary none of the data's words are in
    for path in other_words.iterdir():
        if path.name not in ("config.json", "model.safetensors"):
            path.unlink()
    (other_words / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "zebra", "quartz"]) + "\n")
    BertTokenizerFast(vocab=str(other_words / "vocab.txt")).save_pretrained(other_words)

    (root / "weights.safetensors").write_bytes(weights.read_bytes())

    other_shapes = copy("other_shapes")  # config.json of a wider model than the weights
    config = json.loads((other_shapes / "config.json").read_text())
    (other_shapes / "config.json").write_text(json.dumps({**config, "hidden_size": 32, "intermediate_size": 64}))

    bad_tokenizer = copy("bad_tokenizer")
    (bad_tokenizer / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    return root


@pytest.mark.parametrize(
    "model, fragments",
    [
        ("truncated", ["model.safetensors", "truncated"]),
        ("unknown_type", ["model_type 'bertish'", "upgrade transformers"]),
        ("pickled", ["pytorch_model.bin", "does not load", "safetensors"]),
        ("no_tokenizer", ["no tokenizer files"]),
        ("other_words", ["unknown token", "tokenizer"]),
        ("weights.safetensors", ["is a file, not a model directory"]),
        ("other_shapes", ["do not fit its config.json"]),
        ("bad_tokenizer", ["tokenizer.json", "line 1", "not valid JSON"]),
    ],
)
def test_broken_model_directories(run_in_process, tmp_path, tiny_csv, broken_models, model, fragments):
    result = run_in_process(train(broken_models / model, tiny_csv, tmp_path / "out"))
    assert_clean_failure(result, *fragments)
    assert not (tmp_path / "out").exists()  # an error before training leaves no output directory (issue 17)


def test_missing_relative_model_path_is_not_a_hub_failure(run_in_process, tmp_path, tiny_csv, monkeypatch):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    line = assert_clean_failure(run_in_process(train("models/bert-tiny", tiny_csv, tmp_path / "out")), "models/bert-tiny", "does not exist")
    assert "huggingface.co" not in line and "connect" not in line


def test_hub_name_while_offline(run_in_process, tmp_path, tiny_csv):
    line = assert_clean_failure(run_in_process(train("someone/no-such-model", tiny_csv, tmp_path / "out")), "someone/no-such-model")
    assert "hub is off" in line and "no local directory" in line


# ---- class 6: max_length above the model's position table ---------------------------------------


def test_max_length_above_the_position_table_is_clamped_with_a_warning(run_in_process, tmp_path, tiny_model):
    long_text = " ".join(["the cat sat on the mat"] * 30)  # ~180 tokens: past the 64 positions unless clamped
    data = tmp_path / "train.csv"
    data.write_text(rows(["pos", "neg"] * 10, [long_text] * 20))
    args = ["train", "--model", tiny_model, "--train-file", data, "--max-steps", "1", "--batch-size", "4",
            "--no-progress", "--output-dir", tmp_path / "out", "--max-length", "1024"]
    result = run_in_process(args)
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "max_length" in line]
    assert warnings == [f"rxf: warning: max_length 1024 is more than model '{tiny_model}' can take (64 positions): using max_length 64"]


# ---- class 9: data that cannot train -----------------------------------------------------------


def test_one_class_csv(run_in_process, tmp_path, tiny_model):
    data = tmp_path / "train.csv"
    data.write_text(rows(["pos"] * 20))
    assert_clean_failure(run_in_process(train(tiny_model, data, tmp_path / "out")), "train.csv", "'pos'", "two classes")


def test_one_class_jsonl(run_in_process, tmp_path, tiny_model):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": "the cat sat", "label": "spam"}) + "\n" for _ in range(20)))
    assert_clean_failure(run_in_process(train(tiny_model, data, tmp_path / "out")), "train.jsonl", "two classes")


def test_one_class_in_the_rows_kept_by_max_train_samples(run_in_process, tmp_path, tiny_model):
    data = tmp_path / "train.csv"
    data.write_text(rows(["pos"] * 19 + ["neg"]))
    result = run_in_process(train(tiny_model, data, tmp_path / "out", "--max-train-samples", "2"))
    assert_clean_failure(result, "max_train_samples=2", "two classes")


def test_one_class_glue_train_file(run_in_process, tmp_path, tiny_model):
    from tiny_glue import tiny_rte_dir

    glue = tiny_rte_dir(tmp_path / "glue")
    path = glue / "RTE" / "train.tsv"
    path.write_text(path.read_text().replace("\tnot_entailment\n", "\tentailment\n"))
    args = ["train", "--model", tiny_model, "--task", "glue/rte", "--data-dir", glue, *FAST, "--output-dir", tmp_path / "out"]
    assert_clean_failure(run_in_process(args), "train.tsv", "'entailment'", "two classes")


def test_nan_score_in_a_glue_stsb_tsv(run_in_process, tmp_path, tiny_model):
    folder = tmp_path / "glue" / "STS-B"
    folder.mkdir(parents=True)
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    lines = [f"{i}\tg\tf\ty\t{i}\ts\ts\tthe cat sat\tthe dog sat\t{i % 5}.0\n" for i in range(12)]
    lines[6] = "6\tg\tf\ty\t6\ts\ts\tthe cat sat\tthe dog sat\tnan\n"
    (folder / "train.tsv").write_text(header + "".join(lines))
    (folder / "dev.tsv").write_text(header + "".join(lines[:4]))
    args = ["train", "--model", tiny_model, "--task", "glue/stsb", "--data-dir", tmp_path / "glue", *FAST,
            "--output-dir", tmp_path / "out"]
    assert_clean_failure(run_in_process(args), "train.tsv", "line 8", "nan", "finite")


def test_infinite_score_in_a_regression_csv(run_in_process, tmp_path, tiny_model):
    data = tmp_path / "scores.csv"
    data.write_text(rows([f"{i % 5}.5" for i in range(19)] + ["inf"]))
    result = run_in_process(train(tiny_model, data, tmp_path / "out", "--task-type", "regression"))
    assert_clean_failure(result, "scores.csv", "line 21", "finite")


def test_constant_regression_scores(run_in_process, tmp_path, tiny_model):
    data = tmp_path / "scores.csv"
    data.write_text(rows(["2.5"] * 20))
    result = run_in_process(train(tiny_model, data, tmp_path / "out", "--task-type", "regression"))
    assert_clean_failure(result, "scores.csv", "2.5", "nothing to learn")


def test_data_errors_leave_an_existing_run_untouched(run_in_process, tmp_path, tiny_model, tiny_csv):
    out = tmp_path / "out"
    assert run_in_process(train(tiny_model, tiny_csv, out)).returncode == 0
    before = snapshot(out)
    data = tmp_path / "one_class.csv"
    data.write_text(rows(["pos"] * 20))
    assert_clean_failure(run_in_process(train(tiny_model, data, out, "--overwrite")), "two classes")
    assert snapshot(out) == before  # --overwrite replaces a run only once the new one can start


def test_labels_that_look_like_math_do_not_cost_the_run_its_model(run_in_process, tmp_path, tiny_model):
    # matplotlib reads $...$ as math and failed on this label after training, before model/ was saved
    data = tmp_path / "train.csv"
    data.write_text(rows([r"$\nosuchcmd$" if i % 2 else "pos" for i in range(20)]))
    out = tmp_path / "out"
    result = run_in_process(train(tiny_model, data, out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "warning" not in result.stderr
    assert (out / "metrics.json").is_file() and (out / "model" / "model.safetensors").is_file()
    assert (out / "dev_confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    assert r"$\nosuchcmd$" in (out / "dev_report.md").read_text()
