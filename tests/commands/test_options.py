"""The shared option handling of the verbs: typed flags, dotted --set, clear errors."""

import argparse

import pytest

from rxf.commands.options import apply_flags, apply_set, typed
from rxf.errors import RxfError


def test_set_reads_yaml_scalars_and_reaches_nested_keys():
    values = apply_set({"method_options": {"sigma": 1e-5}}, ["learning_rate=3e-5", "method_options.lambda_=2", "x=null", "name=abc"])
    assert values == {"method_options": {"sigma": 1e-5, "lambda_": 2}, "learning_rate": 3e-5, "x": None, "name": "abc"}
    assert isinstance(values["learning_rate"], float)


def test_set_errors_name_the_item():
    with pytest.raises(RxfError, match="key=value.*'oops'"):
        apply_set({}, ["oops"])
    with pytest.raises(RxfError, match="'lr' is not a group"):
        apply_set({"lr": 1.0}, ["lr.x=2"])


def test_flags_are_typed_and_errors_name_the_flag():
    args = argparse.Namespace(learning_rate="1e-4", train__epochs=None, sigma="x")
    values = apply_flags({}, args, {"--lr": ("learning_rate", float), "--epochs": ("train.epochs", float)})
    assert values == {"learning_rate": 1e-4}
    with pytest.raises(RxfError, match=r"--sigma expects a number \(float\), got 'x'"):
        apply_flags({}, args, {"--sigma": ("sigma", float)}, into="method_options")
    assert typed("--seed", int, "3") == 3


def test_train_method_flag_drops_the_configs_own_method_options(tmp_path):
    from rxf.cli import build_parser
    from rxf.commands.train import train_values

    config = tmp_path / "r3f.yaml"
    config.write_text("method: r3f\nmethod_options: {lambda_: 0.5, noise_type: uniform, label_smoothing: 0.1}\n")
    parse = build_parser().parse_args
    same = train_values(parse(["train", "--config", str(config), "--method", "r3f", "--sigma", "1e-4"]))
    assert same["method_options"] == {"lambda_": 0.5, "noise_type": "uniform", "label_smoothing": 0.1, "sigma": 1e-4}
    other = train_values(parse(["train", "--config", str(config), "--method", "smart", "--bf16", "--set", "seed=3"]))
    # R3F's noise_type is not a SMART option: kept, it would make SMART's config invalid.
    assert other["method_options"] == {"label_smoothing": 0.1}
    assert (other["method"], other["bf16"], other["seed"]) == ("smart", True, 3)


def test_a_flag_or_set_fixes_a_bad_value_of_the_file_because_the_config_is_checked_once(tmp_path):
    from rxf.cli import build_parser
    from rxf.commands.train import train_values
    from rxf.train import TrainConfig

    config = tmp_path / "run.yaml"
    config.write_text("learning_rate: -1\nepochs: .inf\n")
    parse = build_parser().parse_args
    fixed = TrainConfig.from_dict(train_values(parse(["train", "--config", str(config), "--epochs", "2", "--set", "learning_rate=1e-4"])))
    assert (fixed.learning_rate, fixed.epochs) == (1e-4, 2.0)
    with pytest.raises(RxfError, match=rf"^epochs: inf \(from {config}\) must be a finite number$"):
        TrainConfig.from_dict(train_values(parse(["train", "--config", str(config), "--lr", "1e-4"])))
    with pytest.raises(RxfError, match=r"^learning_rate: -1 \(from .*run.yaml\) must be a number >= 0$"):
        TrainConfig.from_dict(train_values(parse(["train", "--config", str(config), "--epochs", "1"])))
    with pytest.raises(RxfError, match=r"^learning_rate: nan \(from --lr\) must be a finite number$"):
        TrainConfig.from_dict(train_values(parse(["train", "--lr", "nan"])))


def test_the_sources_reach_nested_method_options(tmp_path):
    from rxf.cli import build_parser
    from rxf.commands.train import train_values
    from rxf.train import TrainConfig

    config = tmp_path / "run.yaml"
    config.write_text("method_options: {lambda_: .nan}\n")
    parse = build_parser().parse_args
    with pytest.raises(RxfError, match=r"^method_options.lambda_: nan \(from .*run.yaml\) must be a finite number$"):
        TrainConfig.from_dict(train_values(parse(["train", "--config", str(config)])))
    with pytest.raises(RxfError, match=r"^method_options.sigma: -1.0 \(from --sigma\) must be a number >= 0$"):
        TrainConfig.from_dict(train_values(parse(["train", "--config", str(config), "--lambda", "1", "--sigma", "-1"])))


def test_help_comes_from_the_dataclass_defaults_checks_and_comments():
    from rxf.commands.options import setting_help
    from rxf.methods import R3FConfig
    from rxf.train import TrainConfig

    assert setting_help(TrainConfig, "batch_size") == "batch_size [a whole number > 0; default: 16]"
    assert setting_help(TrainConfig, "recipe").endswith("[one of same, paper; default: same]")
    assert "same" in setting_help(TrainConfig, "recipe").split("[")[0]  # the comment above the field
    assert setting_help(R3FConfig, "lambda_") == "lambda_: Weight λ of the divergence term. [a number >= 0; default: 1.0]"


def test_train_help_shows_defaults_and_choices(capsys):
    from rxf.cli import main

    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--batch-size INT batch_size [a whole number > 0; default: 16]" in text
    assert "[one of same, paper; default: same]" in text
    assert "one of freelb, neftune, r3f, r4f, rdrop, smart, standard, standard++; default: r3f" in text
    assert "warmup_ratio [a number >= 0 and < 1; default: 0.06]" in text  # a setting without a flag


def test_sft_help_shows_defaults_and_the_settings_without_a_flag(capsys):
    from rxf.cli import main

    with pytest.raises(SystemExit) as done:
        main(["sft", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size INT batch_size [a whole number > 0; default: 4]" in text
    assert "method_options.sigma: Noise scale σ" in text and "(R3F's; see `rxf methods`)" in text
    assert "method_options.alpha: Noise scale α" in text
    assert "eval_fraction: held out of train_file" in text  # a setting without a flag
    assert "26-37 % more compute" in text and "%%" not in text  # an epilog is shown as written


def test_summarize_help_shows_the_label_smoothing_it_uses(capsys):
    """rxf summarize smooths at the paper's 0.1 where the method's own default is 0: the help says 0.1."""
    from rxf.cli import main
    from rxf.summarization import DEFAULT_LABEL_SMOOTHING

    with pytest.raises(SystemExit):
        main(["summarize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert DEFAULT_LABEL_SMOOTHING == 0.1 and "[a number >= 0 and < 1; default: 0.1]" in text


def test_methods_shows_how_to_set_each_option(capsys):
    from rxf.cli import main
    from rxf.methods import METHODS

    assert main(["methods"]) == 0
    listing = capsys.readouterr().out
    assert "--set method_options.lambda_=1.0 (or --lambda)" in listing
    assert "--set method_options.noise_type=normal (or --noise-type)" in listing
    assert "[one of normal, uniform; default: normal]" in listing
    assert "[a number >= 0 and < 1; default: 0.99]" in " ".join(listing.split())  # SMART's teacher_momentum
    for name in METHODS:
        assert f"\n{name}: " in "\n" + listing


def test_usage_mistakes_are_one_line_with_status_2(capsys):
    from rxf.cli import main

    for argv in (["train", "--epochs"], ["train", "--bogus"], [], ["sweep", "--config", "x.yaml", "--trials", "many"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err and "--help" in err, err


def test_sweep_help_lists_the_yaml_settings_without_a_flag(capsys):
    from rxf.cli import main

    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    epilog = capsys.readouterr().out.split("Other settings (keys of the sweep YAML file):")[1]
    assert "search_overrides:" in epilog and "resume_runs:" in epilog and "variants:" in epilog
    assert "\n  trials" not in epilog and "\n  seeds" not in epilog  # those have flags
