"""The paper's probing experiments (Section 4), plus CKA and effective rank to the pre-trained model.

* :func:`run_generalization` (Figure 3): fine-tune on a source task with each method and seed,
  freeze the encoder, fit a linear probe for each target task, score it on the target's dev split.
* :func:`run_chain` (Figure 4): fine-tune on ``tasks[0]``, then ``tasks[1]``, ... each stage
  starting from the previous stage's encoder with a new classification head, and probe the
  source task ``tasks[0]`` before the first stage (the pre-trained model) and after every stage.
* :func:`run_cycle` (Figure 5): the same chain repeated ``cycles`` times; each task is probed on
  the encoder just before it is fine-tuned on, in every cycle (so cycle 1's first probe is the
  pre-trained model), which measures how much of what an earlier cycle learnt is retained.

Each stage passes on its **best** checkpoint (the paper's choice: the encoder at the evaluation
with the best dev main metric) or its **final** one (``stage_checkpoint``). Only the encoder
(``model.base_model``, with BERT's pooler) carries over; the next stage's head is new.

After every fine-tuning the encoder's features on a fixed probe set (``similarity_samples``
examples of the first task's dev split) are compared with the pre-trained model's: linear CKA
(plain and debiased) and effective rank, with the same layer and pooling as the probes
(:mod:`rxf.probing.similarity`); with ``track_similarity`` the same is logged at every evaluation
during training.

Outputs in ``output_dir``: ``results.json`` (the config, every probe and similarity record),
``results.csv``, ``summary.md`` (mean ± std over seeds), and the figure as PNG. A finished
(method, seed) leaves ``runs/<method>-seed<seed>/result.json``; rerunning the same command skips it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rxf.errors import RxfError
from rxf.io import read_json
from rxf.config import MISSING, check_fields, construct, describe_setting, field_error, settings_from, settings_under
from rxf.methods.base import METHODS, check_choice, check_number, check_seed, check_text, method_config
from rxf.models.local import DEFAULT_MODEL
from rxf.probing import report
from rxf.probing.features import FeatureConfig, FeatureExtractor, encoder_of
from rxf.probing.probe import ProbeConfig, fit_probe
from rxf.probing.similarity import similarity_report, similarity_tracker
from rxf.tasks.base import TextTask, subsample

EXPERIMENTS = ("generalization", "chain", "cycle")
STAGE_CHECKPOINTS = ("best", "final")
# TrainConfig fields that each stage sets itself.
STAGE_FIELDS = ("model", "task", "data_dir", "method", "method_options", "seed", "output_dir", "save_model")
PRETRAINED = "pre-trained"
# How rxf train's refusals say to replace a run, and what does it through rxf probe (which has no --overwrite).
PROBE_HINT = "pass --set train.overwrite=true"
# What a finished run's result.json must hold, per experiment: key -> type.
RESULT_FIELDS: dict[str, dict[str, type]] = {
    "generalization": {"source": dict, "probes": list, "similarity": dict},
    "chain": {"stages": list, "probes": list},
    "cycle": {"stages": list, "probes": list},
}


@dataclass
class ProbeExperimentConfig:
    """One probing experiment. YAML keys = field names; ``features`` and ``probe`` are nested mappings."""

    model: str = DEFAULT_MODEL  # the pre-trained model every chain starts from (and CKA's reference)
    data_dir: str | None = None  # GLUE root, for glue/* task names
    methods: list[str] = field(default_factory=lambda: ["standard++", "r3f", "r4f"])
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"r3f": {"lambda_": 0.5}}
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    train: dict[str, Any] = field(default_factory=dict)  # rxf.train.TrainConfig fields for every stage
    stage_checkpoint: str = "best"  # which checkpoint of a stage is probed and carried over: best | final

    # generalization (Figure 3)
    source_task: str = "glue/sst2"
    target_tasks: list[str] = field(default_factory=lambda: ["glue/cola", "glue/mrpc", "glue/rte", "glue/stsb"])
    checkpoints: dict[str, str] = field(default_factory=dict)  # label -> checkpoint dir: probed as given

    # chain (Figure 4) and cycle (Figure 5)
    tasks: list[str] = field(default_factory=lambda: ["glue/sst2", "glue/mrpc", "glue/cola", "glue/rte"])
    cycles: int = 3

    include_pretrained: bool = True  # probe the pre-trained model too (generalization)
    similarity_samples: int = 512  # probe-set size for CKA / effective rank
    track_similarity: bool = True  # also log CKA / effective rank at every evaluation during training
    features: FeatureConfig = field(default_factory=FeatureConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    output_dir: str = "runs/probe"
    cache_dir: str | None = None  # feature cache; default output_dir/feature_cache
    keep_models: bool = False  # keep every stage's model/ and encoder/ (hundreds of MB each)
    progress_bar: bool = False

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> ProbeExperimentConfig:
        """Build from a mapping (nested ``features``/``probe`` mappings), naming unknown keys; validate once.

        A :class:`rxf.config.Settings` makes every error name where the bad value came from.
        """
        with settings_from(values):
            values = dict(values)
            for name, config_class in (("features", FeatureConfig), ("probe", ProbeConfig)):
                if isinstance(values.get(name), dict):
                    with settings_under(name):
                        values[name] = construct(config_class, values[name], f"{source} {name}")
            config = construct(cls, values, source)
            config.validate()
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> ProbeExperimentConfig:
        from rxf.config import Settings, read_yaml_mapping

        return cls.from_dict(Settings(read_yaml_mapping(path), source=str(path)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Check every field (and every stage's training config) before any model is loaded: types, then values."""
        check_fields(self)
        for seed in self.seeds:
            check_seed("seeds", seed)
        for name in ("model", "output_dir", "source_task"):
            check_text(name, getattr(self, name))
        for name in ("data_dir", "cache_dir"):
            check_text(name, getattr(self, name), optional=True)
        if not self.seeds:
            raise RxfError("seeds is empty: give at least one seed")
        if len(set(self.methods)) != len(self.methods):
            raise RxfError(f"methods lists a method twice: {self.methods}")
        if len(set(self.seeds)) != len(self.seeds):  # one run would count as two seeds in the statistics
            raise RxfError(f"{describe_setting('seeds', self.seeds)} lists a seed twice")
        check_choice("stage_checkpoint", self.stage_checkpoint, STAGE_CHECKPOINTS)
        check_number("cycles", self.cycles, integer=True, positive=True)
        check_number("similarity_samples", self.similarity_samples, integer=True, minimum=4)
        for method in self.methods:
            check_choice("methods", method.lower(), sorted(METHODS))
        for method in self.method_options:
            if method not in self.methods:
                raise RxfError(f"method_options has options for {method!r}, which is not in methods {self.methods}")
        for key in self.train:
            if key in STAGE_FIELDS:
                raise RxfError(
                    f"train.{key} is set by each stage of the experiment: use the experiment's "
                    f"{'methods/method_options' if key.startswith('method') else key + ' / tasks'} instead"
                )
        for method in self.methods:
            with settings_under(f"method_options.{method}"):
                method_config(method, **self.method_options.get(method, {}))
            with settings_under("train"):
                self.stage_config(self.source_task, method, self.seeds[0], Path(self.output_dir))
        for label, path in self.checkpoints.items():
            if not Path(path).expanduser().is_dir():
                raise RxfError(f"checkpoint {label}={path} is not a directory")

    def stage_config(self, task: str, method: str, seed: int, output_dir: Path, model: str | None = None):
        """The rxf.train.TrainConfig of one fine-tuning stage."""
        from rxf.train import TrainConfig

        values = {
            "progress_bar": self.progress_bar,
            **self.train,
            "model": model or self.model,
            "task": task,
            "data_dir": self.data_dir if _is_glue(task) else None,
            "method": method,
            "method_options": dict(self.method_options.get(method, {})),
            "seed": seed,
            "output_dir": str(output_dir),
            "save_model": True,
        }
        if "keep_checkpoints" in {f.name for f in dataclasses.fields(TrainConfig)}:
            values.setdefault("keep_checkpoints", 0)  # the stage's encoder is all the experiment keeps
        return TrainConfig.from_dict(values, source="train")


def _is_glue(task: str) -> bool:
    from rxf.tasks.glue import glue_key

    return glue_key(task) is not None


def slug(text: str) -> str:
    """A file-name-safe form of a task or method name ("glue/sst2" -> "glue-sst2", "standard++" -> "standardpp")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text.replace("+", "p")).strip("-")


def best_encoder_keeper(metric_key: str):
    """A TrainerCallback keeping (in CPU memory) the encoder weights of the best evaluation by ``metric_key``."""
    from transformers import TrainerCallback

    class BestEncoderKeeper(TrainerCallback):
        def __init__(self) -> None:
            self.best: float | None = None
            self.step: int | None = None
            self.state: dict[str, Any] | None = None

        def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
            value = (metrics or {}).get(metric_key)
            if model is None or value is None or (self.best is not None and value <= self.best):
                return
            self.best, self.step = float(value), state.global_step
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in encoder_of(model).state_dict().items()}

    return BestEncoderKeeper()


class ProbeSession:
    """What the experiments share: the config, task data for probes, the feature cache, the reference features.

    Used as a context manager, a failure inside before anything is written into ``output_dir`` leaves no
    folder behind.
    """

    def __init__(self, config: ProbeExperimentConfig, command: str | None = None):
        from rxf.rundir import make_output_dir, remove_empty

        config.validate()
        self.config = config
        self.command = command
        self.out, self.created = make_output_dir(config.output_dir)
        try:
            if config.cache_dir:
                self.extractor = FeatureExtractor(config.features, config.cache_dir)
            else:
                self.extractor = FeatureExtractor(config.features, self.out / "feature_cache", "output_dir", "output_dir's feature_cache")
        except BaseException:
            remove_empty(self.created)  # a refused --cache-dir leaves no output folder behind either
            raise
        self._tasks: dict[str, TextTask] = {}
        self._fingerprints: dict[str, str] = {}  # task -> fingerprint of its full data (data_fingerprints)
        self._tokenizer: Any = None
        self.similarity_task: str | None = None

    def __enter__(self) -> ProbeSession:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        from rxf.rundir import remove_empty

        if kind is not None:
            remove_empty(self.created)

    # ---- data ---------------------------------------------------------------------------------

    def task(self, name: str) -> TextTask:
        """The task's probe data: a fixed subset of train (probe fitting) and of the first dev split (scoring)."""
        if name not in self._tasks:
            from rxf.tasks import load_task

            probe = self.config.probe
            task = load_task(
                name,
                data_dir=self.config.data_dir if _is_glue(name) else None,
                max_train_samples=probe.max_train_samples,
                max_eval_samples=probe.max_eval_samples,
                seed=probe.data_seed,
            )
            if task.train is None:
                raise RxfError(f"task {name!r} has no training split to fit a probe on")
            self._tasks[name] = task
        return self._tasks[name]

    def _features(self, checkpoint: str, task_name: str, split: str, rows, cache: bool) -> np.ndarray:
        pairs = rows["text_pair"] if "text_pair" in rows.column_names else None
        return self.extractor(checkpoint, rows["text"], pairs, f"{task_name}:{split}", cache=cache)

    def _eval_split(self, task: TextTask):
        split = next(iter(task.eval))
        return split, task.eval[split]

    # ---- probes and similarity ----------------------------------------------------------------

    def probe(self, checkpoint: str, task_name: str, cache: bool = True) -> dict[str, Any]:
        """Fit a linear probe for ``task_name`` on ``checkpoint``'s frozen features; its dev metrics."""
        task = self.task(task_name)
        split, dev = self._eval_split(task)
        train_x = self._features(checkpoint, task_name, "train", task.train, cache)
        eval_x = self._features(checkpoint, task_name, split, dev, cache)
        fit = fit_probe(
            train_x, np.asarray(task.train["label"]), eval_x, regression=task.is_regression, config=self.config.probe
        )
        metrics = task.compute_metrics(fit.predictions, np.asarray(dev["label"]))
        return {
            "task": task_name,
            "metric": task.main_metric,
            "value": metrics[task.main_metric],
            "metrics": metrics,
            "probe_regularization": fit.regularization,
            "probe_train_score": fit.train_score,
            "probe_train_examples": len(task.train),
            "probe_eval_examples": len(dev),
        }

    def similarity_set(self):
        """The fixed texts CKA and effective rank are measured on: part of the first task's dev split."""
        assert self.similarity_task is not None
        _, dev = self._eval_split(self.task(self.similarity_task))
        return subsample(dev, self.config.similarity_samples, self.config.probe.data_seed)

    def reference_features(self) -> np.ndarray:
        rows = self.similarity_set()
        return self._features(self.config.model, self.similarity_task, "similarity", rows, cache=True)

    def similarity(self, checkpoint: str, cache: bool = True) -> dict[str, float]:
        """CKA (plain, debiased) to the pre-trained model and effective rank, on the similarity set."""
        rows = self.similarity_set()
        features = self._features(checkpoint, self.similarity_task, "similarity", rows, cache)
        return similarity_report(self.reference_features(), features)

    # ---- fine-tuning --------------------------------------------------------------------------

    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            from rxf.models.local import resolve_model

            self._tokenizer = AutoTokenizer.from_pretrained(resolve_model(self.config.model))
        return self._tokenizer

    def fine_tune(self, start: str, task_name: str, method: str, seed: int, run_dir: Path) -> tuple[str, dict[str, Any]]:
        """Fine-tune ``start`` on a task; save the stage's (best or final) encoder; return its dir and a summary."""
        from rxf.rundir import is_finished, overwrite_said_as
        from rxf.train import run_training

        config = self.config.stage_config(task_name, method, seed, run_dir, model=start)
        if is_finished(run_dir):  # a chain redone after a crash trains its finished stages again
            config = dataclasses.replace(config, overwrite=True)
        callbacks: list[Any] = []
        keeper = None
        if self.config.stage_checkpoint == "best":
            keeper = best_encoder_keeper(f"eval_{self.task(task_name).main_metric}")
            callbacks.append(keeper)
        tracker = None
        if self.config.track_similarity:
            rows = self.similarity_set()
            pairs = rows["text_pair"] if "text_pair" in rows.column_names else None
            tracker = similarity_tracker(self.tokenizer(), rows["text"], pairs, self.reference_features(), self.config.features)
            callbacks.append(tracker)
        started = time.perf_counter()
        with overwrite_said_as(PROBE_HINT):  # rxf probe has no --overwrite flag
            result = run_training(config, extra_callbacks=callbacks)
        encoder_dir = run_dir / "encoder"
        export_encoder(run_dir / "model", encoder_dir, keeper.state if keeper is not None else None)
        if not self.config.keep_models:
            shutil.rmtree(run_dir / "model", ignore_errors=True)
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # resumable training checkpoints, if any
        main_key = f"eval_{result['main_metric']}"
        summary = {
            "task": task_name,
            "start": start,
            "checkpoint": self.config.stage_checkpoint,
            "checkpoint_step": (result["final"] or {}).get("step") if keeper is None or keeper.step is None else keeper.step,
            "dev_metric": result["main_metric"],
            "dev_best": (result["best"] or {}).get(main_key),
            "dev_final": (result["final"] or {}).get(main_key),
            "train_runtime_s": result["train_runtime_s"],
            "stage_wall_s": time.perf_counter() - started,
            "similarity_during_training": tracker.history if tracker is not None else [],
        }
        return str(encoder_dir), summary

    def discard(self, encoder_dir: str) -> None:
        """Delete a stage's encoder once the next stage has started from it (unless keep_models)."""
        if not self.config.keep_models and Path(encoder_dir).is_relative_to(self.out):
            self.extractor.release()
            shutil.rmtree(encoder_dir, ignore_errors=True)

    # ---- bookkeeping --------------------------------------------------------------------------

    def run_dir(self, method: str, seed: int) -> Path:
        return self.out / "runs" / f"{slug(method)}-seed{seed}"

    def run_settings(self, kind: str, method: str, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """What defines one (method, seed) run of experiment ``kind``, and the defaults of its training settings."""
        from rxf.train import run_settings

        config = self.config
        first = config.source_task if kind == "generalization" else config.tasks[0]
        train, defaults = run_settings(config.stage_config(first, method, seed, self.run_dir(method, seed)))
        for name in ("task", "data_dir"):  # each stage sets them; the experiment's tasks are below
            train.pop(name, None)
            defaults.pop(name, None)
        data_dir = Path(config.data_dir).expanduser() if config.data_dir else None
        settings = {
            "experiment": kind,
            "data_dir": str(data_dir.resolve()) if data_dir is not None and data_dir.exists() else config.data_dir,
            "train": train,
            "stage_checkpoint": config.stage_checkpoint,
            "similarity_samples": config.similarity_samples,
            "track_similarity": config.track_similarity,
            "features": {k: v for k, v in dataclasses.asdict(config.features).items() if k != "batch_size"},
            "probe": dataclasses.asdict(config.probe),
            **({"source_task": config.source_task, "target_tasks": config.target_tasks} if kind == "generalization"
               else {"tasks": config.tasks, **({"cycles": config.cycles} if kind == "cycle" else {})}),
        }
        return settings, {"train": defaults}

    def data_fingerprints(self) -> dict[str, str]:
        """{task: fingerprint of its data as rxf train loads it}, for the tasks loaded so far (computed once each)."""
        from rxf.tasks import load_task
        from rxf.tasks.base import fingerprint

        for name in self._tasks:
            if name not in self._fingerprints:
                full = load_task(name, data_dir=self.config.data_dir if _is_glue(name) else None)
                self._fingerprints[name] = fingerprint(full)
        return dict(self._fingerprints)

    def reusable(self, kind: str, method: str, seed: int, done: Path) -> dict[str, Any] | None:
        """A finished run's result.json when it was made with these settings on this data; None when it is
        to be redone (``train.overwrite``); an error naming the file and what differs otherwise."""
        from rxf.rundir import differences

        redo = f"delete {done.parent} to redo that run"
        how = f"choose another --output-dir, or {PROBE_HINT} to redo it (or {redo})"
        result = read_json(done, "probe result", redo)
        before = result.get("settings") if isinstance(result, dict) else None
        if not isinstance(before, dict):
            problem = "is not a JSON object" if not isinstance(result, dict) else "records no settings (from an older rxf?)"
            raise RxfError(f"probe result {done} {problem}, so rxf cannot tell whether it is this run: {how}")
        settings, defaults = self.run_settings(kind, method, seed)
        found = differences(before, settings, defaults)
        data = result.get("data") if isinstance(result.get("data"), dict) else {}
        found += [f"{task}'s data: fingerprint {str(data.get(task))[:12]} there, {value[:12]} here (have the data files changed?)"
                  for task, value in self.data_fingerprints().items() if data.get(task, value) != value]
        if found:
            if self.config.train.get("overwrite") is True:
                return None
            shown = "; ".join(found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
            raise RxfError(f"probe result {done} was made by another run ({shown}): {how}")
        for key, kind_of in RESULT_FIELDS[kind].items():
            value = result.get(key, MISSING)
            if not isinstance(value, kind_of):
                raise field_error("probe result", done, key, "a mapping" if kind_of is dict else "a list", value, redo)
        for i, probe in enumerate(result["probes"]):
            if not isinstance(probe, dict) or not all(key in probe for key in ("task", "metric", "value")):
                raise field_error("probe result", done, f"probes[{i}]", "a mapping with task, metric and value", probe, redo)
        return result

    def finished_runs(self, kind: str) -> dict[tuple[str, int], dict[str, Any]]:
        """{(method, seed): result} of the runs finished before with the same settings and data; an error for a
        result.json that is not (called before anything is computed, and by :meth:`each_run`)."""
        found = {}
        for method in self.config.methods:
            for seed in self.config.seeds:
                done = self.run_dir(method, seed) / "result.json"
                result = self.reusable(kind, method, seed, done) if done.is_file() else None
                if result is not None:
                    found[method, seed] = {**result, "method": method, "seed": seed}
        return found

    def each_run(self, kind: str, work: Callable[[str, int, Path], dict[str, Any]]) -> list[dict[str, Any]]:
        """``work(method, seed, run_dir)`` for every method and seed, skipping those already finished with the same
        settings and data (the rerun of an interrupted experiment)."""
        from rxf.io import replace_files, write_failure

        finished = self.finished_runs(kind)
        results = []
        for method in self.config.methods:
            for seed in self.config.seeds:
                run_dir = self.run_dir(method, seed)
                done = run_dir / "result.json"
                if (method, seed) in finished:
                    results.append(finished[method, seed])
                    print(f"[probe] {method} seed {seed}: done before, read {done}", flush=True)
                    continue
                run_dir.mkdir(parents=True, exist_ok=True)
                started = time.perf_counter()
                result = {"method": method, "seed": seed, **work(method, seed, run_dir)}
                result["wall_s"] = time.perf_counter() - started
                result["settings"] = self.run_settings(kind, method, seed)[0]
                result["data"] = self.data_fingerprints()
                try:
                    replace_files({done: json.dumps(result, indent=1, default=str)})
                except OSError as error:
                    raise write_failure(error, run_dir, done.name, "then run the same command again") from None
                print(f"[probe] {method} seed {seed}: finished in {result['wall_s']:.0f}s", flush=True)
                results.append(result)
        return results

    def header(self, title: str) -> str:
        config = self.config
        lines = [f"# {title}", ""]
        if self.command:
            lines += ["Command:", "", "```", self.command, "```", ""]
        from rxf.train import TrainConfig

        defaults = TrainConfig().to_dict()
        stage = config.stage_config(config.tasks[0], "standard", 0, Path("x")).to_dict()
        train = {k: v for k, v in stage.items() if k not in STAGE_FIELDS and v != defaults[k]}
        lines += [
            f"- model: `{config.model}`; methods: {', '.join(config.methods) or '(none)'}; seeds: {config.seeds}",
            f"- method options: {config.method_options or 'defaults'}",
            f"- fine-tuning (every stage; other rxf train settings at their defaults): {train}",
            f"- checkpoint probed and carried over: {config.stage_checkpoint}",
            f"- features: {config.features.describe()}; encoder frozen, eval mode (dropout off)",
            f"- probe: {config.probe.describe()}",
            f"- similarity: linear CKA (plain; debiased after Song et al. 2012) to `{config.model}` and "
            f"effective rank (Roy & Vetterli 2007) on {config.similarity_samples} examples of "
            f"{self.similarity_task}'s dev split, same features",
            "",
        ]
        return "\n".join(lines)

    def write(
        self, kind: str, payload: dict[str, Any], rows: list[dict[str, Any]], summary: str,
        figure: Callable[[Path], bytes | None],
    ) -> dict[str, Any]:
        """results.json, results.csv, summary.md, config.yaml and the figure ``<kind>.png`` (``figure(path)`` draws
        it; None removes an earlier one), all together: a failed write leaves the earlier ones as they were."""
        import yaml

        from rxf.io import replace_files, write_failure

        payload = {"experiment": kind, "command": self.command, "config": self.config.to_dict(),
                   "features": self.config.features.describe(), "probe": self.config.probe.describe(), **payload}
        files = {
            self.out / "results.json": json.dumps(payload, indent=1, default=str),
            self.out / "results.csv": report.csv_text(rows),
            self.out / "summary.md": summary,
            self.out / "config.yaml": yaml.safe_dump(self.config.to_dict(), sort_keys=False),
            self.out / f"{kind}.png": figure(self.out / f"{kind}.png"),
        }
        try:
            replace_files(files)
        except OSError as error:
            then = "then run the same command again (the finished runs are reused)"
            what = f"the report (results.json, results.csv, summary.md, config.yaml, {kind}.png)"
            raise write_failure(error, self.out, what, then) from None
        return payload


def export_encoder(model_dir: Path, encoder_dir: Path, state: dict[str, Any] | None) -> None:
    """Save the encoder of a fine-tuned classifier (optionally with other weights, e.g. the best ones) and its tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    encoder = AutoModel.from_pretrained(model_dir)
    if state is not None:
        encoder.load_state_dict(state)
    encoder.save_pretrained(encoder_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(encoder_dir)


def _similarity_fields(similarity: dict[str, float]) -> dict[str, float]:
    return {key: similarity[key] for key in ("cka", "cka_debiased", "effective_rank")}


# ---- the experiments ------------------------------------------------------------------------


def run_generalization(config: ProbeExperimentConfig, command: str | None = None) -> dict[str, Any]:
    """Figure 3: fine-tune on ``source_task``, probe each of ``target_tasks`` on the frozen encoder."""
    targets = config.target_tasks
    if not targets:
        raise RxfError("target_tasks is empty: name the tasks to probe")
    if not (config.methods or config.checkpoints or config.include_pretrained):
        raise RxfError("nothing to probe: methods and checkpoints are empty and include_pretrained is false: "
                       "name a method (--methods) or a checkpoint (--checkpoint LABEL=DIR), or leave out --no-pretrained")
    with ProbeSession(config, command) as session:
        session.similarity_task = config.source_task
        for name in [config.source_task, *targets]:
            session.task(name)  # every task loads (or fails) before any training
        session.finished_runs("generalization")  # a result.json of another run is refused before anything is computed

        rows: list[dict[str, Any]] = []
        similarity_rows: list[dict[str, Any]] = []
        reference: list[tuple[str, str]] = [(PRETRAINED, config.model)] if config.include_pretrained else []
        for label, path in [*reference, *config.checkpoints.items()]:
            for target in targets:
                rows.append({"method": label, "seed": None, **session.probe(path, target)})
            similarity_rows.append({"method": label, "seed": None, **_similarity_fields(session.similarity(path))})

        def work(method: str, seed: int, run_dir: Path) -> dict[str, Any]:
            encoder, stage = session.fine_tune(config.model, config.source_task, method, seed, run_dir / "source")
            probes = [session.probe(encoder, target, cache=config.keep_models) for target in targets]
            similarity = session.similarity(encoder, cache=config.keep_models)
            session.discard(encoder)
            return {"source": stage, "probes": probes, "similarity": similarity}

        runs = session.each_run("generalization", work)
        for run in runs:
            for probe in run["probes"]:
                rows.append({"method": run["method"], "seed": run["seed"], **probe})
            similarity_rows.append({"method": run["method"], "seed": run["seed"],
                                    "source_dev": run["source"]["dev_best" if config.stage_checkpoint == "best" else "dev_final"],
                                    **_similarity_fields(run["similarity"])})

        table = report.pivot(rows, lambda r: r["method"], lambda r: f"{r['task']} ({r['metric']})")
        cka = report.pivot(similarity_rows, lambda r: r["method"], lambda r: "CKA", "cka")
        for key, label in (("cka_debiased", "debiased CKA"), ("effective_rank", "effective rank"), ("source_dev", f"{config.source_task} dev")):
            for method, cells in report.pivot([r for r in similarity_rows if key in r], lambda r: r["method"], lambda r: label, key).items():
                cka.setdefault(method, {}).update(cells)
        summary = "\n".join([
            session.header(f"Probing generalization: fine-tuned on {config.source_task}, linear probes on frozen features"),
            "## Probe dev metric per target task (mean ± std over seeds (n))", "",
            report.markdown_table(table, "method"), "",
            f"## Similarity to the pre-trained model ({config.source_task} dev subset)", "",
            report.markdown_table(cka, "method"), "",
        ])
        payload = {"rows": rows, "similarity": similarity_rows, "runs": runs}
        return session.write("generalization", payload, rows, summary, lambda path: report.bar_chart(
            path, report.pivot(rows, lambda r: r["method"], lambda r: r["task"]),
            f"Linear probes after fine-tuning on {config.source_task}", "probe dev metric"))


def _sequence(session: ProbeSession, method: str, seed: int, run_dir: Path, schedule: list[str],
              before_stage: Callable[[int, str, str], dict[str, Any] | None],
              after_stage: Callable[[int, str, str], dict[str, Any] | None]) -> dict[str, Any]:
    """Fine-tune on each task of ``schedule`` in turn, calling the probe hooks around every stage."""
    config = session.config
    current = config.model
    records: list[dict[str, Any]] = []
    stages: list[dict[str, Any]] = []
    for index, task in enumerate(schedule, start=1):
        record = before_stage(index, task, current)
        if record is not None:
            records.append(record)
        encoder, stage = session.fine_tune(current, task, method, seed, run_dir / f"stage{index:02d}-{slug(task)}")
        if current != config.model:
            session.discard(current)
        current = encoder
        stages.append({"stage": index, **stage})
        record = after_stage(index, task, current)
        if record is not None:
            records.append(record)
        print(f"[probe] {method} seed {seed}: stage {index}/{len(schedule)} ({task}) done", flush=True)
    session.discard(current)
    return {"stages": stages, "probes": records}


def _check_schedule(config: ProbeExperimentConfig, kind: str) -> None:
    """What a chain or a cycle needs, checked before anything is created: tasks to train on in turn, and
    methods to train with (without one there would be nothing to report)."""
    if len(config.tasks) < 2:
        raise RxfError(f"a {kind} needs at least two tasks, got {config.tasks}")
    if not config.methods:
        raise RxfError(f"methods is empty: a {kind} fine-tunes with each of them, so name at least one (e.g. --methods standard)")


def run_chain(config: ProbeExperimentConfig, command: str | None = None) -> dict[str, Any]:
    """Figure 4: train on ``tasks`` in order; probe ``tasks[0]`` on the pre-trained model and after each stage."""
    _check_schedule(config, "chain")
    with ProbeSession(config, command) as session:
        source = session.similarity_task = config.tasks[0]
        for name in config.tasks:
            session.task(name)
        session.finished_runs("chain")
        pretrained = {"stage": 0, "trained_on": PRETRAINED, **session.probe(config.model, source),
                      **_similarity_fields(session.similarity(config.model))}

        def work(method: str, seed: int, run_dir: Path) -> dict[str, Any]:
            def after(index: int, task: str, encoder: str) -> dict[str, Any]:
                probe = session.probe(encoder, source, cache=config.keep_models)
                return {"stage": index, "trained_on": task, **probe, **_similarity_fields(session.similarity(encoder, cache=config.keep_models))}

            return _sequence(session, method, seed, run_dir, config.tasks, lambda *_: None, after)

        runs = session.each_run("chain", work)
        rows = [{"method": run["method"], "seed": run["seed"], **record}
                for run in runs for record in [pretrained, *run["probes"]]]
        label = lambda r: "pre-trained" if r["stage"] == 0 else f"after {r['trained_on']}"  # noqa: E731
        table = report.pivot(rows, lambda r: r["method"], label)
        cka = report.pivot(rows, lambda r: r["method"], label, "cka")
        rank = report.pivot(rows, lambda r: r["method"], label, "effective_rank")
        summary = "\n".join([
            session.header(f"Probing degradation: chain {' → '.join(config.tasks)}, probing {source}"),
            f"## Probe of {source} ({pretrained['metric']}, dev) after each stage (mean ± std over seeds (n))", "",
            report.markdown_table(table, "method"), "",
            "## Linear CKA to the pre-trained model after each stage", "", report.markdown_table(cka, "method"), "",
            "## Effective rank after each stage", "", report.markdown_table(rank, "method"), "",
        ])
        payload = {"rows": rows, "runs": runs}
        return session.write("chain", payload, rows, summary, lambda path: report.line_chart(
            path, {f"probe of {source}": table}, f"Chain {' → '.join(config.tasks)}", "stage",
            f"{source} probe {pretrained['metric']}"))


def run_cycle(config: ProbeExperimentConfig, command: str | None = None) -> dict[str, Any]:
    """Figure 5: the chain ``tasks`` repeated ``cycles`` times; each task probed just before it is trained on."""
    _check_schedule(config, "cycle")
    with ProbeSession(config, command) as session:
        session.similarity_task = config.tasks[0]
        for name in config.tasks:
            session.task(name)
        session.finished_runs("cycle")
        schedule = config.tasks * config.cycles
        width = len(config.tasks)

        def work(method: str, seed: int, run_dir: Path) -> dict[str, Any]:
            def before(index: int, task: str, encoder: str) -> dict[str, Any]:
                pretrained = encoder == config.model
                probe = session.probe(encoder, task, cache=pretrained or config.keep_models)
                return {"cycle": (index - 1) // width + 1, "stage": index - 1, "probed_before_training_on": task,
                        **probe, **_similarity_fields(session.similarity(encoder, cache=pretrained or config.keep_models))}

            return _sequence(session, method, seed, run_dir, schedule, before, lambda *_: None)

        runs = session.each_run("cycle", work)
        rows = [{"method": run["method"], "seed": run["seed"], **record} for run in runs for record in run["probes"]]
        panels = {
            f"{task} ({session.task(task).main_metric})": report.pivot(
                [r for r in rows if r["task"] == task], lambda r: r["method"], lambda r: f"cycle {r['cycle']}")
            for task in config.tasks
        }
        sections = []
        for panel, table in panels.items():
            sections += [f"### {panel}", "", report.markdown_table(table, "method"), ""]
        summary = "\n".join([
            session.header(f"Probing retention: {config.cycles} cycles of {' → '.join(config.tasks)}"),
            "## Probe dev metric of each task, just before it is fine-tuned on, per cycle (mean ± std over seeds (n))",
            "", "Cycle 1's probe of the first task is the pre-trained model.", "", *sections,
        ])
        payload = {"rows": rows, "runs": runs}
        return session.write("cycle", payload, rows, summary, lambda path: report.line_chart(
            path, panels, f"{config.cycles} cycles of {' → '.join(config.tasks)}", "cycle", "probe dev metric"))


EXPERIMENT_RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "generalization": run_generalization,
    "chain": run_chain,
    "cycle": run_cycle,
}
