"""`rxf xnli`: flags, --config, --set, and one-line errors."""

import pytest
import yaml
from tiny_multilingual import tiny_multilingual_model_dir, write_xnli_dir

from rxf.cli import build_parser, main
from rxf.commands.xnli import xnli_values


def test_a_run_from_flags_prints_the_table_and_writes_the_results(tmp_path, capsys):
    model = tiny_multilingual_model_dir(tmp_path / "model")
    data = write_xnli_dir(tmp_path / "data", ["en", "ar", "hi"], dev_groups=2, test_groups=2)
    config = tmp_path / "xnli.yaml"
    config.write_text(yaml.safe_dump({"model": str(model), "languages": ["en", "ar"], "epochs": 1}))
    code = main([
        "xnli", "--config", str(config), "--data-dir", str(data), "--languages", "hi", "en",
        "--methods", "r3f", "--seeds", "3", "--batch-size", "4", "--output-dir", str(tmp_path / "out"),
        "--set", "method_options.r3f.lambda_=0.5", "--set", "train_options.logging_steps=1",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| method | en | hi | Avg |" in printed and "| r3f | " in printed
    assert (tmp_path / "out" / "results.md").is_file() and (tmp_path / "out" / "xnli.png").is_file()
    run_config = yaml.safe_load((tmp_path / "out" / "runs" / "r3f-seed3" / "config.yaml").read_text())
    assert run_config["method_options"] == {"lambda_": 0.5} and run_config["logging_steps"] == 1
    assert run_config["epochs"] == 1 and run_config["task"] == "xnli/en,hi" and run_config["seed"] == 3


def test_flags_override_the_file_and_set_overrides_flags(tmp_path):
    config = tmp_path / "xnli.yaml"
    config.write_text("seeds: [1, 2, 3]\nlearning_rate: 1.0e-5\n")
    args = build_parser().parse_args(
        ["xnli", "--config", str(config), "--seeds", "7", "--lr", "2e-5", "--set", "learning_rate=3e-5"]
    )
    values = xnli_values(args)
    assert values["seeds"] == [7] and values["learning_rate"] == 3e-5


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--languages", "en", "xx"], "languages: 'xx' (from --languages) must be one of en,"),
        (["--seeds", "one"], "--seeds expects a whole number (int), got 'one'"),
        (["--set", "lamda=1"], "unknown config key 'lamda'"),
        (["--set", "seeds"], "--set expects key=value"),
        (["--methods", "r3f", "--set", "method_options.r3f.sigma=-1"], "sigma"),
        (["--methods", "smartt"], "smartt"),
        (["--config", "missing.yaml"], "config file missing.yaml does not exist"),
    ],
)
def test_mistakes_end_with_one_line_and_status_2(argv, message, capsys):
    assert main(["xnli", *argv]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
