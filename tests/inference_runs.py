"""Short `rxf train` runs on the tiny BERT and real-looking files, for the predict/evaluate tests.

Each writes its data the way users have it (a semicolon CSV from a spreadsheet, a '|'-joined tag
column, a JSONL of scores) and trains a few steps with a learning rate that lets the tiny model
pick up the one word that decides the label.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from rxf.cli import main
from tiny_glue import WORDS, tiny_bert_dir

# The word that decides each class of the reviews.
CUES = {"pos": "good", "neg": "bad", "meh": "small"}
TAGS = {"good": "praise", "bad": "complaint", "red": "colour"}


def _filler(rng: random.Random, n: int = 4) -> str:
    neutral = [w for w in WORDS if w not in CUES.values() and w not in TAGS]
    return " ".join(rng.choice(neutral) for _ in range(n))


def reviews_csv(path: Path, n: int, seed: int = 0) -> Path:
    """'review;rating' rows, a comma inside every review (a spreadsheet's export in a comma-decimal locale)."""
    rng = random.Random(seed)
    rows = ["id;review;rating"]
    for i in range(n):
        rating = list(CUES)[i % 3]
        rows.append(f"{i:04d};{_filler(rng)}, {CUES[rating]} {_filler(rng, 2)};{rating}")
    path.write_text("\n".join(rows) + "\n")
    return path


def tickets_csv(path: Path, n: int, seed: int = 0) -> Path:
    """'text,tags' rows whose tags ('|'-joined, possibly none) follow the words present."""
    rng = random.Random(seed)
    rows = ["text,tags"]
    for i in range(n):
        present = [word for j, word in enumerate(TAGS) if (i >> j) & 1]
        rows.append(f"{_filler(rng)} {' '.join(present)} {_filler(rng, 2)},{'|'.join(TAGS[w] for w in present)}")
    path.write_text("\n".join(rows) + "\n")
    return path


def scores_jsonl(path: Path, n: int, seed: int = 0) -> Path:
    """{"sentence": ..., "score": float}: the score counts the 'good' words."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        k = i % 4
        lines.append(json.dumps({"sentence": f"{_filler(rng)} {' '.join(['good'] * k)}", "score": k * 1.25}))
    path.write_text("\n".join(lines) + "\n")
    return path


def train(root: Path, name: str, *args: str) -> Path:
    """An `rxf train` output directory trained on the tiny BERT with ``args``."""
    model = root / "bert" if (root / "bert").is_dir() else tiny_bert_dir(root / "bert")
    out = root / name
    code = main([
        "train", "--model", str(model), "--batch-size", "8", "--max-length", "24", "--lr", "1e-2",
        "--no-progress", "--output-dir", str(out), "--set", "warmup_ratio=0", *args,
    ])
    assert code == 0
    return out


def classifier_run(root: Path) -> Path:
    """R4F on a 3-class semicolon CSV (sniffed), with a dev file; the saved model is plain transformers."""
    return train(
        root, "reviews", "--train-file", str(reviews_csv(root / "reviews.csv", 90)),
        "--eval-file", str(reviews_csv(root / "reviews-dev.csv", 30, seed=1)),
        "--text-column", "review", "--label-column", "rating", "--method", "r4f", "--max-steps", "120", "--eval-steps", "60",
    )


def multi_label_run(root: Path) -> Path:
    return train(
        root, "tickets", "--train-file", str(tickets_csv(root / "tickets.csv", 96)), "--label-column", "tags",
        "--task-type", "multi_label", "--label-separator", "|", "--method", "r3f", "--max-steps", "24", "--eval-steps", "24",
    )


def regression_run(root: Path) -> Path:
    return train(
        root, "scores", "--train-file", str(scores_jsonl(root / "scores.jsonl", 80)), "--text-column", "sentence",
        "--label-column", "score", "--method", "standard", "--max-steps", "30", "--eval-steps", "30",
    )
