"""Vocabulary pruning: a copy of a model that keeps only the tokens some texts use (exact for those texts)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rxf.errors import RxfError
from rxf.models.local import resolve_model

def prune_vocabulary(model: str, texts: Iterable[str], output_dir: str | Path) -> Path:
    """A copy of a unigram-tokenizer model that keeps only the tokens ``texts`` use; return its directory.

    Why: multilingual models carry a 250k-token embedding (96M of multilingual-e5-small's 118M
    parameters) that dominates optimizer time and memory on a CPU, while one experiment's texts
    use a few tens of thousands of tokens. For those texts the pruned model is exact: a unigram
    tokenizer picks the best segmentation among the pieces it has, and the pieces of every
    text's best segmentation are kept, so the token sequences are the same (renumbered) and so
    are the model's outputs. This is checked on every text before the model is written.
    """
    import json

    from tokenizers import Tokenizer
    from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerFast

    texts = list(texts)
    location = resolve_model(model)
    tokenizer = AutoTokenizer.from_pretrained(location)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "Unigram":
        raise RxfError(f"prune_vocabulary needs a unigram (SentencePiece) tokenizer; {model!r} has {spec['model']['type']}")
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    keep = sorted({*tokenizer.all_special_ids, spec["model"]["unk_id"], *(i for ids in encoded for i in ids)})
    new_id = {old: new for new, old in enumerate(keep)}

    spec["model"]["vocab"] = [spec["model"]["vocab"][old] for old in keep]
    spec["model"]["unk_id"] = new_id[spec["model"]["unk_id"]]
    for added in spec.get("added_tokens") or []:
        added["id"] = new_id[added["id"]]
    for special in ((spec.get("post_processor") or {}).get("special_tokens") or {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    specials = {
        key: value for key, value in tokenizer.special_tokens_map.items() if key != "additional_special_tokens"
    }
    pruned_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)), model_max_length=tokenizer.model_max_length, **specials
    )
    renumbered = [[new_id[i] for i in ids] for ids in encoded]
    if pruned_tokenizer(texts, add_special_tokens=False)["input_ids"] != renumbered:
        raise RxfError(f"pruning the vocabulary of {model!r} changed how some texts tokenize: use the full model")

    network = AutoModel.from_pretrained(location, use_safetensors=True)
    embedding = network.get_input_embeddings()
    pruned = _embedding_rows(embedding, keep, padding_idx=new_id.get(tokenizer.pad_token_id))
    network.set_input_embeddings(pruned)
    network.config.vocab_size = len(keep)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        old = getattr(network.config, name, None)
        if isinstance(old, int):
            setattr(network.config, name, new_id.get(old))
    out = Path(output_dir)
    network.save_pretrained(out)
    pruned_tokenizer.save_pretrained(out)
    return out


def _embedding_rows(embedding, rows: list[int], padding_idx: int | None):
    """A new nn.Embedding holding ``rows`` of ``embedding``, in that order."""
    import torch

    pruned = torch.nn.Embedding(len(rows), embedding.embedding_dim, padding_idx=padding_idx)
    with torch.no_grad():
        pruned.weight.copy_(embedding.weight[torch.tensor(rows)])
    return pruned
