"""What every fine-tuning method shares: task types, the task loss, and the method interface.

A method is a config dataclass (its hyper-parameters, validated on construction) whose
``build()`` gives a :class:`Method`: the code that turns a model and a batch into a loss. Methods
that need several backward passes per step (FreeLB) override :meth:`Method.training_step`
instead; everything else only implements :meth:`Method.compute_loss`.

The task loss is computed here from the logits rather than by the model, so that every method
and task type treats labels, padding and label smoothing the same way:

* ``classification``: cross-entropy over classes;
* ``regression``: mean squared error (``num_labels == 1``);
* ``multi_label``: binary cross-entropy per label;
* ``seq2seq``: token cross-entropy over labels ≠ −100 (decoder logits align with labels);
* ``causal_lm``: token cross-entropy over labels ≠ −100 after the one-token shift.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from rxf.config import check_fields, describe_setting, is_finite_number, is_whole_number, note_requirement
from rxf.errors import RxfError, closest
from rxf.noise import unwrap_model
from rxf.divergence import check_normalizer, reduce_positions, js_divergence, symmetric_kl
from rxf.vocab_losses import IGNORE_INDEX, chunked_version, paired_token_losses, token_cross_entropy

TaskType = Literal["classification", "regression", "multi_label", "seq2seq", "causal_lm"]
TASK_TYPES: tuple[str, ...] = ("classification", "regression", "multi_label", "seq2seq", "causal_lm")
GENERATION_TASKS = ("seq2seq", "causal_lm")

Batch = Mapping[str, Any]


def infer_task_type(model: nn.Module) -> TaskType:
    """The task type a Hugging Face model is built for, from its config and class name."""
    model = unwrap_model(model)
    config = getattr(model, "config", None)
    name = type(model).__name__
    if getattr(config, "is_encoder_decoder", False) and "SequenceClassification" not in name:
        return "seq2seq"
    if name.endswith("ForCausalLM") or name.endswith("LMHeadModel"):
        return "causal_lm"
    problem = getattr(config, "problem_type", None)
    if problem == "regression" or (problem is None and getattr(config, "num_labels", 2) == 1):
        return "regression"
    if problem == "multi_label_classification":
        return "multi_label"
    return "classification"


def settle_problem_type(model: nn.Module, labels: Any) -> None:
    """Set a sequence classifier's unset ``config.problem_type`` from its labels, by the rule of transformers' forward.

    One output is regression; int64/int32 labels are single-label classification; any other labels (float
    multi-hot rows) are multi-label. rxf computes the task loss itself, so it applies the rule before
    reading the task type: every later :func:`infer_task_type` then sees what the model's own loss would
    be. RxfError, the config left unset, for labels that fit neither kind.
    """
    model = unwrap_model(model)
    config = getattr(model, "config", None)
    # As transformers: sequence classifiers only, and once (a problem_type set, by anyone, stays).
    if "ForSequenceClassification" not in type(model).__name__ or getattr(config, "problem_type", "") is not None:
        return
    if not torch.is_tensor(labels) or labels.numel() == 0:
        return  # check_batch names an empty batch
    num_labels = config.num_labels
    if num_labels == 1:
        config.problem_type = "regression"
    elif labels.dtype in (torch.int64, torch.int32):
        config.problem_type = "single_label_classification"
    elif labels.dim() == 2 and labels.size(1) == num_labels:
        config.problem_type = "multi_label_classification"
    else:
        batch = labels.size(0) if labels.dim() > 0 else 1
        raise RxfError(
            f"{dtype_name(labels)} labels of shape {tuple(labels.shape)} fit neither single-label classification nor "
            f"multi-label for {type(model).__name__} (num_labels={num_labels}): pass int64 class ids of shape "
            f"({batch},) or 0/1 targets of shape ({batch}, {num_labels})"
        )


def prediction_logits(logits: torch.Tensor, task_type: TaskType) -> torch.Tensor:
    """Logits aligned with the labels: causal LMs predict token t+1 at position t."""
    return logits[:, :-1] if task_type == "causal_lm" else logits


def prediction_labels(labels: torch.Tensor, task_type: TaskType) -> torch.Tensor:
    return labels[:, 1:] if task_type == "causal_lm" else labels


def target_mask(labels: torch.Tensor, task_type: TaskType) -> torch.Tensor | None:
    """Positions that count, for token-level tasks: labels ≠ −100 (prompt and padding excluded).

    Token classification (classification labels of shape (batch, length)) counts as token-level.
    """
    if task_type in GENERATION_TASKS or (task_type == "classification" and labels.dim() > 1):
        return prediction_labels(labels, task_type) != -100
    return None


def logit_divergence(
    divergence: Callable[..., torch.Tensor],
    logits: torch.Tensor,
    other_logits: torch.Tensor,
    labels: torch.Tensor,
    task_type: TaskType,
    *,
    normalizer: int | float | torch.Tensor | None = None,
) -> torch.Tensor:
    """A divergence (rxf.divergence) between two outputs of the model, over the positions that count.

    For token-level tasks, symmetric KL and JS run as the chunked kernels of rxf.vocab_losses
    (same values, no [positions, vocabulary] temporaries) on the unshifted logits.
    """
    chunked = chunked_version(divergence) if task_type in GENERATION_TASKS else None
    if chunked is not None:
        mask = token_targets(labels, task_type) != IGNORE_INDEX
        return chunked(logits, other_logits, mask, normalizer=normalizer)
    return divergence(
        prediction_logits(logits, task_type),
        prediction_logits(other_logits, task_type),
        target_mask(labels, task_type),
        normalizer=normalizer,
    )


def paired_losses(
    logits: torch.Tensor,
    labels: torch.Tensor,
    task_type: TaskType,
    divergence: Callable[..., torch.Tensor],
    coefficients: tuple,
    *,
    other: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    normalizer: int | float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor] | None:
    """The objective of a method that runs a batch twice, c₁·task₁ + c₂·task₂ + c₃·divergence, as one chunked kernel.

    Without ``other``: ``logits`` holds both passes of a doubled batch (rows ``[:n]`` and ``[n:]``,
    R3F "both", R-Drop): task₁ and task₂ are the task losses of the halves, the divergence is
    between them. With ``other`` (R3F "clean": the no-grad noised pass): task₁ is the task loss of
    ``logits``, task₂ is None, the divergence is between ``logits`` and ``other``. Each term is
    reduced as :func:`task_loss` and :func:`logit_divergence` reduce it. Returns (task₁, task₂,
    divergence), detached, for logging, and the objective, whose gradient the kernel computed in
    its forward pass.

    For token-level tasks with symmetric KL or JS this is rxf.vocab_losses.paired_token_losses:
    every term in one kernel writing one gradient buffer, where separate terms (or slicing the
    halves apart) would cost more full-size buffers and a second pass over the vocabulary. None
    where the kernel does not apply (sequence-level tasks, other divergences): compute the terms
    one by one then.
    """
    kind = {symmetric_kl: "sym_kl", js_divergence: "js"}.get(divergence)
    if task_type not in GENERATION_TASKS or kind is None:
        return None
    targets = token_targets(labels, task_type)
    out = paired_token_losses(
        logits, targets, kind, partner=other, label_smoothing=label_smoothing, coefficients=coefficients, normalizer=normalizer
    )
    first = reduce_positions(out.cross_entropy_first, "mean", normalizer)
    second = None if other is not None else reduce_positions(out.cross_entropy_second, "mean", normalizer)
    return first, second, reduce_positions(out.divergence, "mean", normalizer), out.objective


def token_targets(labels: torch.Tensor, task_type: TaskType) -> torch.Tensor:
    """Labels aligned with the *unshifted* logits: for causal LMs, shifted left with −100 at the end.

    Shifting the labels instead of slicing the logits keeps the logits contiguous: no copy of them.
    """
    if task_type == "causal_lm":
        return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    return labels


def task_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    task_type: TaskType,
    *,
    label_smoothing: float = 0.0,
    normalizer: int | float | torch.Tensor | None = None,
) -> torch.Tensor:
    """The supervised loss, in fp32, averaged over examples (or target tokens), or summed and divided by ``normalizer``.

    Token-level tasks use the chunked cross-entropy of rxf.vocab_losses (the values and
    gradients of :func:`reference_task_loss`, without [positions, vocabulary] fp32 temporaries).
    """
    check_task_loss_arguments(logits, labels, task_type, label_smoothing)
    if task_type in GENERATION_TASKS:
        return token_cross_entropy(
            logits, token_targets(labels, task_type), label_smoothing=label_smoothing, normalizer=normalizer
        )
    return reference_task_loss(logits, labels, task_type, label_smoothing=label_smoothing, normalizer=normalizer)


def reference_task_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    task_type: TaskType,
    *,
    label_smoothing: float = 0.0,
    normalizer: int | float | torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`task_loss` in plain PyTorch: what sequence-level tasks use, and the reference the chunked kernels are tested against."""
    check_normalizer(normalizer)
    logits = prediction_logits(logits, task_type).float()
    labels = prediction_labels(labels, task_type)
    if task_type == "regression":
        per_item = (logits.reshape(-1) - labels.reshape(-1).float()).pow(2)
    elif task_type == "multi_label":
        per_item = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none").mean(-1)
    else:
        labels = labels.long()  # int32/int16 class ids (e.g. from numpy) are class ids too; cross_entropy takes int64 only
        per_item = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)),
            labels.reshape(-1),
            ignore_index=-100,
            reduction="none",
            label_smoothing=label_smoothing,
        )
        per_item = per_item[labels.reshape(-1) != -100]
    if normalizer is not None:
        return per_item.sum() / normalizer
    return per_item.sum() / max(per_item.numel(), 1)


def dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def check_task_loss_arguments(logits: torch.Tensor, labels: torch.Tensor, task_type: str, label_smoothing: float) -> None:
    """RxfError unless the task type is known, label smoothing in range and used, and the labels fit the logits."""
    check_choice("task_type", task_type, TASK_TYPES)
    check_number("label_smoothing", label_smoothing, minimum=0.0, below=1.0)
    if label_smoothing > 0 and task_type in ("regression", "multi_label"):
        raise RxfError(
            f"label_smoothing: {label_smoothing:g} applies to cross-entropy tasks only, not {task_type}: set it to 0"
        )
    cross_entropy = task_type in ("classification", *GENERATION_TASKS)
    if cross_entropy:
        fits, expected = labels.shape == logits.shape[:-1], f"{tuple(logits.shape[:-1])} integer class ids"
        fits = fits and not labels.is_floating_point()
    elif task_type == "multi_label":
        fits, expected = labels.shape == logits.shape, f"{tuple(logits.shape)} 0/1 targets"
    else:  # regression: one score per output, (batch,) labels for a (batch, 1) head
        fits = labels.dim() > 0 and labels.size(0) == logits.size(0) and labels.numel() == logits.numel()
        one_output = f" or ({logits.size(0)},)" if logits.numel() == logits.size(0) else ""
        expected = f"{tuple(logits.shape)}{one_output} scores"
    if not fits:
        hint = "; for multi-hot labels use task_type='multi_label'" if cross_entropy and labels.shape == logits.shape else ""
        raise RxfError(
            f"labels of shape {tuple(labels.shape)} ({dtype_name(labels)}) do not fit {task_type} "
            f"logits of shape {tuple(logits.shape)}: expected {expected}{hint}"
        )


@dataclass
class LossOutput:
    """What a method computed on one batch: the loss to back-propagate and its parts, for logging."""

    loss: torch.Tensor
    task_loss: torch.Tensor
    regularizer: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # clean-pass logits, detached


def model_inputs(model: nn.Module, batch: Batch, task_type: TaskType) -> tuple[dict[str, Any], torch.Tensor]:
    """Split a batch into the model's inputs (without labels) and the labels.

    Labels are kept out of the forward pass so the model does not compute a loss we don't use.
    Encoder-decoder models then need ``decoder_input_ids``, which they make from the labels.
    """
    if "labels" not in batch and ("start_positions" in batch or "end_positions" in batch):
        raise RxfError(
            "question answering (start_positions/end_positions in the batch) is not supported by rxf methods: "
            "they need classification, regression or token labels"
        )
    if "labels" not in batch:
        raise RxfError("the batch has no 'labels': rxf methods need labels to compute the task loss")
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    labels = batch["labels"]
    check_batch(model, inputs, labels, task_type)
    if task_type in GENERATION_TASKS and hasattr(getattr(unwrap_model(model), "config", None), "use_cache"):
        # A training pass needs no KV cache, and with one transformers does not look for packed
        # sequences in position_ids: the sequences of a padding-free batch would attend to each other.
        inputs.setdefault("use_cache", False)
    if task_type == "seq2seq" and "decoder_input_ids" not in inputs and "decoder_inputs_embeds" not in inputs:
        inner = unwrap_model(model)
        if not hasattr(inner, "prepare_decoder_input_ids_from_labels"):
            raise RxfError(
                f"{type(inner).__name__} cannot make decoder_input_ids from labels: put decoder_input_ids in the batch "
                "(DataCollatorForSeq2Seq(model=…) does)"
            )
        inputs["decoder_input_ids"] = inner.prepare_decoder_input_ids_from_labels(labels=labels)
    return inputs, labels


def check_batch(model: nn.Module, inputs: dict[str, Any], labels: Any, task_type: TaskType) -> None:
    """RxfError for a batch the model would fail on deep inside, or silently misread: empty, a mask of the wrong
    shape, labels that do not fit the task type."""
    if torch.is_tensor(labels) and labels.numel() == 0:
        raise RxfError(f"the batch is empty (labels of shape {tuple(labels.shape)})")
    tokens = inputs.get("input_ids")
    tokens_shape = tokens.shape if torch.is_tensor(tokens) else None
    if tokens_shape is None and torch.is_tensor(inputs.get("inputs_embeds")):
        tokens_shape = inputs["inputs_embeds"].shape[:2]
    mask = inputs.get("attention_mask")
    # A 2-D mask is one flag per token; 4-D masks (custom attention patterns) are the model's business.
    if tokens_shape is not None and torch.is_tensor(mask) and mask.dim() == 2 and mask.shape != tokens_shape:
        raise RxfError(f"attention_mask of shape {tuple(mask.shape)} does not match input_ids {tuple(tokens_shape)}")
    if not torch.is_tensor(labels):
        return
    name = type(unwrap_model(model)).__name__
    if task_type in GENERATION_TASKS and labels.dim() != 2:
        raise RxfError(
            f"labels of shape {tuple(labels.shape)} do not fit task_type {task_type!r} ({name}): "
            "token-level tasks need (batch, length) token ids"
        )
    if task_type == "classification" and labels.is_floating_point():
        num_labels = getattr(getattr(unwrap_model(model), "config", None), "num_labels", None)
        multi_hot = labels.dim() == 2 and num_labels is not None and num_labels > 1 and labels.size(1) == num_labels
        hint = (
            "; for multi-hot labels set task_type='multi_label' (or the model's config.problem_type="
            "'multi_label_classification')" if multi_hot else ""
        )
        raise RxfError(
            f"{dtype_name(labels)} labels of shape {tuple(labels.shape)} do not fit task_type 'classification' ({name}): "
            f"it needs integer class ids{hint}"
        )


def output_logits(outputs: Any) -> torch.Tensor:
    return outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    below: float | None = None,
    integer: bool = False,
    positive: bool = False,
    optional: bool = False,
) -> None:
    """Check a numeric setting: a finite number (never NaN, ±inf or a bool), in range.

    ``minimum``/``below``: value >= minimum, value < below; ``positive``: value > 0; ``optional``:
    None passes. The RxfError names the setting, its value and where it came from (rxf.config).
    """
    requirement = "a whole number" if integer else "a number"
    bounds = []
    if positive:
        bounds.append("> 0")
    if minimum is not None:
        bounds.append(f">= {_number(minimum)}")
    if below is not None:
        bounds.append(f"< {_number(below)}")
    if bounds:
        requirement += " " + " and ".join(bounds)
    note_requirement(name, requirement + (" (or null)" if optional else ""))
    if optional and value is None:
        return
    in_range = (
        is_finite_number(value)
        and (not integer or is_whole_number(value))
        and not (positive and value <= 0)
        and not (minimum is not None and value < minimum)
        and not (below is not None and value >= below)
    )
    if not in_range:
        raise RxfError(f"{describe_setting(name, value)} must be {requirement}")


def _number(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


#: Seeds go to numpy too, which takes 0 <= seed < 2**32.
SEED_BOUND = 2**32


def check_seed(name: str, value: Any, *, optional: bool = False) -> None:
    """Check a random seed: a whole number that numpy, torch and Python all take."""
    check_number(name, value, integer=True, minimum=0, below=SEED_BOUND, optional=optional)


def check_text(name: str, value: Any, *, optional: bool = False) -> None:
    """Check a setting that names something (a model, a column, a folder): a non-empty string (``optional``: or None)."""
    note_requirement(name, "a non-empty string" + (" (or null)" if optional else ""))
    if optional and value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise RxfError(f"{describe_setting(name, value)} must be a non-empty string")


def check_choice(name: str, value: Any, choices: Sequence[str], *, optional: bool = False) -> None:
    """Check that a setting is one of ``choices`` (``optional``: or None); RxfError naming it and the closest choice."""
    requirement = "one of " + ", ".join(choices)
    note_requirement(name, requirement + (" (or null)" if optional else ""))
    if (optional and value is None) or (isinstance(value, str) and value in choices):
        return
    raise RxfError(f"{describe_setting(name, value)} must be {requirement}{closest(str(value), choices)}")


@dataclass
class MethodConfig:
    """Base of every method's config. Subclasses set ``name`` and may add fields."""

    name: ClassVar[str] = ""
    # The task type (classification, regression, multi_label, seq2seq, causal_lm); None infers it from the model.
    task_type: str | None = None
    # Label smoothing of the task cross-entropy (the paper's summarization recipe uses 0.1).
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self)
        check_choice("task_type", self.task_type, TASK_TYPES, optional=True)
        check_number("label_smoothing", self.label_smoothing, minimum=0.0, below=1.0)

    def build(self) -> Method:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.name, **dataclasses.asdict(self)}


class Method:
    """A method bound to its config. ``compute_loss`` is the whole method for single-backward methods."""

    #: True for methods whose step needs several backward passes (they implement ``training_step``).
    multi_backward: ClassVar[bool] = False
    #: Name under which the regulariser is logged (e.g. "r3f_divergence").
    regularizer_name: ClassVar[str] = "regularizer"

    def __init__(self, config: MethodConfig):
        # Validated again: its fields may have been assigned since it was created.
        config.__post_init__()
        self.config = config
        # Seed of this process's noise generators; None draws noise from torch's global RNG. The
        # Trainer integration sets a different seed on every rank (noise independent across
        # ranks) and saves the generators' states in checkpoints (exact resume).
        self.noise_seed: int | None = None
        self._noise_generators: dict[str, torch.Generator] = {}

    def noise_generator(self, device: torch.device | str) -> torch.Generator | None:
        """The generator for perturbations on ``device`` (None: torch's global RNG)."""
        if self.noise_seed is None:
            return None
        key = str(torch.device(device))
        if key not in self._noise_generators:
            generator = torch.Generator(device=device)
            generator.manual_seed(self.noise_seed)
            self._noise_generators[key] = generator
        return self._noise_generators[key]

    def noise_rng_state(self) -> dict[str, torch.Tensor]:
        return {device: g.get_state() for device, g in self._noise_generators.items()}

    def load_noise_rng_state(self, states: dict[str, torch.Tensor]) -> None:
        for device, state in states.items():
            generator = self.noise_generator(device)
            if generator is not None:
                generator.set_state(state)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Changes the method makes to the model before training (R4F: spectral norm). Default: none."""
        return model

    def task_type(self, model: nn.Module, batch: Batch | None = None) -> TaskType:
        """The config's task type, else the model's; RxfError when the config's contradicts what the model is built for.

        With ``batch`` and no task type in the config, a sequence classifier without ``problem_type`` first gets
        one from the batch's labels, as its forward would set it (:func:`settle_problem_type`).
        """
        if batch is not None and self.config.task_type is None and isinstance(batch, Mapping):
            settle_problem_type(model, batch.get("labels"))
        inferred = infer_task_type(model)
        chosen = self.config.task_type or inferred
        name = type(unwrap_model(model)).__name__
        # Only contradictions certain from the model say so: a generation model (infer_task_type knows those by
        # their class) set to a sequence-level task, or a classifier set to generation.
        builds_classifier = "ForSequenceClassification" in name or "ForTokenClassification" in name
        if (inferred in GENERATION_TASKS and chosen not in GENERATION_TASKS) or (
            builds_classifier and chosen in GENERATION_TASKS
        ):
            raise RxfError(f"task_type {chosen!r} does not fit {name}, which is built for {inferred}")
        return chosen  # type: ignore[return-value]

    def clean_loss(
        self, model: nn.Module, batch: Batch, *, normalizer: int | float | torch.Tensor | None = None
    ) -> LossOutput:
        """One ordinary forward pass and the task loss: Standard fine-tuning."""
        task_type = self.task_type(model, batch)
        inputs, labels = model_inputs(model, batch, task_type)
        logits = output_logits(model(**inputs))
        loss = task_loss(logits, labels, task_type, label_smoothing=self.config.label_smoothing, normalizer=normalizer)
        return LossOutput(loss=loss, task_loss=loss.detach(), logits=logits.detach())

    def compute_loss(
        self, model: nn.Module, batch: Batch, *, normalizer: int | float | torch.Tensor | None = None
    ) -> LossOutput:
        """The training loss on ``batch``. ``normalizer`` replaces the per-batch item count (gradient accumulation)."""
        raise NotImplementedError

    def training_step(
        self,
        model: nn.Module,
        batch: Batch,
        backward: Callable[[torch.Tensor], None],
        *,
        normalizer: int | float | torch.Tensor | None = None,
    ) -> LossOutput:
        """Compute the loss and call ``backward`` on it. Multi-backward methods override this."""
        out = self.compute_loss(model, batch, normalizer=normalizer)
        backward(out.loss)
        return out


# ---- registry -------------------------------------------------------------------------------

METHODS: dict[str, type[MethodConfig]] = {}


def register(config_class: type[MethodConfig]) -> type[MethodConfig]:
    """Class decorator: make a method config available by its ``name``."""
    METHODS[config_class.name] = config_class
    return config_class


def method_config(name: str | MethodConfig, **options: Any) -> MethodConfig:
    """A method's config by name (or a config, copied with the options), with options; an RxfError names any
    unknown method or option."""
    if isinstance(name, MethodConfig):
        key, config_class = name.name, type(name)
    else:
        key = str(name).lower()
        if key not in METHODS:
            raise RxfError(f"unknown method {name!r}{closest(key, METHODS)}; available: {', '.join(sorted(METHODS))}")
        config_class = METHODS[key]
    fields = {f.name for f in dataclasses.fields(config_class)}
    for option in options:
        if option not in fields:
            raise RxfError(
                f"{describe_setting(option, options[option])}: method {key!r} has no option {option!r}"
                f"{closest(option, fields)}; its options: {', '.join(sorted(fields))}"
            )
    if isinstance(name, MethodConfig):
        return dataclasses.replace(name, **options) if options else name
    return config_class(**options)


def build_method(method: str | MethodConfig | Method | None, **options: Any) -> Method:
    """A method from its name (None: standard), its config, or itself; options only with a name or a config."""
    if isinstance(method, Method):
        if options:
            raise RxfError(
                f"options {', '.join(sorted(options))} cannot be applied to a built method ({method.config.name}): "
                "pass its name or its config instead"
            )
        return method
    return method_config("standard" if method is None else method, **options).build()
