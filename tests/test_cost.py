"""What a step costs: counted passes match each algorithm (units are batch sizes); runs record their peak memory."""

from pathlib import Path

import pytest
import torch

from rxf import method_config
from rxf.cost import count_passes, peak_memory
from tiny_models import tiny_bert


def _counted(name, **options):
    model, batch = tiny_bert(dropout=0.1)
    model.train()
    method = method_config(name, **options).build()
    model = method.prepare_model(model)
    with count_passes(model, batch_size=batch["labels"].size(0)) as counts:
        method.training_step(model, batch, lambda loss: loss.backward())
    return counts


@pytest.mark.parametrize(
    "name,options,expected",
    [
        # name, options, (forward calls, with grad, forward units, backward sweeps, backward units)
        ("standard", {}, (1, 1, 1, 1, 1)),
        ("standard++", {}, (1, 1, 1, 1, 1)),
        ("r3f", {"gradient_mode": "both"}, (1, 1, 2, 1, 2)),  # one call over the doubled batch
        ("r3f", {"gradient_mode": "clean"}, (2, 1, 2, 1, 1)),  # the noised pass without a graph
        ("r4f", {}, (1, 1, 2, 1, 2)),
        # clean + S ascent + final forwards; S inner sweeps (1 graph each) + 1 through the clean and final graphs
        ("smart", {"num_steps": 1}, (3, 3, 3, 2, 3)),
        ("smart", {"num_steps": 2}, (4, 4, 4, 3, 4)),
        ("freelb", {"adv_steps": 2}, (2, 2, 2, 2, 2)),
        ("freelb", {"adv_steps": 3}, (3, 3, 3, 3, 3)),
        ("rdrop", {}, (1, 1, 2, 1, 2)),
        ("neftune", {}, (1, 1, 1, 1, 1)),
    ],
)
def test_counted_passes_match_the_algorithm(name, options, expected):
    counts = _counted(name, **options)
    got = (counts.forward_calls, counts.forward_calls_with_grad, counts.forward_units, counts.backward_sweeps, counts.backward_units)
    assert got == expected, counts.summary()


def test_two_graphs_in_one_backward_are_one_sweep_of_two_units():
    """The reference-style R3F loop: two forwards of size B, one loss, one backward."""
    model, batch = tiny_bert()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with count_passes(model) as counts:
        (model(**inputs).logits.sum() + model(**inputs).logits.sum()).backward()
    assert (counts.forward_calls, counts.forward_units, counts.backward_sweeps, counts.backward_units) == (2, 2, 1, 2)


def test_autograd_grad_sweeps_count_and_no_grad_forwards_do_not_record():
    model, batch = tiny_bert()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with count_passes(model, batch_size=2) as counts:
        with torch.no_grad():
            model(**inputs)
        logits = model(**inputs).logits
        torch.autograd.grad(logits.sum(), model.classifier.weight)
    assert counts.forward_calls == 2 and counts.forward_calls_with_grad == 1
    assert counts.forward_units == 4  # 2 × 4 rows in units of the given batch size 2
    assert counts.backward_sweeps == 1


def test_counting_stops_with_the_context_and_can_target_a_submodule():
    model, batch = tiny_bert()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with count_passes(model, module=model.bert) as counts:
        logits = model(**inputs).logits
        model.bert(inputs_embeds=model.bert.embeddings.word_embeddings(inputs["input_ids"]))
    logits.sum().backward()  # after the context: not counted
    model(**inputs)
    assert counts.forward_calls == 2 and counts.backward_sweeps == 0



def _status_mib(field: str) -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmRSS and VmHWM to compare")
def test_peak_memory_is_the_process_high_water_mark():
    resident = _status_mib("VmRSS")
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, written, so resident
    peak = peak_memory()["peak_rss_mib"]
    assert peak >= resident + 60 and block.sum() > 0
    assert peak == pytest.approx(_status_mib("VmHWM"), abs=1)
