"""Fuzz cases of issue 13, classes 1, 2 and 10: bad settings end in one clean line, and training never
ends with exit 0 and a non-finite model.

* class 1: NaN/±inf in any numeric setting of any verb is refused when the config is built, naming
  the setting and where it came from; the per-step guard stops (or, all steps skipped, refuses to
  call it a trained model), with a rescue checkpoint that is verified finite;
* class 2: every field is checked against its declared type after the file, the flags and ``--set``
  are merged; the error names the source (file, flag or ``--set``);
* class 10: one line on stderr, whatever failed (argparse usage errors, library log lines).

Most cases fail before any model is loaded, so they run in-process (the ``run_in_process`` fixture of
conftest.py: the same ``main`` as the ``rxf`` script, stderr captured at the file-descriptor level);
the cases about what a separate process prints (library log lines, argparse) use :func:`run_cli`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

# As a module path: another folder's conftest may already be the module named "conftest".
from fuzz.conftest import assert_clean_failure, run_cli


@pytest.fixture
def files(tmp_path) -> Path:
    """A folder of config files, each with one bad setting, and a sweep with a recipe."""
    configs = {
        "nan_warmup.yaml": "warmup_ratio: .nan\n",
        "inf_epochs.yaml": "epochs: .inf\n",
        "negative_lr.yaml": "learning_rate: -1\n",
        "nan_lambda.yaml": "method: r3f\nmethod_options:\n  lambda_: .nan\n",
        "string_batch.yaml": "batch_size: '16'\n",
        "list_seed.yaml": "seed: [1, 2]\n",
        "recipe.yaml": "task: bbc_news\nmax_steps: 2\n",
        "sweep_nan_rates.yaml": "recipes: [recipe.yaml]\nmethods: [standard]\nlearning_rates: [.nan]\n",
        "sweep_float_trials.yaml": "recipes: [recipe.yaml]\nmethods: [standard]\ntrials: 2.5\n",
        "sweep_nan_override.yaml": "recipes: [recipe.yaml]\nmethods: [standard]\noverrides: {weight_decay: .inf}\n",
        "sweep_ok.yaml": "recipes: [recipe.yaml]\nmethods: [standard]\n",
        "sweep_nan_space.yaml": "recipes: [recipe.yaml]\nmethods: [r3f]\nsearch_spaces: {r3f: {lambda_: [1.0, .nan]}}\n",
        "xnli_nan.yaml": "methods: [r3f]\nmethod_options: {r3f: {sigma: .inf}}\n",
        "probe_nan.yaml": "probe: {alpha_grid: [1.0, .nan]}\n",
        "summarize_inf.yaml": "length_penalty: -.inf\n",
        "not_yaml.yaml": "learning_rate: [1e-4,\n",
    }
    for name, text in configs.items():
        (tmp_path / name).write_text(text)
    return tmp_path


# (argv, fragments the one line must contain). "{dir}" is the files fixture's folder.
SETTINGS_CASES = [
    # ---- class 1: non-finite settings, every verb -------------------------------------------
    (["train", "--lr", "nan"], ["learning_rate: nan", "(from --lr)", "finite"]),
    (["train", "--lr", "inf"], ["learning_rate: inf", "(from --lr)"]),
    (["train", "--epochs=-inf"], ["epochs: -inf", "(from --epochs)"]),
    (["train", "--set", "weight_decay=.nan"], ["weight_decay: nan", "(from --set)"]),
    (["train", "--set", "adam_epsilon=.inf"], ["adam_epsilon: inf", "(from --set)"]),
    (["train", "--set", "max_grad_norm=.NaN"], ["max_grad_norm: nan", "(from --set)"]),
    (["train", "--set", "method_options.lambda_=.nan"], ["method_options.lambda_: nan", "(from --set)"]),
    (["train", "--sigma", "inf"], ["method_options.sigma: inf", "(from --sigma)"]),
    (["train", "--lambda=-inf"], ["method_options.lambda_: -inf", "(from --lambda)"]),
    (["train", "--method", "smart", "--set", "method_options.epsilon=.inf"], ["method_options.epsilon: inf", "(from --set)"]),
    (["train", "--method", "freelb", "--set", "method_options.adv_lr=.nan"], ["method_options.adv_lr: nan"]),
    (["train", "--method", "rdrop", "--set", "method_options.label_smoothing=.inf"], ["method_options.label_smoothing: inf"]),
    (["train", "--config", "{dir}/nan_warmup.yaml"], ["warmup_ratio: nan", "nan_warmup.yaml"]),
    (["train", "--config", "{dir}/inf_epochs.yaml", "--lr", "1e-4"], ["epochs: inf", "inf_epochs.yaml"]),
    (["train", "--config", "{dir}/nan_lambda.yaml"], ["method_options.lambda_: nan", "nan_lambda.yaml"]),
    (["summarize", "--lr", "nan"], ["learning_rate: nan", "(from --lr)"]),
    (["summarize", "--config", "{dir}/summarize_inf.yaml"], ["length_penalty: -inf", "summarize_inf.yaml"]),
    (["summarize", "--label-smoothing", "nan"], ["method_options.label_smoothing: nan", "(from --label-smoothing)"]),
    (["xnli", "--lr", "inf"], ["learning_rate: inf", "(from --lr)"]),
    (["xnli", "--set", "train_options.warmup_ratio=.nan"], ["train_options.warmup_ratio: nan", "(from --set)"]),
    (["xnli", "--config", "{dir}/xnli_nan.yaml"], ["method_options.r3f.sigma: inf", "xnli_nan.yaml"]),
    (["probe", "chain", "--lr", "nan"], ["train.learning_rate: nan", "(from --lr)"]),
    (["probe", "chain", "--config", "{dir}/probe_nan.yaml"], ["probe.alpha_grid", "nan", "probe_nan.yaml"]),
    (["probe", "chain", "--set", "features.layer=.inf"], ["features.layer: inf", "(from --set)"]),
    (["sweep", "--config", "{dir}/sweep_nan_rates.yaml"], ["learning_rates", "nan", "sweep_nan_rates.yaml"]),
    (["sweep", "--config", "{dir}/sweep_nan_override.yaml"], ["weight_decay: inf", "overrides in", "sweep_nan_override.yaml"]),
    (["sweep", "--config", "{dir}/sweep_ok.yaml", "--set", "learning_rate=.nan"], ["learning_rate: nan", "(from --set)"]),
    # ---- class 2: the declared type of every field, after all sources are merged ------------
    (["train", "--set", "batch_size=8.0"], ["batch_size: 8.0", "(from --set)", "whole number"]),
    (["train", "--set", "seed=1.0"], ["seed: 1.0", "(from --set)", "whole number"]),
    (["train", "--set", "seed=true"], ["seed: true", "(from --set)", "whole number"]),
    (["train", "--set", "max_length=32.0"], ["max_length: 32.0", "(from --set)"]),
    (["train", "--set", "model=123"], ["model: 123", "(from --set)", "string"]),
    (["train", "--set", "task=123"], ["task: 123", "(from --set)", "string or null"]),
    (["train", "--set", "text_column=5"], ["text_column: 5", "(from --set)", "string"]),
    (["train", "--set", "output_dir=null"], ["output_dir: null", "(from --set)", "string"]),
    (["train", "--set", "method=5"], ["method: 5", "(from --set)", "string"]),
    (["train", "--set", "method_options=5"], ["method_options: 5", "(from --set)", "mapping"]),
    (["train", "--set", "bf16=maybe"], ["bf16: 'maybe'", "(from --set)", "true or false"]),
    (["train", "--set", "eval_steps=[1]"], ["eval_steps: [1]", "(from --set)"]),
    (["train", "--method", "smart", "--set", "method_options.num_steps=1.5"], ["method_options.num_steps: 1.5", "whole number"]),
    (["train", "--noise-type", "3"], ["method_options.noise_type", "(from --noise-type)", "one of normal, uniform"]),
    (["train", "--config", "{dir}/string_batch.yaml"], ["batch_size: '16'", "string_batch.yaml", "whole number"]),
    (["train", "--config", "{dir}/list_seed.yaml"], ["seed: [1, 2]", "list_seed.yaml"]),
    (["train", "--config", "{dir}/negative_lr.yaml"], ["learning_rate: -1", "negative_lr.yaml", ">= 0"]),
    (["summarize", "--set", "num_beams=2.0"], ["num_beams: 2.0", "(from --set)"]),
    (["xnli", "--set", "seeds=[1.5]"], ["seeds: [1.5]", "(from --set)", "whole numbers"]),
    (["probe", "chain", "--set", "cycles=true"], ["cycles: true", "(from --set)"]),
    (["sweep", "--config", "{dir}/sweep_float_trials.yaml"], ["trials: 2.5", "sweep_float_trials.yaml", "whole number"]),
    (["sweep", "--config", "{dir}/sweep_nan_space.yaml"], ["search_spaces.r3f.lambda_: nan", "sweep_nan_space.yaml"]),
    (["train", "--set", "epochs=1e400"], ["epochs: inf", "(from --set)"]),
    (["train", "--set", "learning_rate="], ["learning_rate: null", "(from --set)", "finite number"]),
    (["train", "--set", "method_options.lambda_=[1]"], ["method_options.lambda_: [1]", "(from --set)"]),
    (["train", "--seed", "4294967296"], ["seed: 4294967296", "(from --seed)", "< 4294967296"]),
    (["train", "--output-dir", ""], ["output_dir: ''", "(from --output-dir)", "non-empty string"]),
    (["train", "--model", " "], ["model: ' '", "(from --model)", "non-empty string"]),
    (["train", "--label-column", " "], ["label_column: ' '", "(from --label-column)", "non-empty string"]),
    (["probe", "chain", "--set", "probe.c_grid=[]"], ["probe.c_grid: []", "(from --set)", "non-empty"]),
    (["xnli", "--seeds", "1", "x"], ["--seeds", "whole number", "'x'"]),
    # ---- class 10: one line, whatever failed ---------------------------------------------------
    (["train", "--config", "{dir}/not_yaml.yaml"], ["not_yaml.yaml", "line", "not valid YAML"]),
    (["train", "--set", "nonsense"], ["--set", "key=value"]),
    (["train", "--epochs"], ["--epochs", "expected one argument", "rxf train --help"]),
    (["train", "--lr", "fast"], ["--lr", "float", "'fast'"]),
    (["sweep", "--config", "{dir}/sweep_ok.yaml", "--trials", "many"], ["--trials", "'many'"]),
    (["trian"], ["invalid choice", "'trian'"]),
]


@pytest.mark.parametrize("argv,fragments", SETTINGS_CASES, ids=[" ".join(case[0])[:60] for case in SETTINGS_CASES])
def test_a_bad_setting_is_one_line_naming_it_and_its_source(argv, fragments, files, run_in_process, tmp_path):
    argv = [a.replace("{dir}", str(files)) for a in argv]
    if argv[0] in ("train", "summarize", "xnli") and "--output-dir" not in argv and not any("output_dir" in a for a in argv):
        argv += ["--output-dir", str(tmp_path / "out")]
    result = run_in_process(argv)
    assert_clean_failure(result, *fragments)
    assert not (tmp_path / "out").exists(), "a run refused for its settings must leave no output directory"


@pytest.mark.parametrize(
    "argv,fragments",
    [
        (["train", "--set", "warmup_ratio=.nan"], ["warmup_ratio: nan", "(from --set)"]),
        (["train", "--bogus"], ["unrecognized arguments: --bogus"]),
        ([], ["the following arguments are required"]),
    ],
)
def test_a_separate_process_prints_one_line_too(argv, fragments, tmp_path):
    assert_clean_failure(run_cli(argv, cwd=tmp_path), *fragments)


def test_a_file_that_cannot_be_parsed_gives_no_library_log_line(tiny_model, tmp_path):
    """datasets logs 'Failed to read file ...' before raising; only rxf's line may reach stderr."""
    bad = tmp_path / "ragged.csv"
    bad.write_text("text,label\ngood,pos\nbad,neg,extra\n")
    result = run_cli(["train", "--model", tiny_model, "--train-file", bad, "--max-steps", "1", "--no-progress",
                      "--output-dir", tmp_path / "out"], cwd=tmp_path)
    assert_clean_failure(result, "ragged.csv")


# ---- the per-step guard, end to end on the tiny model --------------------------------------------


def tiny_run(tiny_model, tiny_csv, out, *extra) -> list[str]:
    return ["train", "--model", tiny_model, "--train-file", tiny_csv, "--max-steps", "2", "--batch-size", "8",
            "--max-length", "32", "--set", "warmup_ratio=0", "--no-progress", "--output-dir", out, *extra]


def weights_finite(checkpoint: Path) -> bool:
    tensors = load_file(checkpoint / "model.safetensors")
    return bool(tensors) and all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


def test_an_overflowing_weight_stops_at_step_1_naming_it_with_a_finite_rescue_checkpoint(tiny_model, tiny_csv, tmp_path, run_in_process):
    """λ·divergence overflows although both are finite: the guard names λ, and the saved state is finite."""
    out = tmp_path / "run"
    result = run_in_process(tiny_run(tiny_model, tiny_csv, out, "--sigma", "10", "--lambda", "1e308"))
    line = assert_clean_failure(result, "weighted total loss", "step 1", "lambda_=1e+308", "saved in")
    rescue = Path(line.split("saved in ")[1].split(".")[0].rstrip(","))
    assert rescue.name == "checkpoint-0" and weights_finite(rescue)
    assert not (out / "metrics.json").exists() and not (out / "model").exists()


def test_skip_that_skips_every_step_is_not_a_trained_model(tiny_model, tiny_csv, tmp_path, run_in_process):
    out = tmp_path / "run"
    result = run_in_process(tiny_run(tiny_model, tiny_csv, out, "--sigma", "10", "--lambda", "1e308", "--set", "on_nonfinite=skip"))
    assert_clean_failure(result, "every one of the 2 optimizer steps was skipped", "did not train", "lambda_")
    assert not (out / "metrics.json").exists() and not (out / "model").exists()


def test_parameters_that_overflow_in_the_update_stop_the_run_under_skip_too(tiny_model, tiny_csv, tmp_path, run_in_process):
    """lr·weight_decay = 1e40 is not a float32: the update makes the weights infinite; nothing can be skipped then."""
    out = tmp_path / "run"
    argv = tiny_run(tiny_model, tiny_csv, out, "--lr", "1e30", "--set", "weight_decay=1e10", "--set", "on_nonfinite=skip")
    result = run_in_process(argv)
    assert_clean_failure(result, "parameters are not finite after the optimizer update of step 1", "learning_rate", "weight_decay")
    assert not (out / "metrics.json").exists() and not (out / "model").exists()
