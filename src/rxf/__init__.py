"""rxf: robust fine-tuning of pre-trained language models (R3F, R4F and their baselines).

Three ways in:

* ``rxf train`` on the command line (see ``rxf train --help``);
* :class:`rxf.RxfTrainer` / :class:`rxf.RxfSeq2SeqTrainer`, Hugging Face Trainers that train with a method;
* :mod:`rxf.functional` for hand-written loops.
"""

from rxf.errors import RxfError
from rxf.methods import (
    METHODS,
    LossOutput,
    Method,
    MethodConfig,
    R3FConfig,
    R4FConfig,
    StandardConfig,
    build_method,
    method_config,
)
from rxf.noise import NoisePrecisionWarning, embedding_noise

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "LossOutput",
    "Method",
    "MethodConfig",
    "NoisePrecisionWarning",
    "R3FConfig",
    "R4FConfig",
    "RxfError",
    "RxfSeq2SeqTrainer",
    "RxfTrainer",
    "StandardConfig",
    "build_method",
    "embedding_noise",
    "method_config",
]


def __getattr__(name: str):
    # The trainers import transformers' Trainer, which is slow to import: load them on first use.
    if name in ("RxfTrainer", "RxfSeq2SeqTrainer", "RxfTrainerMixin"):
        from rxf import trainer

        return getattr(trainer, name)
    if name == "RxfSFTTrainer":  # needs trl (the llm extra)
        from rxf.trl import RxfSFTTrainer

        return RxfSFTTrainer
    raise AttributeError(f"module 'rxf' has no attribute {name!r}")
