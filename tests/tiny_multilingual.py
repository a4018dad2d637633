"""A tiny multilingual model directory and tiny XNLI-format files, built inside the tests.

The tokenizer is a SentencePiece-style unigram (XLM-R's special tokens and templates) trained with
``tokenizers`` on a few sentences in six scripts; the model is a 2-layer BERT of width 32 built
from a config. Together they load through rxf.models like any local model directory.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

# A few words per language, in six scripts: premises and hypotheses are drawn from them.
WORDS = {
    "en": ["the", "cat", "sat", "on", "mat", "dog", "house", "red", "runs", "home"],
    "de": ["die", "Katze", "saß", "auf", "der", "Matte", "Hund", "Haus", "rot", "läuft"],
    "ru": ["кошка", "сидела", "на", "коврике", "собака", "дом", "красный", "бежит", "дома", "мама"],
    "zh": ["猫", "坐在", "垫子", "上", "狗", "房子", "红色", "跑", "家", "妈妈"],
    "ar": ["جلست", "القطة", "على", "الحصيرة", "كلب", "بيت", "أحمر", "يجري", "المنزل", "أمي"],
    "hi": ["बिल्ली", "चटाई", "पर", "बैठी", "कुत्ता", "घर", "लाल", "दौड़ता", "माँ", "है"],
}
LABELS = ("entailment", "neutral", "contradiction")
XLMR_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def sentence(rng: random.Random, lang: str, length: int) -> str:
    words = WORDS[lang]
    text = " ".join(rng.choice(words) for _ in range(length))
    return text.replace(" ", "") if lang == "zh" else text


def xnli_rows(lang: str, num_groups: int, seed: int) -> list[tuple[str, str, str]]:
    """``num_groups`` premise groups of 3 rows (one per label), XTREME's layout."""
    rng = random.Random(seed)
    rows = []
    for _ in range(num_groups):
        premise = sentence(rng, lang, rng.randint(4, 9))
        labels = list(LABELS)
        rng.shuffle(labels)
        rows += [(premise, sentence(rng, lang, rng.randint(2, 5)), label) for label in labels]
    return rows


def write_tsv(path: Path, rows: list[tuple[str, ...]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows(rows)
    return path


def write_xnli_dir(root: Path, languages: list[str], dev_groups: int = 8, test_groups: int = 6) -> Path:
    """dev/dev-<lang>.tsv and test_labeled_derived/test-<lang>.tsv; the same seed per row index in every language."""
    for lang in languages:
        write_tsv(root / "dev" / f"dev-{lang}.tsv", xnli_rows(lang, dev_groups, seed=1))
        write_tsv(root / "test_labeled_derived" / f"test-{lang}.tsv", xnli_rows(lang, test_groups, seed=2))
    return root


def tiny_multilingual_model_dir(path: Path, dropout: float = 0.0) -> Path:
    """A 2-layer BERT with a unigram tokenizer over six scripts, saved as a transformers directory."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    lines = [" ".join(words) for words in WORDS.values()] * 3
    tokenizer.train_from_iterator(lines, trainers.UnigramTrainer(vocab_size=200, special_tokens=XLMR_SPECIALS, unk_token="<unk>"))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", model_max_length=128,
    )
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, pad_token_id=1,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path
