"""A tiny BERT saved to disk with a WordPiece tokenizer, and tiny GLUE-format TSV folders, for probing tests."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

POSITIVE = ["good", "great", "fine", "nice"]
NEGATIVE = ["bad", "awful", "poor", "dull"]
FILLER = ["the", "a", "movie", "film", "plot", "is", "was", "very", "and", "it"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]


def write_tiny_bert(directory: Path) -> str:
    """A 2-layer, 16-wide BERT encoder (no head) and its tokenizer, saved to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    # transformers 5 ignores vocab_file= (every word becomes [UNK]); vocab= reads the file.
    tokenizer = BertTokenizerFast(vocab=str(directory / "vocab.txt"))
    config = BertConfig(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, initializer_range=0.5,  # large weights: token-dependent features at init
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def _sentence(rng: random.Random, positive: bool) -> str:
    words = rng.sample(FILLER, 3) + [rng.choice(POSITIVE if positive else NEGATIVE)]
    rng.shuffle(words)
    return " ".join(words)


def _write(path: Path, header: list[str] | None, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def write_tiny_glue(root: Path, train: int = 40, dev: int = 16) -> Path:
    """SST-2, RTE, CoLA and STS-B folders whose labels follow the sentiment words (so probes can learn them)."""
    rng = random.Random(0)
    for split, n in (("train", train), ("dev", dev)):
        labels = [i % 2 for i in range(n)]
        sentences = [_sentence(rng, bool(y)) for y in labels]
        _write(root / "SST-2" / f"{split}.tsv", ["sentence", "label"], [[s, str(y)] for s, y in zip(sentences, labels)])
        _write(root / "CoLA" / f"{split}.tsv", None, [["src", str(y), "", s] for s, y in zip(sentences, labels)])
        _write(
            root / "RTE" / f"{split}.tsv", ["index", "sentence1", "sentence2", "label"],
            [[str(i), s, _sentence(rng, bool(y)), "entailment" if y else "not_entailment"]
             for i, (s, y) in enumerate(zip(sentences, labels))],
        )
        _write(
            root / "STS-B" / f"{split}.tsv",
            ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"],
            [[str(i), "g", "f", "y", "0", "n", "n", s, _sentence(rng, bool(y)), f"{4.0 * y + rng.random():.3f}"]
             for i, (s, y) in enumerate(zip(sentences, labels))],
        )
    return root
