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
    with pytest.raises(RxfError, match="--sigma expects a float, got 'x'"):
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
