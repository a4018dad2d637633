"""How large must σ be for R3F's noise alone to give the KL that dropout gives? (issue 16, "noise or dropout")

    python docs/results/glue-full/kl_match.py --task glue/rte --model all-MiniLM-L6-v2 --examples 64
    python docs/results/glue-full/kl_match.py --task glue/rte --model runs/glue-full-recipe/rte-lr5e-5/model \
        --examples 128 --max-length 256 --sigmas 0.01 0.02 0.03 0.04 0.05 0.06 0.07 0.08 0.1 0.3 \
        --out docs/results/glue-full/recipe/kl_match-rte-finetuned.json
    (MRPC: runs/glue-full-recipe/mrpc-lr1e-4/model, --max-length 128, kl_match-mrpc-finetuned.json)

For each model (the pre-trained body with a new head, and one fine-tuned with Standard on the
held-out split's training part), on the first ``--examples`` training examples, with rxf's own
R3F loss (its regulariser is the symmetric KL that training adds, mean over examples):

* **dropout KL**: the model's dropout on (training mode), σ = 0 — the KL between two passes that
  differ only in their dropout masks (what R-Drop, and R3F at the paper's σ, regularise);
* **noise KL(σ)**: dropout off (every rate 0, rxf.dropout), uniform noise U(−σ, σ) on the token
  embeddings — the KL that the noise alone makes.

It prints both and the σ (log-interpolated on the grid) at which the noise KL equals the dropout
KL; the dropout-0 R3F row of configs/glue-full/cpu-nodrop-<task>.yaml uses
that σ, matched on the fine-tuned model (at the start of fine-tuning both KLs are ~1e-4 and the
noise KL is nearly flat in σ, so a match there says little).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

SIGMAS = [1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0]


def batches(task, tokenizer, examples: int, batch_size: int, max_length: int, seed: int):
    from transformers import DataCollatorWithPadding

    from rxf.train import tokenize

    data = task.train.shuffle(seed=seed).select(range(min(examples, len(task.train))))
    encoded = tokenize(data, tokenizer, max_length, task.has_text_pair)
    collate = DataCollatorWithPadding(tokenizer)
    rows = [encoded[i] for i in range(len(encoded))]
    return [collate(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]


@torch.no_grad()
def mean_kl(model, data, sigma: float, seed: int) -> float:
    from rxf.methods import method_config

    method = method_config("r3f", lambda_=1.0, sigma=sigma, noise_type="uniform").build()
    torch.manual_seed(seed)  # the dropout masks (the method seeds its own noise generator)
    values = [method.compute_loss(model, batch).regularizer.item() * len(batch["labels"]) for batch in data]
    return sum(values) / sum(len(batch["labels"]) for batch in data)


def matching_sigma(noise: dict[float, float], target: float) -> float | None:
    """The σ at which the noise KL crosses ``target``, log-linear between the grid points around it."""
    points = sorted(noise.items())
    for (s0, k0), (s1, k1) in zip(points, points[1:]):
        if k0 <= target <= k1 and k0 > 0:
            t = (math.log(target) - math.log(k0)) / (math.log(k1) - math.log(k0))
            return math.exp(math.log(s0) + t * (math.log(s1) - math.log(s0)))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="glue/rte")
    parser.add_argument("--data-dir", default="runs/glue-holdout")
    parser.add_argument("--model", nargs="+", default=["all-MiniLM-L6-v2"])
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigmas", type=float, nargs="+", default=SIGMAS, help="the σ grid of the noise KL")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from transformers import set_seed

    from rxf.dropout import set_dropout
    from rxf.models import load_classifier
    from rxf.tasks import load_task

    task = load_task(args.task, data_dir=args.data_dir)
    results = []
    for name in args.model:
        set_seed(args.seed)  # the new head of a pre-trained body
        model, tokenizer = load_classifier(name, task.num_labels, task.label_names)
        data = batches(task, tokenizer, args.examples, args.batch_size, args.max_length, args.seed)
        model.train()
        dropout_kl = mean_kl(model, data, 0.0, args.seed)
        set_dropout(model, 0.0)
        noise = {sigma: mean_kl(model, data, sigma, args.seed) for sigma in sorted(args.sigmas)}
        match = matching_sigma(noise, dropout_kl)
        results.append({"model": name, "dropout_kl": dropout_kl, "noise_kl": noise, "matching_sigma": match})
        print(f"{name}: dropout KL {dropout_kl:.4g}; noise KL " + ", ".join(f"σ={s:g}: {k:.3g}" for s, k in noise.items()))
        print(f"  σ with the noise KL of dropout: {match if match is None else f'{match:.3g}'}")
    if args.out:
        args.out.write_text(json.dumps({"task": args.task, "data_dir": args.data_dir, "examples": args.examples,
                                        "noise_type": "uniform", "results": results}, indent=2))


if __name__ == "__main__":
    main()
