"""`rxf train`: fine-tune a model with a method (see rxf.train for the recipe).

Settings are applied in order: the defaults of :class:`rxf.train.TrainConfig`, then the YAML
file (``--config``), then the flags, then ``--set key=value`` (which reaches every field, and
method options as ``--set method_options.sigma=1e-4``). A ``--method`` other than the config's
drops the config's options of its method but keeps the shared ``label_smoothing``.
"""

from __future__ import annotations

import argparse
import functools
import json
from typing import Any

from rxf.commands.options import (
    METHOD_FLAGS,
    HelpFormatter,
    add_setting_flags,
    config_values,
    default_method_class,
    settings_epilog,
)


def names(text: str) -> list[str]:
    """A comma-separated list of names: "tensorboard,wandb" -> ["tensorboard", "wandb"]."""
    return [name.strip() for name in text.split(",") if name.strip()]


# Flags for the most used fields: flag -> (field, type). Method options live in method_options.
TRAIN_FLAGS: dict[str, tuple[str, type]] = {
    "--model": ("model", str),
    "--task": ("task", str),
    "--data-dir": ("data_dir", str),
    "--train-file": ("train_file", str),
    "--eval-file": ("eval_file", str),
    "--text-column": ("text_column", str),
    "--text-pair-column": ("text_pair_column", str),
    "--label-column": ("label_column", str),
    "--task-type": ("task_type", str),
    "--delimiter": ("delimiter", str),
    "--label-separator": ("label_separator", str),
    "--max-train-samples": ("max_train_samples", int),
    "--max-eval-samples": ("max_eval_samples", int),
    "--max-length": ("max_length", int),
    "--method": ("method", str),
    "--recipe": ("recipe", str),
    "--lr": ("learning_rate", float),
    "--epochs": ("epochs", float),
    "--max-steps": ("max_steps", int),
    "--batch-size": ("batch_size", int),
    "--eval-steps": ("eval_steps", int),
    "--seed": ("seed", int),
    "--output-dir": ("output_dir", str),
    "--report-to": ("report_to", names),
}


def train_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config mapping from --config, the flags and --set, in that order."""
    from rxf.train import TrainConfig

    switches = {"bf16": ("bf16", True), "no_progress": ("progress_bar", False), "overwrite": ("overwrite", True)}
    return config_values(TrainConfig, args, TRAIN_FLAGS, METHOD_FLAGS, switches)


def cmd_train(args: argparse.Namespace) -> int:
    from rxf.train import TrainConfig, run_training

    config = TrainConfig.from_dict(train_values(args), source="config")
    result = run_training(config)
    summary = {k: result[k] for k in ("task", "method", "main_metric", "best_step", "time_to_best_s", "train_runtime_s")}
    summary["final"] = {k: v for k, v in (result["final"] or {}).items() if k.startswith("eval_")}
    print(json.dumps(summary, indent=2, default=str))
    print(f"wrote {config.output_dir}/metrics.json" + (f" and {config.output_dir}/model/" if config.save_model else ""))
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="fine-tune a model with a method",
        description="Fine-tune a model. With no options: the packaged all-MiniLM-L6-v2 on BBC news with R3F, offline.",
        formatter_class=HelpFormatter,
    )
    from rxf.train import TrainConfig

    train.add_argument("--config", help="YAML file of TrainConfig fields (the names below)")
    add_setting_flags(train, TRAIN_FLAGS, TrainConfig)
    method = functools.partial(default_method_class, TrainConfig)
    add_setting_flags(train, METHOD_FLAGS, method, label_prefix="method_options.", hint="(of the default method; see `rxf methods`)")
    train.epilog = lambda: settings_epilog(TrainConfig, TRAIN_FLAGS) + "\nMethod options: see `rxf methods`."
    train.add_argument("--bf16", action="store_true", help="train in bf16 mixed precision")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--overwrite", action="store_true", help="replace the run that --output-dir holds (another run, or this one finished)"
    )
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field (repeatable)")
    train.set_defaults(handler=cmd_train)
