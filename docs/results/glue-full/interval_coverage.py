"""How often the report's 95 % intervals for a difference of means cover the true one, at 5 runs a row.

    OMP_NUM_THREADS=1 nice .venv/bin/python docs/results/glue-full/interval_coverage.py

Two rows of 5 seeds each are drawn from the same distribution (true difference 0), many times; each
interval method is scored by how often it contains 0 (its coverage; 1 − coverage is how often it
would call a method "better" or "worse" by chance) and by its median width. Two seed distributions:
normal, and a left-skewed one (most runs near the mode, 1 in 5 well below it), as seeds of a
fine-tuning run that sometimes goes worse. `rxf report` (rxf.experiments.report.mean_difference)
gives a verdict only when the percentile bootstrap and Welch's t interval both exclude 0.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

RUNS, SIMULATIONS, RESAMPLES = 5, 1000, 2000


def draw(rng: np.random.Generator, kind: str) -> np.ndarray:
    if kind == "normal":
        return rng.normal(0.0, 1.0, RUNS)
    return np.where(rng.random(RUNS) < 0.2, rng.normal(-3.0, 1.0, RUNS), rng.normal(0.0, 0.5, RUNS))


def main() -> None:
    rng = np.random.default_rng(1)
    print("| seeds | method | coverage of nominal 95 % | median width (in seed std units of the normal case) |")
    print("|---|---|---:|---:|")
    for kind in ("normal", "left-skewed"):
        hits = {"percentile bootstrap": 0, "BCa bootstrap": 0, "Welch t": 0, "both (rxf report)": 0}
        widths = {key: [] for key in hits}
        for _ in range(SIMULATIONS):
            a, b = draw(rng, kind), draw(rng, kind)
            found = {}
            for name, method in (("percentile bootstrap", "percentile"), ("BCa bootstrap", "BCa")):
                ci = stats.bootstrap(
                    (a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), n_resamples=RESAMPLES,
                    method=method, vectorized=True, rng=rng,
                ).confidence_interval
                found[name] = (ci.low, ci.high)
            welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
            found["Welch t"] = (welch.low, welch.high)
            (pl, ph), (wl, wh) = found["percentile bootstrap"], found["Welch t"]
            # "both": a verdict needs both intervals to exclude 0, i.e. 0 is inside at least one
            found["both (rxf report)"] = (min(pl, wl), max(ph, wh))
            for name, (low, high) in found.items():
                hits[name] += low <= 0 <= high
                widths[name].append(high - low)
        for name in hits:
            print(f"| {kind} | {name} | {hits[name] / SIMULATIONS:.3f} | {np.median(widths[name]):.2f} |")


if __name__ == "__main__":
    main()
