"""`rxf sweep`: fixed-budget search per method, then N seeds at the best setting (see rxf.experiments.sweep).

    rxf sweep --config configs/glue/cpu-small.yaml
    rxf sweep --config configs/glue/paper.yaml --tasks rte mrpc --methods standard++ r3f --seeds 1 2 3
    rxf sweep --config configs/glue/cpu-small.yaml --set max_train_samples=500   # a TrainConfig override

Run the same command again to resume: finished runs (records/<run_id>.json) are not redone.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rxf.commands.options import yaml_value
from rxf.errors import RxfError


def _set_value(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise RxfError(f"--set expects key=value, got {item!r}")
    return key, yaml_value(text)


def _recipe_matches(recipe: str, wanted: list[str]) -> bool:
    """``--tasks rte`` picks configs/glue/rte.yaml (by the recipe's file name or its task name)."""
    from rxf.train import TrainConfig

    names = {Path(recipe).stem.lower(), str(TrainConfig.from_yaml(recipe).task).lower()}
    names |= {name.removeprefix("glue/") for name in names}
    return any(w.lower().removeprefix("glue/") in names for w in wanted)


def sweep_config(args: argparse.Namespace):
    """The sweep file with the flags on top."""
    from rxf.experiments.sweep import SweepConfig

    config = SweepConfig.from_yaml(args.config)
    values = config.to_dict()
    if args.tasks:
        values["recipes"] = [r for r in config.recipes if _recipe_matches(r, args.tasks)]
        if not values["recipes"]:
            raise RxfError(f"--tasks {' '.join(args.tasks)} matches none of the recipes: {', '.join(config.recipes)}")
    for name in ("methods", "trials", "seeds", "output_dir", "sampler"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.keep_models:
        values["keep_models"] = True
    for item in args.set or []:
        key, value = _set_value(item)
        values["overrides"][key] = value
    return SweepConfig.from_dict(values, source="sweep option")


def cmd_sweep(args: argparse.Namespace) -> int:
    from rxf.experiments.sweep import Sweep

    config = sweep_config(args)
    sweep = Sweep(config)
    records = sweep.run(search_only=args.search_only)
    print(f"{len(records)} runs ({len(sweep.trained)} trained now, the others done before); records in {config.output_dir}/records/")
    print(f"next: rxf report --runs {config.output_dir}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="hyper-parameter search per method, then N seeds at the best setting (resumable)",
        description="Fixed-budget optuna search per task and method, then one run per seed at each method's best "
        "setting; one JSON record per run. Run it again to resume.",
    )
    sweep.add_argument("--config", required=True, help="sweep YAML (recipes, methods, trials, seeds, overrides)")
    sweep.add_argument("--tasks", nargs="+", metavar="TASK", help="only these recipes (file stem or task name)")
    sweep.add_argument("--methods", nargs="+", metavar="METHOD", help="methods to compare (see `rxf methods`)")
    sweep.add_argument("--trials", type=int, help="search trials per task and method")
    sweep.add_argument("--seeds", type=int, nargs="+", metavar="SEED", help="seeds of the final runs")
    sweep.add_argument("--sampler", help="grid (random order, no repeats), tpe or random")
    sweep.add_argument("--output-dir", help="where records/ goes")
    sweep.add_argument("--search-only", action="store_true", help="stop after the search")
    sweep.add_argument("--keep-models", action="store_true", help="keep every run's model/ (off: records only)")
    sweep.add_argument("--set", action="append", metavar="KEY=VALUE", help="TrainConfig override for every run (repeatable)")
    sweep.set_defaults(handler=cmd_sweep)
