"""The methods inside Hugging Face ``Trainer`` and ``Seq2SeqTrainer``.

>>> trainer = RxfTrainer(model=model, args=TrainingArguments(...), train_dataset=..., method=R3FConfig(lambda_=1.0))
>>> trainer.train()

or mix :class:`RxfTrainerMixin` into a Trainer subclass of your own (it must come first in the
bases). What the mixin changes:

* the training loss is the method's (evaluation keeps the model's own loss); without ``method=`` that
  is Standard's, with a warning (``rxf train`` and :func:`rxf.functional.method` default to R3F);
* the task loss and the regulariser are logged beside ``loss`` (e.g. ``task_loss`` and
  ``r3f_divergence``), averaged over the logging interval;
* the method prepares the model before training (R4F: spectral norm on the head), also one that
  ``model_init`` builds;
* Trainer's own training losses, which the method's would replace, are refused when the trainer
  is built: ``label_smoothing_factor`` (set the method's ``label_smoothing``) and ``compute_loss_func``;
  so is ``torch_compile`` with a method that hooks the embeddings (a compiled model runs no hooks);
* saved checkpoints carry plain weights (spectral norm folded in), loadable without rxf, plus
  the raw spectral-norm state in ``rxf_spectral_norm.safetensors`` so that a resumed run goes on
  exactly where it stopped;
* checkpoints are written into a staging folder and renamed into place once complete, so a
  ``checkpoint-N`` folder is never half-written (see :func:`rxf.checkpoints.latest_checkpoint`);
* the embedding noise has its own generator per rank (independent across ranks), saved with
  the other RNG states in every checkpoint;
* a non-finite task loss or regulariser is caught at once and reported with its step:
  ``on_nonfinite="stop"`` saves a checkpoint of the state before the step and raises an
  RxfError; ``"skip"`` drops the optimizer step (as a gradient scaler does) and goes on;
* every log entry carries ``wall_time_s``, the training wall time so far (kept across resumes);
* ``train_loss`` and ``rxf_skipped_steps`` cover the whole run, also when it was resumed: each
  checkpoint keeps the loss summed so far in ``rxf_run_totals.json`` (Trainer by itself averages
  only the steps after the last restart). A run restarted from a checkpoint without that file (an
  older rxf's) counts from that checkpoint's step, and says so in the file, so that later restarts
  still divide by the steps the sum covers.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import shutil
import time
import warnings
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import Seq2SeqTrainer, Trainer, TrainerCallback
from transformers.trainer_utils import rotate_checkpoints

from rxf.checkpoints import checkpoint_step, latest_checkpoint
from rxf.errors import RxfError
from rxf.io import is_write_error, write_failure
from rxf.methods.base import (
    GENERATION_TASKS,
    LossOutput,
    Method,
    MethodConfig,
    build_method,
    model_inputs,
    output_logits,
    task_loss,
)
from rxf.spectral import has_spectral_norm, refresh_spectral_norm, spectral_norm_folded

SPECTRAL_STATE_FILE = "rxf_spectral_norm.safetensors"
NOISE_RNG_FILE = "rxf_noise_rng_{rank}.safetensors"
RUN_TOTALS_FILE = "rxf_run_totals.json"
STAGING_DIR = ".staging"
NONFINITE_POLICIES = ("stop", "skip")

logger = logging.getLogger(__name__)


class _NonfiniteGuard(TrainerCallback):
    """The optimizer side of the non-finite guard (the loss side is ``RxfTrainerMixin._rxf_check_finite``).

    Before the update: gradients that are not finite (although the loss was) are treated like a
    non-finite loss; a step to skip loses its gradients, so that AdamW leaves every parameter and
    its moments as they were. After the update: parameters that are not finite stop the run under
    either policy, since nothing can be skipped any more and a model with NaN weights must never be
    the result of a run.
    """

    def __init__(self, trainer: RxfTrainerMixin):
        self.trainer = trainer
        self.dropped = False

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        trainer = self.trainer
        if not trainer._rxf_skip_step:
            gradients = [p.grad for p in trainer.model.parameters() if p.grad is not None]
            if not trainer._rxf_finite_everywhere(gradients):
                trainer._rxf_nonfinite("the gradients are not finite", {}, trainer._rxf_nonfinite_hint(["gradients"]))
        self.dropped = trainer._rxf_skip_step
        if trainer._rxf_skip_step:
            trainer.model.zero_grad(set_to_none=True)
            trainer._rxf_skip_step = False
            trainer.rxf_skipped_steps += 1

    def on_optimizer_step(self, args, state, control, **kwargs):
        trainer = self.trainer
        if self.dropped:
            return
        trainer._rxf_applied_steps += 1
        if not trainer._rxf_finite_everywhere(list(trainer.model.parameters())):
            raise RxfError(
                f"the parameters are not finite after the optimizer update of step {state.global_step + 1}: stopped; "
                f"{trainer._rxf_last_finite_checkpoint()}. {trainer._rxf_nonfinite_hint(['parameters'])}"
            )


def perturbs_embeddings(method: Method) -> bool:
    """Whether ``method`` perturbs the token embeddings through a hook on the model (rxf.noise)."""
    from rxf.methods import R3F, FreeLB, NEFTune, Smart

    return isinstance(method, (R3F, Smart, FreeLB, NEFTune))


def refuse_neftune_argument(method: Method, args: Any) -> None:
    """RxfError if ``neftune_noise_alpha`` is set with a method that perturbs the embeddings itself.

    transformers' NEFTune hook noises every training forward pass, so R3F's and SMART's clean pass
    would not be clean, and NEFTune would be applied twice. Standard and R-Drop compose with it.
    """
    alpha = getattr(args, "neftune_noise_alpha", None)
    if alpha is not None and perturbs_embeddings(method):
        raise RxfError(
            f"neftune_noise_alpha={alpha} cannot be combined with method {method.config.name!r}, which perturbs the "
            "embeddings itself (the NEFTune hook would noise its clean pass too): unset neftune_noise_alpha, or use "
            "method='neftune' (alpha=...) instead of the argument"
        )


def refuse_torch_compile_argument(method: Method, args: Any) -> None:
    """RxfError if ``torch_compile`` is set with a method that perturbs the embeddings: a compiled model may run
    without its hooks (rxf.noise.refuse_compiled says so at the first step; this says it before any work)."""
    if getattr(args, "torch_compile", False) and perturbs_embeddings(method):
        raise RxfError(
            f"TrainingArguments(torch_compile=True) cannot be combined with method {method.config.name!r}: it perturbs "
            "the token embeddings through hooks, which a compiled model may run without (SMART's, FreeLB's and NEFTune's "
            "do, on torch 2.13: benchmarks/compile_hooks.py); leave torch_compile off (standard and rdrop compile)"
        )


def trainer_arguments(trainer_class: type, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments given to the Trainer class the mixin is mixed into, by name, as it reads them."""
    bases = trainer_class.__mro__
    trainer = bases[bases.index(RxfTrainerMixin) + 1]
    try:
        return inspect.signature(trainer).bind_partial(*args, **kwargs).arguments
    except TypeError:  # arguments it does not take: the Trainer says so
        return {}


def other_loss_error(trainer: Any, ignored: str, instead: str) -> RxfError:
    return RxfError(f"{type(trainer).__name__} trains with the method's loss, which ignores {ignored}: {instead}")


def refuse_split_sequences(trainer_class: type, parallelism: Any) -> None:
    """RxfError under sequence or context parallelism (accelerate's ``parallelism_config``): each rank then holds
    part of every sequence, and the method's loss (its token means, its divergence) is computed per rank, which
    rxf does not reduce across ranks the way those schemes need (and has never been run so)."""
    for kind, enabled in (("sequence", "sp_enabled"), ("context", "cp_enabled")):
        if getattr(parallelism, enabled, False):
            raise RxfError(
                f"{trainer_class.__name__} cannot train with {kind} parallelism (parallelism_config): each rank would hold "
                "part of every sequence, and the method's loss is computed per rank; train without it (data "
                "parallelism, FSDP and DeepSpeed ZeRO keep whole sequences)"
            )


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside rxf (RxfSFTTrainer calls the mixin)."""
    package = os.path.dirname(os.path.abspath(__file__))
    here = inspect.currentframe()  # (None where the interpreter keeps no frames: then the caller's caller)
    frame, level = (here.f_back.f_back if here else None), 2  # (the frame that warns is level 1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


class RxfTrainerMixin:
    """Put before ``Trainer`` (or a subclass) in the bases: ``class T(RxfTrainerMixin, Trainer)``."""

    def __init__(
        self,
        *args: Any,
        method: str | MethodConfig | Method | None = None,
        on_nonfinite: str = "stop",
        **kwargs: Any,
    ):
        if on_nonfinite not in NONFINITE_POLICIES:
            raise RxfError(f"on_nonfinite must be one of {', '.join(NONFINITE_POLICIES)}; got {on_nonfinite!r}")
        # Refused before the Trainer prepares the model and the data and creates output_dir.
        given = trainer_arguments(type(self), args, kwargs)
        for is_set, ignored, instead in self._rxf_other_losses(given):
            if is_set:
                raise other_loss_error(self, ignored, instead)
        if method is None:  # a trainer of rxf's without a method is plain Trainer: most likely a forgotten argument
            warnings.warn(
                f"{type(self).__name__} got no method=, so it trains Standard (the task loss alone, as plain Trainer): "
                "pass method='r3f' (or another, see `rxf methods`), or method='standard' to say so",
                UserWarning, stacklevel=_caller_level(),
            )
        self.rxf_method = build_method(method)
        refuse_torch_compile_argument(self.rxf_method, given.get("args"))
        refuse_split_sequences(type(self), getattr(given.get("args"), "parallelism_config", None))
        if getattr(self.rxf_method.config, "epochs_multiplier", 1.0) != 1.0:  # Standard++: a recipe, not a loss
            warnings.warn(
                f"{type(self).__name__} trains {self.rxf_method.config.name} as Standard: its longer training is rxf "
                "train's recipe (epochs_multiplier); set num_train_epochs or max_steps in the arguments yourself",
                UserWarning, stacklevel=_caller_level(),
            )
        self.rxf_on_nonfinite = on_nonfinite
        self.rxf_skipped_steps = 0
        model = kwargs.get("model", args[0] if args else None)
        if isinstance(model, nn.Module):
            self.rxf_method.prepare_model(model)
        super().__init__(*args, **kwargs)
        # Also set by accelerate's config or environment, known once the Trainer built its accelerator.
        refuse_split_sequences(type(self), getattr(self.accelerator, "parallelism_config", None))
        if model is not None and not isinstance(model, nn.Module):  # a name, loaded by the Trainer (TRL's SFTTrainer)
            self.rxf_method.prepare_model(self.model)
        refuse_neftune_argument(self.rxf_method, self.args)
        # A different noise stream on every rank, reproducible from the seed.
        self.rxf_method.noise_seed = self.args.seed + 7919 * (self.args.process_index + 1)
        self._rxf_log_sums: dict[str, float] = {}
        self._rxf_log_count = 0
        self._rxf_skip_step = False  # a loss term of this step was not finite: drop its update (on_nonfinite=skip)
        self._rxf_skipped_batch = False  # ... in the micro-batch just computed
        self._rxf_applied_steps = 0  # optimizer steps applied since train() was called
        self._rxf_first_nonfinite: str | None = None  # what failed first, and what to do about it
        self._rxf_train_start = time.perf_counter()
        self._rxf_time_offset: float | None = None
        self._rxf_staging: str | None = None
        # The whole run's totals that Trainer restarts from zero on a resume (see _rxf_run_totals).
        self._rxf_loss_before_restart = 0.0
        self._rxf_resumed = False
        self._rxf_first_step = 0  # the step the loss sum counts from: 0, or a restart without totals
        self._rxf_unlogged_loss: torch.Tensor | None = None
        self.add_callback(_NonfiniteGuard(self))

    def _rxf_other_losses(self, given: dict[str, Any]) -> list[tuple[bool, str, str]]:
        """The Trainer's own training losses that the method's loss would silently replace, from the
        arguments given by name: (whether set, what, what to do instead)."""
        smoothing = getattr(given.get("args"), "label_smoothing_factor", 0.0)
        return [
            (
                smoothing > 0, f"label_smoothing_factor={smoothing}",
                f"set the method's label_smoothing instead (e.g. R3FConfig(label_smoothing={smoothing})) and leave "
                "label_smoothing_factor at 0",
            ),
            (
                given.get("compute_loss_func") is not None, "compute_loss_func",
                "leave it unset: the method's options set the loss (a loss of your own needs a Method of its own)",
            ),
        ]

    def call_model_init(self, trial: Any = None) -> nn.Module:
        # With model_init=, Trainer builds the model here (again on each hyperparameter_search trial).
        return self.rxf_method.prepare_model(super().call_model_init(trial))

    # ---- loss ---------------------------------------------------------------------------------

    def _rxf_normalizer(self, model: nn.Module, num_items_in_batch: Any) -> Any:
        # Token-level tasks average over the target tokens of the whole accumulated batch, as
        # Trainer does for models that take num_items_in_batch; sequence-level tasks over the batch.
        if self.rxf_method.task_type(model) in GENERATION_TASKS:
            return num_items_in_batch
        return None

    # ---- the non-finite guard ------------------------------------------------------------------

    def _rxf_check_finite(self, out: LossOutput) -> bool:
        """True if the step's loss terms and their weighted total are finite on every rank; otherwise apply on_nonfinite."""
        terms = {"task loss": out.task_loss}
        if out.regularizer is not None:
            terms[self.rxf_method.regularizer_name] = out.regularizer
        terms["weighted total loss"] = out.loss
        if self._rxf_finite_everywhere(list(terms.values())):
            return True
        bad = [name for name, value in terms.items() if not torch.isfinite(value).all()]
        parts = [name for name in bad if name != "weighted total loss"]
        if parts:
            what = f"{' and '.join(parts)} is not finite"
        elif bad:
            what = "the weighted total loss (task loss + weight × regulariser) is not finite"
        else:
            what = "a loss term is not finite on another rank"
        values = {name: float(value.detach().float().mean()) for name, value in terms.items()}
        return self._rxf_nonfinite(what, values, self._rxf_nonfinite_hint(bad))

    def _rxf_finite_everywhere(self, tensors: list[torch.Tensor]) -> bool:
        """Every element of every tensor is finite, on every rank (every rank then takes the same decision)."""
        tensors = [t.detach() for t in tensors]
        finite = True
        if tensors:
            # One fused norm (per device and dtype) is ~10x faster than isfinite() on every tensor; a
            # norm that overflows although every value is finite (values above ~1e19) is looked at closer.
            total = torch.nn.utils.get_total_norm(tensors)
            finite = bool(torch.isfinite(total)) or all(bool(torch.isfinite(t).all()) for t in tensors)
        bad = torch.tensor(0.0 if finite else 1.0, device=self.args.device)
        if self.accelerator.num_processes > 1:
            bad = self.accelerator.reduce(bad, reduction="sum")
        return bad.item() == 0

    def _rxf_nonfinite(self, what: str, values: dict[str, float], hint: str) -> bool:
        """Apply on_nonfinite to the step being computed: mark it to skip (returns False), or stop with an RxfError."""
        step = self.state.global_step + 1
        shown = f" ({', '.join(f'{k}={v}' for k, v in values.items())})" if values else ""
        if self._rxf_first_nonfinite is None:
            self._rxf_first_nonfinite = f"the first at step {step}: {what}{shown}. {hint}"
        if self.rxf_on_nonfinite == "skip":
            logger.warning("rxf: %s at step %d%s: skipping the optimizer step", what, step, shown)
            self._rxf_skip_step = True
            return False
        raise RxfError(f"{what} at step {step}{shown}; stopped, {self._rxf_save_rescue()}. {hint}, or set on_nonfinite=skip")

    def _rxf_nonfinite_hint(self, failed: list[str]) -> str:
        """What to change, naming the settings that scale the part that failed."""
        config = self.rxf_method.config
        shared = {field.name for field in dataclasses.fields(MethodConfig)}
        numbers = [
            f"{field.name}={getattr(config, field.name):g}"
            for field in dataclasses.fields(config)
            if field.name not in shared
            and isinstance(getattr(config, field.name), (int, float))
            and not isinstance(getattr(config, field.name), bool)
        ]
        options = f"method_options of {config.name} ({', '.join(numbers)})" if numbers else f"the {config.name} method"
        learning_rate = f"learning_rate ({self.args.learning_rate:g})"
        if failed == ["parameters"]:
            return f"The update overflowed: lower {learning_rate} or weight_decay ({self.args.weight_decay:g})"
        if failed == ["gradients"]:
            return f"Lower {learning_rate} or max_grad_norm ({self.args.max_grad_norm:g}), or change {options}"
        if "task loss" in failed:
            if self.state.global_step == 0:
                return "The model's outputs are not finite before any update: check the model's weights and the labels (or run without bf16)"
            return f"Training diverged: lower {learning_rate}"
        if failed == ["weighted total loss"]:
            return f"A weight overflows the sum: lower it in {options}"
        if self.state.global_step == 0:  # the clean pass is fine before any update: the method's settings are the cause
            return f"The task loss is finite, so the cause is a setting of the method: change {options}"
        return f"Change {options}, or lower {learning_rate}"

    def _rxf_save_rescue(self) -> str:
        """Save the state before the failing step, verified finite; say where (or why there is none)."""
        if not self._rxf_finite_everywhere(list(self.model.parameters())):
            return f"and the parameters were not finite before this step either, so none were saved; {self._rxf_last_finite_checkpoint()}"
        self._save_checkpoint(self.model, trial=None)
        saved = os.path.join(self.args.output_dir, f"checkpoint-{self.state.global_step}")
        if self.args.should_save and not weights_are_finite(saved):
            shutil.rmtree(saved, ignore_errors=True)  # never resume from (or call "the state before") NaN weights
            return f"but the saved weights were not finite, so they were deleted; {self._rxf_last_finite_checkpoint()}"
        return f"with the state before this step saved in {saved}"

    def _rxf_last_finite_checkpoint(self) -> str:
        latest = latest_checkpoint(self.args.output_dir)
        if latest is not None and weights_are_finite(latest):
            return f"the last checkpoint, {latest}, has finite weights"
        return "no checkpoint with finite weights exists"

    def _rxf_finish(self, out: LossOutput, normalizer: Any) -> torch.Tensor:
        if not self._rxf_check_finite(out):
            # Nothing to back-propagate; the optimizer step is dropped by _NonfiniteGuard.
            self._rxf_skipped_batch = True
            return torch.zeros((), device=out.loss.device, requires_grad=True)
        self._rxf_record(out, normalizer)
        self.loss_is_scaled_for_ga = normalizer is not None
        loss = out.loss
        if normalizer is not None and self.args.average_tokens_across_devices:
            # num_items_in_batch counts tokens on all ranks; DDP averages gradients over ranks.
            loss = loss * self.accelerator.num_processes
        return loss

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        if return_outputs or not model.training:
            return self._rxf_evaluation_loss(model, inputs, return_outputs)
        normalizer = self._rxf_normalizer(model, num_items_in_batch)
        out = self.rxf_method.compute_loss(model, inputs, normalizer=normalizer)
        return self._rxf_finish(out, normalizer)

    def _rxf_evaluation_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool) -> Any:
        """The task loss of a plain forward pass, computed as in training (per-batch mean).

        Not the model's own loss: under DDP, Trainer multiplies the loss of models that take
        ``**kwargs`` by the number of processes, which doubles a classifier's eval loss on 2 ranks.
        """
        if "labels" not in inputs:
            outputs = model(**inputs)
            return (None, outputs) if return_outputs else None
        task_type = self.rxf_method.task_type(model, inputs)
        model_in, labels = model_inputs(model, inputs, task_type)
        outputs = model(**model_in)
        loss = task_loss(output_logits(outputs), labels, task_type, label_smoothing=self.rxf_method.config.label_smoothing)
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        if not self.rxf_method.multi_backward:
            loss = super().training_step(model, inputs, num_items_in_batch)
            if self._rxf_skipped_batch:  # NaN, not 0: Trainer's logging_nan_inf_filter keeps it out of the logged loss
                self._rxf_skipped_batch = False
                return torch.full_like(loss, float("nan"))
            return loss
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()  # schedule-free optimizers, as Trainer.training_step does
        inputs = self._prepare_inputs(inputs)
        normalizer = self._rxf_normalizer(model, num_items_in_batch)
        steps = 1 if normalizer is not None else self.current_gradient_accumulation_steps
        # As in _rxf_finish: num_items_in_batch counts tokens on all ranks; DDP averages gradients over ranks.
        factor = 1.0 / steps
        if normalizer is not None and self.args.average_tokens_across_devices:
            factor = float(self.accelerator.num_processes)

        def backward(loss: torch.Tensor) -> None:
            self.accelerator.backward(loss * factor)

        # Methods that take an `accelerator` get ours: under DDP, FreeLB runs all but its last
        # backward under accelerator.no_sync(model), so gradients are all-reduced once per step.
        options: dict[str, Any] = {}
        if "accelerator" in inspect.signature(self.rxf_method.training_step).parameters:
            options["accelerator"] = self.accelerator
        with self.compute_loss_context_manager():
            out = self.rxf_method.training_step(model, inputs, backward, normalizer=normalizer, **options)
        if not self._rxf_check_finite(out):  # its gradients are dropped before the update (skip)
            return torch.full_like(out.loss.detach(), float("nan"))
        self._rxf_record(out, normalizer)
        return out.loss.detach() / steps

    def train(self, *args: Any, **kwargs: Any) -> Any:
        self._rxf_train_start = time.perf_counter()
        self._rxf_time_offset = None
        self._rxf_applied_steps = 0
        self._rxf_unlogged_loss = None
        self._rxf_restore_run_totals(kwargs.get("resume_from_checkpoint", args[0] if args else None))
        skipped_before = self.rxf_skipped_steps
        output = super().train(*args, **kwargs)
        skipped = self.rxf_skipped_steps - skipped_before
        if skipped and not self._rxf_applied_steps:
            raise RxfError(
                f"every one of the {skipped} optimizer steps was skipped (on_nonfinite=skip), so the "
                f"model did not train; {self._rxf_first_nonfinite}"
            )
        if self._rxf_resumed:  # log() put the mean over the steps the sum covers into the metrics
            output = output._replace(training_loss=output.metrics["train_loss"])
        return output

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        if has_spectral_norm(self.model):
            refresh_spectral_norm(self.model)  # evaluate the head with σ_max = 1, not the lagging estimate
        return super().evaluate(*args, **kwargs)

    # ---- logging ------------------------------------------------------------------------------

    def _rxf_record(self, out: LossOutput, normalizer: Any = None) -> None:
        parts = {"task_loss": out.task_loss}
        if out.regularizer is not None:
            parts[self.rxf_method.regularizer_name] = out.regularizer
        # With a normalizer (token-level tasks), each micro-batch's parts are divided by the tokens of the
        # whole accumulated batch (of all ranks, with average_tokens_across_devices): they add up to the
        # batch's value. Scaled back by the micro-batches (and ranks), their average over the logging
        # interval is what an unaccumulated run logs.
        scale = 1.0
        if normalizer is not None:
            scale = float(getattr(self, "current_gradient_accumulation_steps", 1))  # set by train()
            if self.args.average_tokens_across_devices:
                scale *= self.accelerator.num_processes
        for key, value in parts.items():
            self._rxf_log_sums[key] = self._rxf_log_sums.get(key, 0.0) + float(value) * scale
        self._rxf_log_count += 1

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if self._rxf_time_offset is None:
            # A resumed run continues the clock from its last logged wall time (its log history
            # is restored from the checkpoint by the time anything is logged).
            previous = [entry["wall_time_s"] for entry in self.state.log_history if "wall_time_s" in entry]
            self._rxf_time_offset = previous[-1] if previous else 0.0
        logs["wall_time_s"] = round(self._rxf_time_offset + time.perf_counter() - self._rxf_train_start, 3)
        if "loss" in logs and self._rxf_log_count:
            for key, total in self._rxf_log_sums.items():
                logs[key] = round(total / self._rxf_log_count, 6)
            self._rxf_log_sums, self._rxf_log_count = {}, 0
        if "train_loss" in logs and self._rxf_resumed:
            # Trainer's mean covers the steps since the restart; this one, the whole run's, is what an
            # uninterrupted run reports (_total_loss_scalar holds every step since the restart by now).
            total = self._rxf_loss_before_restart + getattr(self, "_total_loss_scalar", 0.0)
            logs["train_loss"] = total / max(self.state.global_step - self._rxf_first_step, 1)
        super().log(logs, *args, **kwargs)

    # ---- whole-run totals across restarts -----------------------------------------------------

    def _maybe_log_save_evaluate(self, tr_loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        self._rxf_unlogged_loss = tr_loss  # the loss summed since the last log; a checkpoint needs it
        super()._maybe_log_save_evaluate(tr_loss, *args, **kwargs)

    def _rxf_run_totals(self) -> dict[str, Any]:
        """What a checkpoint keeps of the run so far that Trainer would count from zero after a restart.

        The loss sum is Trainer's own: the logged intervals plus the loss not yet logged, so that
        sum / global_step is the ``train_loss`` an uninterrupted run ends with.
        """
        unlogged = float(self._rxf_unlogged_loss) if self._rxf_unlogged_loss is not None else 0.0
        loss_sum = self._rxf_loss_before_restart + getattr(self, "_total_loss_scalar", 0.0) + unlogged
        return {
            "global_step": self.state.global_step, "loss_sum": loss_sum, "first_step": self._rxf_first_step,
            "skipped_nonfinite_steps": self.rxf_skipped_steps,
        }

    def _rxf_restore_run_totals(self, checkpoint: Any) -> None:
        self._rxf_loss_before_restart, self._rxf_first_step, self._rxf_resumed = 0.0, 0, False
        if checkpoint is True:  # as Trainer.train reads it: the newest checkpoint in output_dir
            from transformers.trainer_utils import get_last_checkpoint

            checkpoint = get_last_checkpoint(self.args.output_dir)
        if not isinstance(checkpoint, (str, os.PathLike)):
            return
        self._rxf_resumed = True
        # Without readable totals the sum starts afresh at the checkpoint's step (Trainer names it checkpoint-N).
        try:
            self._rxf_first_step = checkpoint_step(checkpoint)
        except ValueError:  # a folder named otherwise: the sum counts from 0
            pass
        path = os.path.join(checkpoint, RUN_TOTALS_FILE)
        if not os.path.isfile(path):  # written by an older rxf, or by a plain Trainer
            return
        try:
            with open(path, encoding="utf-8") as file:
                totals = json.load(file)
            loss_sum, skipped = float(totals["loss_sum"]), int(totals["skipped_nonfinite_steps"])
            first_step = int(totals.get("first_step", 0))  # absent: written by rxf before it was kept
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            # Not worth refusing the resume over: only the reported train_loss is affected.
            logger.warning("%s is unreadable (%s): train_loss will cover only the steps after this restart", path, error)
            return
        self._rxf_loss_before_restart, self.rxf_skipped_steps, self._rxf_first_step = loss_sum, skipped, first_step

    # ---- checkpoints --------------------------------------------------------------------------

    def _get_output_dir(self, trial: Any) -> str:
        return self._rxf_staging or super()._get_output_dir(trial)

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """Write the checkpoint into a staging folder, then rename it into place (atomic).

        A write that fails (disk full, read-only or unwritable folder) removes the staging folder,
        leaves the earlier checkpoints as they were and raises an RxfError naming the folder and the
        cause: once the cause is fixed, the same command resumes from the last sound checkpoint.
        """
        run_dir = super()._get_output_dir(trial)
        staging = os.path.join(run_dir, STAGING_DIR)
        name = f"checkpoint-{self.state.global_step}"
        try:
            if self.args.should_save:
                shutil.rmtree(staging, ignore_errors=True)
            self.accelerator.wait_for_everyone()
            self._rxf_staging = staging
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self._rxf_staging = None
            self.accelerator.wait_for_everyone()  # every rank has written its RNG state
            if self.args.should_save:
                with open(os.path.join(staging, name, RUN_TOTALS_FILE), "w", encoding="utf-8") as file:
                    json.dump(self._rxf_run_totals(), file)
                final = os.path.join(run_dir, name)
                if os.path.isdir(final):
                    shutil.rmtree(final)
                os.replace(os.path.join(staging, name), final)
                shutil.rmtree(staging, ignore_errors=True)
                rotate_checkpoints(
                    output_dir=run_dir,
                    save_total_limit=self.args.save_total_limit,
                    best_model_checkpoint=self.state.best_model_checkpoint,
                    use_mtime=False,
                )
        except Exception as error:
            if not is_write_error(error, run_dir):
                raise
            shutil.rmtree(staging, ignore_errors=True)  # a partial checkpoint must not fill the disk
            previous = latest_checkpoint(run_dir)
            then = f"then run the same command again to resume from {os.path.basename(previous)}" if previous else (
                "then run the same command again (no earlier checkpoint: it starts over)"
            )
            raise write_failure(error, run_dir, name, then) from None
        self.accelerator.wait_for_everyone()

    def _run_epoch(self, *args: Any, **kwargs: Any) -> Any:
        # Resumed from the checkpoint of the last step (e.g. a crash while writing the results):
        # nothing is left to train. Trainer would otherwise run one step past max_steps.
        if 0 < self.state.max_steps <= self.state.global_step:
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(*args, **kwargs)

    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        states = self.rxf_method.noise_rng_state()
        if states:
            save_file(states, os.path.join(output_dir, NOISE_RNG_FILE.format(rank=self.args.process_index)))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        super()._load_rng_state(checkpoint)
        path = os.path.join(checkpoint or "", NOISE_RNG_FILE.format(rank=self.args.process_index))
        if checkpoint is not None and os.path.isfile(path):
            self.rxf_method.load_noise_rng_state(load_file(path))

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not has_spectral_norm(self.model):
            return super()._save(output_dir, state_dict)
        # Plain weights W/σ, loadable without rxf; swapped-in plain modules rather than a state dict,
        # since peft's save_pretrained asks each modules_to_save copy for its own keys.
        with spectral_norm_folded(self.model):
            super()._save(output_dir)
        if self.args.should_save:
            raw = {k: v.detach().contiguous() for k, v in self.model.state_dict().items() if ".parametrizations." in k}
            save_file(raw, os.path.join(output_dir, SPECTRAL_STATE_FILE))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        model = model if model is not None else self.model
        raw_path = os.path.join(resume_from_checkpoint, SPECTRAL_STATE_FILE)
        weights_path = os.path.join(resume_from_checkpoint, "model.safetensors")
        if has_spectral_norm(model) and os.path.isfile(raw_path) and not os.path.isfile(weights_path):
            # A peft adapter (or sharded weights): load it into plain copies of the normalised
            # modules, then put back their exact spectral-norm state.
            with spectral_norm_folded(model):
                super()._load_from_checkpoint(resume_from_checkpoint, model)
            model.load_state_dict(load_file(raw_path), strict=False)
            return
        if not (has_spectral_norm(model) and os.path.isfile(raw_path) and os.path.isfile(weights_path)):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        raw = load_file(raw_path)
        folded_keys = {k.replace(".parametrizations.", ".").rsplit(".", 1)[0] for k in raw}
        plain = {k: v for k, v in load_file(weights_path).items() if k not in folded_keys}
        missing, unexpected = model.load_state_dict({**plain, **raw}, strict=False)
        if unexpected:
            raise RuntimeError(f"checkpoint {resume_from_checkpoint} has weights the model lacks: {unexpected[:5]}")


def run_wall_time(log_history: list[dict[str, Any]]) -> float | None:
    """The whole run's training wall time: the last ``wall_time_s`` logged, a clock that a resume
    continues (without the time between the last checkpoint and a crash)."""
    return max((entry["wall_time_s"] for entry in log_history if "wall_time_s" in entry), default=None)


def weights_are_finite(checkpoint: str) -> bool:
    """Every floating-point tensor in the checkpoint's safetensors files is finite (read back from disk)."""
    from safetensors import safe_open

    files = [name for name in os.listdir(checkpoint) if name.endswith(".safetensors")] if os.path.isdir(checkpoint) else []
    if not files:
        return False
    for name in files:
        with safe_open(os.path.join(checkpoint, name), framework="pt") as weights:
            for key in weights.keys():
                tensor = weights.get_tensor(key)
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    return False
    return True


class RxfTrainer(RxfTrainerMixin, Trainer):
    """``transformers.Trainer`` training with an rxf method (``method=`` a name or config)."""


class RxfSeq2SeqTrainer(RxfTrainerMixin, Seq2SeqTrainer):
    """``transformers.Seq2SeqTrainer`` training with an rxf method (R3F for summarization)."""
