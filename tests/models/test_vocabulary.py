"""rxf.models.vocabulary: pruning a model to the tokens some texts use, exact for those texts."""

import pytest
import torch
from tiny_multilingual import tiny_multilingual_model_dir

from rxf.errors import RxfError
from rxf.models.vocabulary import prune_vocabulary


def test_pruned_vocabulary_gives_identical_outputs(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    full_dir = tiny_multilingual_model_dir(tmp_path / "full")
    texts = ["die Katze saß auf der Matte", "кошка сидела дома", "猫坐在垫子上"]
    pruned_dir = prune_vocabulary(str(full_dir), texts, tmp_path / "pruned")
    full, pruned = AutoModel.from_pretrained(full_dir).eval(), AutoModel.from_pretrained(pruned_dir).eval()
    full_tok, pruned_tok = AutoTokenizer.from_pretrained(full_dir), AutoTokenizer.from_pretrained(pruned_dir)
    assert pruned.config.vocab_size < full.config.vocab_size == len(full_tok)
    assert pruned.config.vocab_size == len(pruned_tok)
    assert pruned_tok.convert_ids_to_tokens(pruned_tok(texts[1])["input_ids"]) == full_tok.convert_ids_to_tokens(
        full_tok(texts[1])["input_ids"]
    )
    a = full_tok(texts[:2], texts[1:], padding=True, return_tensors="pt")
    b = pruned_tok(texts[:2], texts[1:], padding=True, return_tensors="pt")
    assert pruned_tok.pad_token_id == pruned.config.pad_token_id
    with torch.no_grad():
        torch.testing.assert_close(pruned(**b).last_hidden_state, full(**a).last_hidden_state)


def test_pruning_needs_a_unigram_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "cat": 4}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(tmp_path)
    BertModel(BertConfig(vocab_size=5, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=8)).save_pretrained(tmp_path)
    with pytest.raises(RxfError, match="needs a unigram"):
        prune_vocabulary(str(tmp_path), ["cat"], tmp_path / "pruned")
