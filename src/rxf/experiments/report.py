"""The paper's Table 2 and Figure 2 from a sweep's run records or `rxf train` outputs, with the failed-run rate.

    rxf report --runs runs/glue-cpu-small --output-dir docs/results/glue
    rxf report --runs runs/rte-standard runs/rte-r3f runs/rte-r4f --output-dir report

``--runs`` takes any mix of sweep output directories (their ``records/``) and ``rxf train``
output directories (their ``metrics.json``), or folders holding such train outputs. A train
run counts as a final run (the seeds phase) of its task and method.

From the records of the seeds phase (one per task, method and seed) it writes

* ``table2.md`` / ``table2.csv``: per task and method, the max and the median over seeds (the
  paper's Table 2, left and right), with mean, standard deviation (sample, ddof = 1), min, the
  number of runs and of failed runs;
* ``figure2.png``: the distribution over seeds per task and method (box plot with every run as a
  dot, the majority-class score as a dashed line), as the paper's Figure 2;
* ``comparison.md``: per task, each method's mean minus Standard's with a 95 % percentile bootstrap
  interval and Welch's t interval over seeds, and a verdict (better / worse / within seed noise)
  only when both intervals agree and both rows have 5 runs or more (:func:`mean_difference`);
  beside it Welch's p and the same p adjusted (Holm) over all the comparisons with a verdict, since
  a report of many rows finds a "better" by chance more often than one comparison does; then one
  verdict per task (:func:`task_verdicts`): *yes* (a row is better and its Holm p is below 0.05),
  *no*, *open* (rows, Standard's included, with too few runs), or *not at this scale* where
  ``--learned`` gives the score at which the task counts as learned and the reference row's median
  is below it; a *yes* while rows anywhere in the report are open is marked provisional; a task with
  Standard alone gets none, and neither does a ``--phase search`` report;
* ``progress.md``: how many search and seed runs each task and method has (a sweep may be partial);
* ``regularizers.md``: per task and method, the size of what its regulariser adds, from the logged
  training curves: the term (e.g. ``r3f_divergence``) over the whole run and over its last epoch,
  and its share of the training objective, (loss − task_loss) / loss, in the last epoch. It says
  whether a method's term was large enough to matter, and lets rows that should add the same KL
  (e.g. R-Drop's dropout KL and a noise KL matched to it) be compared;
* ``stability.md``: per method, the standard deviation on each task and the failed-run rate over
  all tasks. A run *fails* when its score is at or below the majority-class score of the task's
  dev set (predicting the most frequent label everywhere, scored with the task's metric).

A run's score is its best evaluation of the reported metric during training (its best
checkpoint on dev, as the paper selects). The reported metric is the paper's where it names one
(MRPC and QQP: accuracy), else the task's main metric. Scores are shown ×100. Methods and sweep
variants are shown by ``labels`` (``--label r3f-sigma0=R-Drop``) over METHOD_LABELS.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rxf.config import field_error, is_finite_number
from rxf.errors import RxfError, closest
from rxf.history import NOT_LOSSES
from rxf.io import file_identity, read_json, replace_files, write_failure
from rxf.experiments.sweep import check_evaluations, check_record, majority_class_scores, read_record, record_files
from rxf.plots import render_png
from rxf.rundir import output_folder, warn

# The metric the paper's Table 2 reports per task where it differs from the task's main metric.
PAPER_METRICS: dict[str, str] = {"glue/mrpc": "accuracy", "glue/qqp": "accuracy"}
# Display order: the paper's (tasks as in Table 2, methods as in its rows), others after.
TASK_ORDER = ["glue/mnli", "glue/qqp", "glue/rte", "glue/qnli", "glue/mrpc", "glue/cola", "glue/sst2", "glue/stsb"]
TASK_LABELS = {
    "glue/mnli": "MNLI", "glue/qqp": "QQP", "glue/rte": "RTE", "glue/qnli": "QNLI", "glue/mrpc": "MRPC",
    "glue/cola": "CoLA", "glue/sst2": "SST-2", "glue/stsb": "STS-B", "glue/wnli": "WNLI",
}
METRIC_LABELS = {"accuracy": "Acc", "mcc": "MCC", "f1_accuracy": "(Acc+F1)/2", "pearson_spearman": "(P+S)/2", "pearson": "Pearson"}
METHOD_ORDER = ["standard", "standard++", "freelb", "smart", "r3f", "r4f"]
METHOD_LABELS = {"standard": "STD", "standard++": "STD++", "freelb": "FreeLB", "smart": "SMART", "r3f": "R3F", "r4f": "R4F"}


@dataclass
class ReportConfig:
    """Where the records are, where the report goes, and which metric each task reports."""

    runs: str | list[str]  # sweep output_dirs (holding records/), train output_dirs (holding metrics.json), or folders of them
    output_dir: str | None = None  # default: <runs>/report for one folder, ./report for several
    phase: str = "seeds"  # "search" reports the search trials instead
    metrics: dict[str, str] = field(default_factory=dict)  # task -> metric, over PAPER_METRICS / main metric
    # row -> the name shown for it, over METHOD_LABELS (e.g. a sweep variant "r3f-sigma0" shown as "R-Drop")
    labels: dict[str, str] = field(default_factory=dict)
    # task -> the score (the reported metric, as recorded: 0.62, not 62) at which the task counts as learned:
    # below it, Standard's median makes the task's verdict "not at this scale" (task_verdicts)
    learned: dict[str, float] = field(default_factory=dict)


@dataclass
class Cell:
    """The runs of one method on one task."""

    task: str
    method: str
    metric: str
    scores: list[float]  # one per run, in [0, 1] (not ×100)
    baseline: float  # majority-class score with the same metric

    @property
    def failed(self) -> int:
        return sum(score <= self.baseline for score in self.scores)

    def row(self) -> dict[str, Any]:
        scores = self.scores
        return {
            "task": self.task,
            "method": self.method,
            "metric": self.metric,
            "runs": len(scores),
            "max": max(scores),
            "median": statistics.median(scores),
            "mean": statistics.fmean(scores),
            "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "min": min(scores),
            "failed": self.failed,
            "failed_rate": self.failed / len(scores),
            "majority_baseline": self.baseline,
        }


#: The row every other method is compared with, and the bootstrap behind the intervals.
REFERENCE_METHOD = "standard"
BOOTSTRAP_RESAMPLES = 10_000
#: Runs per row below which no verdict is given: a percentile bootstrap of 2-4 seeds resamples so few
#: distinct means that its interval is far narrower than the seed noise (2 seeds: 3 possible means).
MIN_RUNS_FOR_VERDICT = 5


def mean_difference(cell: Cell, reference: Cell, confidence: float = 0.95) -> dict[str, Any]:
    """mean(cell) − mean(reference) with two intervals: a percentile bootstrap (seeds resampled within each
    row) and Welch's t interval.

    At 5 seeds a row, the percentile bootstrap covers the true difference only ~88 % of the time at a
    nominal 95 % (it resamples with the plug-in variance and normal-like tails;
    docs/results/glue-full/interval_coverage.py simulates it), so a verdict on it alone errs about
    twice as often as claimed.
    Welch's interval (t quantiles, unequal variances) keeps ~95 % there. The verdict is "better" or
    "worse" only when both intervals exclude 0, else "within seed noise"; with fewer than 2 runs in either
    row there is no interval, and with fewer than MIN_RUNS_FOR_VERDICT the intervals are shown without a
    verdict ("too few runs").
    """
    import numpy as np
    from scipy.stats import bootstrap, ttest_ind

    difference = statistics.fmean(cell.scores) - statistics.fmean(reference.scores)
    result = {
        "reference": reference.method, "diff_mean": difference, "diff_ci_low": None, "diff_ci_high": None,
        "welch_ci_low": None, "welch_ci_high": None, "welch_p": None,
    }
    if len(cell.scores) < 2 or len(reference.scores) < 2:
        return {**result, "verdict": "too few runs"}
    mine, theirs = np.asarray(cell.scores), np.asarray(reference.scores)
    if len(set(cell.scores)) == 1 and len(set(reference.scores)) == 1:  # no spread in either row: nothing to resample
        low = high = welch_low = welch_high = difference
        welch_p = 1.0 if difference == 0 else 0.0
    else:
        interval = bootstrap(
            (mine, theirs), lambda a, b, axis: np.mean(a, axis=axis) - np.mean(b, axis=axis),
            n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence, method="percentile",
            vectorized=True, rng=np.random.default_rng(0),
        ).confidence_interval
        low, high = float(interval.low), float(interval.high)
        welch = ttest_ind(mine, theirs, equal_var=False)
        interval = welch.confidence_interval(confidence)
        welch_low, welch_high, welch_p = float(interval.low), float(interval.high), float(welch.pvalue)
    if min(len(cell.scores), len(reference.scores)) < MIN_RUNS_FOR_VERDICT:
        verdict = "too few runs"
    elif low > 0 and welch_low > 0:
        verdict = "better"
    elif high < 0 and welch_high < 0:
        verdict = "worse"
    else:
        verdict = "within seed noise"
    return {
        **result, "diff_ci_low": low, "diff_ci_high": high, "welch_ci_low": welch_low, "welch_ci_high": welch_high,
        "welch_p": welch_p, "verdict": verdict,
    }


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: the i-th smallest p times (m − i + 1), kept non-decreasing, at most 1.

    An adjusted p below 0.05 keeps the chance of any false finding among the m at 5 %, whatever
    their dependence (the rows of one sweep share seeds, so they are not independent).
    """
    m = len(p_values)
    adjusted, running = [0.0] * m, 0.0
    for rank, index in enumerate(sorted(range(m), key=p_values.__getitem__)):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def comparisons(cells: list[Cell], reference: str = REFERENCE_METHOD) -> dict[tuple[str, str], dict[str, Any]]:
    """(task, method) -> its :func:`mean_difference` to the reference row of the same task, where there is one,
    with ``holm_p``: Welch's p adjusted over the comparisons that get a verdict (None for the others)."""
    by_key = {(c.task, c.method): c for c in cells}
    found = {
        (c.task, c.method): mean_difference(c, by_key[(c.task, reference)])
        for c in cells
        if c.method != reference and (c.task, reference) in by_key
    }
    family = [key for key, c in found.items() if c["verdict"] != "too few runs"]
    adjusted = dict(zip(family, holm_adjusted([found[key]["welch_p"] for key in family])))
    return {key: {**c, "holm_p": adjusted.get(key)} for key, c in found.items()}


def _interval(low: float | None, high: float | None) -> str:
    return "–" if low is None else f"[{100 * low:+.1f}, {100 * high:+.1f}]"


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.2g}" if value >= 0.001 else "<0.001"


#: The adjusted p below which a "better" row makes its task's verdict "yes".
FAMILY_ALPHA = 0.05


def task_verdicts(
    cells: list[Cell], found: dict[tuple[str, str], dict[str, Any]], learned: dict[str, float],
    reference: str = REFERENCE_METHOD, labels: dict[str, str] = METHOD_LABELS,
) -> list[dict[str, Any]]:
    """Per task with a reference row: does any row beat it beyond seed noise, counting the number of rows compared?

    *yes* when a row's verdict is "better" and its Holm-adjusted p is below FAMILY_ALPHA; else *open* while
    some row (or the reference) has too few runs for a verdict; else *not at this scale* when the
    reference's median is below the task's ``learned`` score (the task is not learned, so "no" would not
    answer the question); else *no*. A better/worse by both intervals that does not survive Holm, or a
    worse that does, is noted; so is a *yes* while any row of the report is open (it joins the Holm family
    once it has its runs, which can raise every adjusted p). A task with no row beside the reference gets
    no verdict.
    """
    verdicts = []
    name = labels.get(reference, reference)
    still_open = sum(c["verdict"] == "too few runs" for c in found.values())
    for task in dict.fromkeys(cell.task for cell in cells):
        rows = {cell.method: cell for cell in cells if cell.task == task}
        mine = {method: found[(task, method)] for method in rows if (task, method) in found}
        if reference not in rows or not mine:
            continue
        median = statistics.median(rows[reference].scores)
        bar = learned.get(task)
        below = bar is not None and median < bar
        survives = {m for m, c in mine.items() if c["holm_p"] is not None and c["holm_p"] < FAMILY_ALPHA}
        winners = [labels.get(m, m) for m, c in mine.items() if c["verdict"] == "better" and m in survives]
        open_rows = [labels.get(m, m) for m in mine if len(rows[m].scores) < MIN_RUNS_FOR_VERDICT]
        if len(rows[reference].scores) < MIN_RUNS_FOR_VERDICT:
            open_rows.insert(0, name)  # every comparison waits for the reference's runs
        notes = [
            f"{labels.get(m, m)} {c['verdict']} by both intervals" + ("" if m in survives else f", not after Holm (p {_p(c['holm_p'])})")
            for m, c in mine.items() if c["verdict"] in ("better", "worse") and not (c["verdict"] == "better" and m in survives)
        ]
        if winners:
            verdict = "yes: " + " / ".join(winners)  # (a row's name may hold a comma: "R3F, dropout 0")
            if still_open:
                notes.append(f"provisional: {still_open} row(s) of the report still have too few runs")
            if below:
                notes.append(f"{name} below the learned score")
        elif open_rows:
            verdict = "open: too few runs in " + " / ".join(open_rows)
            if below:
                notes.append("at best not at this scale unless one of them wins")
        elif below:
            verdict = "not at this scale"
        else:
            verdict = "no"
        verdicts.append({"task": task, "median": median, "learned": bar, "verdict": verdict, "notes": notes})
    return verdicts


def comparison_table(
    cells: list[Cell], reference: str = REFERENCE_METHOD, labels: dict[str, str] = METHOD_LABELS,
    learned: dict[str, float] | None = None, verdicts: bool = True,
) -> str:
    """Markdown: per task and method, the difference of means to the reference with its two 95 % intervals;
    then the verdict per task (:func:`task_verdicts`) unless ``verdicts`` is False (search trials: their
    runs differ in hyperparameters, not seeds, so "beyond seed noise" does not apply)."""
    found = comparisons(cells, reference)
    if not found:
        return f"No comparison: no task has both a {reference!r} row and another method.\n"
    label = labels.get(reference, reference)
    family = sum(c["holm_p"] is not None for c in found.values())
    runs = "seeds" if verdicts else "search trials (which differ in their settings, not only their seed)"
    lines = [
        f"**Difference of means to {label}** (×100, 95 % intervals over {runs}: percentile bootstrap with "
        f"{BOOTSTRAP_RESAMPLES:,} resamples, and Welch's t; *better*/*worse* only when both intervals exclude 0 "
        f"and both rows have {MIN_RUNS_FOR_VERDICT} runs or more). *Welch p*: two-sided, of this comparison "
        f"alone; *Holm p*: the same adjusted (Holm) over the {family} comparisons with a verdict, below 0.05 "
        "when the finding survives the number of rows compared.",
        "",
        f"| Task | Method | runs | mean | mean − {label} | 95 % bootstrap | 95 % Welch t | verdict | Welch p | Holm p | failed rate |",
        "|---|---|---:|---:|---:|---|---|---|---:|---:|---:|",
    ]
    for cell in cells:
        if (cell.task, cell.method) not in found:
            continue
        c = found[(cell.task, cell.method)]
        lines.append(
            f"| {TASK_LABELS.get(cell.task, cell.task)} | {labels.get(cell.method, cell.method)} | {len(cell.scores)} "
            f"| {_pct(statistics.fmean(cell.scores))} | {100 * c['diff_mean']:+.1f} "
            f"| {_interval(c['diff_ci_low'], c['diff_ci_high'])} | {_interval(c['welch_ci_low'], c['welch_ci_high'])} "
            f"| {c['verdict']} | {_p(c['welch_p'])} | {_p(c['holm_p'])} | {100 * cell.failed / len(cell.scores):.0f} % |"
        )
    if not verdicts:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        f"**Per task: does any row beat {label} beyond seed noise?** *yes*: better by both intervals and Holm p "
        f"below {FAMILY_ALPHA}; *open*: rows with too few runs; *not at this scale*: {label}'s median is below the "
        "score at which the task counts as learned (`--learned`), so the task was not learned; else *no*.",
        "",
        f"| Task | {label} median | learned at | verdict | notes |",
        "|---|---:|---:|---|---|",
    ]
    for v in task_verdicts(cells, found, learned or {}, reference, labels):
        bar = "–" if v["learned"] is None else _pct(v["learned"]) + (" (not met)" if v["median"] < v["learned"] else "")
        lines.append(f"| {TASK_LABELS.get(v['task'], v['task'])} | {_pct(v['median'])} | {bar} | {v['verdict']} | {'; '.join(v['notes']) or '–'} |")
    return "\n".join(lines) + "\n"


def train_run_record(run_dir: Path) -> dict[str, Any]:
    """An `rxf train` output directory as a run record of the seeds phase (the shape `rxf sweep` writes),
    checked as a sweep's records are (:func:`rxf.experiments.sweep.check_record`), naming its metrics.json."""
    path = run_dir / "metrics.json"
    metrics = read_json(path, "run metrics", f"is {run_dir} a finished rxf train run?")
    if not isinstance(metrics, dict) or not {"task", "method", "main_metric", "history"} <= set(metrics):
        raise RxfError(f"{path} is not the metrics.json of an rxf train run (no task/method/main_metric/history)")
    hint = f"fix it, or leave {run_dir} out of --runs"

    def refuse(field: str, requirement: str, value: Any) -> RxfError:
        return field_error("run metrics", path, field, requirement, value, hint)

    # Its evaluations are at the top level of metrics.json (a sweep's record holds them under 'metrics'):
    # checked here, so that an error names them as the file does; check_record below finds them good again.
    check_evaluations(metrics, refuse)
    baseline = metrics.get("majority_baseline")
    if baseline is None:  # written before runs recorded their majority-class scores: compute them
        from rxf.train import TrainConfig

        if not isinstance(metrics.get("config"), dict):
            raise RxfError(f"run metrics {path}: no majority_baseline, and no 'config' mapping to compute it from: {hint}")
        try:
            baseline = majority_class_scores(TrainConfig.from_dict(metrics["config"], source=f"key in {path}:"))
        except RxfError as error:
            raise RxfError(f"{run_dir}: no majority_baseline in metrics.json, and its data cannot be loaded to compute it: {error}") from None
    best, key = metrics.get("best"), f"eval_{metrics['main_metric']}"
    if best is not None and not isinstance(best, dict):
        raise refuse("best", "an evaluation (a mapping) or null", best)
    objective = None if best is None else best.get(key)
    if objective is not None and not is_finite_number(objective):
        raise refuse(f"best.{key}", "a finite number", objective)
    record = {
        "run_id": str(run_dir), "task": metrics["task"], "method": metrics["method"], "phase": "seeds", "trial": None,
        "seed": metrics.get("seed"), "params": {}, "main_metric": metrics["main_metric"],
        "objective": objective, "majority_baseline": baseline, "metrics": metrics,
    }
    check_record(record, path, what="run metrics", hint=hint)
    return record


def load_runs(runs: str | list[str]) -> dict[Path, dict[str, Any]]:
    """File -> its run record, for every folder in ``runs``: a sweep's output_dir or records/, an `rxf train`
    output_dir, or a folder of train output_dirs. Every record is checked before anything uses it.

    A file reached twice (a folder given twice, or a sweep and its records/) is the same run: counted once,
    with a warning.
    """
    records: dict[Path, dict[str, Any]] = {}
    seen: set[tuple[int, int]] = set()
    for folder in [runs] if isinstance(runs, str) else runs:
        folder = Path(folder)
        if folder.is_file():
            raise RxfError(f"--runs {folder} is a file: pass the folder that holds it (a sweep's or an rxf train run's output_dir)")
        if not folder.is_dir():
            raise RxfError(f"runs folder {folder} does not exist: pass a sweep's or an rxf train run's output_dir")
        # (not a hidden folder: an earlier run that --overwrite keeps aside, rxf.rundir)
        train_runs = sorted(p.parent for p in folder.glob("*/metrics.json") if not p.parent.name.startswith("."))
        if (folder / "metrics.json").is_file():
            files, read = [folder / "metrics.json"], lambda path: train_run_record(path.parent)
        elif (folder / "records").is_dir() or any(folder.glob("*.json")):
            files, read = record_files(folder), read_record
        elif train_runs:
            files, read = [run_dir / "metrics.json" for run_dir in train_runs], lambda path: train_run_record(path.parent)
        else:
            raise RxfError(
                f"{folder} holds no runs: pass a sweep's output_dir (records/), an rxf train output_dir "
                "(metrics.json), or a folder of train output_dirs"
            )
        again = [path for path in files if file_identity(path) in seen]
        if again:
            warn(f"--runs {folder}: its {len(again)} run(s) were given before in --runs; each run is counted once")
        for path in files:
            if file_identity(path) not in seen:  # also a record hard-linked into two folders
                seen.add(file_identity(path))
                records[path] = read(path)
    return records


def check_runs(records: dict[Path, dict[str, Any]], config: ReportConfig, labels: dict[str, str]) -> None:
    """What the tables would silently get wrong: one run counted twice, an option naming nothing, two rows shown alike."""
    first: dict[tuple[Any, ...], Path] = {}
    for path, record in records.items():
        # A seed is one run of its row; search trials are told apart by their run id (their config's hash).
        which = record["seed"] if record["phase"] == "seeds" else record["run_id"]
        key = (record["task"], record["method"], record["phase"], which)
        if key in first and record["phase"] == "seeds":
            raise RxfError(
                f"{first[key]} and {path} are both {record['task']} {record['method']} seed {which}: a row takes one "
                "run per seed; remove one of them (a copy?), or report the two sweeps apart"
            )
        if key in first:
            raise RxfError(f"{first[key]} and {path} are the same search run {which}: remove one of them (a copy?)")
        first[key] = path
    tasks = sorted({r["task"] for r in records.values()})
    methods = sorted({r["method"] for r in records.values()})
    for option, chosen, known, kind in (
        ("--metric", config.metrics, tasks, "task"), ("--label", config.labels, methods, "row"), ("--learned", config.learned, tasks, "task"),
    ):
        for key, value in chosen.items():
            if key not in known:
                same_end = [name for name in known if name.rsplit("/", 1)[-1] == key]  # rte for glue/rte
                suggestion = f" (did you mean {same_end[0]!r}?)" if same_end else closest(key, known)
                raise RxfError(f"{option} {key}={value}: no run has the {kind} {key!r}{suggestion}; the runs' {kind}s: {', '.join(known)}")
    for task, score in config.learned.items():
        if not is_finite_number(score) or not -1 <= score <= 1:
            raise RxfError(
                f"--learned {task}={score}: the score must be a number on the metric's own scale, from -1 to 1 "
                "(0.62 for 62 % accuracy)"
            )
    shown_as: dict[str, str] = {}
    for method in methods:
        name = labels.get(method, method)
        if name in shown_as:
            raise RxfError(
                f"rows {shown_as[name]!r} and {method!r} would both be shown as {name!r}: give one of them another "
                f"name (--label {method}=NAME)"
            )
        shown_as[name] = method


def run_score(record: dict[str, Any], metric: str) -> float:
    """The best evaluation of ``metric`` during the run."""
    key = f"eval_{metric}"
    values = [h[key] for h in record["metrics"].get("history", []) if key in h]
    if not values:
        raise RxfError(f"run {record['run_id']} has no evaluation of {metric!r}: choose a metric it logged")
    return float(max(values))


def report_metric(task: str, record: dict[str, Any], overrides: dict[str, str]) -> str:
    return overrides.get(task) or PAPER_METRICS.get(task) or record["main_metric"]


def _order(items: list[str], preferred: list[str]) -> list[str]:
    known = [x for x in preferred if x in items]
    return known + sorted(x for x in items if x not in preferred)


def collect(config: ReportConfig, all_records: list[dict[str, Any]]) -> list[Cell]:
    """The runs of the chosen phase (from ``all_records``, the :func:`load_runs` of ``config.runs``)
    grouped by task and method, in the paper's order."""
    if config.phase not in ("search", "seeds"):
        raise RxfError(f"phase must be 'search' or 'seeds', got {config.phase!r}")
    records = [r for r in all_records if r["phase"] == config.phase]
    if not records:
        folders = config.runs if isinstance(config.runs, str) else ", ".join(map(str, config.runs))
        if config.phase == "seeds":
            hint = "run `rxf sweep` until its seeds phase (or report the search with --phase search)"
        else:
            hint = "a method with one setting to try is not searched; report the final runs without --phase search"
        raise RxfError(f"no {config.phase} runs in {folders}: {hint}")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["task"], record["method"]), []).append(record)
    tasks = _order(sorted({t for t, _ in groups}), TASK_ORDER)
    methods = _order(sorted({m for _, m in groups}), METHOD_ORDER)
    cells = []
    for task in tasks:
        for method in methods:
            runs = groups.get((task, method))
            if not runs:
                continue
            metric = report_metric(task, runs[0], config.metrics)
            baseline = runs[0]["majority_baseline"]
            if metric not in baseline:
                raise RxfError(f"task {task} reports no {metric!r} (it has {', '.join(baseline)}): choose one of those")
            cells.append(Cell(task, method, metric, [run_score(r, metric) for r in runs], float(baseline[metric])))
    return cells


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def markdown_tables(cells: list[Cell], runs_are: str = "seeds", labels: dict[str, str] = METHOD_LABELS) -> str:
    """Table 2 as markdown: max over seeds, then median over seeds; methods as rows, tasks as columns."""
    tasks = list(dict.fromkeys(c.task for c in cells))
    methods = _order(list(dict.fromkeys(c.method for c in cells)), METHOD_ORDER)
    by_key = {(c.task, c.method): c for c in cells}
    metric_of = {c.task: c.metric for c in cells}
    header = "| Method | " + " | ".join(f"{TASK_LABELS.get(t, t)} {METRIC_LABELS.get(metric_of[t], metric_of[t])}" for t in tasks) + " |"
    rule = "|---|" + "---:|" * len(tasks)
    parts = []
    for title, stat in ((f"Max over {runs_are}", "max"), (f"Median over {runs_are}", "median")):
        lines = [f"**{title}** (×100; runs per cell in parentheses)", "", header, rule]
        for method in methods:
            cells_row = []
            for task in tasks:
                cell = by_key.get((task, method))
                cells_row.append("–" if cell is None else f"{_pct(cell.row()[stat])} ({len(cell.scores)})")
            lines.append(f"| {labels.get(method, method)} | " + " | ".join(cells_row) + " |")
        lines.append("| Majority class | " + " | ".join(_pct(next(c.baseline for c in cells if c.task == t)) for t in tasks) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def stability_table(cells: list[Cell], runs_are: str = "seeds", labels: dict[str, str] = METHOD_LABELS) -> str:
    """Per method: the standard deviation over seeds on each task, and the failed-run rate over all tasks."""
    tasks = list(dict.fromkeys(c.task for c in cells))
    methods = _order(list(dict.fromkeys(c.method for c in cells)), METHOD_ORDER)
    by_key = {(c.task, c.method): c for c in cells}
    header = "| Method | " + " | ".join(f"{TASK_LABELS.get(t, t)} std" for t in tasks) + " | failed runs | failed rate |"
    lines = [
        f"**Stability** (standard deviation over {runs_are} ×100, ddof = 1; a run fails at or below the majority-class score)",
        "",
        header,
        "|---|" + "---:|" * (len(tasks) + 2),
    ]
    for method in methods:
        mine = [by_key[(t, method)] for t in tasks if (t, method) in by_key]
        failed, total = sum(c.failed for c in mine), sum(len(c.scores) for c in mine)
        stds = ["–" if (t, method) not in by_key else _pct(by_key[(t, method)].row()["std"]) for t in tasks]
        lines.append(f"| {labels.get(method, method)} | " + " | ".join(stds) + f" | {failed}/{total} | {100 * failed / total:.0f} % |")
    return "\n".join(lines) + "\n"


def progress_table(records: list[dict[str, Any]], labels: dict[str, str] = METHOD_LABELS) -> str:
    """How many runs of each phase every task and method has: what a partial sweep holds."""
    runs: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for record in records:
        runs.setdefault((record["task"], record["method"]), {"search": [], "seeds": []})[record["phase"]].append(record)
    tasks = _order(sorted({t for t, _ in runs}), TASK_ORDER)
    methods = _order(sorted({m for _, m in runs}), METHOD_ORDER)
    lines = ["**Runs recorded** (search trials; seeds of the final runs)", "", "| Task | Method | search runs | seed runs | seeds |", "|---|---|---:|---:|---|"]
    for task in tasks:
        for method in methods:
            if (task, method) in runs:
                phase = runs[(task, method)]
                seeds = ", ".join(str(s) for s in sorted(r["seed"] for r in phase["seeds"])) or "–"
                label = f"| {TASK_LABELS.get(task, task)} | {labels.get(method, method)} |"
                lines.append(f"{label} {len(phase['search'])} | {len(phase['seeds'])} | {seeds} |")
    return "\n".join(lines) + "\n"


def regularizer_summary(curve: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """term -> its mean over the run and over the last epoch, and its share of the loss in the last epoch."""
    train = [e for e in curve if "loss" in e]
    if not train:
        return {}
    last_epoch = math.ceil(max(float(e.get("epoch", 0.0)) for e in train)) - 1
    tail = [e for e in train if float(e.get("epoch", 0.0)) > last_epoch] or train
    # The share of the objective is the whole regulariser's (loss − task loss), whatever its terms.
    shares = [(e["loss"] - e["task_loss"]) / e["loss"] for e in tail if "task_loss" in e and e["loss"]]
    summary = {}
    for key in dict.fromkeys(k for e in train for k in e if k not in NOT_LOSSES and k not in ("loss", "task_loss")):
        whole, last = [e[key] for e in train if key in e], [e[key] for e in tail if key in e]
        summary[key] = {
            "run": statistics.fmean(whole), "last_epoch": statistics.fmean(last) if last else math.nan,
            "share_last_epoch": statistics.fmean(shares) if shares else math.nan,
        }
    return summary


def regularizer_table(records: list[dict[str, Any]], labels: dict[str, str] = METHOD_LABELS) -> str:
    """Markdown: per task, method and logged regulariser term, its size over the seeds' runs (mean, and range of the last epoch)."""
    terms: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    for record in records:
        if record["phase"] != "seeds":
            continue
        for key, summary in regularizer_summary(record["metrics"].get("loss_curve") or []).items():
            terms.setdefault((record["task"], record["method"], key), []).append(summary)
    if not terms:
        return "No seed run logged a regulariser term (a Standard-only sweep, or records without loss curves).\n"
    tasks = _order(sorted({t for t, _, _ in terms}), TASK_ORDER)
    methods = _order(sorted({m for _, m, _ in terms}), METHOD_ORDER)
    lines = [
        "**What each regulariser adds** (logged training curves of the seed runs: the term's mean over the run "
        "and over its last epoch, mean over seeds with the seeds' range; share = (loss − task loss) / loss in the last epoch)",
        "",
        "| Task | Method | term | runs | mean over the run | last epoch | last epoch, range over seeds | share of the loss, last epoch |",
        "|---|---|---|---:|---:|---:|---|---:|",
    ]
    for task in tasks:
        for method in methods:
            for (t, m, key), runs in terms.items():
                if (t, m) != (task, method):
                    continue
                last = [r["last_epoch"] for r in runs]
                lines.append(
                    f"| {TASK_LABELS.get(task, task)} | {labels.get(method, method)} | {key} | {len(runs)} "
                    f"| {statistics.fmean(r['run'] for r in runs):.3g} | {statistics.fmean(last):.3g} "
                    f"| {min(last):.3g}–{max(last):.3g} | {100 * statistics.fmean(r['share_last_epoch'] for r in runs):.2g} % |"
                )
    return "\n".join(lines) + "\n"


def csv_text(cells: list[Cell]) -> str:
    found = comparisons(cells)
    columns = ("reference", "diff_mean", "diff_ci_low", "diff_ci_high", "welch_ci_low", "welch_ci_high", "welch_p", "verdict", "holm_p")
    empty = dict.fromkeys(columns, "")
    rows = [{**cell.row(), **found.get((cell.task, cell.method), empty)} for cell in cells]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def distributions_png(cells: list[Cell], path: Path, labels: dict[str, str] = METHOD_LABELS) -> bytes | None:
    """Figure 2 as the bytes of the PNG ``path``: per task a panel; per method a box of its seeds' scores with
    every run as a dot (None, with a warning: not drawn)."""
    return render_png(path, lambda plt: _draw_distributions(plt, cells, labels))


def _draw_distributions(plt: Any, cells: list[Cell], labels: dict[str, str]) -> Any:
    import numpy as np

    tasks = list(dict.fromkeys(c.task for c in cells))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.6), squeeze=False)
    rng = np.random.default_rng(0)  # jitter of the dots only
    for ax, task in zip(axes[0], tasks):
        mine = [c for c in cells if c.task == task]
        data = [np.array(c.scores) * 100 for c in mine]
        ax.boxplot(data, widths=0.5, showfliers=False)
        for i, values in enumerate(data, start=1):
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=12, alpha=0.8, zorder=3)
        ax.axhline(mine[0].baseline * 100, color="grey", linestyle="--", linewidth=1, label="majority class")
        ax.set_xticks(range(1, len(mine) + 1), [labels.get(c.method, c.method) for c in mine], rotation=30)
        ax.set_title(f"{TASK_LABELS.get(task, task)} ({METRIC_LABELS.get(mine[0].metric, mine[0].metric)})")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("dev score ×100 (best checkpoint)")
    axes[0][0].legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    return fig


REPORT_FILES = ("table2.md", "table2.csv", "stability.md", "comparison.md", "figure2.png", "progress.md", "regularizers.md")


def write_report(out: Path, texts: dict[str, str], cells: list[Cell], labels: dict[str, str]) -> list[str]:
    """Write the report into ``out`` as a whole, in one :func:`rxf.io.replace_files`: a failure (disk full,
    read-only, a folder in the way) leaves the earlier report as it was. Returns the names written
    (figure2.png only if drawn; if not, an earlier one is removed, with a warning)."""
    with output_folder(out, "--output-dir"):
        contents: dict[Path, str | bytes | None] = {out / name: text for name, text in texts.items()}
        contents[out / "figure2.png"] = distributions_png(cells, out / "figure2.png", labels)
        try:
            replace_files(contents)
        except OSError as error:
            raise write_failure(error, out, "the report", "then run the same command again (the earlier report there is as it was)") from None
        return [path.name for path, content in contents.items() if content is not None]


def make_report(config: ReportConfig) -> dict[str, Any]:
    """Write table2.md/.csv, stability.md, comparison.md, figure2.png, progress.md and regularizers.md; return the rows and the paths.

    Every record is read and checked, and every table made, before the first file is written.
    """
    runs = load_runs(config.runs)
    labels = {**METHOD_LABELS, **config.labels}
    check_runs(runs, config, labels)
    records = list(runs.values())
    if config.learned and config.phase != "seeds":
        raise RxfError("--learned qualifies the per-task verdicts of the seed runs, which a --phase search report does not give")
    cells = collect(config, records)
    compared = {task for task, _ in comparisons(cells)}
    for task, score in config.learned.items():
        if task not in compared:
            raise RxfError(
                f"--learned {task}={score}: {task} has no {REFERENCE_METHOD!r} row and another row in the runs here, so "
                "it gets no verdict to qualify: remove the option, or add those rows' runs"
            )
    folders = [config.runs] if isinstance(config.runs, str) else list(config.runs)
    out = Path(config.output_dir or (Path(folders[0]) / "report" if len(folders) == 1 else "report"))
    runs_are = "seeds" if config.phase == "seeds" else "search trials"
    texts = {
        "table2.md": markdown_tables(cells, runs_are, labels),
        "table2.csv": csv_text(cells),
        "stability.md": stability_table(cells, runs_are, labels),
        "comparison.md": comparison_table(cells, labels=labels, learned=config.learned, verdicts=config.phase == "seeds"),
        "progress.md": progress_table(records, labels),
        "regularizers.md": regularizer_table(records, labels),
    }
    written = write_report(out, texts, cells, labels)
    paths = {name: str(out / name) for name in REPORT_FILES if name in written}
    return {"rows": [c.row() for c in cells], "paths": paths}
