"""The fine-tuning recipe behind ``rxf train``: a config in, a trained model and its metrics out.

    rxf train                                   # packaged MiniLM + BBC news, R3F, offline
    rxf train --method r4f --lambda 0.5 --task glue/rte --data-dir ../shared/data/glue
    rxf train --config configs/glue/rte.yaml --set learning_rate=2e-5

Everything the run needs is one :class:`TrainConfig` (YAML keys = field names). The run
validates it up front, loads the task and the model, trains with :class:`rxf.RxfTrainer`,
evaluates after every epoch (or every ``eval_steps``), and writes into ``output_dir``:

* ``metrics.json``: the config, the final and best evaluation, every evaluation with the wall
  time at which it happened (for time-to-best), and the training loss curve with its parts;
* ``model/``: the final model (safetensors, plain transformers format) and its tokenizer;
* ``config.yaml``: the resolved config, to rerun with ``rxf train --config``;
* ``history.jsonl`` (every log entry, written as it comes) and ``history.png`` (rxf.history);
* ``dev_report.md`` and ``dev_confusion_matrix.png``: the final model's per-class precision,
  recall, F1 and support and its confusion matrix on the dev set (rxf.inference);
* ``tensorboard/``, with ``report_to: [tensorboard]``.

Optimiser defaults follow the paper's GLUE recipe (Table 5): Adam β = (0.9, 0.98), ε = 1e-6,
linear (polynomial, power 1) decay, 6 % warm-up, weight decay 0.01.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rxf.config import Settings, YamlConfig, check_fields, describe_setting, settings_under
from rxf.cost import peak_memory
from rxf.errors import RxfError
from rxf.methods.base import METHODS, check_choice, check_number, check_seed, check_text, method_config
from rxf.models.local import DEFAULT_MODEL, check_tokenizer, fit_max_length, load_classifier

NONFINITE_POLICIES = ("stop", "skip")



@dataclass
class TrainConfig(YamlConfig):
    """One fine-tuning run. Field names are the YAML keys and the ``--set`` names."""

    # What to train on.
    model: str = DEFAULT_MODEL  # hub name, local directory, or all-MiniLM-L6-v2 (packaged)
    task: str | None = "bbc_news"  # see rxf.tasks.load_task; None with train_file for your own files
    data_dir: str | None = None
    train_file: str | None = None
    eval_file: str | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    task_type: str | None = None  # classification | regression | multi_label, for files and hub datasets
    # Delimited-text files: tab, comma, semicolon, pipe, space or one character; None: .csv sniffed, .tsv tab.
    delimiter: str | None = None
    # Multi-label labels written in one text cell, e.g. "|" for "sport|politics" (JSON lists need none).
    label_separator: str | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_length: int = 128
    # Batches of similar lengths (less padding, same examples per epoch): faster on CPU.
    group_by_length: bool = False
    # None: the model's own dropout; a number sets every dropout rate of the model (rxf.dropout).
    dropout: float | None = None

    # The method and its options (see rxf.methods: lambda_, sigma, noise_type, ...).
    method: str = "r3f"
    method_options: dict[str, Any] = field(default_factory=dict)
    # "same": every method trains with bias-corrected AdamW, so methods differ in their loss only;
    # "paper": the paper's recipes (Standard = RoBERTa's Adam without bias correction).
    recipe: str = "same"

    # Optimisation.
    learning_rate: float = 1e-4
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 16
    eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-6
    max_grad_norm: float = 1.0
    seed: int = 42
    # Seed of the max_*_samples subsets: the same subsets for every seed by default, so that runs
    # with different seeds differ in training randomness only. None: a new subset per seed.
    data_seed: int | None = 0
    bf16: bool = False

    # Evaluation, logging and output.
    eval_steps: int | None = None  # None: evaluate after every epoch
    logging_steps: int = 10
    output_dir: str = "runs/default"
    save_model: bool = True
    progress_bar: bool = True
    # Trainer integrations to log to as well (tensorboard, wandb, mlflow, ..., or all installed ones).
    report_to: list[str] = field(default_factory=list)

    # Reliability.
    checkpoint_steps: int | None = None  # None: a checkpoint at every evaluation
    keep_checkpoints: int = 1  # 0: no checkpoints (a crashed run then starts over)
    resume: bool = True  # continue from the latest checkpoint in output_dir, if there is one
    # Replace the run that output_dir holds (another run, or this one finished) instead of refusing.
    overwrite: bool = False
    on_nonfinite: str = "stop"  # NaN/inf loss: "stop" (save state, then error) or "skip" the step

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        if values.get("train_file") and "task" not in values:
            values = Settings(values)  # keeps where each value came from
            values["task"] = None  # your own files replace the default task
        return super().from_dict(values, source)

    @property
    def subset_seed(self) -> int:
        """The seed that picks the max_*_samples subsets."""
        return self.seed if self.data_seed is None else self.data_seed

    def validate(self) -> None:
        """Check every field before any data or model is loaded: types, then ranges and choices."""
        check_fields(self)
        for name in ("learning_rate", "epochs", "weight_decay", "max_grad_norm"):
            check_number(name, getattr(self, name), minimum=0.0)
        check_number("adam_epsilon", self.adam_epsilon, positive=True)  # 0 divides 0 by 0 where a gradient is 0
        for name in ("warmup_ratio", "adam_beta1", "adam_beta2"):
            check_number(name, getattr(self, name), minimum=0.0, below=1.0)
        for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "max_length", "logging_steps"):
            check_number(name, getattr(self, name), integer=True, positive=True)
        check_number("max_steps", self.max_steps, integer=True)
        check_seed("seed", self.seed)
        check_seed("data_seed", self.data_seed, optional=True)
        for name in ("model", "output_dir", "text_column", "label_column"):
            check_text(name, getattr(self, name))
        for name in ("task", "data_dir", "train_file", "eval_file", "text_pair_column"):
            check_text(name, getattr(self, name), optional=True)
        check_number("keep_checkpoints", self.keep_checkpoints, integer=True, minimum=0)
        check_number("dropout", self.dropout, minimum=0.0, below=1.0, optional=True)
        check_choice("on_nonfinite", self.on_nonfinite, NONFINITE_POLICIES)
        from rxf.history import check_report_to
        from rxf.tasks.files import delimiter_char

        check_report_to(self.report_to)
        delimiter_char(self.delimiter)
        from rxf.methods.recipe import RECIPES

        check_choice("recipe", self.recipe, tuple(RECIPES))
        for name in ("max_train_samples", "max_eval_samples", "eval_steps", "checkpoint_steps"):
            check_number(name, getattr(self, name), integer=True, positive=True, optional=True)
        if self.max_steps <= 0 and self.epochs <= 0:
            raise RxfError(f"nothing to train ({describe_setting('epochs', self.epochs)}, {describe_setting('max_steps', self.max_steps)}): set epochs > 0 or max_steps > 0")
        check_choice("method", self.method.lower(), sorted(METHODS))
        with settings_under("method_options"):
            method_config(self.method, **self.method_options)  # unknown option or bad value


# TrainConfig fields that do not change what a run computes: a run resumed with other values of
# these is the same run (rxf.rundir compares the others with the run directory's manifest).
NOT_RUN_SETTINGS = (
    "output_dir", "progress_bar", "save_model", "logging_steps", "eval_batch_size", "report_to",
    "checkpoint_steps", "keep_checkpoints", "resume", "overwrite",
)


def run_settings(config: TrainConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """What defines the run (its settings, paths made absolute, every method option) and the defaults of those settings."""
    from rxf.rundir import defining_settings

    settings = defining_settings(config.to_dict(), NOT_RUN_SETTINGS, method_config(config.method, **config.method_options).to_dict())
    defaults = defining_settings(TrainConfig().to_dict(), NOT_RUN_SETTINGS, method_config(config.method).to_dict())
    return settings, defaults


def tokenize(dataset, tokenizer, max_length: int, has_pair: bool):
    def encode(rows: dict[str, list]) -> dict[str, list]:
        pair = rows["text_pair"] if has_pair else None
        encoded = tokenizer(rows["text"], pair, truncation=True, max_length=max_length)
        encoded["labels"] = rows["label"]
        return encoded

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="tokenizing")


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write then rename, so a crash never leaves a half-written file under the final name (nor, after
    a failed write, a temporary one). The temporary name carries the process id: two sweeps sharing an
    output directory (one per method group, as configs/glue/cpu-small.yaml suggests) must not rename
    each other's file.
    """
    from rxf.io import replace_files

    replace_files({path: json.dumps(payload, indent=2, default=str)})


def run_training(config: TrainConfig, extra_callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train, evaluate and save; return what ``metrics.json`` holds.

    ``extra_callbacks``: more TrainerCallbacks, e.g. rxf.probing's representation tracker.
    """
    config.validate()
    from rxf.rundir import run_owned

    # The output directory belongs to one run (rxf.rundir): locked while this process trains, and
    # refused if it holds another run, unless overwrite. A run that fails before writing anything
    # leaves no directory behind.
    settings, defaults = run_settings(config)
    return run_owned(
        config.output_dir, settings, defaults, config.overwrite,
        lambda run_dir: _train(config, run_dir, settings, defaults, extra_callbacks),
    )


def _train(config: TrainConfig, run_dir, settings: dict, defaults: dict, extra_callbacks: Sequence[Any]) -> dict[str, Any]:
    """run_training's work, in the run directory it claimed."""
    out = run_dir.path

    task = config_task(config)
    if task.train is None:
        raise RxfError(f"task {task.name!r} has no training split")

    import transformers
    from transformers import DataCollatorWithPadding, TrainingArguments, set_seed

    from rxf.history import TrainingHistory, check_report_to, keep_tensorboard_logs
    from rxf.trainer import RxfTrainer, run_wall_time

    transformers.logging.set_verbosity_error()  # the "newly initialized head" notice is expected here
    logging.getLogger("datasets").setLevel(logging.ERROR)
    set_seed(config.seed)
    model, tokenizer = load_classifier(config.model, task.num_labels, task.label_names, task.multi_label)
    check_tokenizer(tokenizer, task.train["text"], config.model)
    max_length = fit_max_length(config.max_length, model, config.model)
    if config.dropout is not None:
        from rxf.dropout import set_dropout

        set_dropout(model, config.dropout)
    train_data = tokenize(task.train, tokenizer, max_length, task.has_text_pair)
    eval_data = {split: tokenize(ds, tokenizer, max_length, task.has_text_pair) for split, ds in task.eval.items()}
    main_split = next(iter(eval_data))

    last_evaluation: dict[str, Any] = {}  # the latest predictions on the dev set, for its per-class report

    def compute_metrics(prediction) -> dict[str, float]:
        step = trainer.state.global_step
        last_evaluation.update(predictions=prediction.predictions, labels=prediction.label_ids, step=step)
        return task.compute_metrics(prediction.predictions, prediction.label_ids)

    steps_per_epoch = math.ceil(len(train_data) / (config.batch_size * config.gradient_accumulation_steps))
    by_steps = config.eval_steps is not None
    checkpoint_dir = out / "checkpoints"
    # Data and model are ready: from here on the directory holds this run (an overwritten one is moved aside
    # now, and deleted after the first training step: rxf.rundir).
    from rxf.tasks.base import fingerprint

    data = {"fingerprint": fingerprint(task), "train_examples": len(task.train), "labels": task.label_names}
    fresh = run_dir.start(settings, defaults, data, overwrite=config.overwrite)
    resume_from = None if fresh else _checkpoint_to_resume(checkpoint_dir, config, model, run_dir.main_process)
    if config.keep_checkpoints == 0:
        save = {"save_strategy": "no"}
    elif config.checkpoint_steps is not None:
        save = {"save_strategy": "steps", "save_steps": config.checkpoint_steps}
    else:
        save = {"save_strategy": "steps" if by_steps else "epoch", "save_steps": config.eval_steps}
    args = TrainingArguments(
        output_dir=str(checkpoint_dir),
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        adam_beta1=config.adam_beta1,
        adam_beta2=config.adam_beta2,
        adam_epsilon=config.adam_epsilon,
        max_grad_norm=config.max_grad_norm,
        lr_scheduler_type="linear",
        seed=config.seed,
        bf16=config.bf16,
        eval_strategy="steps" if by_steps else "epoch",
        eval_steps=config.eval_steps,
        save_total_limit=max(config.keep_checkpoints, 1),
        save_only_model=False,
        logging_steps=min(config.logging_steps, max(steps_per_epoch, 1)),
        report_to=check_report_to(config.report_to) or "none",
        disable_tqdm=not config.progress_bar,
        use_cpu=not _has_accelerator(),
        **save,
        **length_grouping(config.group_by_length),
    )
    # The method's recipe (rxf.methods.recipe): Standard++ trains longer; under recipe "paper"
    # Standard has no Adam bias correction. Scale the budget and build the matching AdamW.
    from rxf.methods.recipe import recipe_defaults
    from rxf.optim import AdamW

    method = method_config(config.method, **config.method_options)
    recipe = {"name": config.recipe, **recipe_defaults(method, config.recipe)}
    args.num_train_epochs = config.epochs * recipe["epochs_multiplier"]
    if config.max_steps > 0:
        args.max_steps = round(config.max_steps * recipe["epochs_multiplier"])
    optimizer = (
        AdamW,
        {
            "lr": config.learning_rate,
            "betas": (config.adam_beta1, config.adam_beta2),
            "eps": config.adam_epsilon,
            "bias_correction": recipe["adam_bias_correction"],
        },
    )
    with warnings.catch_warnings():  # Standard++'s longer training is applied above: the trainer's reminder is not for here
        warnings.filterwarnings("ignore", message=".*its longer training is rxf train's recipe", category=UserWarning)
        trainer = RxfTrainer(
            optimizer_cls_and_kwargs=optimizer,
            model=model,
            args=args,
            train_dataset=train_data,
            eval_dataset=eval_data[main_split],
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=compute_metrics,
            callbacks=[
                TrainingHistory(out, title=f"{task.name} · {config.method} · seed {config.seed}"),
                run_dir.drop_earlier_run_callback(),
                *extra_callbacks,
            ],
            method=method,
            on_nonfinite=config.on_nonfinite,
        )
    keep_tensorboard_logs(trainer, out / "tensorboard")
    if resume_from is not None and trainer.is_world_process_zero():
        print(f"rxf: resuming from {resume_from}")
    started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.perf_counter() - started
    # The dev set's per-class report, of the final model: the last evaluation's predictions when it
    # evaluated the final model, else one more pass.
    if last_evaluation.get("step") != trainer.state.global_step:
        last_evaluation.pop("predictions", None)
    dev_predictions = last_evaluation if "predictions" in last_evaluation else None
    final = {split: trainer.evaluate(ds, metric_key_prefix=split) for split, ds in eval_data.items()} if len(eval_data) > 1 else {}

    # The trainer's log history survives a resume (it is in every checkpoint), so the curves
    # below cover the whole run, not only the part after the last restart.
    main_key = f"eval_{task.main_metric}"
    log_history = trainer.state.log_history
    history = [entry for entry in log_history if main_key in entry]
    best = max(history, key=lambda h: h[main_key]) if history else None
    result = {
        "task": task.name,
        "method": config.method,
        "method_config": trainer.rxf_method.config.to_dict(),
        "recipe": recipe,
        "seed": config.seed,
        "main_metric": task.main_metric,
        "final": history[-1] if history else None,
        "best": best,
        "best_step": best["step"] if best else None,
        "time_to_best_s": best["wall_time_s"] if best else None,
        "train_runtime_s": train_seconds,  # this call's: after a resume, the time since the restart
        "train_wall_time_s": run_wall_time(log_history),  # the whole run's
        **peak_memory(),
        "global_step": train_output.global_step,
        "train_loss": train_output.training_loss,
        "resumed_from": resume_from,
        "world_size": trainer.args.world_size,
        "skipped_nonfinite_steps": trainer.rxf_skipped_steps,
        "history": history,
        "other_splits": final,
        "loss_curve": [entry for entry in log_history if "loss" in entry],
        "num_train_examples": len(train_data),
        "num_eval_examples": {split: len(ds) for split, ds in eval_data.items()},
        "majority_baseline": majority_scores(task),
        "config": config.to_dict(),
    }
    if dev_predictions is None:
        output = trainer.predict(eval_data[main_split], metric_key_prefix="dev")
        dev_predictions = {"predictions": output.predictions, "labels": output.label_ids}
    result["dev_report"] = dev_report(task, dev_predictions, out, main_split, trainer.is_world_process_zero())
    try:
        if config.save_model:
            trainer.save_model(str(out / "model"))
        if trainer.is_world_process_zero():
            write_json_atomic(out / "metrics.json", result)
            (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    except Exception as error:
        from rxf.io import is_write_error, write_failure

        if not is_write_error(error, out):
            raise
        then = "then run the same command again (it resumes from its last checkpoint, if it kept one)"
        raise write_failure(error, out, "the run's results (model, metrics.json)", then) from None
    if trainer.is_world_process_zero():
        run_dir.finish()
        # The run is complete and its results are written: its checkpoints have served their purpose.
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return result


def config_task(config: TrainConfig):
    """The task a config trains on: its data, columns, format and subsets (rxf.tasks.load_task)."""
    from rxf.tasks import load_task

    return load_task(
        config.task,
        data_dir=config.data_dir,
        train_file=config.train_file,
        eval_file=config.eval_file,
        text_column=config.text_column,
        text_pair_column=config.text_pair_column,
        label_column=config.label_column,
        task_type=config.task_type,
        max_train_samples=config.max_train_samples,
        max_eval_samples=config.max_eval_samples,
        seed=config.subset_seed,
        delimiter=config.delimiter,
        label_separator=config.label_separator,
    )


def majority_scores(task) -> dict[str, float]:
    """The task's metrics for predicting the dev set's most frequent label everywhere (regression: its mean;
    multi-label: each label's more frequent value). A run at or below this learned nothing a constant could not."""
    import numpy as np

    labels = np.asarray(next(iter(task.eval.values()))["label"])
    if task.is_regression:
        constant = np.full(len(labels), float(labels.mean()))
    elif task.multi_label:
        constant = np.tile((labels.mean(axis=0) > 0.5).astype(np.int64), (len(labels), 1))
    else:
        values, counts = np.unique(labels, return_counts=True)
        constant = np.full(len(labels), values[np.argmax(counts)], dtype=np.int64)  # ties: the lowest id
    return task.compute_metrics(constant, labels)


def dev_report(task, predictions: dict[str, Any], out: Path, split: str, write: bool) -> dict[str, Any]:
    """The final model's per-class report and confusion matrix on the dev set (rxf.inference), written as
    dev_report.md and dev_confusion_matrix.png; what metrics.json keeps of it."""
    from rxf.inference import evaluate_logits

    task_type = "regression" if task.is_regression else "multi_label" if task.multi_label else "classification"
    evaluation = evaluate_logits(
        predictions["predictions"], predictions["labels"], task_type, task.label_names, [task.metric_set or task.main_metric]
    )
    if write:
        from rxf.inference import write_evaluation

        write_evaluation(evaluation, out, "dev", f"final model on {task.name}, split {split}")
    return {"split": split, **evaluation.to_dict()}


def _checkpoint_to_resume(checkpoint_dir: Path, config: TrainConfig, model: Any, main_process: bool) -> str | None:
    """The newest sound checkpoint of this run, checked to fit ``model``; damaged newer ones are reported and removed."""
    from rxf.checkpoints import incompatibility, newest_sound_checkpoint

    latest = newest_sound_checkpoint(checkpoint_dir, main_process)
    if latest is None:
        return None
    if not config.resume:
        raise RxfError(
            f"{checkpoint_dir} holds checkpoints of an unfinished run (latest: {Path(latest).name}): "
            "resume it (resume: true), or choose another output_dir, or pass --overwrite to start over"
        )
    problem = incompatibility(latest, model)
    if problem is not None:
        raise RxfError(
            f"checkpoint {latest} does not fit this run: {problem}; it belongs to another run: choose another "
            "output_dir, or pass --overwrite (overwrite: true) to start over"
        )
    return latest


def length_grouping(on: bool) -> dict[str, Any]:
    """TrainingArguments for length-grouped batches (transformers 5 names it a sampling strategy)."""
    if not on:
        return {}
    from transformers import TrainingArguments

    if "train_sampling_strategy" in TrainingArguments.__dataclass_fields__:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


def activation_recomputation(on: bool) -> dict[str, Any]:
    """TrainingArguments that turn activation recomputation (gradient checkpointing) on or off.

    transformers 5.2x names it ``activation_checkpointing`` and warns on the old name, which TRL's
    configs still set by default; the old name for older versions.
    """
    from transformers import TrainingArguments

    if "activation_checkpointing" in TrainingArguments.__dataclass_fields__:
        return {"activation_checkpointing": on}
    return {"gradient_checkpointing": on}


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()
