"""Does a torch.compile'd model run rxf's embedding hooks? The measurement behind rxf's refusal.

Run by hand (not a test), from the repository root (~2 min on one CPU thread, mostly compilation)::

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/compile_hooks.py --out docs/results/benchmarks/compile-hooks-cpu.md

rxf adds R3F's noise with forward hooks (``rxf.noise``), and refuses a compiled model
(``rxf.noise.refuse_compiled``). Three cases, on a tiny random BERT classifier, dropout 0, train mode:

1. **Hook added after a compiled call without it**: does the compiled model's loss change when a forward
   hook that adds noise to the word embeddings is added after the first compiled call?
2. **R3F on a compiled model whose first compiled call has rxf's hooks** (the refusal switched off for
   the measurement): R3F's divergence per step, compiled against eager, same noise seed; how many
   graphs Dynamo built.
3. **Noise on ``inputs_embeds`` outside the compiled model** (a pre-hook on the compiled wrapper that
   replaces ``input_ids`` by noised embeddings): compiled loss against eager.
4. **SMART, FreeLB and NEFTune on a compiled model** (refusal switched off): does their perturbation
   reach the model in one training step?

Cases 1–3 pass and case 4 fails on torch 2.13: whether a compiled model runs hooks depends on more
than the torch version, which is why rxf refuses compiled models for every method that hooks the
embeddings.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

import rxf.noise
from rxf import RxfError, method_config


def tiny_classifier() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    model = BertForSequenceClassification(config).train()
    generator = torch.Generator().manual_seed(1)
    batch = {
        "input_ids": torch.randint(1, 100, (4, 12), generator=generator),
        "attention_mask": torch.ones(4, 12, dtype=torch.long),
        "labels": torch.tensor([0, 1, 2, 1]),
    }
    return model, batch


def perturbation_reaches(name: str, options: dict) -> str:
    """One training step of ``name`` on a compiled tiny classifier: what happened to the perturbation."""
    model, batch = tiny_classifier()
    method = method_config(name, **options).build()
    try:
        out = method.training_step(torch.compile(model), batch, backward=lambda loss: loss.backward())
    except RxfError as error:
        if "perturbation was not applied" in str(error):
            return "not applied (rxf's check stopped the step)"
        raise
    return f"applied (regulariser {out.regularizer.item():.3g})"


def r3f_divergences(model: torch.nn.Module, batch: dict[str, torch.Tensor], steps: int) -> list[float]:
    method = method_config("r3f", sigma=0.5).build()
    method.noise_seed = 3
    return [method.compute_loss(model, batch).regularizer.item() for _ in range(steps)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from torch._dynamo.utils import counters

    lines = [
        f"Output of `benchmarks/compile_hooks.py --steps {args.steps}` (torch {torch.__version__}, "
        f"{platform.machine()}, `skip_nnmodule_hook_guards` = {torch._dynamo.config.skip_nnmodule_hook_guards}).",
        "",
    ]

    # 1. A hook added after a compiled call that had none.
    model, batch = tiny_classifier()
    compiled = torch.compile(model)
    before = compiled(**batch).loss.item()
    noise = torch.randn(4, 12, 32, generator=torch.Generator().manual_seed(2))
    handle = model.get_input_embeddings().register_forward_hook(lambda module, inputs, output: output + noise)
    after = compiled(**batch).loss.item()
    eager = model(**batch).loss.item()
    handle.remove()
    lines.append(
        f"1. Hook added after a compiled call without it: compiled loss {before:.7f} before, {after:.7f} after "
        f"(eager with the hook: {eager:.7f}) — the hook {'runs' if after != before else 'does not run'}."
    )

    # 2. R3F on a compiled model, hooks on from its first compiled call.
    model, batch = tiny_classifier()
    reference = r3f_divergences(model, batch, args.steps)
    model, batch = tiny_classifier()
    refuse = rxf.noise.refuse_compiled
    rxf.noise.refuse_compiled = lambda model: None  # the measurement only; rxf refuses this
    try:
        counters.clear()
        compiled_values = r3f_divergences(torch.compile(model), batch, args.steps)
    finally:
        rxf.noise.refuse_compiled = refuse
    stats = dict(counters["stats"])
    largest = max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(compiled_values, reference))
    lines.append(
        f"2. R3F on a compiled model, hooks on from its first compiled call, {args.steps} steps: largest relative "
        f"difference to eager {largest:.1e} (eager divergences {reference[0]:.8f} … {reference[-1]:.8f}); "
        f"graphs built {stats.get('unique_graphs')}, frames compiled {stats.get('calls_captured')}."
    )

    # 3. Noise on inputs_embeds, added by a pre-hook on the compiled wrapper (outside the graph).
    model, batch = tiny_classifier()
    embedding = model.get_input_embeddings()
    compiled = torch.compile(model)
    given = {key: value for key, value in batch.items() if key != "input_ids"}
    eager = model(**given, inputs_embeds=embedding(batch["input_ids"]) + noise).loss.item()

    def noised_embeddings(module, call_args, kwargs):
        kwargs = dict(kwargs)
        kwargs["inputs_embeds"] = embedding(kwargs.pop("input_ids")) + noise
        return call_args, kwargs

    compiled.register_forward_pre_hook(noised_embeddings, with_kwargs=True)
    outside = compiled(**batch).loss.item()
    lines.append(
        f"3. Noise on inputs_embeds outside the compiled model: compiled loss {outside:.7f}, eager {eager:.7f}."
    )
    # 4. The other methods that hook the embeddings.
    rxf.noise.refuse_compiled = lambda model: None
    try:
        for name, options in (("smart", {"epsilon": 1e-2}), ("freelb", {"adv_steps": 2}), ("neftune", {})):
            lines.append(f"4. {name} on a compiled model: the perturbation was {perturbation_reaches(name, options)}.")
    finally:
        rxf.noise.refuse_compiled = refuse
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
