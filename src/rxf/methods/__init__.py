"""Fine-tuning methods: one config dataclass and one loss per method, found by name in a registry.

>>> from rxf.methods import method_config
>>> method_config("r3f", lambda_=0.5).build()  # doctest: +ELLIPSIS
<rxf.methods.r3f.R3F object at ...>
"""

from rxf.methods.base import (
    METHODS,
    TASK_TYPES,
    LossOutput,
    Method,
    MethodConfig,
    build_method,
    infer_task_type,
    method_config,
    register,
    task_loss,
)
from rxf.methods.freelb import FreeLB, FreeLBConfig
from rxf.methods.neftune import NEFTune, NEFTuneConfig
from rxf.methods.perturb import embedding_delta
from rxf.methods.r3f import R3F, R4F, R3FConfig, R4FConfig
from rxf.methods.rdrop import RDrop, RDropConfig
from rxf.methods.recipe import StandardPlusPlus, StandardPlusPlusConfig, recipe_defaults
from rxf.methods.smart import Smart, SmartConfig
from rxf.methods.standard import Standard, StandardConfig

__all__ = [
    "METHODS",
    "TASK_TYPES",
    "FreeLB",
    "FreeLBConfig",
    "LossOutput",
    "Method",
    "MethodConfig",
    "NEFTune",
    "NEFTuneConfig",
    "R3F",
    "R3FConfig",
    "R4F",
    "R4FConfig",
    "RDrop",
    "RDropConfig",
    "Smart",
    "SmartConfig",
    "Standard",
    "StandardConfig",
    "StandardPlusPlus",
    "StandardPlusPlusConfig",
    "build_method",
    "embedding_delta",
    "infer_task_type",
    "method_config",
    "recipe_defaults",
    "register",
    "task_loss",
]
