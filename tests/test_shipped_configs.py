"""Every YAML config the project ships under configs/ loads and validates as what its commands read.

A config that a long sweep reads hours after it starts (configs/glue-full/cpu-nodrop-<task>.yaml)
must not fail only then: these are the same checks the commands make before anything runs.
"""

from pathlib import Path

import pytest
import yaml

from rxf.experiments.sweep import SweepConfig
from rxf.summarization import SummarizationConfig
from rxf.train import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# configs/accelerate/ holds accelerate's own launch files, which rxf does not read.
SHIPPED = sorted(p for folder in ("glue", "glue-full", "summarization") for p in (CONFIGS / folder).glob("*.yaml"))


def config_class(path: Path):
    values = yaml.safe_load(path.read_text())
    if "recipes" in values:
        return SweepConfig
    return SummarizationConfig if path.parent.name == "summarization" else TrainConfig


def test_the_shipped_configs_are_found():
    assert {p.parent.name for p in SHIPPED} == {"glue", "glue-full", "summarization"}
    assert len(SHIPPED) >= 20


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_config_validates(path):
    config = config_class(path).from_yaml(path)
    if isinstance(config, SweepConfig):
        for recipe in config.recipes:  # relative to the sweep file, as `rxf sweep` reads them
            assert Path(recipe).is_file(), recipe


def test_dropout_zero_rows_match_their_task():
    """The σ of `r3f-nodrop` is matched per task; each file must sweep only the task it was matched on."""
    for task, sigma in (("rte", 0.05), ("mrpc", 0.07)):
        config = SweepConfig.from_yaml(CONFIGS / "glue-full" / f"cpu-nodrop-{task}.yaml")
        assert [Path(r).name for r in config.recipes] == [f"{task}.yaml"]
        assert config.variants["r3f-nodrop"]["options"]["sigma"] == sigma
        assert config.variants["r3f-nodrop"]["overrides"]["dropout"] == 0.0


def test_the_xnli_results_config_still_makes_its_table():
    """docs/results/xnli was run before rxf applied Standard++'s recipe (2× the epochs); its config
    pins 1×, so that the command docs/xnli.md gives reproduces the table."""
    from rxf.methods.base import method_config
    from rxf.methods.recipe import recipe_defaults
    from rxf.xnli import XnliConfig

    config = XnliConfig.from_yaml(CONFIGS.parent / "docs" / "results" / "xnli" / "config.yaml")
    standard_pp = method_config("standard++", **config.method_options.get("standard++", {}))
    assert recipe_defaults(standard_pp)["epochs_multiplier"] == 1
