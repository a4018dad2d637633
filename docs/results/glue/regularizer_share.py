"""How much of each run's training loss is the method's regulariser: λ·divergence / task loss.

Reads the run records of the small GLUE sweep and prints, per task and method, the median over
seeds of each run's mean share over its logged steps (every 10 updates). A share near 0 means the
regulariser barely changed the gradient, so the method trained almost like plain fine-tuning.

    python docs/results/glue/regularizer_share.py docs/results/glue/cpu-small > docs/results/glue/regularizer_share.md
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

LOGGED = {"r3f": "r3f_divergence", "r4f": "r3f_divergence", "smart": "smart_divergence"}


def main(runs: str) -> None:
    shares = defaultdict(list)
    for path in sorted(Path(runs, "records").glob("*-seeds-*.json")):
        record = json.loads(path.read_text())
        metrics, key = record["metrics"], LOGGED.get(record["method"])
        if key is None:
            continue
        weight = metrics["method_config"]["lambda_"]
        steps = [e for e in metrics["loss_curve"] if key in e and e["task_loss"] > 0]
        shares[record["task"], record["method"]].append(statistics.mean(weight * e[key] / e["task_loss"] for e in steps))
    print("| task | method | λ·divergence / task loss, median over seeds | largest run |")
    print("|---|---|---:|---:|")
    for (task, method), values in sorted(shares.items()):
        print(f"| {task} | {method} | {100 * statistics.median(values):.2f} % | {100 * max(values):.2f} % |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/results/glue/cpu-small")
