"""`rxf sft`: supervised fine-tuning of a causal LM on chat or instruction data (see rxf.sft).

    rxf sft --data-dir ../shared/data/summarization --lora-r 16 --method r3f     # SmolLM2 on SAMSum chats
    rxf sft --train-file chats.jsonl --eval-file dev.jsonl --model ./llama --method neftune --alpha 5 --packing
    rxf sft --config run.yaml --set method_options.lambda_=0.1

Settings are applied in order: the defaults of :class:`rxf.sft.SFTConfig`, then the YAML file
(``--config``), then the flags, then ``--set key=value`` (which reaches every field, and method
options as ``--set method_options.lambda_=0.1``). Starting a run again in the same output
directory with the same settings resumes it from its last checkpoint.
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

# Flags for the most used fields: flag -> (field, type).
SFT_FLAGS: dict[str, tuple[str, type]] = {
    "--model": ("model", str),
    "--task": ("task", str),
    "--data-dir": ("data_dir", str),
    "--train-file": ("train_file", str),
    "--eval-file": ("eval_file", str),
    "--max-train-samples": ("max_train_samples", int),
    "--max-eval-samples": ("max_eval_samples", int),
    "--max-length": ("max_length", int),
    "--lora-r": ("lora_r", int),
    "--lora-alpha": ("lora_alpha", float),
    "--lora-dropout": ("lora_dropout", float),
    "--dropout": ("dropout", float),
    "--method": ("method", str),
    "--lr": ("learning_rate", float),
    "--epochs": ("epochs", float),
    "--max-steps": ("max_steps", int),
    "--batch-size": ("batch_size", int),
    "--gradient-accumulation-steps": ("gradient_accumulation_steps", int),
    "--eval-steps": ("eval_steps", int),
    "--save-steps": ("save_steps", int),
    "--seed": ("seed", int),
    "--output-dir": ("output_dir", str),
}
SFT_METHOD_FLAGS: dict[str, tuple[str, type]] = {
    **METHOD_FLAGS,
    "--alpha": ("alpha", float),  # NEFTune's noise scale, R-Drop's weight
    "--label-smoothing": ("label_smoothing", float),
}


def sft_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config mapping from --config, the flags and --set, in that order."""
    from rxf.sft import SFTConfig

    switches = {
        "packing": ("packing", True),
        "group_by_length": ("group_by_length", True),
        "merge_adapter": ("merge_adapter", True),
        "overwrite": ("overwrite", True),
        "no_progress": ("progress_bar", False),
        "no_gradient_checkpointing": ("gradient_checkpointing", False),
    }
    return config_values(SFTConfig, args, SFT_FLAGS, SFT_METHOD_FLAGS, switches)


def cmd_sft(args: argparse.Namespace) -> int:
    from rxf.sft import SFTConfig, run_sft

    config = SFTConfig.from_dict(sft_values(args), source="config")
    result = run_sft(config)
    keys = ("task", "method", "seed", "global_step", "final_eval_loss", "train_runtime_s", "seconds_per_step", "resumed_from")
    print(json.dumps({k: result[k] for k in keys}, indent=2, default=str))
    saved = "adapter/" + (" and merged/" if config.merge_adapter else "") if config.lora_r else "model/"
    print(f"wrote {config.output_dir}/metrics.json and {config.output_dir}/{saved}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    sft = commands.add_parser(
        "sft",
        help="supervised fine-tuning of a causal LM on chat or instruction data, with a method",
        description="Fine-tune a causal LM on chat (messages) or prompt/completion JSONL, loss on the assistant's "
        "tokens only, with an rxf method (standard, neftune, r3f, rdrop, smart, freelb; not r4f or standard++), "
        "optionally with LoRA and packing.",
        formatter_class=HelpFormatter,
    )
    config = "rxf.sft:SFTConfig"  # imported when the help is shown
    sft.add_argument("--config", help="YAML file of SFTConfig fields (the names below)")
    add_setting_flags(sft, SFT_FLAGS, config)
    # The default method (standard) has no noise: the noise flags show R3F's settings.
    add_setting_flags(sft, METHOD_FLAGS, "rxf.methods.r3f:R3FConfig", label_prefix="method_options.", hint="(R3F's; see `rxf methods`)")
    add_setting_flags(
        sft, {"--label-smoothing": SFT_METHOD_FLAGS["--label-smoothing"]}, functools.partial(default_method_class, config),
        label_prefix="method_options.", hint="(of every method; see `rxf methods`)",
    )
    add_setting_flags(
        sft, {"--alpha": SFT_METHOD_FLAGS["--alpha"]}, "rxf.methods.neftune:NEFTuneConfig",
        label_prefix="method_options.", hint="(NEFTune's; also R-Drop's weight: see `rxf methods`)",
    )
    sft.epilog = lambda: settings_epilog(config, SFT_FLAGS) + "\nMethod options: see `rxf methods`."
    sft.add_argument("--packing", action="store_true", help="pack several conversations per row (padding-free)")
    sft.add_argument(
        "--group-by-length", action="store_true", help="batches of conversations of similar length (less padding)"
    )
    sft.add_argument("--merge-adapter", action="store_true", help="also save the model with the LoRA adapter merged in")
    sft.add_argument("--overwrite", action="store_true", help="start afresh in an output directory that holds another run")
    sft.add_argument("--no-progress", action="store_true", help="no progress bar")
    sft.add_argument(
        "--no-gradient-checkpointing", action="store_true",
        help="keep activations instead of recomputing them (faster, more memory; TRL's default recomputes)",
    )
    sft.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field (repeatable)")
    sft.set_defaults(handler=cmd_sft)
