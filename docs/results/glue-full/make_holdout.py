"""Split each GLUE training set into a training part and a held-out part, in GLUE's own TSV format.

    python docs/results/glue-full/make_holdout.py --glue ../shared/data/glue --out runs/glue-holdout

The recipe (learning rate) of Standard and each method's λ are chosen on the held-out part of the
*training* set, never on the dev set that the final runs report. ``<out>/<TASK>/train.tsv`` holds
90 % of the training rows and ``<out>/<TASK>/dev.tsv`` the other 10 % (seeded, the same split on
every machine), with the original header, so ``--data-dir <out>`` reads it like any GLUE copy.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

# Folder -> whether train.tsv has a header line (CoLA's has none).
TASKS = {"RTE": True, "MRPC": True, "STS-B": True, "CoLA": False}


def split(source: Path, target: Path, has_header: bool, fraction: float, seed: int) -> tuple[int, int]:
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    header, rows = (lines[:1], lines[1:]) if has_header else ([], lines)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[: round(len(rows) * fraction)])
    target.mkdir(parents=True, exist_ok=True)
    (target / "train.tsv").write_text("".join(header + [r for i, r in enumerate(rows) if i not in held]), encoding="utf-8")
    (target / "dev.tsv").write_text("".join(header + [r for i, r in enumerate(rows) if i in held]), encoding="utf-8")
    return len(rows) - len(held), len(held)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glue", default="../shared/data/glue")
    parser.add_argument("--out", default="runs/glue-holdout")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for folder, has_header in TASKS.items():
        kept, held = split(Path(args.glue) / folder / "train.tsv", Path(args.out) / folder, has_header, args.fraction, args.seed)
        print(f"{folder}: {kept} training rows, {held} held out -> {Path(args.out) / folder}")


if __name__ == "__main__":
    main()
