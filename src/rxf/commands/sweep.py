"""`rxf sweep`: fixed-budget search per method, then N seeds at the best setting (see rxf.experiments.sweep).

    rxf sweep --config configs/glue/cpu-small.yaml
    rxf sweep --config configs/glue/paper.yaml --tasks rte mrpc --methods standard++ r3f --seeds 1 2 3
    rxf sweep --config configs/glue/cpu-small.yaml --set max_train_samples=500   # a TrainConfig override

Run the same command again to resume: finished runs (records/<run_id>.json) are not redone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rxf.commands.options import HelpFormatter, help_from, settings_epilog, yaml_value
from rxf.errors import RxfError


def _recipe_matches(recipe: str, wanted: list[str]) -> bool:
    """``--tasks rte`` picks configs/glue/rte.yaml (by the recipe's file name or its task name)."""
    from rxf.train import TrainConfig

    names = {Path(recipe).stem.lower(), str(TrainConfig.from_yaml(recipe).task).lower()}
    names |= {name.removeprefix("glue/") for name in names}
    return any(w.lower().removeprefix("glue/") in names for w in wanted)


def sweep_config(args: argparse.Namespace):
    """The sweep file, the flags, then ``--set`` (into overrides), checked once."""
    from rxf.config import Settings, read_yaml_mapping
    from rxf.experiments.sweep import SweepConfig

    path = Path(args.config)
    values = Settings(read_yaml_mapping(path, "sweep config"), source=str(path))
    for name in ("methods", "trials", "seeds", "output_dir", "sampler"):
        if getattr(args, name) is not None:
            values.set(name, getattr(args, name), "--" + name.replace("_", "-"))
    if args.keep_models:
        values.set("keep_models", True, "--keep-models")
    if args.methods is not None and isinstance(values.get("search_spaces"), dict):
        # --methods picks some rows of the file: the file's spaces of the other rows stay unused.
        for method in [m for m in values["search_spaces"] if m not in args.methods]:
            del values["search_spaces"][method]
    for item in args.set or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise RxfError(f"--set expects key=value, got {item!r}")
        values.set(f"overrides.{key}", yaml_value(text), "--set")
    config = SweepConfig.from_dict(values, base_dir=path.parent)
    if args.tasks:
        recipes = [r for r in config.recipes if _recipe_matches(r, args.tasks)]
        if not recipes:
            raise RxfError(f"--tasks {' '.join(args.tasks)} matches none of the recipes: {', '.join(config.recipes)}")
        config.recipes = recipes
    return config


def cmd_sweep(args: argparse.Namespace) -> int:
    from rxf.experiments.sweep import Sweep

    config = sweep_config(args)
    sweep = Sweep(config)
    records = sweep.run(search_only=args.search_only)
    print(f"{len(records)} runs ({len(sweep.trained)} trained now, the others found as records); records in {config.output_dir}/records/")
    if sweep.left_to_others:
        print(f"{len(sweep.left_to_others)} more left to the other processes training them: their records join these when they "
              "finish (run this command again afterwards to check that the sweep is complete)")
    print(f"next: rxf report --runs {config.output_dir}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="hyper-parameter search per method, then N seeds at the best setting (resumable)",
        description="Fixed-budget optuna search per task and method, then one run per seed at each method's best "
        "setting; one JSON record per run. Run it again to resume. Several processes may run it at once on one "
        "output_dir (one per GPU, or on machines sharing the folder): each run is trained by one of them.",
        formatter_class=HelpFormatter,
    )
    sweep.add_argument("--config", required=True, help="sweep YAML (recipes, methods, trials, seeds, overrides)")
    sweep.add_argument("--tasks", nargs="+", metavar="TASK", help="only these recipes (file stem or task name)")
    config = "rxf.experiments.sweep:SweepConfig"  # imported when the help is shown
    help_from(sweep.add_argument("--methods", nargs="+", metavar="METHOD"), config, "methods", hint="(see `rxf methods`)")
    help_from(sweep.add_argument("--trials", type=int), config, "trials")
    help_from(sweep.add_argument("--seeds", type=int, nargs="+", metavar="SEED"), config, "seeds")
    help_from(sweep.add_argument("--sampler"), config, "sampler")
    help_from(sweep.add_argument("--output-dir"), config, "output_dir", hint="(records/ goes there)")
    sweep.add_argument("--search-only", action="store_true", help="stop after the search")
    sweep.add_argument("--keep-models", action="store_true", help="keep every run's model/ (off: records only)")
    sweep.add_argument("--set", action="append", metavar="KEY=VALUE", help="TrainConfig override for every run (repeatable)")
    flagged = {flag: (name, None) for flag, name in (
        ("--methods", "methods"), ("--trials", "trials"), ("--seeds", "seeds"), ("--sampler", "sampler"),
        ("--output-dir", "output_dir"), ("--keep-models", "keep_models"),
    )}
    sweep.epilog = lambda: settings_epilog(config, flagged, header="Other settings (keys of the sweep YAML file):")
    sweep.set_defaults(handler=cmd_sweep)
