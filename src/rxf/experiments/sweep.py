"""Fixed-budget hyper-parameter search, then N seeds at the best setting: the paper's GLUE protocol.

    rxf sweep --config configs/glue/cpu-small.yaml          # search + seeds, resumable
    rxf report --runs runs/glue-cpu-small                   # Table 2 and Figure 2 from the records

For every task (a :class:`~rxf.train.TrainConfig` recipe such as ``configs/glue/rte.yaml``) and
every method, the sweep

1. searches the method's knobs (:data:`SEARCH_SPACES`) with optuna, the same number of trials for
   every method (a method whose whole grid is smaller runs its whole grid), each trial one
   :func:`rxf.train.run_training` with ``search_seed``; the objective is the best evaluation of
   the task's main metric during the run (the best checkpoint, as the paper selects on dev);
2. trains the best setting again with each seed in ``seeds``, taking turns between methods so that
   a sweep stopped half-way still holds comparable numbers of seeds per method.

Every finished run is one JSON record, ``<output_dir>/records/<run_id>.json``: what
``run_training`` writes to metrics.json (config, every evaluation with its wall time, best step,
loss curve) plus the sweep's own fields (phase, trial, params, objective, the task's
majority-class scores). The run id is a hash of the phase and the run's whole training config, and
records are written atomically (write, then rename), so a sweep that is killed and started again
skips every run whose record exists. The search is replayed from the records with the same sampler
seed, so a resumed sweep asks for the same trials as one that was never interrupted. Sweep runs
keep no model weights unless ``keep_models`` is set.

Several processes may work on one sweep at once (the same command started twice, on one machine or
on several sharing the output directory): a run another live process is training is locked
(rxf.rundir), so a seed run held elsewhere is left to that process and this one goes on to the
next. A search trial held elsewhere is come back to once this process has searched the other
methods (meanwhile training seed runs of the methods already searched, one between two looks, or,
with nothing else left, waiting until its lock is released), since the seeds need the search's best
setting: its record is then read, or, if its process died without one, it is trained here (from
that process's last checkpoint with ``resume_runs``). A run that finished without its record (its
process stopped between the two, or is writing it) gets its record from the run's metrics.json.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import re
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rxf.errors import RxfError, closest
from rxf.methods import METHODS, method_config
from rxf.methods.base import check_choice, check_number, check_seed, check_text
from rxf.config import (
    MISSING, Settings, check_fields, construct, describe_setting, field_error, is_finite_number, is_whole_number,
    read_yaml_mapping, settings_from, settings_under, source_of,
)
from rxf.history import NOT_LOSSES, NOT_SCORES
from rxf.io import read_json, write_failure
from rxf.rundir import RunInUse, is_finished, is_locked, make_output_dir
from rxf.train import TrainConfig, run_training, write_json_atomic

PHASES = ("search", "seeds")
SAMPLERS = ("grid", "tpe", "random")

# Learning rates around the paper's (Table 5: 5e-6 for the large tasks, 1e-5 for RTE, MRPC, CoLA).
LEARNING_RATES = [5e-6, 1e-5, 2e-5]

#: method -> {parameter: choices}. A parameter is a TrainConfig field (learning_rate, ...) or an
#: option of the method (see ``rxf methods``). A registered method missing here searches the
#: learning rate only. Sources: R3F/R4F the paper's Table 6; SMART its paper (λ ∈ {1, 3, 5},
#: ε = 1e-5, η = 1e-3); FreeLB its paper's GLUE ranges; R-Drop its paper's α; NEFTune its α.
SEARCH_SPACES: dict[str, dict[str, list[Any]]] = {
    "standard": {"learning_rate": LEARNING_RATES},
    "standard++": {"learning_rate": LEARNING_RATES},
    "r3f": {"learning_rate": LEARNING_RATES, "lambda_": [0.1, 0.5, 1.0, 5.0], "noise_type": ["uniform", "normal"]},
    "r4f": {"learning_rate": LEARNING_RATES, "lambda_": [0.1, 0.5, 1.0, 5.0], "noise_type": ["uniform", "normal"]},
    "smart": {"learning_rate": LEARNING_RATES, "lambda_": [1.0, 3.0, 5.0], "epsilon": [1e-5, 1e-4], "step_size": [1e-4, 1e-3]},
    "freelb": {"learning_rate": LEARNING_RATES, "adv_lr": [0.03, 0.1], "adv_max_norm": [0.3, 0.6]},
    "rdrop": {"learning_rate": LEARNING_RATES, "alpha": [0.1, 0.5, 1.0, 5.0]},
    "neftune": {"learning_rate": LEARNING_RATES, "alpha": [5.0, 10.0, 15.0]},
}

# TrainConfig fields that do not change a run's result, hence not part of its id.
NOT_IDENTITY = ("output_dir", "progress_bar", "save_model", "logging_steps", "keep_checkpoints", "checkpoint_steps")


@dataclass
class SweepConfig:
    """One sweep: recipes x methods, ``trials`` search runs each, then one run per seed. YAML keys = fields."""

    recipes: list[str] = field(default_factory=list)  # TrainConfig YAML files, one per task (relative to the sweep file)
    methods: list[str] = field(default_factory=lambda: ["standard++", "r3f", "r4f", "smart"])
    trials: int = 8  # search runs per task and method: the same budget for every method
    seeds: list[int] = field(default_factory=lambda: list(range(1, 11)))  # final runs at each method's best setting
    search_seed: int = 0  # training seed of the search runs (not one of seeds: the best trial's luck stays out of the final runs)
    overrides: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields set on top of every recipe
    # Replaces the learning_rate choices of every method; [] searches no learning rate (each recipe's own).
    learning_rates: list[float] | None = None
    search_spaces: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # per method: replaces/adds choices
    # TrainConfig fields of the search runs only, e.g. a data_dir whose dev.tsv is held out of the
    # training set, so that the search never sees the dev set the seeds report.
    search_overrides: dict[str, Any] = field(default_factory=dict)
    # Rows that run a method differently: label -> {method: NAME, overrides: {TrainConfig fields},
    # options: {method options}}. A label goes in ``methods`` like a method and is a row of its own
    # in the report (e.g. "r3f-nodrop": R3F with dropout 0 and a larger sigma).
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    sampler: str = "grid"  # grid: random order without repeats; tpe: optuna's TPE; random: with repeats
    sampler_seed: int = 0
    output_dir: str = "runs/glue-sweep"
    keep_models: bool = False  # keep each run's model/ (off: sweeps write records only)
    # Keep each unfinished run's newest checkpoint, so that an interrupted run resumes from it (runs
    # longer than a session). Off: a run is short and is redone whole if interrupted.
    resume_runs: bool = False

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "sweep config", base_dir: Path | None = None) -> SweepConfig:
        """Build and validate once; recipe paths are taken relative to ``base_dir`` (the sweep file's folder).

        A :class:`rxf.config.Settings` makes every error name where the bad value came from.
        """
        with settings_from(values):
            config = construct(cls, values, source)
            if base_dir is not None and isinstance(config.recipes, list):
                config.recipes = [
                    str(base_dir / r) if isinstance(r, str) and not Path(r).is_absolute() else r for r in config.recipes
                ]
            config.validate()
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> SweepConfig:
        path = Path(path)
        values = Settings(read_yaml_mapping(path, "sweep config"), source=str(path))
        return cls.from_dict(values, base_dir=path.parent)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Check everything a sweep of hours would otherwise trip over later: types, recipes, methods, spaces."""
        check_fields(self)
        check_number("trials", self.trials, integer=True, minimum=1)
        for seed in self.seeds:
            check_seed("seeds", seed)
        if len(set(self.seeds)) != len(self.seeds):
            raise RxfError(f"{describe_setting('seeds', self.seeds)}: seeds repeat a seed")
        check_seed("search_seed", self.search_seed)
        check_seed("sampler_seed", self.sampler_seed)
        check_text("output_dir", self.output_dir)
        check_choice("sampler", self.sampler, SAMPLERS)
        for rate in self.learning_rates or []:
            check_number("learning_rates", rate, minimum=0.0)
        if not self.recipes:
            raise RxfError("the sweep has no recipes: list TrainConfig YAML files under 'recipes'")
        if not self.methods:
            raise RxfError("the sweep has no methods: list some under 'methods' (see `rxf methods`)")
        for key in ("method", "method_options", "seed", "output_dir"):
            if key in self.overrides:
                raise RxfError(f"overrides cannot set {key!r}: the sweep sets it for every run (use methods/search_spaces/seeds/output_dir)")
        for label, variant in self.variants.items():
            check_variant(label, variant)
        for method in self.methods:
            if method not in self.variants:
                check_choice("methods", method, sorted(METHODS))
        for method in self.search_spaces:
            if method not in self.methods:
                raise RxfError(f"search_spaces names method {method!r}, which is not in methods: {', '.join(self.methods)}")
        for recipe in self.recipes:
            check_local_model(recipe, self.recipe_values(recipe)["model"])
        for key in ("method", "method_options", "seed", "output_dir"):
            if key in self.search_overrides:
                raise RxfError(f"search_overrides cannot set {key!r}: the sweep sets it for every run")
        for method in self.methods:
            with settings_under(f"search_spaces.{method}"):
                check_space(self.base_method(method), self.space(method))

    def recipe_values(self, recipe: str) -> dict[str, Any]:
        """All TrainConfig fields of a recipe with the overrides on top (validated once, errors naming the file)."""
        values = Settings(read_yaml_mapping(recipe, "recipe"), source=recipe)
        for key, value in self.overrides.items():
            where = source_of(f"overrides.{key}")
            values.set(key, value, where if where == "--set" else f"overrides in {where}" if where else "overrides")
        return TrainConfig.from_dict(values, source="recipe").to_dict()

    def recipe_keys(self, recipe: str) -> set[str]:
        """The fields a recipe or the overrides set: with the sweep's own, what identifies a run."""
        return set(read_yaml_mapping(recipe, "recipe")) | set(self.overrides)

    def base_method(self, label: str) -> str:
        """The registered method a row of ``methods`` runs (a variant's ``method``, else the label itself)."""
        return self.variants[label]["method"] if label in self.variants else label

    def row_values(self, values: dict[str, Any], label: str) -> dict[str, Any]:
        """A recipe's values for one row: a variant's overrides, its method and options on top."""
        if label not in self.variants:
            return values
        variant = self.variants[label]
        row = {**values, **variant.get("overrides", {})}
        row["method"] = variant["method"]
        row["method_options"] = dict(variant.get("options", {}))
        return TrainConfig.from_dict(row, source=f"variants.{label}").to_dict()

    def space(self, method: str) -> dict[str, list[Any]]:
        """The choices searched for ``method``: the table, the sweep's learning rates, its own replacements."""
        base = self.base_method(method)
        space = {name: list(choices) for name, choices in SEARCH_SPACES.get(base, {"learning_rate": LEARNING_RATES}).items()}
        if self.learning_rates == []:
            space.pop("learning_rate", None)
        elif self.learning_rates is not None:
            space["learning_rate"] = list(self.learning_rates)
        space.update({name: list(choices) for name, choices in self.search_spaces.get(method, {}).items()})
        return space


def check_local_model(recipe: str, model: str) -> None:
    """A recipe's model, when it is a local directory (or a path that should be one), checked now rather than
    when its first run starts, after the data has loaded. Hub names are left to the runs (asking the hub can be slow)."""
    from rxf.models.local import looks_like_path, resolve_model

    if looks_like_path(model) or Path(model).expanduser().exists():
        try:
            resolve_model(model)
        except RxfError as error:
            raise RxfError(f"recipe {recipe}: {error}") from None


def check_variant(label: str, variant: Any) -> None:
    """A variant names a registered method, valid TrainConfig overrides and valid options of its method."""
    if label in METHODS:
        raise RxfError(f"variants.{label}: a variant cannot take the name of a method; choose another label")
    if not isinstance(variant, dict) or "method" not in variant:
        raise RxfError(f"variants.{label} must be a mapping with a 'method' (and optional 'overrides', 'options')")
    unknown = set(variant) - {"method", "overrides", "options"}
    if unknown:
        raise RxfError(f"variants.{label}: unknown key {sorted(unknown)[0]!r} (use method, overrides, options)")
    check_choice(f"variants.{label}.method", variant["method"], sorted(METHODS))
    overrides, options = variant.get("overrides", {}), variant.get("options", {})
    if not isinstance(overrides, dict) or not isinstance(options, dict):
        raise RxfError(f"variants.{label}: overrides and options must be mappings")
    for key in ("method", "method_options", "seed", "output_dir"):
        if key in overrides:
            raise RxfError(f"variants.{label}.overrides cannot set {key!r} (use method/options)")
    TrainConfig.from_dict({**overrides, "method": variant["method"], "method_options": options}, source=f"variants.{label}")


def check_space(method: str, space: dict[str, list[Any]]) -> None:
    """Every parameter is a TrainConfig field or an option of the method, and every choice is valid."""
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    option_fields = {f.name for f in dataclasses.fields(METHODS[method])}
    for name, choices in space.items():
        if not isinstance(choices, list) or not choices:
            raise RxfError(f"search space of {method}: {name!r} needs a non-empty list of choices, got {choices!r}")
        if name in ("method", "method_options", "seed", "output_dir"):
            raise RxfError(f"search space of {method}: {name!r} cannot be searched")
        if name in train_fields:
            for choice in choices:
                TrainConfig(**{name: choice}).validate()
        elif name in option_fields:
            for choice in choices:
                method_config(method, **{name: choice})
        else:
            raise RxfError(
                f"search space of {method}: {name!r} is neither a TrainConfig field nor an option of {method}"
                f"{closest(name, train_fields | option_fields)} (see `rxf methods`)"
            )


def run_config(values: dict[str, Any], method: str, params: dict[str, Any], seed: int) -> TrainConfig:
    """The TrainConfig of one run: a recipe's values, the method, the searched params and the seed."""
    values = dict(values)
    options = dict(values["method_options"]) if values["method"] == method else {}
    option_fields = {f.name for f in dataclasses.fields(METHODS[method])}
    for name, value in params.items():
        if name in option_fields:
            options[name] = value
        else:
            values[name] = value
    values.update(method=method, method_options=options, seed=seed, progress_bar=False)
    return TrainConfig.from_dict(values)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("++", "pp")).strip("-")


def run_id(config: TrainConfig, phase: str, keys: set[str], label: str | None = None) -> str:
    """A name that is the same whenever the same run is asked for: task, method, phase and a hash.

    The hash covers the phase and the config's fields in ``keys`` (those the recipe and overrides
    set) plus the method, its options and the seed: fields added to TrainConfig later, at their
    defaults, leave the ids of finished runs as they were.
    """
    keys = (set(keys) | {"method", "method_options", "seed"}) - set(NOT_IDENTITY)
    identity = {k: v for k, v in config.to_dict().items() if k in keys}
    digest = hashlib.sha256(json.dumps({"phase": phase, **identity}, sort_keys=True, default=str).encode()).hexdigest()
    return f"{slug(config.task or 'files')}-{slug(label or config.method)}-{phase}-{digest[:12]}"


def majority_class_scores(config: TrainConfig) -> dict[str, float]:
    """The task's metrics for predicting the dev set's most frequent label (regression: its mean) everywhere.

    A run scoring at or below this is a failed run (it learned nothing a constant could not).
    """
    from rxf.train import config_task, majority_scores

    return majority_scores(config_task(config))


def objective(metrics: dict[str, Any]) -> float | None:
    """The run's best evaluation of the task's main metric (None if it never evaluated)."""
    best = metrics.get("best")
    return None if best is None else float(best[f"eval_{metrics['main_metric']}"])


def make_sampler(name: str, seed: int):
    import optuna

    if name == "grid":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.BruteForceSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


@dataclass
class Sweep:
    """Runs a :class:`SweepConfig`; ``train`` is the function that trains one config (run_training)."""

    config: SweepConfig
    train: Callable[[TrainConfig], dict[str, Any]] = run_training
    log: Callable[[str], None] = print
    #: Run ids trained by this process (not found in earlier records), in order.
    trained: list[str] = field(default_factory=list)
    #: The TrainConfig fields that identify a run of the current recipe (see run_id).
    identity_keys: set[str] = field(default_factory=set)
    #: Seed runs left to the other processes training them (their records come when those finish).
    left_to_others: list[str] = field(default_factory=list)
    #: Seconds between looks at the locks of search trials other processes hold, while there is nothing else to do.
    wait_s: float = 10.0

    @property
    def records_dir(self) -> Path:
        return Path(self.config.output_dir) / "records"

    def write_description(self) -> None:
        """sweep.json: this sweep's settings, with the recipes, methods and per-row settings of every process so far.

        Processes that split a sweep (``--methods standard++ smart`` in one, ``--methods r3f r4f``
        in another), or sweep files that add rows to one output directory (configs/glue-full/
        cpu-nodrop-rte.yaml beside cpu.yaml), share the file: it lists all their recipes and
        methods, and keeps each row's search space, variant and search overrides.
        """
        path = Path(self.config.output_dir) / "sweep.json"
        description = self.config.to_dict()
        if path.exists():
            try:
                earlier = read_json(path, "sweep description")
            except RxfError:
                earlier = {}  # rewritten below
            if not isinstance(earlier, dict):
                earlier = {}  # not what rxf writes: damaged, rewritten below like unreadable JSON
            for key in ("recipes", "methods"):
                known = earlier.get(key) if isinstance(earlier.get(key), list) else []
                description[key] = known + [item for item in description[key] if item not in known]
            for key in ("search_spaces", "variants", "search_overrides"):  # this sweep's entries win
                if isinstance(earlier.get(key), dict):
                    description[key] = {**earlier[key], **description[key]}
        write_json_atomic(path, description)

    def run(self, search_only: bool = False) -> list[dict[str, Any]]:
        """Every task, every method: the search, then (unless ``search_only``) the seeds. Returns the records."""
        out, _ = make_output_dir(self.config.output_dir)
        try:
            self.records_dir.mkdir(exist_ok=True)
            self.write_description()
        except OSError as error:
            raise write_failure(error, out, "the sweep's records/ and sweep.json") from None
        records = []
        for recipe in self.config.recipes:
            values = self.config.recipe_values(recipe)
            self.identity_keys = self.config.recipe_keys(recipe)
            baseline = majority_class_scores(TrainConfig.from_dict(values))
            searched, best = self.searches(recipe, values, baseline, search_only)
            records += searched
            if not search_only:
                records += self.seed_runs(values, self.config.methods, best, baseline)
        return records

    def searches(
        self, recipe: str, values: dict[str, Any], baseline: dict[str, float], search_only: bool,
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """Every method's search on one recipe: (the search records, each method's best setting).

        A method whose search meets a trial another process is training is come back to after the others;
        meanwhile this process trains one seed run of a method already searched (unless ``search_only``)
        between two looks, and with nothing else to do waits until one of the held trials' locks is released.
        """
        records: list[dict[str, Any]] = []
        best: dict[str, dict[str, Any]] = {}
        pending = list(self.config.methods)
        while pending:
            trained_before, held = len(self.trained), {}
            for method in pending:
                space = self.config.space(method)
                if all(len(choices) == 1 for choices in space.values()):
                    best[method] = {name: choices[0] for name, choices in space.items()}  # nothing to choose
                    self.log(f"[{recipe}] {method}: one setting, no search")
                    continue
                searched = self.search(values, method, baseline)
                if isinstance(searched, RunInUse):
                    held[method] = searched
                    continue
                records += searched
                best[method] = max(searched, key=lambda r: -np.inf if r["objective"] is None else r["objective"])["params"]
            if held and len(self.trained) == trained_before and not search_only:
                # The seeds at the end say what is left to other processes: this early look does not count.
                mark = len(self.left_to_others)
                self.seed_runs(values, [m for m in self.config.methods if m in best], best, baseline, most=1)
                del self.left_to_others[mark:]
            if held and len(self.trained) == trained_before:
                gone = [f" (if {e.holder} is gone, delete {e.lock})" for e in held.values() if e.elsewhere]
                self.log(f"[{recipe}] waiting for the search trials other processes are training ({', '.join(held)})"
                         + "".join(gone))
                while all(is_locked(error.lock) for error in held.values()):
                    time.sleep(self.wait_s)
            pending = list(held)
        return records, best

    def seed_runs(
        self, values: dict[str, Any], methods: list[str], best: dict[str, dict[str, Any]], baseline: dict[str, float],
        most: int | None = None,
    ) -> list[dict[str, Any]]:
        """Each seed of each of ``methods`` at its best setting, methods taking turns (so that any prefix of the
        sweep is balanced); with ``most``, stop once this process has trained that many. Returns the records."""
        records, trained_before = [], len(self.trained)
        for seed in self.config.seeds:
            for method in methods:
                if most is not None and len(self.trained) - trained_before >= most:
                    return records
                row = self.config.row_values(values, method)
                config = run_config(row, self.config.base_method(method), best[method], seed)
                record = self.run_once(config, "seeds", None, best[method], baseline, label=method)
                if record is not None:
                    records.append(record)
        return records

    def search(self, values: dict[str, Any], method: str, baseline: dict[str, float]) -> list[dict[str, Any]] | RunInUse:
        """The search trials of one method, replayed from the records where they exist; the RunInUse of a trial
        another process is training, if one is (the next call replays this one's trials up to it)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space = self.config.space(method)
        base = self.config.base_method(method)
        search_values = {**self.config.row_values(values, method), **self.config.search_overrides}
        grid_size = int(np.prod([len(choices) for choices in space.values()]))
        trials = self.config.trials if self.config.sampler != "grid" else min(self.config.trials, grid_size)
        if trials < self.config.trials:
            self.log(f"{method}: its grid has {grid_size} settings, fewer than trials={self.config.trials}: running all of them")
        records: list[dict[str, Any]] = []
        failed: list[BaseException] = []
        held: list[RunInUse] = []

        def trial_objective(trial: optuna.Trial) -> float:
            params = {name: trial.suggest_categorical(name, choices) for name, choices in space.items()}
            try:
                config = run_config(search_values, base, params, self.config.search_seed)
                records.append(self.run_once(config, "search", len(records), params, baseline, label=method))
            except RunInUse as error:
                held.append(error)
                trial.study.stop()
                raise optuna.TrialPruned() from None
            except BaseException as error:  # noqa: BLE001 -- raised below, after optuna, which would log its traceback
                failed.append(error)
                trial.study.stop()
                raise optuna.TrialPruned() from None  # optuna logs a pruned trial quietly (info)
            value = records[-1]["objective"]
            return float("nan") if value is None else value  # NaN: optuna counts the trial as failed

        study = optuna.create_study(direction="maximize", sampler=make_sampler(self.config.sampler, self.config.sampler_seed))
        study.optimize(trial_objective, n_trials=trials)
        if failed:
            raise failed[0]
        return held[0] if held else records

    def run_once(
        self, config: TrainConfig, phase: str, trial: int | None, params: dict[str, Any], baseline: dict[str, float],
        label: str | None = None,
    ) -> dict[str, Any] | None:
        """One run, or its record if an earlier sweep finished it. A run another process is training: a seed run
        is left to it (None), a search trial raises :class:`RunInUse`. ``label``: the row (a variant), if not the method."""
        keys = self.identity_keys | set(params)
        if label in self.config.variants:
            keys |= set(self.config.variants[label].get("overrides", {}))
        if phase == "search":
            keys |= set(self.config.search_overrides)
        rid = run_id(config, phase, keys, label)
        path = self.records_dir / f"{rid}.json"
        task = config.task or (Path(config.train_file).name if config.train_file else "files")
        where = f"[{task} {label or config.method} {phase}{'' if trial is None else f' {trial + 1}'} seed={config.seed}]"
        settings = " ".join(f"{k}={v}" for k, v in params.items())
        run_dir = Path(self.config.output_dir) / "runs" / rid
        keep = {"output_dir": str(run_dir), "save_model": self.config.keep_models}
        if hasattr(config, "keep_checkpoints") and not self.config.keep_models:
            keep["keep_checkpoints"] = 1 if self.config.resume_runs else 0
        config = dataclasses.replace(config, **keep)
        if path.is_file():
            record = read_record(path)
            self.log(f"{where} {settings}: done before ({rid})")
            return record

        def finished_elsewhere() -> dict[str, Any]:
            # Trained to its end by a process that has not written the record yet: it is about to, or it was
            # stopped between the two. The run's own metrics.json holds what the record needs.
            try:
                metrics = read_json(run_dir / "metrics.json", "run metrics", f"delete {run_dir} to train this run again")
            except RxfError:
                if path.is_file():  # written meanwhile, and the run folder removed
                    return read_record(path)
                raise
            self.log(f"{where} {settings}: finished before; its record is made from {run_dir / 'metrics.json'}")
            return self.write_record(rid, config, phase, trial, params, baseline, label, metrics, metrics.get("train_runtime_s"))

        if is_finished(run_dir):
            return finished_elsewhere()
        self.log(f"{where} {settings}: training ({rid})")
        started = time.perf_counter()
        try:
            metrics = self.train(config)
        except RunInUse as error:
            elsewhere = f" (if that process is gone, delete {error.lock})" if error.elsewhere else ""
            if phase == "search":
                self.log(f"{where} {settings}: {error.holder} is training it: the seeds need its score, so this "
                         f"process comes back to it{elsewhere}")
                raise
            self.log(f"{where} {settings}: {error.holder} is training it: left to that process{elsewhere}")
            self.left_to_others.append(rid)
            return None
        except RxfError:
            if not is_finished(run_dir):
                raise
            return finished_elsewhere()  # refused as finished: another process finished it a moment ago
        wall = time.perf_counter() - started
        record = self.write_record(rid, config, phase, trial, params, baseline, label, metrics, wall)
        self.trained.append(rid)
        self.log(f"{where} {record['main_metric']}={record['objective']} in {wall:.0f}s")
        gc.collect()
        return record

    def write_record(
        self, rid: str, config: TrainConfig, phase: str, trial: int | None, params: dict[str, Any],
        baseline: dict[str, float], label: str | None, metrics: dict[str, Any], wall: float | None,
    ) -> dict[str, Any]:
        """The record of a finished run, written; then, unless ``keep_models``, its run folder goes."""
        path = self.records_dir / f"{rid}.json"
        run_dir = Path(config.output_dir)
        record = {
            "run_id": rid,
            "task": metrics.get("task", config.task),
            "method": label or config.method,
            "base_method": config.method,
            "phase": phase,
            "trial": trial,
            "seed": config.seed,
            "params": params,
            "main_metric": metrics["main_metric"],
            "objective": objective(metrics),
            "majority_baseline": baseline,
            "wall_time_s": wall,
            "metrics": metrics,
        }
        try:
            write_json_atomic(path, record)
        except OSError as error:
            raise write_failure(error, self.records_dir, path.name, "then run the same command again (it trains this run again)") from None
        if not self.config.keep_models:
            shutil.rmtree(run_dir, ignore_errors=True)
            try:
                run_dir.parent.rmdir()  # runs/ goes once empty
            except OSError:
                pass
        return record


def run_sweep(config: SweepConfig, search_only: bool = False, **options: Any) -> list[dict[str, Any]]:
    """Run (or resume) a sweep; see :class:`Sweep`."""
    return Sweep(config, **options).run(search_only)


#: What to do with a record that cannot be read: the sweep trains that run again when it is gone.
RECORD_HINT = "delete it to redo that run"


def check_record(record: Any, path: str | Path, what: str = "run record", hint: str = RECORD_HINT) -> None:
    """The fields of a run record that `rxf report` and a resumed sweep use, of the types they use, each
    problem one line (:func:`rxf.config.field_error`); its metrics as :func:`check_evaluations` checks them.
    Majority-class scores must be finite numbers, for the reason evaluation scores must."""

    def refuse(field: str | None, requirement: str, value: Any) -> RxfError:
        return field_error(what, path, field, requirement, value, hint)

    if not isinstance(record, dict):
        raise refuse(None, "a mapping", record)
    for name in ("run_id", "task", "method", "main_metric"):
        value = record.get(name, MISSING)
        if not isinstance(value, str) or not value.strip():
            raise refuse(name, "a non-empty string", value)
    if record.get("phase") not in PHASES:
        raise refuse("phase", "one of " + ", ".join(PHASES), record.get("phase", MISSING))
    seed = record.get("seed", MISSING)
    if not is_whole_number(seed):
        raise refuse("seed", "a whole number", seed)
    if not isinstance(record.get("params"), dict):
        raise refuse("params", "a mapping", record.get("params", MISSING))
    baseline = record.get("majority_baseline", MISSING)
    if not isinstance(baseline, dict) or not baseline:
        raise refuse("majority_baseline", "a mapping of metric names to finite numbers", baseline)
    for name, value in baseline.items():
        if not is_finite_number(value):
            raise refuse(f"majority_baseline.{name}", "a finite number", value)
    metrics = record.get("metrics", MISSING)
    if not isinstance(metrics, dict):
        raise refuse("metrics", "a mapping", metrics)
    check_evaluations(metrics, lambda field, requirement, value: refuse(f"metrics.{field}", requirement, value))
    objective = record.get("objective", MISSING)
    if objective is not None and not is_finite_number(objective):
        raise refuse("objective", "a finite number or null", objective)


def check_evaluations(metrics: dict[str, Any], refuse: Callable[[str, str, Any], RxfError]) -> None:
    """A run's evaluations (``history``) and loss log (``loss_curve``), of the types `rxf report` reads.
    ``refuse(field, requirement, value)``: the error to raise, naming the field as the file does.

    Evaluation scores (``eval_*`` but the loss and timings) must be finite numbers: rxf's metrics are never
    NaN (a constant prediction scores 0), so a non-finite one is damage, and a NaN score would count as
    neither failed nor passed, and drop out of max() by order.
    """
    history = metrics.get("history", MISSING)
    if not isinstance(history, list):
        raise refuse("history", "a list of evaluations", history)
    for i, entry in enumerate(history):
        if not isinstance(entry, dict):
            raise refuse(f"history[{i}]", "a mapping", entry)
        for key, value in entry.items():
            if key.startswith("eval_") and key not in NOT_SCORES and not is_finite_number(value):
                raise refuse(f"history[{i}].{key}", "a finite number", value)
    curve = metrics.get("loss_curve")
    if curve is not None and not isinstance(curve, list):
        raise refuse("loss_curve", "a list of log entries", curve)
    for i, entry in enumerate(curve or []):
        if not isinstance(entry, dict):
            raise refuse(f"loss_curve[{i}]", "a mapping", entry)
        for key, value in entry.items():  # what regularizer_table reads: the loss, its parts and the epoch
            if (key == "epoch" or key not in NOT_LOSSES) and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise refuse(f"loss_curve[{i}].{key}", "a number", value)


def read_record(path: Path) -> dict[str, Any]:
    """One run record, checked (:func:`check_record`); any problem one line naming the file."""
    record = read_json(path, "run record", RECORD_HINT)
    check_record(record, path)
    return record


def record_files(runs: str | Path) -> list[Path]:
    """The record files of a sweep: ``runs`` is its output_dir or its records/ folder."""
    runs = Path(runs)
    folder = runs / "records" if (runs / "records").is_dir() else runs
    if not folder.is_dir():
        raise RxfError(f"runs folder {runs} does not exist: pass a sweep's output_dir (it holds records/)")
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise RxfError(f"no run records in {folder}: run `rxf sweep` first (records are <output_dir>/records/*.json)")
    return paths


def load_records(runs: str | Path) -> list[dict[str, Any]]:
    """Every record of a sweep, checked: ``runs`` is its output_dir or its records/ folder."""
    return [read_record(path) for path in record_files(runs)]
