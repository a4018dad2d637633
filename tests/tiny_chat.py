"""A tiny Llama with a word-level tokenizer and a ChatML chat template, and a tiny chat corpus.

The corpus asks for a list's first word; the model is saved to a folder so that ``rxf sft``
loads it the way it loads real ones.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

WORDS = "red green blue cat dog bird one two three sun moon star first word of list what is the".split()
SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
ROLES = ["system", "user", "assistant"]
# ChatML, as SmolLM2 and Qwen use it (prefix-preserving).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} {{ message['content'] }}<|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)


def chat_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIALS + ROLES + WORDS + ["?", ":"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    backend.add_special_tokens(SPECIALS)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", eos_token="<|im_end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_tiny_chat_llama(folder: Path, dropout: float = 0.0) -> Path:
    tokenizer = chat_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True, attention_dropout=dropout,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def conversations(n: int, seed: int = 0) -> list[dict]:
    """Chat records (half ``messages``, half ``prompt``/``completion``): the answer is the list's first word."""
    rng = random.Random(seed)
    content = [w for w in WORDS if w not in ("first", "word", "of", "list", "what", "is", "the")]
    records = []
    for i in range(n):
        items = rng.sample(content, rng.randint(2, 5))
        question = f"what is the first word of {' '.join(items)} ?"
        if i % 2:
            records.append({"prompt": question, "completion": items[0]})
        else:
            records.append({"messages": [
                {"role": "system", "content": "list"},
                {"role": "user", "content": question},
                {"role": "assistant", "content": items[0]},
            ]})
    return records


def write_chat_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path
