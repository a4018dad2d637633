"""rxf.experiments.sweep: search then seeds, one record per run, resumable, validated up front."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from rxf import rundir
from rxf.errors import RxfError
from rxf.experiments.sweep import SEARCH_SPACES, Sweep, SweepConfig, check_space, load_records
from rxf.methods import METHODS
from shared_data import GLUE_DIR, needs_glue
from tiny_glue import frequent_words, tiny_bert_dir, tiny_rte_dir, write_recipe


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    model = tiny_bert_dir(root / "model")
    data = tiny_rte_dir(root / "glue")
    return {"root": root, "model": model, "data": data, "recipe": write_recipe(root / "rte.yaml", model, data)}


def sweep_config(tiny, out: Path, **values) -> SweepConfig:
    defaults = {"recipes": [str(tiny["recipe"])], "methods": ["standard", "r3f"], "trials": 2, "seeds": [1],
                "learning_rates": [1e-3, 3e-3], "output_dir": str(out)}
    return SweepConfig.from_dict({**defaults, **values})


def quiet(message: str) -> None:
    pass


def test_search_then_seeds_at_the_best_setting_one_record_per_run(tiny, tmp_path):
    out = tmp_path / "sweep"
    records = Sweep(sweep_config(tiny, out), log=quiet).run()

    on_disk = load_records(out)
    assert sorted(r["run_id"] for r in on_disk) == sorted(r["run_id"] for r in records)
    assert Counter((r["method"], r["phase"]) for r in on_disk) == {
        ("standard", "search"): 2, ("standard", "seeds"): 1, ("r3f", "search"): 2, ("r3f", "seeds"): 1,
    }
    for method in ("standard", "r3f"):
        search = sorted((r for r in on_disk if r["method"] == method and r["phase"] == "search"), key=lambda r: r["trial"])
        assert [r["trial"] for r in search] == [0, 1]
        # the grid sampler never repeats a setting; search runs use search_seed, not the final seeds
        assert len({json.dumps(r["params"], sort_keys=True) for r in search}) == 2
        assert {r["seed"] for r in search} == {0}
        best = max(search, key=lambda r: r["objective"])  # ties: the first, as the sweep picks
        (final,) = [r for r in on_disk if r["method"] == method and r["phase"] == "seeds"]
        assert final["params"] == best["params"] and final["seed"] == 1
        assert final["metrics"]["config"]["learning_rate"] == best["params"]["learning_rate"]
    for record in on_disk:
        metrics = record["metrics"]
        assert metrics["history"] and all("wall_time_s" in h and "eval_accuracy" in h for h in metrics["history"])
        assert record["objective"] == max(h["eval_accuracy"] for h in metrics["history"])
        assert metrics["best_step"] == 2 and record["wall_time_s"] > 0
        assert metrics["config"]["save_model"] is False
        assert record["majority_baseline"]["accuracy"] == 0.5  # the tiny dev set alternates its labels
    r3f_options = [r["metrics"]["method_config"] for r in on_disk if r["method"] == "r3f"]
    assert all(o["lambda_"] in (0.1, 0.5, 1.0, 5.0) and o["noise_type"] in ("uniform", "normal") for o in r3f_options)
    # records only: no weights, no leftover run folders
    assert not list(out.rglob("*.safetensors")) and not (out / "runs").exists()


def fake_train(config) -> dict:
    """Stands in for run_training: a score that depends on the setting and the seed, instantly."""
    score = 0.5 + config.learning_rate * 10 + config.method_options.get("lambda_", 0) / 100 + config.seed / 1000
    evaluation = {"step": 2, "epoch": 1.0, "wall_time_s": 0.01, "eval_accuracy": score}
    return {"task": config.task, "method": config.method, "main_metric": "accuracy", "best": evaluation,
            "best_step": 2, "history": [evaluation], "config": config.to_dict()}


class Interrupted(Exception):
    pass


def test_a_killed_sweep_restarts_without_redoing_finished_runs(tiny, tmp_path):
    config = sweep_config(tiny, tmp_path / "sweep", trials=3, seeds=[1, 2])
    calls: list[str] = []

    def dies_on_the_fifth_run(run_config):
        if len(calls) == 4:
            raise Interrupted("killed")
        calls.append(run_config.output_dir)
        return fake_train(run_config)

    first = Sweep(config, train=dies_on_the_fifth_run, log=quiet)
    with pytest.raises(Interrupted):
        first.run()
    finished = set(first.trained)
    assert len(finished) == 4 and {p.stem for p in (tmp_path / "sweep" / "records").glob("*.json")} == finished

    second = Sweep(config, train=fake_train, log=quiet)
    records = second.run()
    assert not finished & set(second.trained)  # nothing finished before is trained again
    assert len(second.trained) == len(records) - 4

    # The resumed sweep asked for exactly the runs of a sweep that was never interrupted.
    uninterrupted = Sweep(sweep_config(tiny, tmp_path / "clean", trials=3, seeds=[1, 2]), train=fake_train, log=quiet)
    assert [r["run_id"] for r in uninterrupted.run()] == [r["run_id"] for r in records]

    third = Sweep(config, train=fake_train, log=quiet)
    third.run()
    assert third.trained == []


@pytest.mark.parametrize("resume_runs", [False, True])
def test_resume_runs_continues_an_interrupted_run_from_its_checkpoint(tiny, tmp_path, resume_runs):
    """Long runs (resume_runs): a run killed after its step-2 checkpoint resumes there; otherwise it starts over."""
    from transformers import TrainerCallback

    from rxf.train import run_training

    class KilledAfterStep2(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:  # step 2 is evaluated (and, with resume_runs, checkpointed)
                raise Interrupted("killed")

    config = sweep_config(tiny, tmp_path / "sweep", methods=["standard"], seeds=[1], learning_rates=[1e-3],
                          overrides={"max_steps": 4, "eval_steps": 2}, resume_runs=resume_runs)
    with pytest.raises(Interrupted):
        Sweep(config, train=lambda c: run_training(c, extra_callbacks=[KilledAfterStep2()]), log=quiet).run()
    records = Sweep(config, log=quiet).run()
    assert records[0]["metrics"]["global_step"] == 4
    resumed = records[0]["metrics"]["resumed_from"]
    assert (resumed is not None and resumed.endswith("checkpoint-2")) if resume_runs else resumed is None
    assert not (tmp_path / "sweep" / "runs").exists()  # a finished run's folder goes, checkpoints and all


def claiming_train(config) -> dict:
    """fake_train inside the run directory's lock, taken as run_training takes it."""
    with rundir.claim(config.output_dir):
        return fake_train(config)


def test_a_seed_run_another_process_trains_is_left_to_it(tiny, tmp_path):
    """Two processes on one sweep: the run the other one holds is skipped, not an error that ends the sweep."""
    config = sweep_config(tiny, tmp_path / "sweep", seeds=[1, 2])
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lines: list[str] = []

    def the_other_process_takes_r3f_seed_1(run_config):
        if run_config.method == "r3f" and run_config.seed == 1:  # it locked the run just before this process
            out = Path(run_config.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / rundir.LOCK).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "then"}))
        return claiming_train(run_config)

    try:
        sweep = Sweep(config, train=the_other_process_takes_r3f_seed_1, log=lines.append)
        records = sweep.run()
    finally:
        holder.kill()
        holder.wait()
    (left,) = sweep.left_to_others
    assert left not in sweep.trained and not (tmp_path / "sweep" / "records" / f"{left}.json").exists()
    assert len(records) == 2 * 2 + 2 * 2 - 1  # the search and every other seed run, r3f's seed 2 included
    assert [r["seed"] for r in records if r["method"] == "r3f" and r["phase"] == "seeds"] == [2]
    assert any(f"pid {holder.pid} on host" in line and "left to that process" in line for line in lines)
    # That process is gone without finishing: the same command trains the one run left (its stale lock taken over).
    again = Sweep(config, train=claiming_train, log=quiet)
    again.run()
    assert again.trained == [left] and again.left_to_others == []


@pytest.mark.parametrize("other_process", ["finishes it", "is gone"])
def test_a_search_trial_another_process_trains_is_come_back_to(tiny, tmp_path, other_process):
    """The seeds need every search score: a trial held elsewhere waits while this process searches the other
    methods, then is read from the record that process wrote, or trained here once that process is gone."""
    config = sweep_config(tiny, tmp_path / "sweep")
    reference = Sweep(sweep_config(tiny, tmp_path / "reference"), train=fake_train, log=quiet)
    expected = reference.run()
    (held,) = [r for r in expected if r["method"] == "standard" and r["phase"] == "search" and r["trial"] == 0]
    attempts: list[str] = []

    def standard_first_trial_held(run_config):
        attempts.append(Path(run_config.output_dir).name)
        if len(attempts) == 1:
            if other_process == "finishes it":  # it writes the record while this process searches r3f
                shutil.copy(tmp_path / "reference" / "records" / f"{held['run_id']}.json", tmp_path / "sweep" / "records")
            raise rundir.RunInUse("in use", "pid 99 on host h, since then", tmp_path / "no-lock", elsewhere=False)
        return fake_train(run_config)

    lines: list[str] = []
    sweep = Sweep(config, train=standard_first_trial_held, log=lines.append, wait_s=0)
    records = sweep.run()
    assert sorted(r["run_id"] for r in records) == sorted(r["run_id"] for r in expected)  # the same sweep
    r3f_search = [r["run_id"] for r in expected if r["method"] == "r3f" and r["phase"] == "search"]
    assert sweep.trained[:2] == r3f_search  # r3f's search went on while standard's trial was held
    assert sum("pid 99 on host h, since then is training it: the seeds need its score" in line for line in lines) == 1
    assert not any("waiting for the search trials" in line for line in lines)  # there was other work
    if other_process == "finishes it":
        assert held["run_id"] not in sweep.trained and len(attempts) == 1 + 2 + 1 + 2  # no 2nd try of the held trial
    else:
        assert sweep.trained[2] == held["run_id"] and len(attempts) == 1 + 2 + 2 + 2
    assert sweep.left_to_others == []


def test_with_only_held_search_trials_left_the_sweep_waits_for_their_locks(tiny, tmp_path):
    config = sweep_config(tiny, tmp_path / "sweep", methods=["standard"], seeds=[1])
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    lock = tmp_path / "lock"
    lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "then"}))
    attempts: list[float] = []

    def first_trial_held_for_two_seconds(run_config):
        attempts.append(holder.poll())
        if len(attempts) == 1:
            raise rundir.RunInUse("in use", f"pid {holder.pid}", lock, elsewhere=False)
        return fake_train(run_config)

    lines: list[str] = []
    try:
        sweep = Sweep(config, train=first_trial_held_for_two_seconds, log=lines.append, wait_s=0.1)
        sweep.run()
    finally:
        holder.kill()
        holder.wait()
    assert sum("waiting for the search trials other processes are training (standard)" in line for line in lines) == 1
    assert attempts[0] is None and attempts[1] == 0  # the second try came once the holder had exited
    assert len(sweep.trained) == 3  # its process gone without a record, the trial was trained here


def test_while_a_search_trial_is_held_seed_runs_of_searched_methods_go_on(tiny, tmp_path):
    """Rather than wait for the other process's trial, train the seeds whose best setting is known, one per look."""
    config = sweep_config(tiny, tmp_path / "sweep", seeds=[1, 2])
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    lock = tmp_path / "lock"
    lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "then"}))
    order: list[tuple[str, str]] = []

    def r3f_first_trial_held(run_config):
        phase = "search" if run_config.seed == 0 else "seeds"
        if run_config.method == "r3f" and phase == "search" and not order.count(("r3f", "search")) and holder.poll() is None:
            raise rundir.RunInUse("in use", f"pid {holder.pid}", lock, elsewhere=False)
        order.append((run_config.method, phase))
        return fake_train(run_config)

    lines: list[str] = []
    try:
        sweep = Sweep(config, train=r3f_first_trial_held, log=lines.append, wait_s=0.1)
        records = sweep.run()
    finally:
        holder.kill()
        holder.wait()
    # Standard's search, then its two seeds while r3f's trial was held, then (the holder gone) r3f's search and seeds.
    assert order == [("standard", "search")] * 2 + [("standard", "seeds")] * 2 + [("r3f", "search")] * 2 + [("r3f", "seeds")] * 2
    assert sum("waiting for the search trials other processes are training (r3f)" in line for line in lines) == 1
    assert len(records) == 8 and len({r["run_id"] for r in records}) == 8  # each once, the early seeds included


@pytest.mark.parametrize("when", ["found at the start", "refused as finished by the claim"])
def test_a_run_finished_without_its_record_is_not_trained_again(tiny, tmp_path, monkeypatch, when):
    """A process stopped between a run's end and its record (or another process about to write it): the record
    is made from the run's metrics.json."""
    from rxf.experiments import sweep as sweep_module
    from rxf.train import run_training

    config = sweep_config(tiny, tmp_path / "sweep", methods=["standard"], learning_rates=[1e-3], seeds=[1])

    def stopped_before_the_record(run_config):
        run_training(run_config)
        raise Interrupted("killed")

    with pytest.raises(Interrupted):
        Sweep(config, train=stopped_before_the_record, log=quiet).run()
    (run_dir,) = (tmp_path / "sweep" / "runs").iterdir()
    assert rundir.is_finished(run_dir) and not list((tmp_path / "sweep" / "records").glob("*.json"))
    if when == "refused as finished by the claim":  # it finished between this process's look and its claim
        looks = iter([False])
        monkeypatch.setattr(sweep_module, "is_finished", lambda path: next(looks, True))
    lines: list[str] = []
    again = Sweep(config, log=lines.append)
    (record,) = again.run()
    assert again.trained == [] and record["run_id"] == run_dir.name
    assert record["objective"] == record["metrics"]["best"]["eval_accuracy"]
    assert any("finished before; its record is made from" in line for line in lines)
    assert not run_dir.exists()  # and its folder goes, as after a run trained here


def test_a_half_written_record_is_not_taken_for_a_finished_run(tiny, tmp_path):
    config = sweep_config(tiny, tmp_path / "sweep", methods=["standard"], trials=1, seeds=[])
    done = Sweep(config, train=fake_train, log=quiet)
    done.run()
    (run_id,) = done.trained
    record = tmp_path / "sweep" / "records" / f"{run_id}.json"
    record.rename(record.with_name(f"{record.name}.1234.tmp"))  # what a kill mid-write leaves
    again = Sweep(config, train=fake_train, log=quiet)
    again.run()
    assert again.trained == [run_id]


def test_search_spaces_name_real_options_of_registered_methods():
    for method, space in SEARCH_SPACES.items():
        assert method in METHODS, f"SEARCH_SPACES names {method!r}, which is not a registered method"
        check_space(method, space)
    assert set(SEARCH_SPACES["r3f"]) == {"learning_rate", "lambda_", "noise_type"}
    assert SEARCH_SPACES["r3f"]["lambda_"] == [0.1, 0.5, 1.0, 5.0]  # the paper's Table 6


def test_every_registered_method_has_a_space(tiny, tmp_path):
    config = sweep_config(tiny, tmp_path, methods=sorted(METHODS))
    for method in METHODS:
        assert "learning_rate" in config.space(method)


@pytest.mark.parametrize(
    "values,words",
    [
        ({"method": ["r3f"]}, ["unknown", "'method'", "methods"]),
        ({"methods": ["r3ff"]}, ["r3ff", "r3f"]),
        ({"trials": 0}, ["trials", ">= 1"]),
        ({"seeds": [1, 1]}, ["seeds", "repeat"]),
        ({"sampler": "grd"}, ["sampler", "grid"]),
        ({"overrides": {"seed": 3}}, ["overrides", "seed"]),
        ({"overrides": {"learning_rat": 3}}, ["learning_rat", "learning_rate"]),
        ({"overrides": {"max_steps": 1.5}}, ["max_steps", "whole number"]),
        ({"search_spaces": {"r3f": {"lamda_": [1.0]}}}, ["lamda_", "lambda_"]),
        ({"search_spaces": {"r3f": {"lambda_": [-1.0]}}}, ["lambda_", ">= 0"]),
        ({"search_spaces": {"r3f": {"lambda_": []}}}, ["lambda_", "non-empty"]),
        ({"search_spaces": {"smart": {"lambda_": [1.0]}}}, ["smart", "not in methods"]),
        ({"recipes": ["no/such/recipe.yaml"]}, ["no/such/recipe.yaml", "does not exist"]),
        ({"recipes": []}, ["no recipes"]),
    ],
)
def test_bad_sweep_configs_are_named(tiny, tmp_path, values, words):
    with pytest.raises(RxfError) as error:
        sweep_config(tiny, tmp_path, **values)
    for word in words:
        assert word in str(error.value)


def test_majority_class_baseline_agrees_with_sklearn(tiny, tmp_path):
    root = tiny_rte_dir(tmp_path / "glue", n_dev=12)
    dev = root / "RTE" / "dev.tsv"
    lines = dev.read_text().splitlines()
    lines = [lines[0]] + [line.rsplit("\t", 1)[0] + ("\tentailment" if i < 9 else "\tnot_entailment") for i, line in enumerate(lines[1:])]
    dev.write_text("\n".join(lines) + "\n")
    recipe = write_recipe(tmp_path / "rte.yaml", tiny["model"], root)
    config = sweep_config(tiny, tmp_path / "out", recipes=[str(recipe)], methods=["standard"], trials=1, seeds=[])
    (record,) = Sweep(config, train=fake_train, log=quiet).run()
    labels = np.array([0] * 9 + [1] * 3)  # entailment is id 0
    assert record["majority_baseline"]["accuracy"] == pytest.approx(accuracy_score(labels, np.zeros(12)))


GLUE_DEV = {"rte": ("RTE", 277), "mrpc": ("MRPC", 408), "cola": ("CoLA", 1043), "stsb": ("STS-B", 1500)}


def dev_labels(folder: str) -> list[str]:
    """The dev labels read straight from the TSV, independently of rxf.tasks."""
    with open(GLUE_DIR / folder / "dev.tsv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if folder == "CoLA":
        return [row[1] for row in rows]
    column = {"RTE": "label", "MRPC": "Quality", "STS-B": "score"}[folder]
    return [row[rows[0].index(column)] for row in rows[1:]]


@needs_glue
def test_runs_on_the_glue_tsvs_evaluate_the_whole_dev_sets(tiny, tmp_path):
    # A vocabulary of the GLUE texts: with the toy one, nearly every token is [UNK] and rxf refuses the tokenizer.
    model = tiny_bert_dir(tmp_path / "model", frequent_words([GLUE_DIR / folder for folder, _ in GLUE_DEV.values()]))
    recipes = [str(write_recipe(tmp_path / f"{key}.yaml", model, GLUE_DIR, task=f"glue/{key}",
                                max_steps=1, eval_steps=1, max_train_samples=16)) for key in GLUE_DEV]
    config = sweep_config(tiny, tmp_path / "out", recipes=recipes, methods=["standard"], trials=1, seeds=[],
                          learning_rates=[1e-3, 2e-3])  # two settings, so that there is a search trial to run
    records = {r["task"]: r for r in Sweep(config, log=quiet).run()}
    for key, (folder, size) in GLUE_DEV.items():
        record = records[f"glue/{key}"]
        labels = dev_labels(folder)
        assert len(labels) == size
        assert record["metrics"]["num_eval_examples"] == {"validation": size}
        baseline = record["majority_baseline"]
        if key == "stsb":
            assert baseline["pearson"] == 0.0  # a constant has no correlation
        elif key == "cola":
            assert baseline["mcc"] == 0.0
        else:
            assert baseline["accuracy"] == pytest.approx(max(Counter(labels).values()) / size)
    assert records["glue/mrpc"]["majority_baseline"]["accuracy"] == pytest.approx(279 / 408)


def test_sweep_file_reads_exponents_without_a_dot_as_numbers(tiny, tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(f"recipes: [{tiny['recipe']}]\nmethods: [standard]\nlearning_rates: [3e-5, 1e-4]\n")
    assert SweepConfig.from_yaml(path).space("standard") == {"learning_rate": [3e-5, 1e-4]}


def test_sweep_json_lists_the_methods_of_every_process_sharing_the_directory(tiny, tmp_path):
    import json

    for methods in (["standard"], ["r3f"], ["standard"]):
        Sweep(sweep_config(tiny, tmp_path / "sweep", methods=methods, trials=1, seeds=[]), train=fake_train, log=quiet).run()
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["methods"] == ["standard", "r3f"]


def test_sweep_json_keeps_the_rows_of_every_sweep_file_sharing_the_directory(tiny, tmp_path):
    """A second sweep file adding rows (cpu-nodrop-rte.yaml beside cpu.yaml) must not erase the first's spaces."""
    import json

    first = sweep_config(tiny, tmp_path / "sweep", methods=["r3f"], trials=1, seeds=[], learning_rates=[],
                         search_spaces={"r3f": {"lambda_": [0.5, 1.0]}}, search_overrides={"max_train_samples": 8})
    second = sweep_config(tiny, tmp_path / "sweep", methods=["quiet-r3f"], trials=1, seeds=[], learning_rates=[],
                          variants={"quiet-r3f": {"method": "r3f", "options": {"sigma": 0.0}}},
                          search_spaces={"quiet-r3f": {"lambda_": [2.0]}})
    for config in (first, second):
        Sweep(config, train=fake_train, log=quiet).run()
    description = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert description["methods"] == ["r3f", "quiet-r3f"]
    assert description["search_spaces"] == {"r3f": {"lambda_": [0.5, 1.0]}, "quiet-r3f": {"lambda_": [2.0]}}
    assert description["variants"] == {"quiet-r3f": {"method": "r3f", "options": {"sigma": 0.0}}}
    assert description["search_overrides"] == {"max_train_samples": 8}


def test_a_single_setting_is_not_searched(tiny, tmp_path):
    config = sweep_config(tiny, tmp_path / "out", methods=["standard"], learning_rates=[1e-3], seeds=[1])
    records = Sweep(config, log=quiet).run()
    assert [(r["phase"], r["params"]) for r in records] == [("seeds", {"learning_rate": 1e-3})]


def test_search_overrides_apply_to_the_search_runs_only(tiny, tmp_path):
    held_out = tiny_rte_dir(tmp_path / "held-out", n_train=24, n_dev=8, seed=1)
    config = sweep_config(tiny, tmp_path / "out", methods=["standard"], trials=1, seeds=[1],
                          search_overrides={"data_dir": str(held_out)})
    records = Sweep(config, log=quiet).run()
    by_phase = {r["phase"]: r["metrics"] for r in records}
    assert by_phase["search"]["config"]["data_dir"] == str(held_out)
    assert by_phase["search"]["num_eval_examples"] == {"validation": 8}
    assert by_phase["seeds"]["config"]["data_dir"] == str(tiny["data"])
    assert by_phase["seeds"]["num_eval_examples"] == {"validation": 12}


def test_a_variant_is_a_row_of_its_own_with_its_overrides_and_options(tiny, tmp_path):
    variants = {"r3f-nodrop": {"method": "r3f", "overrides": {"dropout": 0.0}, "options": {"sigma": 0.1}}}
    config = sweep_config(tiny, tmp_path / "out", methods=["r3f", "r3f-nodrop"], variants=variants,
                          learning_rates=[1e-3], search_spaces={"r3f": {"lambda_": [1.0]}, "r3f-nodrop": {"lambda_": [1.0]}})
    records = {r["method"]: r for r in Sweep(config, log=quiet).run()}
    plain, variant = records["r3f"], records["r3f-nodrop"]
    assert variant["base_method"] == "r3f" and variant["run_id"].startswith("glue-rte-r3f-nodrop-seeds-")
    assert variant["metrics"]["config"]["dropout"] == 0.0 and variant["metrics"]["method_config"]["sigma"] == 0.1
    assert plain["metrics"]["config"]["dropout"] is None and plain["metrics"]["method_config"]["sigma"] == 1e-5
    assert plain["run_id"] != variant["run_id"]


@pytest.mark.parametrize(
    "variants,message",
    [
        ({"r3f": {"method": "r3f"}}, "cannot take the name of a method"),
        ({"x": {"overrides": {}}}, "must be a mapping with a 'method'"),
        ({"x": {"method": "r5f"}}, "variants.x.method"),
        ({"x": {"method": "r3f", "options": {"sigmaa": 1.0}}}, "sigmaa"),
        ({"x": {"method": "r3f", "overrides": {"seed": 3}}}, "cannot set 'seed'"),
    ],
)
def test_bad_variants_are_named(tiny, tmp_path, variants, message):
    with pytest.raises(RxfError, match=message):
        sweep_config(tiny, tmp_path / "out", methods=["standard", *variants], variants=variants)


def test_no_learning_rates_means_each_recipes_own(tiny, tmp_path):
    config = sweep_config(tiny, tmp_path / "out", methods=["standard", "rdrop"], learning_rates=[],
                          search_spaces={"rdrop": {"alpha": [0.5, 1.0]}})
    assert config.space("standard") == {} and config.space("rdrop") == {"alpha": [0.5, 1.0]}
    records = Sweep(dataclasses.replace(config, trials=1), log=quiet).run()
    assert {r["metrics"]["config"]["learning_rate"] for r in records} == {1e-3}  # write_recipe's
    assert [r["phase"] for r in records if r["method"] == "standard"] == ["seeds"]


# ---- fuzz audit s14: resume over damaged files, output_dir, log labels ----------------------------


@pytest.mark.parametrize("phase", ["search", "seeds"])
@pytest.mark.parametrize(
    "damage,words",
    [
        (lambda r: {k: v for k, v in r.items() if k != "objective"}, ["'objective'", "missing"]),
        (lambda r: {**r, "objective": "high"}, ["'objective'", "'high'"]),
        (lambda r: {**r, "params": None}, ["'params'", "mapping"]),
        (lambda r: {**r, "seed": None}, ["'seed'", "whole number"]),
        (lambda r: [1, 2], ["must be a mapping", "[1, 2]"]),
    ],
)
def test_a_damaged_record_stops_the_resumed_sweep_with_its_file_named(tiny, tmp_path, phase, damage, words):
    """A record the sweep would take for a finished run (B6): one RxfError naming it, also from inside the search."""
    config = sweep_config(tiny, tmp_path / "sweep", methods=["standard"], trials=1, seeds=[1])
    first = Sweep(config, train=fake_train, log=quiet)
    first.run()
    (path,) = [p for p in (tmp_path / "sweep" / "records").glob("*.json") if json.loads(p.read_text())["phase"] == phase]
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    with pytest.raises(RxfError) as error:
        Sweep(config, train=fake_train, log=quiet).run()
    for word in [path.name, "delete it to redo that run", *words]:
        assert word in str(error.value)


def test_an_error_in_a_search_trial_reaches_the_caller_without_optunas_log(tiny, tmp_path):
    """The search stops at a failed trial and raises its error after optuna, which would log it (B5: "Trial 0
    failed ... because of the following error", a traceback, "Trial 0 failed with value None") before rxf's line."""
    import logging

    calls = []

    def bad_data(config):
        calls.append(config)
        raise RxfError("train_file x.csv: line 3: bad row")

    class Logged(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.records: list[logging.LogRecord] = []

        def emit(self, record):
            self.records.append(record)

    logged = Logged()
    logging.getLogger("optuna").addHandler(logged)  # optuna's logger does not propagate: caplog cannot see it
    try:
        config = sweep_config(tiny, tmp_path / "sweep", methods=["standard"], trials=2, seeds=[1])
        with pytest.raises(RxfError, match="line 3: bad row"):
            Sweep(config, train=bad_data, log=quiet).run()
    finally:
        logging.getLogger("optuna").removeHandler(logged)
    assert [r.getMessage() for r in logged.records] == []
    assert len(calls) == 1  # the second trial never started


def test_an_output_dir_that_is_a_file_is_named(tiny, tmp_path):
    (tmp_path / "afile").write_text("x\n")
    with pytest.raises(RxfError, match="is a file, not a folder"):
        Sweep(sweep_config(tiny, tmp_path / "afile"), train=fake_train, log=quiet).run()
    with pytest.raises(RxfError, match="output_dir .*afile/sub cannot be created: .*afile is a file, not a folder"):
        Sweep(sweep_config(tiny, tmp_path / "afile" / "sub"), train=fake_train, log=quiet).run()
    assert (tmp_path / "afile").read_text() == "x\n"


@pytest.mark.parametrize("text", ["[1, 2]", '{"recipes": 5, "methods": ["standard"]}', '"sweep"'])
def test_a_sweep_json_of_another_shape_is_rewritten_as_damaged(tiny, tmp_path, text):
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text(text)
    config = sweep_config(tiny, tmp_path / "sweep", methods=["r3f"], trials=1, seeds=[])
    Sweep(config, train=fake_train, log=quiet).run()
    description = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert description["methods"][-1] == "r3f" and description["recipes"] == config.recipes


def test_the_log_names_a_recipe_of_files_by_its_train_file(tiny, tmp_path):
    rows = ["text,label"] + [f"the cat sat {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}" for i in range(40)]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    recipe = tmp_path / "files.yaml"
    recipe.write_text(json.dumps({"model": str(tiny["model"]), "train_file": str(tmp_path / "reviews.csv"), "max_steps": 2}))
    lines: list[str] = []
    config = sweep_config(tiny, tmp_path / "sweep", recipes=[str(recipe)], methods=["standard"], trials=1, seeds=[1])
    Sweep(config, train=lambda c: {**fake_train(c), "task": "csv"}, log=lines.append).run()
    runs = [line for line in lines if "seed=" in line]
    assert runs and all(line.startswith("[reviews.csv standard ") for line in runs), runs


def test_a_recipe_whose_model_directory_is_missing_is_named_before_anything_runs(tiny, tmp_path):
    recipe = write_recipe(tmp_path / "rte.yaml", tmp_path / "no-such-model", tiny["data"])
    with pytest.raises(RxfError) as error:
        sweep_config(tiny, tmp_path / "sweep", recipes=[str(recipe)])
    assert str(recipe) in str(error.value) and "no-such-model does not exist" in str(error.value)
    (tmp_path / "empty-model").mkdir()
    recipe = write_recipe(tmp_path / "rte.yaml", tmp_path / "empty-model", tiny["data"])
    with pytest.raises(RxfError, match="has no config.json"):
        sweep_config(tiny, tmp_path / "sweep", recipes=[str(recipe)])
