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
from rxf.methods.r3f import R3F, R4F, R3FConfig, R4FConfig
from rxf.methods.standard import Standard, StandardConfig

__all__ = [
    "METHODS",
    "TASK_TYPES",
    "LossOutput",
    "Method",
    "MethodConfig",
    "R3F",
    "R3FConfig",
    "R4F",
    "R4FConfig",
    "Standard",
    "StandardConfig",
    "build_method",
    "infer_task_type",
    "method_config",
    "register",
    "task_loss",
]
