"""`rxf probe` end to end on a tiny BERT and tiny GLUE-format folders, a few examples and steps per stage."""

import json

import pytest

from probing_helpers import write_tiny_bert, write_tiny_glue
from rxf.cli import main

SHORT = [
    "--max-steps", "2", "--batch-size", "8", "--max-length", "24", "--probe-train-samples", "40",
    "--similarity-samples", "12", "--seeds", "1",
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    return {"model": write_tiny_bert(root / "bert"), "glue": str(write_tiny_glue(root / "glue"))}


def _run(setup, experiment, out, *extra):
    argv = ["probe", experiment, "--model", setup["model"], "--data-dir", setup["glue"], "--output-dir", str(out), *SHORT, *extra]
    assert main(argv) == 0
    return json.loads((out / "results.json").read_text())


def test_generalization_probes_each_target_for_each_method_and_the_pretrained_model(setup, tmp_path, capsys):
    out = tmp_path / "fig3"
    result = _run(setup, "generalization", out, "--source", "glue/sst2", "--targets", "glue/rte", "glue/stsb",
                  "--methods", "standard", "r4f")
    keys = {(r["method"], r["task"]) for r in result["rows"]}
    assert keys == {(m, t) for m in ("pre-trained", "standard", "r4f") for t in ("glue/rte", "glue/stsb")}
    for row in result["rows"]:
        assert row["metric"] == {"glue/rte": "accuracy", "glue/stsb": "pearson_spearman"}[row["task"]]
        assert -1.0 <= row["value"] <= 1.0 and row["probe_train_examples"] == 40
    similarity = {r["method"]: r for r in result["similarity"]}
    assert similarity["pre-trained"]["cka"] == pytest.approx(1.0)
    assert 0.0 < similarity["r4f"]["cka"] <= 1.0 + 1e-9 and similarity["r4f"]["effective_rank"] >= 1.0
    run = next(r for r in result["runs"] if r["method"] == "r4f")
    assert run["source"]["task"] == "glue/sst2" and run["source"]["similarity_during_training"]  # tracked while training
    assert (out / "generalization.png").stat().st_size > 1000
    assert "| pre-trained |" in (out / "summary.md").read_text() and "r4f" in (out / "results.csv").read_text()
    assert not (out / "runs" / "r4f-seed1" / "source" / "model").exists()  # weights are not kept by default
    assert "wrote" in capsys.readouterr().out

    # Rerunning the command reuses the finished runs; --checkpoint probes a given model without training.
    again = _run(setup, "generalization", out, "--source", "glue/sst2", "--targets", "glue/rte", "glue/stsb",
                 "--methods", "standard", "r4f", "--checkpoint", f"mine={setup['model']}", "--no-pretrained")
    assert [r for r in again["runs"]] == result["runs"]
    assert {r["method"] for r in again["rows"]} == {"mine", "standard", "r4f"}


def test_chain_probes_the_source_task_before_and_after_every_stage(setup, tmp_path):
    out = tmp_path / "fig4"
    result = _run(setup, "chain", out, "--tasks", "glue/sst2", "glue/rte", "glue/cola", "--methods", "r3f",
                  "--eval-steps", "1", "--stage-checkpoint", "best")
    rows = result["rows"]
    assert [(r["stage"], r["trained_on"], r["task"]) for r in rows] == [
        (0, "pre-trained", "glue/sst2"), (1, "glue/sst2", "glue/sst2"), (2, "glue/rte", "glue/sst2"),
        (3, "glue/cola", "glue/sst2"),
    ]
    assert rows[0]["cka"] == pytest.approx(1.0) and all(0 < r["cka"] <= 1 + 1e-9 for r in rows)
    stages = result["runs"][0]["stages"]
    assert [s["start"].endswith("bert") for s in stages] == [True, False, False]  # each stage starts from the last
    assert stages[1]["start"].endswith("stage01-glue-sst2/encoder")
    assert all(s["checkpoint"] == "best" and s["checkpoint_step"] in (1, 2) for s in stages)
    assert not list(out.glob("runs/*/*/encoder"))  # intermediate encoders are deleted
    assert (out / "chain.png").is_file() and "after glue/rte" in (out / "summary.md").read_text()


def test_cycle_probes_each_task_in_each_cycle(setup, tmp_path):
    out = tmp_path / "fig5"
    result = _run(setup, "cycle", out, "--tasks", "glue/sst2", "glue/rte", "--cycles", "2", "--methods", "standard",
                  "--stage-checkpoint", "final", "--no-track-similarity")
    assert [(r["cycle"], r["task"]) for r in result["rows"]] == [
        (1, "glue/sst2"), (1, "glue/rte"), (2, "glue/sst2"), (2, "glue/rte"),
    ]
    assert result["rows"][0]["cka"] == pytest.approx(1.0)  # cycle 1's first probe is the pre-trained model
    assert len(result["runs"][0]["stages"]) == 4 and (out / "cycle.png").is_file()
    assert (out / "config.yaml").is_file()


def test_similarity_prints_cka_and_effective_rank(setup, capsys):
    code = main(["probe", "similarity", setup["model"], "--reference", setup["model"], "--task", "glue/rte",
                 "--data-dir", setup["glue"], "--samples", "10", "--pooling", "mean"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cka"] == pytest.approx(1.0) and printed["effective_rank"] >= 1.0
    assert "mean over non-padding tokens" in printed["features"]


@pytest.mark.parametrize(
    "argv,words",
    [
        (["generalization", "--set", "sead=1"], ["sead", "seeds"]),
        (["chain", "--tasks", "glue/sst2"], ["at least two tasks"]),
        (["generalization", "--checkpoint", "nolabel"], ["LABEL=DIRECTORY"]),
        (["cycle", "--cycles", "0"], ["cycles", "> 0"]),
        (["chain", "--pooling", "max"], ["pooling", "cls, mean"]),
        (["generalization", "--set", "train.output_dir=/x"], ["train.output_dir", "set by each stage"]),
        (["generalization", "--methods", "r3ff"], ["methods", "(from --methods)", "r3f"]),
    ],
)
def test_bad_input_is_a_one_line_error(setup, tmp_path, capsys, argv, words):
    code = main(["probe", *argv, "--model", setup["model"], "--data-dir", setup["glue"], "--output-dir", str(tmp_path / "x")])
    message = capsys.readouterr().err
    assert code == 2 and message.count("\n") == 1, message
    for word in words:
        assert word in message
