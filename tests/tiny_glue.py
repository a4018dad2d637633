"""A tiny BERT saved to disk with a WordPiece tokenizer, and tiny GLUE-format data, for sweep/report tests.

``tiny_bert_dir(path)`` writes a 1-layer BERT (a bare encoder: any classification head is new at
load time, for any number of labels) and a tokenizer built from a small vocab file;
``tiny_rte_dir(path)`` writes RTE-format train/dev TSVs whose label follows a word, so a few
steps can learn something.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

WORDS = "the a cat dog sat on mat good bad movie is not very big small red blue runs walks sees".split()


def tiny_bert_dir(path: Path, words: list[str] = WORDS, seed: int = 0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(path / "vocab.txt"))  # transformers 5 ignores vocab_file=
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64,
        # BERT's 0.02 leaves this 16-wide model on a long plateau (a 3-class cue task stuck at 2/3 for
        # hundreds of steps); 0.1 learns in tens. It is saved, so the heads made at load use it too.
        initializer_range=0.1,
    )
    with torch.random.fork_rng():  # the same weights whatever ran before, without touching the caller's RNG
        torch.manual_seed(seed)
        BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def frequent_words(folders: list[Path], n: int = 3000) -> list[str]:
    """The ``n`` most frequent lower-case words of the TSVs in ``folders``: a vocabulary for real GLUE text,
    which WORDS would turn into [UNK]s almost entirely (a degenerate tokenizer, refused by rxf train)."""
    counts = Counter(
        word for folder in folders for tsv in sorted(Path(folder).glob("*.tsv"))
        for word in re.findall(r"[a-z]+", tsv.read_text(encoding="utf-8", errors="replace").lower())
    )
    return [word for word, _ in counts.most_common(n) if word not in WORDS] + WORDS


def _sentence(rng: random.Random, n: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def tiny_rte_dir(root: Path, n_train: int = 32, n_dev: int = 12, seed: int = 0) -> Path:
    """<root>/RTE/{train,dev}.tsv in the official RTE layout; the label is 'entailment' iff 'good' is in sentence 2."""
    rng = random.Random(seed)
    folder = root / "RTE"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        rows = ["index\tsentence1\tsentence2\tlabel"]
        for i in range(n):
            second = _sentence(rng) + (" good" if i % 2 else " bad")
            rows.append(f"{i}\t{_sentence(rng)}\t{second}\t{'entailment' if i % 2 else 'not_entailment'}")
        (folder / name).write_text("\n".join(rows) + "\n")
    return root


def write_recipe(path: Path, model_dir: Path, data_dir: Path, **fields) -> Path:
    """A TrainConfig YAML (JSON is YAML) for glue/rte on the tiny model, 2 steps, one evaluation."""
    values = {
        "model": str(model_dir), "task": "glue/rte", "data_dir": str(data_dir), "max_steps": 2, "batch_size": 8,
        "eval_steps": 2, "max_length": 32, "learning_rate": 1e-3, **fields,
    }
    path.write_text(json.dumps(values))
    return path


def fake_record(task: str, method: str, seed: int, scores: list[float], baseline: float, *, phase: str = "seeds",
                metric: str = "accuracy", extra: dict[str, list[float]] | None = None) -> dict:
    """A run record as `rxf sweep` writes it, with one evaluation per score (for report tests)."""
    history = []
    for i, score in enumerate(scores):
        entry = {"step": 10 * (i + 1), "wall_time_s": float(i + 1), f"eval_{metric}": score}
        for name, values in (extra or {}).items():
            entry[f"eval_{name}"] = values[i]
        history.append(entry)
    best = max(history, key=lambda h: h[f"eval_{metric}"])
    baselines = {metric: baseline, **{name: baseline for name in (extra or {})}}
    return {
        "run_id": f"{task.replace('/', '-')}-{method}-{phase}-{seed}", "task": task, "method": method, "phase": phase,
        "trial": None, "seed": seed, "params": {}, "main_metric": metric, "objective": best[f"eval_{metric}"],
        "majority_baseline": baselines, "wall_time_s": 1.0,
        "metrics": {"main_metric": metric, "history": history, "best": best, "best_step": best["step"]},
    }


def write_records(folder: Path, records: list[dict]) -> Path:
    (folder / "records").mkdir(parents=True, exist_ok=True)
    for record in records:
        (folder / "records" / f"{record['run_id']}.json").write_text(json.dumps(record))
    return folder
