"""Tiny Hugging Face models built from configs, with dropout off, and a batch for each.

Every builder returns ``(model, batch)``; batches have padding (attention_mask 0, labels -100)
so that masking is exercised.
"""

from __future__ import annotations

import torch
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    RobertaConfig,
    RobertaForSequenceClassification,
    T5Config,
    T5ForConditionalGeneration,
)

VOCAB = 64


def _ids(batch: int, length: int, low: int = 3) -> torch.Tensor:
    return torch.randint(low, VOCAB, (batch, length), generator=torch.Generator().manual_seed(batch * 31 + length))


def _padded_mask(batch: int, length: int) -> torch.Tensor:
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, length // 2 :] = 0  # the first row is half padding
    return mask


def classification_batch(num_labels: int = 3, batch: int = 4, length: int = 10, pad_id: int = 0) -> dict:
    mask = _padded_mask(batch, length)
    ids = _ids(batch, length).masked_fill(mask == 0, pad_id)
    labels = torch.arange(batch) % num_labels if num_labels > 1 else torch.linspace(0, 5, batch)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def tiny_bert(num_labels: int = 3, dropout: float = 0.0):
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, num_labels=num_labels,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return BertForSequenceClassification(config), classification_batch(num_labels)


def tiny_roberta(num_labels: int = 3):
    config = RobertaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=num_labels,
        max_position_embeddings=64, pad_token_id=1,
    )
    torch.manual_seed(0)
    return RobertaForSequenceClassification(config), classification_batch(num_labels, pad_id=1)


def tiny_distilbert(num_labels: int = 3):
    config = DistilBertConfig(
        vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=64, dropout=0.0, attention_dropout=0.0,
        seq_classif_dropout=0.0, num_labels=num_labels, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return DistilBertForSequenceClassification(config), classification_batch(num_labels)


def seq2seq_batch(batch: int = 3, src_len: int = 10, tgt_len: int = 6, pad_id: int = 1) -> dict:
    mask = _padded_mask(batch, src_len)
    ids = _ids(batch, src_len).masked_fill(mask == 0, pad_id)
    labels = _ids(batch, tgt_len, low=4)
    labels[0, tgt_len // 2 :] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def tiny_bart(scale_embedding: bool = False):
    config = BartConfig(
        vocab_size=VOCAB, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, decoder_start_token_id=2, scale_embedding=scale_embedding,
    )
    torch.manual_seed(0)
    return BartForConditionalGeneration(config), seq2seq_batch(pad_id=1)


def tiny_t5():
    config = T5Config(
        vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2,
        dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    return T5ForConditionalGeneration(config), seq2seq_batch(pad_id=0)


def tiny_gpt2():
    config = GPT2Config(
        vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    batch = 3
    length = 10
    mask = _padded_mask(batch, length)
    ids = _ids(batch, length).masked_fill(mask == 0, 0)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :3] = -100  # a three-token prompt, masked out of loss and divergence
    return GPT2LMHeadModel(config), {"input_ids": ids, "attention_mask": mask, "labels": labels}


ARCHITECTURES = {
    "bert": tiny_bert,
    "roberta": tiny_roberta,
    "distilbert": tiny_distilbert,
    "bart": tiny_bart,
    "t5": tiny_t5,
    "gpt2": tiny_gpt2,
}


WORDS = "the a movie film was good bad great awful fine plot actor story boring fun dull sad happy long short".split()


def save_tiny_classifier_dir(path, words=WORDS, dropout: float = 0.1) -> str:
    """A tiny BERT with a WordPiece tokenizer over ``words``, saved as a model directory (no head weights)."""
    from pathlib import Path

    from transformers import BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(path / "vocab.txt"), do_lower_case=True)  # v5 ignores vocab_file=
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def write_sentiment_csv(path, rows: int = 64, seed: int = 0) -> str:
    """A CSV of short reviews whose label follows the words in them (learnable in a few steps)."""
    import random

    rng = random.Random(seed)
    positive, negative = ["good", "great", "fine", "fun", "happy"], ["bad", "awful", "boring", "dull", "sad"]
    lines = ["text,label"]
    for i in range(rows):
        label = i % 2
        words = rng.sample(positive if label else negative, 2) + rng.sample(["the", "movie", "film", "plot", "story"], 2)
        rng.shuffle(words)
        lines.append(f"{' '.join(words)},{'pos' if label else 'neg'}")
    from pathlib import Path

    Path(path).write_text("\n".join(lines) + "\n")
    return str(path)
