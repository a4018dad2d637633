"""What every verb does with its options: typed flags, and ``--set key=value`` overrides.

Each verb builds its config mapping the same way: the YAML file (``--config``), then its flags,
then ``--set`` items. A dotted ``--set`` key reaches into nested settings
(``--set method_options.sigma=1e-4``, ``--set train.data_seed=0``); values are YAML scalars
read by :func:`rxf.config.load_yaml` (so ``3e-5`` is a number, ``null`` is None).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import yaml

from rxf.errors import RxfError

# The method options that have their own flag in `rxf train` and `rxf summarize`: flag -> (option, type).
METHOD_FLAGS: dict[str, tuple[str, type]] = {
    "--lambda": ("lambda_", float),
    "--sigma": ("sigma", float),
    "--noise-type": ("noise_type", str),
    "--gradient-mode": ("gradient_mode", str),
}


def typed(flag: str, kind: type, text: str) -> Any:
    """``kind(text)``, or an RxfError naming the flag."""
    try:
        return kind(text)
    except ValueError:
        raise RxfError(f"{flag} expects a {kind.__name__}, got {text!r}") from None


def yaml_value(text: str) -> Any:
    """A ``--set`` value: a YAML scalar or list (1e-5, true, null, [1, 2]); otherwise the text itself."""
    from rxf.config import load_yaml

    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def assign(values: dict[str, Any], dotted: str, value: Any) -> None:
    """``values["a"]["b"] = value`` for ``"a.b"``, creating the nested mappings."""
    *parents, last = dotted.split(".")
    target = values
    for part in parents:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise RxfError(f"--set {dotted}: {part!r} is not a group of settings")
        target = child
    target[last] = value


def apply_set(values: dict[str, Any], items: list[str] | None) -> dict[str, Any]:
    """Apply ``--set key=value`` items, in order, to the config mapping ``values``."""
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise RxfError(f"--set expects key=value, got {item!r}")
        assign(values, key, yaml_value(text))
    return values


def apply_flags(
    values: dict[str, Any], args: argparse.Namespace, flags: dict[str, tuple[str, type]], *, into: str | None = None
) -> dict[str, Any]:
    """Copy the flags that were given into ``values`` (or ``values[into]``), typed.

    ``flags`` maps a flag to (dotted config key, type); the argparse destination is the key with
    dots as double underscores.
    """
    for flag, (key, kind) in flags.items():
        given = getattr(args, key.replace(".", "__"))
        if given is not None:
            assign(values, f"{into}.{key}" if into else key, typed(flag, kind, given))
    return values


def config_values(
    config_class: Any,
    args: argparse.Namespace,
    flags: dict[str, tuple[str, type]],
    method_flags: dict[str, tuple[str, type]],
    switches: dict[str, tuple[str, Any]] | None = None,
) -> dict[str, Any]:
    """The config mapping of a training verb: ``--config``, the flags, then ``--set``, in that order.

    ``method_flags`` land in ``method_options``; ``switches`` maps a store_true destination to the
    (field, value) it sets. A ``--method`` other than the config's drops the config's options of its
    method (``lambda_``, ``sigma``, ...) but keeps the ones every method shares (``label_smoothing``),
    so that one config serves every arm of a comparison.
    """
    from rxf.methods.base import MethodConfig

    values: dict[str, Any] = config_class.from_yaml(args.config).to_dict() if args.config else {}
    values.setdefault("method_options", {})
    if args.method is not None and args.method != values.get("method"):
        shared = {field.name for field in dataclasses.fields(MethodConfig)}
        values["method_options"] = {k: v for k, v in values["method_options"].items() if k in shared}
    apply_flags(values, args, flags)
    apply_flags(values, args, method_flags, into="method_options")
    for destination, (field, value) in (switches or {}).items():
        if getattr(args, destination):
            values[field] = value
    apply_set(values, args.set)
    return values
