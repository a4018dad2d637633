"""Numbers the glue-full README quotes that `rxf report` does not print (it compares every row to Standard).

1. R3F vs R-Drop (`r3f-sigma0`): the gap between their mean training losses, seed by seed, and
   whether the dev score came out equal — why the two rows agree to every digit on discrete metrics.
2. STS-B's 2×2 (normalised head × KL term): differences of means between non-Standard rows, with
   Welch's t interval (95 %), as `rxf report` computes it against Standard.

    python docs/results/glue-full/row_gaps.py
"""

import json
from pathlib import Path

import numpy as np
from scipy import stats

RECORDS = Path(__file__).parent / "cpu" / "records"


def records(task: str, row: str, phase: str) -> dict:
    """{seed, or λ for search runs: record} of one row."""
    out = {}
    for path in RECORDS.glob(f"glue-{task}-{row}-{phase}-*.json"):
        record = json.loads(path.read_text())
        if record["run_id"].startswith(f"glue-{task}-{row}-{phase}-"):  # r3f must not match r3f-sigma0
            key = record["seed"] if phase == "seeds" else record["params"]["lambda_"]
            out[key] = record
    return out


def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    a, b = np.asarray(a), np.asarray(b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    diff = a.mean() - b.mean()
    return diff, diff - half, diff + half


print("R3F vs R-Drop: |mean training loss gap| (equal dev score?)")
for task in ("cola", "rte", "mrpc", "stsb"):
    for phase in ("search", "seeds"):
        r3f, rdrop = records(task, "r3f", phase), records(task, "r3f-sigma0", phase)
        cells = [
            f"{key}: {abs(r3f[key]['metrics']['train_loss'] - rdrop[key]['metrics']['train_loss']):.1e}"
            f" ({'=' if r3f[key]['objective'] == rdrop[key]['objective'] else '≠'})"
            for key in sorted(set(r3f) & set(rdrop))
        ]
        if cells:
            print(f"  {task} {phase} ({'λ' if phase == 'search' else 'seed'}): " + ", ".join(cells))

print("\nSTS-B, (P+S)/2 ×100, difference of means [95 % Welch t]")
scores = {row: [100 * r["objective"] for r in records("stsb", row, "seeds").values()]
          for row in ("standard", "sn-head", "r3f", "r4f")}
for a, b in (("sn-head", "standard"), ("r4f", "sn-head"), ("r4f", "r3f"), ("r3f", "standard"), ("r4f", "standard")):
    if len(scores[a]) >= 2 and len(scores[b]) >= 2:
        diff, low, high = welch(scores[a], scores[b])
        print(f"  {a} − {b}: {diff:+.2f} [{low:+.2f}, {high:+.2f}] ({len(scores[a])} vs {len(scores[b])} seeds)")
