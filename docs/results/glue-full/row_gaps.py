"""Numbers the glue-full README quotes that `rxf report` does not print (it compares every row to Standard).

1. R3F vs R-Drop (`r3f-sigma0`): the gap between their mean training losses, seed by seed, and
   whether the dev score came out equal — why the two rows agree to every digit on discrete metrics.
2. STS-B's 2×2 (normalised head × KL term): differences of means between non-Standard rows, with
   the two intervals and the verdict of `rxf report` (its mean_difference), which compares rows to Standard only.
3. Noise or dropout (RTE, MRPC): the KL `r3f-nodrop` logs (noise of the matched σ, dropout 0) beside R-Drop's
   (two dropout masks, σ = 0), run for run at the same λ (search) or seed — did the matched σ give dropout's KL?
   And the noise alone: `r3f-nodrop` − `standard-nodrop`, once both rows have their seeds.

    .venv/bin/python docs/results/glue-full/row_gaps.py
"""

import json
import statistics
from pathlib import Path

from rxf.experiments.report import Cell, mean_difference, regularizer_summary

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


def cell(row: str) -> Cell:
    return Cell("glue/stsb", row, "pearson_spearman", [r["objective"] for r in records("stsb", row, "seeds").values()], 0.0)


def loss_gap(a: dict, b: dict) -> str:
    """|difference of two runs' mean training losses|. transformers' training_loss (`train_loss`)
    averages only the steps since the last restart, so where either run was resumed the means of the
    two logged loss curves (which survive restarts) are compared instead."""
    train_loss_gap = f"{abs(a['metrics']['train_loss'] - b['metrics']['train_loss']):.1e}"
    if not (a["metrics"]["resumed_from"] or b["metrics"]["resumed_from"]):
        return train_loss_gap
    curve_a, curve_b = ([e["loss"] for e in r["metrics"]["loss_curve"] if "loss" in e] for r in (a, b))
    return (f"{abs(statistics.fmean(curve_a) - statistics.fmean(curve_b)):.1e}"
            f" (resumed: logged loss curves; train_loss would say {train_loss_gap})")


print("R3F vs R-Drop: |mean training loss gap| (equal dev score?)")
for task in ("cola", "rte", "mrpc", "stsb"):
    for phase in ("search", "seeds"):
        r3f, rdrop = records(task, "r3f", phase), records(task, "r3f-sigma0", phase)
        cells = [
            f"{key}: {loss_gap(r3f[key], rdrop[key])} ({'=' if r3f[key]['objective'] == rdrop[key]['objective'] else '≠'})"
            for key in sorted(set(r3f) & set(rdrop))
        ]
        if cells:
            print(f"  {task} {phase} ({'λ' if phase == 'search' else 'seed'}): " + ", ".join(cells))

print("\nSTS-B, (P+S)/2 ×100, difference of means [95 % bootstrap] [95 % Welch t], Welch p (uncorrected; those\n"
      "against standard are also in the report's comparison.md, which adjusts them for the number of rows)")
for a, b in (("sn-head", "standard"), ("r4f", "sn-head"), ("r4f", "r3f"), ("r3f", "standard"), ("r4f", "standard")):
    mine, theirs = cell(a), cell(b)
    d = mean_difference(mine, theirs)
    if d["welch_ci_low"] is not None:
        print(f"  {a} − {b}: {100 * d['diff_mean']:+.2f} [{100 * d['diff_ci_low']:+.2f}, {100 * d['diff_ci_high']:+.2f}]"
              f" [{100 * d['welch_ci_low']:+.2f}, {100 * d['welch_ci_high']:+.2f}] p {d['welch_p']:.2g} {d['verdict']}"
              f" ({len(mine.scores)} vs {len(theirs.scores)} seeds)")

# The README's two other views of STS-B's R4F − Standard: Holm over STS-B's own 4 comparisons, and a
# paired t over seeds (the same seed gives each row the same data order and head initialisation).
from scipy.stats import ttest_rel  # noqa: E402

from rxf.experiments.report import holm_adjusted  # noqa: E402

rows = ("r4f", "r3f", "r3f-sigma0", "sn-head")
within = holm_adjusted([mean_difference(cell(row), cell("standard"))["welch_p"] for row in rows])
print(f"  Holm over STS-B's {len(rows)} rows against standard: " + ", ".join(f"{r} {p:.2g}" for r, p in zip(rows, within)))
r4f, standard = records("stsb", "r4f", "seeds"), records("stsb", "standard", "seeds")
seeds = sorted(set(r4f) & set(standard))
paired = ttest_rel([r4f[k]["objective"] for k in seeds], [standard[k]["objective"] for k in seeds]).pvalue
print(f"  r4f − standard, paired t over seeds {seeds}: p {paired:.2g}")

print("\nR-Drop vs R3F at dropout 0: logged r3f_divergence, mean over the run / over the last epoch")
for task in ("mrpc", "rte"):
    for phase in ("search", "seeds"):
        rdrop, nodrop = records(task, "r3f-sigma0", phase), records(task, "r3f-nodrop", phase)
        cells = []
        for key in sorted(set(rdrop) & set(nodrop)):
            a, b = (regularizer_summary(r["metrics"]["loss_curve"])["r3f_divergence"] for r in (rdrop[key], nodrop[key]))
            cells.append(f"{key}: R-Drop {a['run']:.3f} / {a['last_epoch']:.3f}, dropout 0 {b['run']:.3f} / {b['last_epoch']:.3f}")
        if cells:
            print(f"  {task} {phase} ({'λ' if phase == 'search' else 'seed'}): " + "; ".join(cells))

print("\nNoise alone (dropout 0 in both rows): r3f-nodrop − standard-nodrop, ×100 [95 % bootstrap] [95 % Welch t], Welch p")
for task, metric in (("mrpc", "accuracy"), ("mrpc", "f1_accuracy"), ("rte", "accuracy")):
    rows = {row: Cell(f"glue/{task}", row, metric, [r["metrics"]["best"][f"eval_{metric}"] for r in records(task, row, "seeds").values()], 0.0)
            for row in ("r3f-nodrop", "standard-nodrop")}
    if not all(c.scores for c in rows.values()):
        continue  # RTE's dropout-0 rows come last in the sweep
    d = mean_difference(rows["r3f-nodrop"], rows["standard-nodrop"])
    if d["welch_ci_low"] is not None:
        print(f"  {task} {metric}: {100 * d['diff_mean']:+.2f} [{100 * d['diff_ci_low']:+.2f}, {100 * d['diff_ci_high']:+.2f}]"
              f" [{100 * d['welch_ci_low']:+.2f}, {100 * d['welch_ci_high']:+.2f}] p {d['welch_p']:.2g} {d['verdict']}"
              f" ({len(rows['r3f-nodrop'].scores)} vs {len(rows['standard-nodrop'].scores)} seeds)")
