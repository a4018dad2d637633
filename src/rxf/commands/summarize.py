"""`rxf summarize`: fine-tune a generation model for summarization and score it with ROUGE (see rxf.summarization).

    rxf summarize --config configs/summarization/gigaword-cpu.yaml --method r3f --seed 1
    rxf summarize --train-file mine.csv --model ./bart --num-beams 4 --set max_new_tokens=60
    rxf summarize --table runs/sum/*            # ROUGE table over finished runs, no training

Settings are applied in order: the defaults of :class:`rxf.summarization.SummarizationConfig`,
then the YAML file (``--config``), then the flags, then ``--set key=value`` (which reaches every
field, and method options as ``--set method_options.lambda_=0.01``). A ``--method`` other than the
config's drops the config's options of its method (``lambda_``, ``sigma``, ...) but keeps the
shared ``label_smoothing``, so that one config serves both arms of a comparison.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

from rxf.commands.options import (
    METHOD_FLAGS,
    HelpFormatter,
    add_setting_flags,
    config_values,
    default_method_class,
    settings_epilog,
)

# Flags for the most used fields: flag -> (field, type).
SUMMARIZE_FLAGS: dict[str, tuple[str, type]] = {
    "--model": ("model", str),
    "--task": ("task", str),
    "--data-dir": ("data_dir", str),
    "--train-file": ("train_file", str),
    "--eval-file": ("eval_file", str),
    "--document-column": ("document_column", str),
    "--summary-column": ("summary_column", str),
    "--eval-split": ("eval_split", str),
    "--max-train-samples": ("max_train_samples", int),
    "--max-eval-samples": ("max_eval_samples", int),
    "--max-source-length": ("max_source_length", int),
    "--max-target-length": ("max_target_length", int),
    "--method": ("method", str),
    "--lr": ("learning_rate", float),
    "--epochs": ("epochs", float),
    "--max-steps": ("max_steps", int),
    "--batch-size": ("batch_size", int),
    "--eval-steps": ("eval_steps", int),
    "--num-beams": ("num_beams", int),
    "--max-new-tokens": ("max_new_tokens", int),
    "--seed": ("seed", int),
    "--output-dir": ("output_dir", str),
}
SUMMARIZE_METHOD_FLAGS: dict[str, tuple[str, type]] = {**METHOD_FLAGS, "--label-smoothing": ("label_smoothing", float)}


def summarize_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config mapping from --config, the flags and --set, in that order."""
    from rxf.summarization import SummarizationConfig

    switches = {"warm_start": ("warm_start", True), "no_progress": ("progress_bar", False), "overwrite": ("overwrite", True)}
    return config_values(SummarizationConfig, args, SUMMARIZE_FLAGS, SUMMARIZE_METHOD_FLAGS, switches)


def cmd_summarize(args: argparse.Namespace) -> int:
    from rxf.summarization import (
        SummarizationConfig, check_table_out, results_table, run_metrics_files, run_summarization, write_table,
    )

    if args.table_out and not args.table:
        from rxf.errors import RxfError

        raise RxfError("--table-out FILE writes the table of --table RUN ...: pass --table too")
    if args.table:
        files = run_metrics_files(args.table)
        out = Path(args.table_out).expanduser() if args.table_out else None
        if out is not None:
            check_table_out(out, files)  # before the table is built: nothing is overwritten by mistake
        table = results_table(files)
        if out is not None:
            write_table(table, out)
        print(table, end="")
        return 0
    config = SummarizationConfig.from_dict(summarize_values(args), source="config")
    result = run_summarization(config)
    summary = {k: result[k] for k in ("task", "eval_split", "method", "seed", "train_runtime_s", "sentence_splitter")}
    summary["final"] = result["final"]
    print(json.dumps(summary, indent=2, default=str))
    print(f"wrote {config.output_dir}/metrics.json" + (f" and {config.output_dir}/model/" if config.save_model else ""))
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    summarize = commands.add_parser(
        "summarize",
        help="fine-tune a summarization model with a method and score it with ROUGE",
        description="Fine-tune a seq2seq or decoder-only model for summarization (label-smoothed CE + the method), "
        "generate summaries and score them with ROUGE-1/2/L/Lsum.",
        formatter_class=HelpFormatter,
    )
    config = "rxf.summarization:SummarizationConfig"  # imported when the help is shown
    summarize.add_argument("--config", help="YAML file of SummarizationConfig fields (the names below)")
    add_setting_flags(summarize, SUMMARIZE_FLAGS, config)
    method = functools.partial(default_method_class, config)
    add_setting_flags(summarize, METHOD_FLAGS, method, label_prefix="method_options.", hint="(of the default method; see `rxf methods`)")
    add_setting_flags(
        summarize,
        {"--label-smoothing": SUMMARIZE_METHOD_FLAGS["--label-smoothing"]},
        method,
        label_prefix="method_options.",
        hint="(rxf summarize's default is the paper's, rxf.summarization.DEFAULT_LABEL_SMOOTHING)",
        default_at="rxf.summarization:DEFAULT_LABEL_SMOOTHING",
    )
    summarize.epilog = lambda: settings_epilog(config, SUMMARIZE_FLAGS) + "\nMethod options: see `rxf methods`."
    summarize.add_argument("--warm-start", action="store_true", help="build an encoder-decoder from the encoder-only --model")
    summarize.add_argument("--no-progress", action="store_true", help="no progress bar")
    summarize.add_argument(
        "--overwrite", action="store_true", help="replace the run that --output-dir holds (another run, or this one finished)"
    )
    summarize.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field (repeatable)")
    summarize.add_argument("--table", nargs="+", metavar="RUN", help="print a ROUGE table of finished runs instead of training")
    summarize.add_argument("--table-out", metavar="FILE", help="also write the --table markdown to FILE")
    summarize.set_defaults(handler=cmd_summarize)
