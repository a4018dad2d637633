"""rxf.config: settings merged from several places, checked once against the declared types, errors naming the source."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from rxf.config import (
    MISSING,
    Settings,
    YamlConfig,
    check_fields,
    describe_setting,
    field_error,
    field_help,
    load_yaml,
    matches,
    read_yaml_mapping,
    requirements,
    settings_from,
    settings_under,
    type_text,
)
from rxf.errors import RxfError
from rxf.methods.base import check_choice, check_number


@dataclass
class Toy(YamlConfig):
    """A config with one field of every kind the checker knows."""

    # Section title.
    name: str = "toy"  # what the toy is called
    # How many, at least one.
    count: int = 1
    rate: float = 0.5
    maybe: int | None = None
    flag: bool = False
    tags: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    mode: str = "a"

    def validate(self) -> None:
        check_fields(self)
        check_number("count", self.count, integer=True, positive=True)
        check_number("rate", self.rate, minimum=0.0, below=1.0)
        check_number("maybe", self.maybe, integer=True, minimum=0, optional=True)
        check_choice("mode", self.mode, ("a", "b"))


def test_settings_remember_where_each_key_came_from():
    settings = Settings({"rate": -1, "options": {"x": 1}}, source="run.yaml")
    settings.set("options.y", 2, "--set")
    settings.set("count", 3, "--count")
    assert settings == {"rate": -1, "options": {"x": 1, "y": 2}, "count": 3}
    assert settings.source_of("rate") == "run.yaml"
    assert settings.source_of("options.x") == "run.yaml"  # the group came from the file
    assert settings.source_of("options.y") == "--set"
    assert settings.source_of("count") == "--count" and settings.source_of("flag") is None
    settings.set("options", {}, "--set")  # replacing a group forgets the sources of what it held
    assert settings.source_of("options.y") == "--set" and "options.y" not in settings.sources
    assert Settings(settings).sources == settings.sources and settings.copy().sources == settings.sources
    copied = settings.copy()
    copied.set("options.z", 3, "--set")
    assert "z" not in settings["options"]  # a copy's groups are its own


def test_a_later_source_fixes_an_earlier_bad_value_because_checks_run_once_at_the_end():
    settings = Settings({"rate": -1.0}, source="run.yaml")
    settings.set("rate", 0.25, "--set")
    assert Toy.from_dict(settings).rate == 0.25


@pytest.mark.parametrize(
    "key,value,words",
    [
        ("count", 8.0, ["count: 8.0 (from --set) must be a whole number"]),
        ("count", True, ["count: true (from --set) must be a whole number"]),
        ("count", 0, ["count: 0 (from --set) must be a whole number > 0"]),
        ("rate", float("nan"), ["rate: nan (from --set) must be a finite number"]),
        ("rate", float("inf"), ["rate: inf", "finite"]),
        ("rate", -float("inf"), ["rate: -inf", "finite"]),
        ("rate", 10**400, ["rate:", "finite"]),
        ("rate", 1.0, ["rate: 1.0 (from --set) must be a number >= 0 and < 1"]),
        ("rate", "fast", ["rate: 'fast' (from --set) must be a finite number"]),
        ("name", 123, ["name: 123 (from --set) must be a string", "quote it"]),
        ("name", None, ["name: null (from --set) must be a string"]),
        ("maybe", 1.5, ["maybe: 1.5", "a whole number or null"]),
        ("flag", "yes", ["flag: 'yes'", "true or false"]),
        ("tags", ["a", 1], ["tags:", "a list of strings"]),
        ("tags", "a", ["tags: 'a'", "a list of strings"]),
        ("options", [1], ["options: [1]", "a mapping"]),
        ("mode", "c", ["mode: 'c' (from --set) must be one of a, b"]),
    ],
)
def test_every_bad_value_is_one_line_naming_the_setting_value_and_source(key, value, words):
    settings = Settings({"rate": 0.5}, source="run.yaml")
    settings.set(key, value, "--set")
    with pytest.raises(RxfError) as error:
        Toy.from_dict(settings)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_a_file_value_is_named_with_its_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("count: 2\nrate: .nan\n")
    with pytest.raises(RxfError, match=r"rate: nan \(from .*run.yaml\) must be a finite number"):
        Toy.from_yaml(path)
    path.write_text("cuont: 2\n")
    with pytest.raises(RxfError, match=r"unknown config key 'cuont' \(from .*run.yaml\).*did you mean 'count'"):
        Toy.from_yaml(path)


def test_settings_that_conflict_are_named_with_their_sources(tmp_path):
    from rxf.sft import SFTConfig
    from rxf.train import TrainConfig

    path = tmp_path / "run.yaml"
    path.write_text("epochs: 0\n")
    with pytest.raises(RxfError, match=r"nothing to train \(epochs: 0 \(from .*run.yaml\), max_steps: -1\)"):
        TrainConfig.from_yaml(path)
    settings = Settings({"merge_adapter": True}, source="--merge-adapter")
    with pytest.raises(RxfError, match=r"merge_adapter: true \(from --merge-adapter\) needs an adapter"):
        SFTConfig.from_dict(settings)


def test_read_yaml_mapping_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("a: 1\nb: [1,\n")
    with pytest.raises(RxfError, match=r"bad.yaml, line 3: not valid YAML"):
        read_yaml_mapping(path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(RxfError, match="must be a mapping"):
        read_yaml_mapping(path)
    assert read_yaml_mapping(_write(tmp_path / "ok.yaml", "lr: 3e-5\n")) == {"lr": 3e-5}


def _write(path, text):
    path.write_text(text)
    return path


def test_yaml_reads_float_literals_without_a_dot_and_the_special_floats():
    values = load_yaml("a: 3e-5\nb: .nan\nc: -.inf\nd: 8\ne: 8.0\n")
    assert values["a"] == 3e-5 and math.isnan(values["b"]) and values["c"] == -math.inf
    assert type(values["d"]) is int and type(values["e"]) is float


def test_the_type_checker_follows_the_annotations():
    assert matches(1, float) and not matches(True, float) and not matches(float("nan"), float)
    assert matches(None, int | None) and not matches(1.0, int | None)
    assert matches({"a": [1.0]}, dict[str, list[float]]) and not matches({"a": [math.inf]}, dict[str, list[float]])
    assert matches("anything", Any)
    assert type_text(int | None) == "a whole number or null"
    assert type_text(dict[str, dict[str, Any]]) == "a mapping to mappings"
    assert type_text(list[int]) == "a list of whole numbers"


def test_group_names_reach_the_message_and_the_source_lookup():
    settings = Settings({"method_options": {"sigma": math.inf}}, source="run.yaml")
    with settings_from(settings), settings_under("method_options"):
        assert describe_setting("sigma", math.inf) == "method_options.sigma: inf (from run.yaml)"
        with pytest.raises(RxfError, match=r"^method_options.sigma: inf \(from run.yaml\) must be a number >= 0$"):
            check_number("sigma", math.inf, minimum=0.0)
    assert describe_setting("sigma", 1) == "sigma: 1"  # outside: the bare name, no source


def test_requirements_are_what_the_checks_enforce():
    required = requirements(lambda: Toy().validate())
    assert required == {
        "count": "a whole number > 0",
        "rate": "a number >= 0 and < 1",
        "maybe": "a whole number >= 0 (or null)",
        "mode": "one of a, b",
    }


def test_field_help_reads_the_comments_but_not_section_titles():
    assert field_help(Toy) == {"name": "what the toy is called", "count": "How many, at least one."}


def test_check_number_rejects_every_non_finite_and_non_number():
    for bad in (math.nan, math.inf, -math.inf, "1", None, True, [1]):
        with pytest.raises(RxfError):
            check_number("x", bad)
    check_number("x", 0)
    check_number("x", None, optional=True)
    with pytest.raises(RxfError, match="whole number"):
        check_number("x", 2.0, integer=True)


def test_a_record_field_error_names_the_file_the_field_what_it_must_be_and_is():
    error = field_error("run record", "r/x.json", "metrics.history[1].eval_accuracy", "a finite number", math.nan, "delete it")
    assert str(error) == "run record r/x.json: 'metrics.history[1].eval_accuracy' must be a finite number (it is nan): delete it"
    assert str(field_error("run metrics", "m.json", "seed", "a whole number", MISSING, "fix it")).endswith(
        "'seed' must be a whole number (it is missing): fix it"
    )
    whole = field_error("run metrics", "m.json", None, "a mapping", [1, 2], "fix it")  # the record itself
    assert str(whole) == "run metrics m.json must be a mapping (it is [1, 2]): fix it"
    long = field_error("probe result", "r.json", "probes", "a list", {"k" * 50: 1}, "redo")
    assert "(it is a mapping)" in str(long)  # a long value: its kind, so the line stays one short line


def test_numpy_numbers_are_stored_as_python_numbers_before_the_checks():
    """np.arange seeds and np.float32 rates pass the type checks and leave as int/float (YAML and JSON take them)."""
    import json

    import numpy as np
    import yaml

    from rxf.experiments.sweep import SweepConfig
    from rxf.train import TrainConfig

    config = TrainConfig.from_dict({"task": np.str_("glue/rte"), "learning_rate": np.float32(2e-5), "max_steps": np.int64(3),
                                    "bf16": np.bool_(False),
                                    "method_options": {"lambda_": np.float64(0.5), "sigma": np.float32(1e-5)}})
    assert type(config.learning_rate) is float and type(config.max_steps) is int and config.bf16 is False
    assert type(config.task) is str
    assert config.learning_rate == 2e-5 and config.max_steps == 3  # the float32 as written, not 1.9999999494757503e-05
    assert config.method_options == {"lambda_": 0.5, "sigma": 1e-5}
    assert all(type(value) is float for value in config.method_options.values())
    assert yaml.safe_load(yaml.safe_dump(config.to_dict()))["max_steps"] == 3 and json.dumps(config.to_dict())
    sweep = SweepConfig(recipes=["configs/glue/rte.yaml"], methods=["standard"], seeds=list(np.arange(1, 4)))
    sweep.validate()
    assert sweep.seeds == [1, 2, 3] and all(type(seed) is int for seed in sweep.seeds)
    unchanged = {"lambda_": 1.0}
    assert TrainConfig.from_dict({"method_options": unchanged}).method_options is unchanged


def test_dicts_of_other_classes_and_numpy_keys_are_stored_as_plain_dicts():
    """An OrderedDict or defaultdict (which yaml.safe_dump refuses) and numpy keys leave as a plain dict of str keys."""
    import collections

    import numpy as np
    import yaml

    from rxf.train import TrainConfig

    ordered = TrainConfig(method_options=collections.OrderedDict(lambda_=np.float32(0.5)))
    ordered.validate()  # what rxf.train.train does first
    assert type(ordered.method_options) is dict and ordered.method_options == {"lambda_": 0.5}
    config = TrainConfig.from_dict({"method_options": collections.defaultdict(float, {np.str_("sigma"): 1e-5})})
    assert type(config.method_options) is dict and [type(key) for key in config.method_options] == [str]
    assert yaml.safe_load(yaml.safe_dump(config.to_dict()))["method_options"] == {"sigma": 1e-5}


def test_two_keys_that_become_one_are_refused_not_merged():
    """np.float32(0.1) and 0.1 are two keys; made plain they are one, and one value would be lost."""
    import numpy as np

    from rxf.train import TrainConfig

    with pytest.raises(RxfError, match=r"^method_options: two keys are both 0.1 once numpy values are made plain$"):
        TrainConfig.from_dict({"method_options": {np.float32(0.1): 1, 0.1: 2}})
