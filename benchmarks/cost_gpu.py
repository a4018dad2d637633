"""The GPU run of benchmarks/cost.py: step time and peak memory of every method on CUDA, as ratios to Standard.

Run by hand on a machine with a CUDA GPU, from the repository root, as one command::

    pip install -e '.[demo,bench]'
    python benchmarks/cost_gpu.py --out docs/results/benchmarks/cost-gpu.md --json docs/results/benchmarks/cost-gpu.json

The rows, the reference rows (naive R3F, smart-pytorch 0.0.4) and the step (forward(s) +
backward(s) + AdamW step) are those of ``benchmarks/cost.py``. What differs:

* **Model** (``--model``): ``bert-large`` (default) is a BERT-large configuration (24 layers,
  hidden 1024, 335M parameters) with random weights — step cost does not depend on the weights,
  and this needs no download; ``minilm`` is the packaged all-MiniLM-L6-v2 of the CPU run.
* **Precision** (``--dtype``): ``bf16`` (default) runs each step under
  ``torch.autocast("cuda", torch.bfloat16)`` with fp32 weights and optimizer, as Hugging Face
  Trainer's ``bf16=True`` does; ``fp32`` turns autocast off. (Under bf16 the σ = 1e-5 noise of
  R3F rounds away at the first matmul — rxf warns about it; the cost is what is measured here.)
* **Time**: ``torch.cuda.synchronize()`` around every step; interleaved rounds as in cost.py,
  the ratio of the fastest steps and the median of per-round ratios.
* **Time** rows share one model and optimizer (R4F gets its own copy, since spectral norm
  changes the model), as in cost.py.
* **Memory**: per row, in this process, a fresh model and optimizer (the previous row's freed
  and the allocator's cache emptied), two warm-up steps, then the peak of
  ``torch.cuda.max_memory_allocated()`` over two steps (*peak*: weights, Adam moments, gradients,
  activations) and that peak minus the memory allocated just before the step (*step peak*).

With ``--device cpu`` it runs the same code without the CUDA calls (no memory column): a check
of the script, not a measurement — use cost.py on a CPU.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import shlex
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost import ROWS, add_ratios, make_batch, make_step, parse_rows  # noqa: E402  (the CPU benchmark's rows and steps)

MODELS = ("bert-large", "minilm")


def load_model(name: str, device):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    if name == "minilm":
        from cost import load_model as load_minilm

        model = load_minilm()
    else:
        config = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                            num_labels=2)
        model = BertForSequenceClassification(config)
    return model.to(device).train()


def build(rows: list[str], args, device) -> dict:
    """{row: (model, optimizer, timed step)}: one shared model and optimizer (R4F: its own copy, as in cost.py)."""
    import torch

    model = load_model(args.model, device)
    batch = {k: v.to(device) for k, v in make_batch(args.batch_size, args.length, model.config.vocab_size).items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if args.dtype == "bf16" else nullcontext
    built = {}
    for row in rows:
        own, own_optimizer = model, optimizer
        if ROWS[row][0] == "r4f":
            own = copy.deepcopy(model)
            own_optimizer = torch.optim.AdamW(own.parameters(), lr=1e-5)
        step = make_step(row, own, own_optimizer, batch)

        def timed_step(step=step) -> float:
            sync(device)
            start = time.perf_counter()
            with autocast():
                step()
            sync(device)
            return time.perf_counter() - start

        built[row] = (own, own_optimizer, timed_step)
    return built


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_time(rows: list[str], args, device) -> dict[str, dict]:
    from rxf.cost import count_passes

    built = build(rows, args, device)
    results: dict[str, dict] = {row: {"times": [], "round_best": []} for row in rows}
    for row in rows:
        model, _, step = built[row]
        step()
        with count_passes(model, module=model.bert, batch_size=args.batch_size) as counts:
            step()
        results[row]["passes"] = counts.summary()
    for r in range(args.rounds):
        for row in rows[r % len(rows):] + rows[: r % len(rows)]:
            times = [built[row][2]() for _ in range(args.repeats)]
            results[row]["times"] += times
            results[row]["round_best"].append(min(times))
        print(f"  round {r + 1}/{args.rounds}", file=sys.stderr)
    add_ratios(results)
    return results


def measure_memory(rows: list[str], args, device) -> dict[str, dict]:
    import torch

    results = {}
    for row in rows:
        gc.collect()
        torch.cuda.empty_cache()
        model, optimizer, step = build([row], args, device)[row]
        step()
        step()
        peaks, step_peaks = [], []
        for _ in range(2):
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            step()
            peak = torch.cuda.max_memory_allocated(device)
            peaks.append(peak)
            step_peaks.append(peak - before)
        results[row] = {"peak_mib": max(peaks) / 2**20, "step_peak_mib": max(step_peaks) / 2**20}
        print(f"  memory {row}: {results[row]}", file=sys.stderr)
        del model, optimizer, step
    return results


def report(times, memory, args, device, command: str) -> str:
    import torch
    import transformers

    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (script check only)"
    parameters = {"bert-large": "BERT-large configuration, random weights, 335M parameters",
                  "minilm": "the packaged all-MiniLM-L6-v2, 22.7M parameters"}[args.model]
    lines = [
        "# Cost of each method on a GPU, measured",
        "",
        "Generated by `benchmarks/cost_gpu.py` (its docstring says what is measured). Command:",
        "",
        "```",
        command,
        "```",
        "",
        f"Device: {card}; torch {torch.__version__}, transformers {transformers.__version__}. Model: {parameters}; "
        f"{'bf16 autocast, fp32 weights' if args.dtype == 'bf16' else 'fp32'}; train mode (dropout 0.1); batch "
        f"{args.batch_size}, sequence length {args.length}, random full-length batches. {args.rounds} interleaved "
        f"rounds × {args.repeats} steps per row.",
        "",
        "| method | fastest step (ms) | time × Standard | per-round × Standard | peak memory (MiB) | peak × Standard | "
        "step peak (MiB) | step peak × Standard | fwd calls (grad) / units | bwd sweeps / units |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row, t in times.items():
        p = t["passes"]
        if memory:
            m, b = memory[row], memory["standard"]
            mem = (f"{m['peak_mib']:.0f} | **{m['peak_mib'] / b['peak_mib']:.2f}** | {m['step_peak_mib']:.0f} | "
                   f"{m['step_peak_mib'] / b['step_peak_mib']:.2f}")
        else:
            mem = "– | – | – | –"
        lines.append(
            f"| {row} | {t['best_seconds'] * 1000:.1f} | **{t['ratio']:.2f}** | {t['round_ratio']:.2f} | {mem} | "
            f"{p['forward_calls']} ({p['forward_calls_with_grad']}) / {p['forward_units']:g} | "
            f"{p['backward_sweeps']} / {p['backward_units']:g} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", choices=MODELS, default="bert-large")
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", default=",".join(ROWS), help="rows to run (default: all)")
    parser.add_argument("--out", default=None, help="write the markdown report here")
    parser.add_argument("--json", default=None, help="also write the raw results here")
    args = parser.parse_args()

    import torch
    import transformers

    from rxf.noise import NoisePrecisionWarning

    transformers.logging.set_verbosity_error()
    warnings.simplefilter("ignore", NoisePrecisionWarning)  # expected under bf16; see the docstring
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --device cpu to check the script, or benchmarks/cost.py on a CPU")
    rows = parse_rows(parser, args.rows)
    print("time", file=sys.stderr)
    times = measure_time(rows, args, device)
    memory = measure_memory(rows, args, device) if device.type == "cuda" else {}
    command = shlex.join(["python", f"benchmarks/{Path(__file__).name}", *sys.argv[1:]])
    text = report(times, memory, args, device, command)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"time": times, "memory": memory, "args": vars(args)}, indent=1))


if __name__ == "__main__":
    main()
