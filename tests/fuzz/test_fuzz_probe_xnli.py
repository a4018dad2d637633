"""`rxf probe` and `rxf xnli` on bad input and reruns (fuzz audit 2, A3-A7, B8-B10, C1, C6).

A clean failure is exit 2 and one line naming the file, field or option (:func:`assert_clean_failure`);
a failure or a rerun leaves the earlier results byte for byte as they were (:func:`snapshot`).
"""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest
from probing_helpers import write_tiny_bert, write_tiny_glue
from tiny_multilingual import tiny_multilingual_model_dir, write_xnli_dir

from fuzz.conftest import assert_clean_failure, snapshot  # noqa: F401  (run_in_process is a fixture)

# ---- xnli ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xnli_done(tmp_path_factory):
    """A finished `rxf xnli` (one method, one seed, en + ar), its data and the arguments that made it."""
    from rxf.cli import main

    root = tmp_path_factory.mktemp("xnli")
    model = tiny_multilingual_model_dir(root / "model")
    data = write_xnli_dir(root / "data", ["en", "ar"], dev_groups=2, test_groups=2)
    args = ["xnli", "--model", str(model), "--languages", "en", "ar", "--methods", "standard", "--seeds", "1",
            "--epochs", "1", "--batch-size", "4", "--max-length", "32"]
    assert main([*args, "--data-dir", str(data), "--output-dir", str(root / "out")]) == 0
    return {"root": root, "data": data, "out": root / "out", "args": args}


def _xnli_copy(done, tmp_path):
    """A copy of the finished experiment to change at will, and its data (the runs record the data's path)."""
    out = tmp_path / "out"
    shutil.copytree(done["out"], out)
    return out, done["data"]


def test_xnli_refuses_a_seed_given_twice(run_in_process, tmp_path):
    result = run_in_process(["xnli", "--seeds", "1", "1", "--output-dir", tmp_path / "o"])
    assert_clean_failure(result, "seeds", "--seeds", "twice")
    assert not (tmp_path / "o").exists()


def test_xnli_that_fails_before_writing_anything_leaves_no_output_folder(xnli_done, run_in_process, tmp_path):
    (tmp_path / "no-data").mkdir()
    out = tmp_path / "new" / "out"
    result = run_in_process([*xnli_done["args"], "--data-dir", tmp_path / "no-data", "--output-dir", out])
    assert_clean_failure(result, "no-data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-data"]  # neither out nor new/


def test_xnli_refuses_a_finished_run_whose_data_files_changed(xnli_done, run_in_process, tmp_path):
    out, data = _xnli_copy(xnli_done, tmp_path)
    shutil.copytree(data, tmp_path / "data-as-it-was")
    try:
        for path in sorted(data.rglob("test-*.tsv")):  # half of every test file
            lines = path.read_text().splitlines(keepends=True)
            path.write_text("".join(lines[: len(lines) // 2]))
        before = snapshot(out)
        # Seed 2 comes first and is not trained yet: the changed seed-1 run is refused before it trains.
        result = run_in_process([*xnli_done["args"], "--seeds", "2", "1", "--data-dir", data, "--output-dir", out])
        assert_clean_failure(result, "standard-seed1", "other data", "train_options.overwrite=true")
        assert "training" not in result.stdout and snapshot(out) == before
    finally:
        shutil.rmtree(data)
        shutil.copytree(tmp_path / "data-as-it-was", data)
    # The same command on the data as it was reuses the run (no training).
    result = run_in_process([*xnli_done["args"], "--data-dir", data, "--output-dir", out])
    assert result.returncode == 0, result.stderr
    assert "training" not in result.stdout


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda m: m["other_splits"]["test_en"].update(test_en_accuracy="high"), ["test_en_accuracy", "'high'"]),
        (lambda m: m["other_splits"]["test_en"].clear(), ["'other_splits.test_en.test_en_accuracy'", "missing"]),
        (lambda m: m["other_splits"].update(test_ar=[]), ["'other_splits.test_ar'", "mapping", "[]"]),
        (lambda m: m.update(other_splits={k: v for k, v in m["other_splits"].items() if k != "test_ar"}),
         ["'other_splits.test_ar.test_ar_accuracy'", "missing"]),
        (lambda m: m.update(other_splits=[1]), ["other_splits"]),
        (lambda m: [], ["must be a mapping", "(it is [])"]),
    ],
)
def test_xnli_a_finished_run_with_a_bad_metrics_file_is_one_line(xnli_done, run_in_process, tmp_path, edit, words):
    out, data = _xnli_copy(xnli_done, tmp_path)
    path = out / "runs" / "standard-seed1" / "metrics.json"
    metrics = json.loads(path.read_text())
    replaced = edit(metrics)
    path.write_text(json.dumps(metrics if replaced is None else replaced))
    result = run_in_process([*xnli_done["args"], "--data-dir", data, "--output-dir", out])
    assert_clean_failure(result, str(path), "delete it", *words)


@pytest.mark.parametrize("failing", ["results.md", "xnli.png"])
def test_xnli_a_failed_report_write_leaves_the_earlier_report(xnli_done, run_in_process, tmp_path, full_disk, failing):
    """Tables and figure are one write: the disk filling up on any of them leaves the earlier report whole."""
    out, data = _xnli_copy(xnli_done, tmp_path)
    before = snapshot(out)
    with full_disk(failing):
        result = run_in_process([*xnli_done["args"], "--data-dir", data, "--output-dir", out])
    assert_clean_failure(result, "could not write the xnli report", str(out), "no space left")
    assert snapshot(out) == before


def test_xnli_a_folder_in_the_way_of_the_report_is_one_line(xnli_done, run_in_process, tmp_path):
    out, data = _xnli_copy(xnli_done, tmp_path)
    (out / "results.md").unlink()
    (out / "results.md").mkdir()
    result = run_in_process([*xnli_done["args"], "--data-dir", data, "--output-dir", out])
    assert_clean_failure(result, "xnli report", "folder")


def test_xnli_another_run_in_the_way_names_a_setting_xnli_accepts(xnli_done, run_in_process, tmp_path):
    out, data = _xnli_copy(xnli_done, tmp_path)
    args = [*xnli_done["args"], "--data-dir", data, "--output-dir", out, "--lr", "1e-3"]
    line = assert_clean_failure(run_in_process(args), "holds another run", "--set train_options.overwrite=true")
    assert "pass --overwrite" not in line


def test_xnli_tsv_with_a_quote_left_open_blames_the_line_it_opens_on(tmp_path):
    from rxf.errors import RxfError
    from rxf.tasks.xnli import read_xnli_tsv

    path = tmp_path / "test-ar.tsv"
    path.write_text('a\tb\tneutral\n"unterminated\tquote\tneutral\nnext\tline\tneutral\n')
    with pytest.raises(RxfError, match=r"test-ar.tsv, line 2: a quote \(\"\) is left open: the row runs on to line 3"):
        read_xnli_tsv(path)


# ---- probe -----------------------------------------------------------------------------------

SHORT = ["--max-steps", "2", "--batch-size", "8", "--max-length", "24", "--probe-train-samples", "40",
         "--similarity-samples", "12", "--seeds", "1", "--no-track-similarity", "--methods", "standard"]


@pytest.fixture(scope="module")
def probe_done(tmp_path_factory):
    """A finished `rxf probe generalization` (sst2 -> rte), its model and data."""
    from rxf.cli import main

    root = tmp_path_factory.mktemp("probe")
    model, glue = write_tiny_bert(root / "bert"), str(write_tiny_glue(root / "glue"))
    common = ["--model", model, "--data-dir", glue, *SHORT]
    args = ["probe", "generalization", *common, "--source", "glue/sst2", "--targets", "glue/rte"]
    assert main([*args, "--output-dir", str(root / "out")]) == 0
    return {"root": root, "model": model, "glue": glue, "out": root / "out", "args": args, "common": common}


def _probe_copy(done, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(done["out"], out)
    return out


def test_probe_refuses_a_seed_given_twice(run_in_process, tmp_path):
    result = run_in_process(["probe", "generalization", "--seeds", "1", "1", "--output-dir", tmp_path / "o"])
    assert_clean_failure(result, "seeds", "--seeds", "twice")


@pytest.mark.parametrize(
    "args, words",
    [
        (["chain", "--tasks", "glue/sst2", "glue/rte", "--set", "methods=[]"], ["methods is empty", "a chain"]),
        (["cycle", "--tasks", "glue/sst2", "glue/rte", "--set", "methods=[]"], ["methods is empty", "a cycle"]),
        (["generalization", "--set", "methods=[]", "--no-pretrained"], ["nothing to probe", "--methods", "--checkpoint"]),
    ],
    ids=["chain", "cycle", "generalization"],
)
def test_probe_with_nothing_to_train_or_probe_is_refused_before_anything_is_created(probe_done, run_in_process, tmp_path,
                                                                                    args, words):
    # An empty methods list once gave empty tables, a legend warning, and exit 0.
    result = run_in_process(["probe", *args, *probe_done["common"], "--output-dir", tmp_path / "o"])
    assert_clean_failure(result, *words)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--targets", "glue/cola"], ["target_tasks", '["glue/rte"] there']),
        (["--targets", "glue/rte", "--lr", "0.5"], ["train.learning_rate"]),
        (["--targets", "glue/rte", "--layer", "0"], ["features.layer"]),
    ],
)
def test_probe_does_not_reuse_a_run_made_with_other_settings(probe_done, run_in_process, tmp_path, extra, words):
    out = _probe_copy(probe_done, tmp_path)
    before = snapshot(out)
    args = ["probe", "generalization", *probe_done["common"], "--source", "glue/sst2", *extra, "--output-dir", out]
    line = assert_clean_failure(run_in_process(args), "standard-seed1/result.json", "another run", *words)
    assert "train.overwrite=true" in line and "pass --overwrite " not in line
    assert snapshot(out) == before


def test_probe_chain_in_a_generalization_folder_is_one_line(probe_done, run_in_process, tmp_path):
    out = _probe_copy(probe_done, tmp_path)
    args = ["probe", "chain", *probe_done["common"], "--tasks", "glue/sst2", "glue/rte", "--output-dir", out]
    assert_clean_failure(run_in_process(args), "result.json", 'experiment: "generalization" there, "chain" here')


def test_probe_does_not_reuse_a_run_whose_data_changed(probe_done, run_in_process, tmp_path):
    out = _probe_copy(probe_done, tmp_path)
    glue = tmp_path / "glue"
    shutil.copytree(probe_done["glue"], glue)
    rte = next(p for p in sorted(glue.rglob("*")) if p.is_file() and "RTE" in str(p) and "train" in p.name)
    lines = rte.read_text().splitlines(keepends=True)
    rte.write_text("".join(lines[:-1]))  # one training row fewer
    args = [*probe_done["args"], "--output-dir", out]
    args[args.index(probe_done["glue"])] = str(glue)
    assert_clean_failure(run_in_process(args), "result.json", "glue/rte's data", "have the data files changed")


def test_probe_the_same_command_reuses_the_run(probe_done, run_in_process, tmp_path):
    out = _probe_copy(probe_done, tmp_path)
    result = run_in_process([*probe_done["args"], "--output-dir", out])
    assert result.returncode == 0, result.stderr
    assert "done before" in result.stdout


@pytest.mark.parametrize(
    "content, words",
    [("{}", ["records no settings"]), ("[]", ["not a json object"]), ("{", ["not valid json"])],
)
def test_probe_a_result_file_of_the_wrong_shape_is_one_line(probe_done, run_in_process, tmp_path, content, words):
    out = _probe_copy(probe_done, tmp_path)
    (out / "runs" / "standard-seed1" / "result.json").write_text(content)
    result = run_in_process([*probe_done["args"], "--output-dir", out])
    assert_clean_failure(result, "standard-seed1/result.json", *words)


def test_probe_a_result_file_missing_its_probes_is_one_line(probe_done, run_in_process, tmp_path):
    out = _probe_copy(probe_done, tmp_path)
    path = out / "runs" / "standard-seed1" / "result.json"
    result = json.loads(path.read_text())
    del result["probes"]
    path.write_text(json.dumps(result))
    assert_clean_failure(run_in_process([*probe_done["args"], "--output-dir", out]), str(path), "'probes' must be a list (it is missing)")


@pytest.mark.parametrize("failing", ["results.json", "generalization.png"])
def test_probe_a_failed_report_write_leaves_the_earlier_report(probe_done, run_in_process, tmp_path, full_disk, failing):
    out = _probe_copy(probe_done, tmp_path)
    before = snapshot(out)
    with full_disk(failing):
        result = run_in_process([*probe_done["args"], "--output-dir", out])
    assert_clean_failure(result, "could not write the report", str(out), "no space left")
    assert snapshot(out) == before


def test_probe_a_folder_in_the_way_of_the_summary_is_one_line(probe_done, run_in_process, tmp_path):
    out = _probe_copy(probe_done, tmp_path)
    (out / "summary.md").unlink()
    (out / "summary.md").mkdir()
    assert_clean_failure(run_in_process([*probe_done["args"], "--output-dir", out]), "report", "folder")


def test_probe_cache_dir_that_is_a_file_is_one_line(probe_done, run_in_process, tmp_path):
    cache = tmp_path / "cachefile"
    cache.write_text("x")
    args = [*probe_done["args"], "--output-dir", tmp_path / "out", "--cache-dir", cache]
    assert_clean_failure(run_in_process(args), "--cache-dir", str(cache), "is a file, not a folder")
    assert not (tmp_path / "out").exists()  # the output folder made for the experiment is removed again
    similarity = ["probe", "similarity", probe_done["model"], "--reference", probe_done["model"], "--task", "glue/sst2",
                  "--data-dir", probe_done["glue"], "--samples", "8", "--cache-dir", cache]
    assert_clean_failure(run_in_process(similarity), "--cache-dir", "not a folder")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "feature_cache").write_text("x")  # the default cache, of a user who gave no --cache-dir
    args = [*probe_done["args"], "--output-dir", tmp_path / "out"]
    assert_clean_failure(run_in_process(args), f"output_dir's feature_cache {tmp_path}/out/feature_cache is a file")


def test_probe_that_fails_before_writing_anything_leaves_no_output_folder(probe_done, run_in_process, tmp_path):
    (tmp_path / "no-glue").mkdir()
    args = [*probe_done["args"], "--output-dir", tmp_path / "new" / "out"]
    args[args.index(probe_done["glue"])] = str(tmp_path / "no-glue")
    assert_clean_failure(run_in_process(args), "no-glue")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-glue"]  # neither out nor new/


def test_probe_similarity_refuses_a_model_folder_without_tokenizer_files(probe_done, run_in_process, tmp_path):
    bare = tmp_path / "notok"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(pathlib.Path(probe_done["model"]) / name, bare / name)
    result = run_in_process(["probe", "similarity", bare, "--reference", probe_done["model"], "--task", "glue/sst2",
                             "--data-dir", probe_done["glue"], "--samples", "8"])
    assert_clean_failure(result, str(bare), "no tokenizer files")


@pytest.mark.parametrize("samples", ["0", "-3"])
def test_probe_similarity_names_samples_when_it_is_not_positive(probe_done, run_in_process, samples):
    result = run_in_process(["probe", "similarity", probe_done["model"], "--reference", probe_done["model"],
                             "--task", "glue/sst2", "--data-dir", probe_done["glue"], "--samples", samples])
    line = assert_clean_failure(result, "--samples", samples)
    assert "max_eval_samples" not in line
