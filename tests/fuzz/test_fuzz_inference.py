"""Fuzz cases of `rxf predict` and `rxf evaluate` (audit s14): bad options, inputs, models and write faults.

Every bad input ends with exit status 2 and one line on stderr naming the option, file, line or
setting; options and output locations are checked before the model loads; a failed write leaves
the earlier predictions or evaluation byte for byte as they were. Input files are read as training
reads them (the same quoting, a single JSON object as one row).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fuzz.conftest import assert_clean_failure, run_cli, snapshot
from rxf.cli import main

FAST = ["--max-steps", "2", "--eval-steps", "2", "--batch-size", "4", "--max-length", "16", "--no-progress"]


def two_class_rows(n: int = 40) -> str:
    return "text,label\n" + "".join(f"the cat sat {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}\n" for i in range(n))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model) -> dict[str, Path]:
    """A classifier run trained with a relative train_file (from its data folder), and a regression run."""
    root = tmp_path_factory.mktemp("inference")
    (root / "train.csv").write_text(two_class_rows())
    scores = "".join(json.dumps({"text": f"the cat sat {'good ' * (i % 3)}", "label": 0.5 + i % 3}) + "\n" for i in range(30))
    (root / "scores.jsonl").write_text(scores)
    here = Path.cwd()
    os.chdir(root)
    try:
        assert main(["train", "--model", str(tiny_model), "--train-file", "train.csv", *FAST, "--output-dir", "run"]) == 0
        assert main(["train", "--model", str(tiny_model), "--train-file", "scores.jsonl", *FAST, "--output-dir", "reg"]) == 0
    finally:
        os.chdir(here)
    return {"run": root / "run", "reg": root / "reg", "root": root}


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading a model fails the test: what is checked must be checked before."""
    import rxf.inference

    def load_predictor(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(rxf.inference, "load_predictor", load_predictor)


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "in.csv"
    path.write_text("text\nthe cat sat good\nbad\n")
    return path


# ---- options and output locations: named before the model loads -------------------------------


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--output-delimiter", "xx"], ["--output-delimiter 'xx'", "not valid"]),
        (["--delimiter", "xx"], ["--delimiter 'xx'", "not valid"]),
        (["--batch-size", "0"], ["--batch-size 0", "> 0"]),
        (["--max-length", "0"], ["--max-length 0", "> 0"]),
        (["--text-column", ""], ["--text-column '' is empty"]),
        (["--text-pair-column", "  "], ["--text-pair-column '  ' is empty"]),
        (["--output", "{tmp}/afile/x.csv"], ["afile is a file, not a folder", "--output"]),
        (["--output", "{tmp}/folder.csv"], ["is a folder, not a file", "--output"]),
        (["--output", "{tmp}/out.xlsx"], ["--output", "unsupported file type '.xlsx'"]),
    ],
    ids=["output-delimiter", "delimiter", "batch-size-0", "max-length-0", "empty-column", "blank-column", "output-under-a-file",
         "output-a-folder", "output-type"],
)
def test_predict_options_are_checked_before_the_model_loads(run_in_process, no_model_load, tmp_path, data, extra, fragments):
    (tmp_path / "afile").write_text("x\n")
    (tmp_path / "folder.csv").mkdir()
    keep = tmp_path / "in.predictions.csv"
    keep.write_text("precious,old,predictions\n1,2,3\n")
    before = snapshot(tmp_path)
    extra = [value.format(tmp=tmp_path) for value in extra]
    result = run_in_process(["predict", "--model", "some-run", "--input", data, *extra, "--no-progress"])
    assert_clean_failure(result, *fragments)
    assert snapshot(tmp_path) == before  # the earlier predictions untouched (a bad delimiter emptied them)


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--split", "test"], ["--split", "--eval-file"]),
        (["--max-eval-samples", "5"], ["--max-eval-samples", "--eval-file"]),
        (["--batch-size", "0"], ["--batch-size 0"]),
        (["--label-column", ""], ["--label-column '' is empty"]),
        (["--label-column", " "], ["--label-column ' ' is empty"]),
        (["--output-dir", "{tmp}/afile"], ["--output-dir", "is a file, not a folder"]),
        (["--output-dir", "{tmp}/afile/eval"], ["--output-dir", "afile is a file, not a folder"]),
    ],
    ids=["split", "max-eval-samples", "batch-size-0", "empty-label-column", "blank-label-column", "output-dir-a-file",
         "output-dir-under-a-file"],
)
def test_evaluate_options_are_checked_before_the_model_loads(run_in_process, no_model_load, tmp_path, extra, fragments):
    (tmp_path / "afile").write_text("x\n")
    labelled = tmp_path / "ev.csv"
    labelled.write_text("text,label\nthe cat sat good,pos\n")
    extra = [value.format(tmp=tmp_path) for value in extra]
    result = run_in_process(["evaluate", "--model", "some-run", "--eval-file", labelled, *extra, "--no-progress"])
    assert_clean_failure(result, *fragments)


@pytest.mark.parametrize("flag", ["--label-column", "--text-column", "--text-pair-column", "--delimiter", "--label-separator"])
@pytest.mark.parametrize("source", [[], ["--task", "glue/rte"]], ids=["run-dev-data", "task"])
def test_how_to_read_a_file_without_an_eval_file_is_refused_before_the_model_loads(run_in_process, no_model_load, flag, source):
    """A task's data and a run's own dev data are read with their own columns and format: ``--label-column
    flipped`` on the run's dev data was silently ignored (the run's column scored instead)."""
    result = run_in_process(["evaluate", "--model", "some-run", *source, flag, ";", "--no-progress"])
    assert_clean_failure(result, f"{flag} says how to read --eval-file", "give the data with --eval-file")


def test_an_output_that_is_a_hard_link_of_the_input_is_refused(run_in_process, no_model_load, tmp_path, data):
    os.link(data, tmp_path / "link.csv")
    before = snapshot(tmp_path)
    result = run_in_process(["predict", "--model", "some-run", "--input", data, "--output", tmp_path / "link.csv"])
    assert_clean_failure(result, "is the input file")
    assert snapshot(tmp_path) == before


# ---- outputs: whole or not at all (write faults), valid JSON ----------------------------------


def test_a_failed_write_keeps_the_earlier_predictions(run_in_process, runs, tmp_path, data, full_disk):
    out = tmp_path / "out.csv"
    out.write_text("precious,old,predictions\n1,2,3\n")
    before = snapshot(tmp_path)
    with full_disk():
        result = run_in_process(["predict", "--model", runs["run"], "--input", data, "--output", out, "--no-progress"])
    assert_clean_failure(result, "could not write out.csv", "no space left on device")
    assert snapshot(tmp_path) == before  # no half-written file, no temporary file left


def test_an_output_that_is_a_symbolic_link_is_written_through(run_in_process, runs, tmp_path, data):
    """--output link.csv -> shared/preds.csv: the file the link points to gets the predictions, the link stays."""
    (tmp_path / "shared").mkdir()
    target, link = tmp_path / "shared" / "preds.csv", tmp_path / "link.csv"
    target.write_text("stale,predictions\n")
    link.symlink_to(target)
    result = run_in_process(["predict", "--model", runs["run"], "--input", data, "--output", link, "--no-progress"])
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and target.read_text().splitlines()[0] == "text,prediction,prob_neg,prob_pos"


def labelled_eval_file(tmp_path, earlier_report=False):
    """A two-row labelled file to evaluate on, and the output folder ``tmp_path/eval`` (holding a made-up
    earlier report with ``earlier_report``)."""
    labelled = tmp_path / "ev.csv"
    labelled.write_text("text,label\nthe cat sat good,pos\nthe cat sat bad,neg\n")
    out = tmp_path / "eval"
    if earlier_report:
        out.mkdir()
        for name in ("eval_report.md", "eval_results.json", "eval_confusion_matrix.png"):
            (out / name).write_text(f"OLD {name}\n")
    return labelled, out


def test_a_failed_write_keeps_the_earlier_evaluation(run_in_process, runs, tmp_path, full_disk):
    labelled, out = labelled_eval_file(tmp_path, earlier_report=True)
    before = snapshot(out)
    args = ["evaluate", "--model", runs["run"], "--eval-file", labelled, "--output-dir", out, "--no-progress"]
    with full_disk("eval_"):  # the report's files (rxf.rundir.output_folder's write test is another check)
        assert_clean_failure(run_in_process(args), "could not write the eval report", "no space left on device")
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == sorted(before)  # no staging left
    assert run_in_process(args).returncode == 0
    assert (out / "eval_confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((out / "eval_results.json").read_text())["num_examples"] == 2


def test_a_failed_write_leaves_no_empty_output_folder(run_in_process, runs, tmp_path, full_disk):
    labelled, _ = labelled_eval_file(tmp_path)
    args = ["evaluate", "--model", runs["run"], "--eval-file", labelled, "--output-dir", tmp_path / "new" / "eval", "--no-progress"]
    with full_disk("eval_"):
        assert_clean_failure(run_in_process(args), "could not write the eval report", "no space left on device")
    assert not (tmp_path / "new").exists()


def test_a_confusion_matrix_that_cannot_be_drawn_removes_the_earlier_one(run_in_process, runs, tmp_path, monkeypatch):
    from rxf import inference

    labelled, out = labelled_eval_file(tmp_path, earlier_report=True)

    def broken(plt, evaluation, title):
        raise ValueError("cannot draw")

    monkeypatch.setattr(inference, "_draw_confusion", broken)
    result = run_in_process(["evaluate", "--model", runs["run"], "--eval-file", labelled, "--output-dir", out, "--no-progress"])
    assert result.returncode == 0, result.stderr
    assert "eval_confusion_matrix.png was not drawn (ValueError: cannot draw)" in result.stderr
    assert "the earlier eval_confusion_matrix.png will be removed when the new results are written" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["eval_report.md", "eval_results.json"]  # no stale picture
    assert json.loads((out / "eval_results.json").read_text())["num_examples"] == 2


def test_disk_full_on_a_real_tmpfs_keeps_the_earlier_predictions(mount_point, runs, tmp_path):
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], check=True)
    big = tmp_path / "big.csv"
    big.write_text("text\n" + "".join(f"the cat sat good number {i}\n" for i in range(1500)))
    out = mount_point / "big.predictions.csv"
    out.write_text("text,prediction\n" + "".join(f"precious earlier row {i},pos\n" for i in range(800)))
    before = snapshot(mount_point)
    result = run_cli(["predict", "--model", runs["run"], "--input", big, "--output", out, "--no-progress"])
    assert_clean_failure(result, "could not write big.predictions.csv", "no space left on device")
    assert snapshot(mount_point) == before


def test_json_output_has_null_for_nan(run_in_process, runs, tmp_path):
    data = tmp_path / "nan.jsonl"
    data.write_text('{"text": "the cat sat good", "score": NaN}\n{"text": "bad", "score": [Infinity, 1]}\n')
    for output in (tmp_path / "out.jsonl", tmp_path / "out.json"):
        assert run_in_process(["predict", "--model", runs["run"], "--input", data, "--output", output, "--no-progress"]).returncode == 0

        def no_constants(name):
            raise AssertionError(f"{output.name} holds {name}, which is not JSON")

        text = output.read_text()
        records = [json.loads(line, parse_constant=no_constants) for line in text.splitlines()] if output.suffix == ".jsonl" \
            else json.loads(text, parse_constant=no_constants)
        assert [r["score"] for r in records] == [None, [None, 1]]



# ---- models and runs ----------------------------------------------------------------------------


def test_a_model_without_a_trained_head_is_refused(run_in_process, tiny_model, tmp_path, data):
    """A bare encoder: transformers would add a random classification head, and predict would print noise."""
    result = run_in_process(["predict", "--model", tiny_model, "--input", data, "--output", tmp_path / "o.csv"])
    assert_clean_failure(result, str(tiny_model), "not a trained classifier", "classifier.weight", "rxf train")
    assert not (tmp_path / "o.csv").exists()
    labelled = tmp_path / "ev.csv"
    labelled.write_text("text,label\nthe cat sat good,LABEL_1\n")
    result = run_in_process(["evaluate", "--model", tiny_model, "--eval-file", labelled, "--output-dir", tmp_path / "e"])
    assert_clean_failure(result, "not a trained classifier")


@pytest.mark.parametrize(
    "edit, fragments",
    [(("delimiter: null", "delimiter: 5"), ["config.yaml", "delimiter: 5", "string"]),
     (("max_length: 16", "max_length: true"), ["config.yaml", "max_length: true", "whole number"])],
    ids=["delimiter-int", "max-length-bool"],
)
def test_a_hand_edited_run_config_of_the_wrong_type(run_in_process, runs, tmp_path, data, edit, fragments):
    run = shutil.copytree(runs["run"], tmp_path / "run")
    text = (run / "config.yaml").read_text()
    assert edit[0] in text
    (run / "config.yaml").write_text(text.replace(*edit))
    result = run_in_process(["predict", "--model", run, "--input", data, "--output", tmp_path / "o.csv"])
    assert_clean_failure(result, *fragments)


def test_an_unfinished_run_says_so(run_in_process, runs, tmp_path, data):
    run = tmp_path / "unfinished"
    (run / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    for name in ("run.json", "config.yaml"):
        shutil.copy(runs["run"] / name, run / name)
    result = run_in_process(["predict", "--model", run, "--input", data, "--output", tmp_path / "o.csv"])
    assert_clean_failure(result, str(run), "has not finished", "no model/")


def test_evaluate_a_run_from_another_folder(run_in_process, runs, tmp_path, monkeypatch):
    """The run's own dev set: its train_file (relative in config.yaml) is found through run.json, from anywhere."""
    monkeypatch.chdir(tmp_path)
    assert run_in_process(["evaluate", "--model", runs["run"], "--output-dir", tmp_path / "e", "--no-progress"]).returncode == 0
    assert json.loads((tmp_path / "e" / "eval_results.json").read_text())["num_examples"] == 4
    older = shutil.copytree(runs["run"], tmp_path / "older")  # a run without run.json: the path as config.yaml has it
    (older / "run.json").unlink()
    result = run_in_process(["evaluate", "--model", older, "--output-dir", tmp_path / "e2", "--no-progress"])
    assert_clean_failure(result, "train_file train.csv", "config.yaml", "does not exist", "--eval-file")


# ---- input files: read as training reads them ---------------------------------------------------


def test_a_repeated_column_name_is_refused(run_in_process, runs, tmp_path):
    data = tmp_path / "dup.csv"
    data.write_text("text,text\nthe cat sat good,KEEP_ME\n")
    result = run_in_process(["predict", "--model", runs["run"], "--input", data, "--no-progress"])
    assert_clean_failure(result, str(data), "line 1", "column 'text' appears twice")


def test_a_quote_left_open_is_named_with_its_line(run_in_process, runs, tmp_path):
    data = tmp_path / "open.csv"
    data.write_text('text\nthe cat sat good\n"the cat sat bad\nbad\nthe end\n')
    result = run_in_process(["predict", "--model", runs["run"], "--input", data, "--no-progress"])
    assert_clean_failure(result, str(data), "line 3", "never closed")


@pytest.mark.parametrize(
    "name, content",
    [("quotes.tsv", 'text\n"Great" movie, good\nsays ""hi""\n"a\ttab"\n'),
     ("quotes.csv", 'text,label\n"a, b",pos\n"x ""y"" z",neg\n5" screen,pos\n'),
     ("pretty.json", '{\n "text": "the cat sat good",\n "label": "pos"\n}\n'),
     ("array.json", '[{"text": "good"}, {"text": "bad"}]\n'),
     ("long.csv", "text\nshort one\n" + "good " * 40000 + "\n"),
     ("no-final-newline.csv", "text,label,note\nthe cat sat good,pos,\nthe cat sat bad,neg,")],
    ids=["tsv-quotes", "csv-quotes", "one-pretty-json-object", "json-array", "cell-over-131072-chars",
         "empty-last-cell-and-no-final-newline"],
)
def test_inputs_are_read_as_training_reads_them(run_in_process, runs, tmp_path, name, content):
    from rxf.tasks.files import read_file

    data = tmp_path / name
    data.write_text(content)
    output = tmp_path / f"out{data.suffix}"
    assert run_in_process(["predict", "--model", runs["run"], "--input", data, "--output", output, "--no-progress"]).returncode == 0
    if data.suffix == ".json":
        written = [row["text"] for row in json.loads(output.read_text())]
    else:
        import csv

        with open(output, newline="") as f:
            written = [row["text"] for row in csv.DictReader(f, delimiter="\t" if data.suffix == ".tsv" else ",")]
    assert written == read_file(data, "train_file").ds["text"]


def test_a_json_lines_file_with_a_pretty_object_is_refused(run_in_process, runs, tmp_path):
    data = tmp_path / "pretty.jsonl"
    data.write_text('{\n "text": "good"\n}\n')
    assert_clean_failure(run_in_process(["predict", "--model", runs["run"], "--input", data]), str(data), "line 1")


def test_a_regression_label_that_is_not_finite(run_in_process, runs, tmp_path):
    for value in ("nan", "inf"):
        data = tmp_path / f"{value}.csv"
        data.write_text(f"text,label\nthe cat sat good,1.5\nthe cat sat bad,{value}\n")
        result = run_in_process(["evaluate", "--model", runs["reg"], "--eval-file", data, "--output-dir", tmp_path / "e"])
        assert_clean_failure(result, str(data), "line 3", "not a finite number")
