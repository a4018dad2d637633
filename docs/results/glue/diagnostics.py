"""Diagnostics of the small GLUE sweep that the report does not show, from its run records.

1. How much of each run's training loss is the method's regulariser: λ·divergence / task loss,
   per task and method the median over seeds of each run's mean share over its logged steps
   (every 10 updates). A share near 0 means the method trained almost like plain fine-tuning.
2. Whether runs were still improving: how many seed runs had their best dev score at their last
   evaluation, and the dev loss at that last evaluation (median and range over seeds).

    python docs/results/glue/diagnostics.py docs/results/glue/cpu-small > docs/results/glue/diagnostics.md
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

LOGGED = {"r3f": "r3f_divergence", "r4f": "r3f_divergence", "smart": "smart_divergence"}


def main(runs: str) -> None:
    records = [json.loads(p.read_text()) for p in sorted(Path(runs, "records").glob("*-seeds-*.json"))]
    shares, last_best, last_loss = defaultdict(list), defaultdict(list), defaultdict(list)
    for record in records:
        metrics, key = record["metrics"], (record["task"], record["method"])
        evaluations = [e for e in metrics["history"] if "eval_loss" in e]
        last_best[key].append(metrics["best_step"] == evaluations[-1]["step"])
        last_loss[key].append(evaluations[-1]["eval_loss"])
        logged = LOGGED.get(record["method"])
        if logged is not None:
            weight = metrics["method_config"]["lambda_"]
            steps = [e for e in metrics["loss_curve"] if logged in e and e["task_loss"] > 0]
            shares[key].append(statistics.mean(weight * e[logged] / e["task_loss"] for e in steps))

    print("## Regulariser share of the training loss\n")
    print("| task | method | λ·divergence / task loss, median over seeds | largest run |")
    print("|---|---|---:|---:|")
    for (task, method), values in sorted(shares.items()):
        print(f"| {task} | {method} | {100 * statistics.median(values):.2f} % | {100 * max(values):.2f} % |")

    print("\n## Still improving at the end?\n")
    print("| task | method | best dev score at the last evaluation | last dev loss, median (min–max) |")
    print("|---|---|---:|---|")
    for (task, method), flags in sorted(last_best.items()):
        losses = last_loss[task, method]
        print(f"| {task} | {method} | {sum(flags)}/{len(flags)} | "
              f"{statistics.median(losses):.2f} ({min(losses):.2f}–{max(losses):.2f}) |")
    outside_cola = [flag for (task, _), flags in last_best.items() if task != "glue/cola" for flag in flags]
    print(f"\nOutside CoLA (where every run predicts the majority class): {sum(outside_cola)} of "
          f"{len(outside_cola)} runs have their best dev score at their last evaluation.")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/results/glue/cpu-small")
