"""`rxf probe`: representational-collapse experiments (see rxf.probing).

    rxf probe generalization --data-dir ../shared/data/glue --source glue/sst2 --targets glue/mrpc glue/rte
    rxf probe chain --data-dir ../shared/data/glue --tasks glue/sst2 glue/mrpc glue/cola glue/rte
    rxf probe cycle --data-dir ../shared/data/glue --tasks glue/sst2 glue/mrpc glue/rte --cycles 3
    rxf probe similarity runs/r3f/model --task glue/sst2 --data-dir ../shared/data/glue

Settings are applied in order: the defaults of ProbeExperimentConfig, the YAML file
(``--config``), the flags, then ``--set key=value`` (dotted keys reach nested settings:
``train.learning_rate=2e-5``, ``probe.c_grid=[0.1,1]``, ``features.pooling=mean``,
``method_options.r3f.lambda_=0.5``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from rxf.commands.options import (
    HelpFormatter,
    add_setting_flags,
    apply_flags,
    apply_set,
    file_settings,
    help_from,
    settings_epilog,
    typed,
)
from rxf.config import Settings, settings_from
from rxf.errors import RxfError

# flag -> (dotted config key, type)
COMMON_FLAGS: dict[str, tuple[str, type]] = {
    "--model": ("model", str),
    "--data-dir": ("data_dir", str),
    "--output-dir": ("output_dir", str),
    "--cache-dir": ("cache_dir", str),
    "--stage-checkpoint": ("stage_checkpoint", str),
    "--similarity-samples": ("similarity_samples", int),
    "--layer": ("features.layer", int),
    "--pooling": ("features.pooling", str),
    "--probe-train-samples": ("probe.max_train_samples", int),
    "--probe-eval-samples": ("probe.max_eval_samples", int),
    "--max-train-samples": ("train.max_train_samples", int),
    "--max-eval-samples": ("train.max_eval_samples", int),
    "--max-steps": ("train.max_steps", int),
    "--epochs": ("train.epochs", float),
    "--lr": ("train.learning_rate", float),
    "--batch-size": ("train.batch_size", int),
    "--eval-steps": ("train.eval_steps", int),
}

# store_true flag -> (field, value it sets)
SWITCHES: dict[str, tuple[str, Any]] = {
    "--keep-models": ("keep_models", True),
    "--no-track-similarity": ("track_similarity", False),
    "--no-pretrained": ("include_pretrained", False),
    "--progress": ("progress_bar", True),
}


def experiment_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config mapping from --config, the flags and --set, in that order."""
    values = file_settings(args.config)
    apply_flags(values, args, COMMON_FLAGS)
    if args.max_length is not None:  # the same truncation for fine-tuning and for the probes' features
        length = typed("--max-length", int, args.max_length)
        values.set("train.max_length", length, "--max-length")
        values.set("features.max_length", length, "--max-length")
    if args.methods is not None:
        values.set("methods", args.methods, "--methods")
    if args.seeds is not None:
        values.set("seeds", [typed("--seeds", int, seed) for seed in args.seeds], "--seeds")
    for switch, (name, value) in SWITCHES.items():
        if getattr(args, switch.removeprefix("--").replace("-", "_")):
            values.set(name, value, switch)
    for flag, name in (("--tasks", "tasks"), ("--targets", "target_tasks"), ("--source", "source_task")):
        if getattr(args, name, None) is not None:
            values.set(name, getattr(args, name), flag)
    if getattr(args, "cycles", None) is not None:
        values.set("cycles", typed("--cycles", int, args.cycles), "--cycles")
    if getattr(args, "checkpoint", None):
        for item in args.checkpoint:
            label, sep, path = item.partition("=")
            if not sep or not label or not path:
                raise RxfError(f"--checkpoint expects LABEL=DIRECTORY, got {item!r}")
            values.setdefault("checkpoints", {})
            values.set(f"checkpoints.{label}", path, "--checkpoint")
        if args.methods is None:
            values.set("methods", [], "--checkpoint")  # probe the given checkpoints only, unless methods are asked for too
    apply_set(values, args.set)
    return values


def cmd_experiment(args: argparse.Namespace) -> int:
    from rxf.probing import EXPERIMENT_RUNNERS, ProbeExperimentConfig

    config = ProbeExperimentConfig.from_dict(experiment_values(args), source="config")
    EXPERIMENT_RUNNERS[args.experiment](config, command=_command_line())
    out = Path(config.output_dir)
    print((out / "summary.md").read_text())
    print(f"wrote {out}/results.json, results.csv, summary.md, {args.experiment}.png and config.yaml "
          f"(rerun: rxf probe {args.experiment} --config {out}/config.yaml)")
    return 0


def _command_line() -> str | None:
    """The shell command that started this run, when it came from the `rxf` console script."""
    program = Path(sys.argv[0]).name
    if program == "rxf" or (program in ("cli.py", "__main__.py") and "rxf" in sys.argv[0]):
        return "rxf " + shlex.join(sys.argv[1:])
    return None


def cmd_similarity(args: argparse.Namespace) -> int:
    """CKA and effective rank of one checkpoint against a reference model, on a task's dev texts."""
    from rxf.probing import FeatureConfig, FeatureExtractor, similarity_report
    from rxf.tasks import load_task
    from rxf.tasks.glue import glue_key

    given = Settings()
    apply_flags(given, args, SIMILARITY_FLAGS)
    with settings_from(given):  # a bad value is named with its flag
        features = FeatureConfig(**given)  # the defaults are FeatureConfig's
    samples = typed("--samples", int, args.samples)
    if samples < 1:
        raise RxfError(f"--samples must be a positive whole number (dev examples to encode), got {samples}")
    task = load_task(args.task, data_dir=args.data_dir if glue_key(args.task) else None, max_eval_samples=samples, seed=0)
    split, rows = next(iter(task.eval.items()))
    pairs = rows["text_pair"] if "text_pair" in rows.column_names else None
    extractor = FeatureExtractor(features, args.cache_dir)
    reference = extractor(args.reference, rows["text"], pairs, f"{task.name}:{split}")
    current = extractor(args.checkpoint, rows["text"], pairs, f"{task.name}:{split}")
    result = {
        "checkpoint": args.checkpoint,
        "reference": args.reference,
        "texts": f"{len(rows)} examples of {task.name} {split}",
        "features": features.describe(),
        **similarity_report(reference, current),
    }
    print(json.dumps(result, indent=2))
    return 0


# The representation `rxf probe similarity` reads: flag -> (FeatureConfig field, type).
SIMILARITY_FLAGS: dict[str, tuple[str, type]] = {"--layer": ("layer", int), "--pooling": ("pooling", str), "--max-length": ("max_length", int)}

# Where the help of each setting comes from (imported when the help is shown).
CONFIG = "rxf.probing.experiments:ProbeExperimentConfig"
GROUPS = {"train": "rxf.train:TrainConfig", "features": "rxf.probing.features:FeatureConfig", "probe": "rxf.probing.probe:ProbeConfig"}


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    parser.add_argument("--config", help="YAML file of ProbeExperimentConfig fields (the names below)")
    add_setting_flags(parser, COMMON_FLAGS, CONFIG, groups=GROUPS)
    parser.add_argument("--max-length", metavar="INT", help="sets train.max_length and features.max_length")
    help_from(parser.add_argument("--methods", nargs="+", metavar="METHOD"), CONFIG, "methods", hint="(see `rxf methods`)")
    help_from(parser.add_argument("--seeds", nargs="+", metavar="SEED"), CONFIG, "seeds", hint="(one fine-tuning per method and seed)")
    parser.add_argument("--keep-models", action="store_true", help="keep every stage's model and encoder")
    parser.add_argument("--no-track-similarity", action="store_true", help="no CKA/effective rank during training")
    parser.add_argument("--no-pretrained", action="store_true", help="do not probe the pre-trained model")
    parser.add_argument("--progress", action="store_true", help="show training progress bars")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field, dotted (repeatable)")


def add_parser(commands: argparse._SubParsersAction) -> None:
    probe = commands.add_parser(
        "probe",
        help="representational collapse: linear probes, chains, cycles, CKA",
        description="The paper's probing experiments (Figures 3-5) and similarity to the pre-trained model.",
    )
    experiments = probe.add_subparsers(dest="experiment", required=True)

    generalization = experiments.add_parser(
        "generalization", help="Figure 3: fine-tune on a source task, probe other tasks on the frozen encoder"
    )
    help_from(generalization.add_argument("--source", dest="source_task", metavar="TASK"), CONFIG, "source_task")
    help_from(generalization.add_argument("--targets", dest="target_tasks", nargs="+", metavar="TASK"), CONFIG, "target_tasks")
    generalization.add_argument(
        "--checkpoint", action="append", metavar="LABEL=DIR", help="also probe this checkpoint (no fine-tuning)"
    )

    chain = experiments.add_parser("chain", help="Figure 4: train tasks in sequence, probe the first after each")
    help_from(chain.add_argument("--tasks", nargs="+", metavar="TASK"), CONFIG, "tasks", hint="(the chain, source task first)")

    cycle = experiments.add_parser("cycle", help="Figure 5: the chain repeated; probe each task every cycle")
    help_from(cycle.add_argument("--tasks", nargs="+", metavar="TASK"), CONFIG, "tasks", hint="(the tasks of one cycle)")
    help_from(cycle.add_argument("--cycles", metavar="INT"), CONFIG, "cycles", hint="(paper: 3)")

    for parser in (generalization, chain, cycle):
        _add_common(parser)
        parser.epilog = lambda: settings_epilog(CONFIG, COMMON_FLAGS)
        parser.set_defaults(handler=cmd_experiment)

    similarity = experiments.add_parser(
        "similarity", help="linear CKA and effective rank of a checkpoint against a reference model"
    )
    similarity.add_argument("checkpoint", help="fine-tuned model directory")
    similarity.formatter_class = HelpFormatter
    similarity.add_argument("--reference", default="all-MiniLM-L6-v2", help="model to compare with (default: %(default)s)")
    similarity.add_argument("--task", default="glue/sst2", help="whose dev texts to encode (default: %(default)s)")
    similarity.add_argument("--data-dir", help="GLUE root for glue/* tasks")
    similarity.add_argument("--samples", default="512", help="how many dev examples (default: %(default)s)")
    add_setting_flags(similarity, SIMILARITY_FLAGS, "rxf.probing.features:FeatureConfig")
    similarity.add_argument("--cache-dir", help="feature cache directory")
    similarity.set_defaults(handler=cmd_similarity)
