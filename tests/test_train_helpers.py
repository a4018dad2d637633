"""rxf.train helpers: atomic JSON writes shared by concurrent processes, the subset seed."""

import json
import multiprocessing

from rxf.train import write_json_atomic


def _write_many(path, value):
    payload = {"writer": value, "padding": list(range(20_000))}  # a slow write widens the race
    for _ in range(100):
        write_json_atomic(path, payload)


def test_two_processes_writing_one_file_do_not_break_each_other(tmp_path):
    # Two sweeps sharing an output directory both write sweep.json; with one shared temporary name
    # one process renamed the other's file away and crashed (FileNotFoundError).
    path = tmp_path / "sweep.json"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(path, value)) for value in (1, 2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert [writer.exitcode for writer in writers] == [0, 0]
    assert json.loads(path.read_text())["writer"] in (1, 2)
    assert list(tmp_path.iterdir()) == [path]


def test_training_subsets_are_the_same_for_every_seed_unless_asked():
    from rxf.train import TrainConfig

    assert TrainConfig(seed=1).subset_seed == TrainConfig(seed=2).subset_seed == 0
    assert TrainConfig(seed=1, data_seed=None).subset_seed == 1
    assert TrainConfig(seed=1, data_seed=5).subset_seed == 5
