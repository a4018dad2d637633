"""YAML configs: one reader and one dataclass mixin for every recipe's config.

YAML 1.1 (PyYAML) reads ``3e-5`` (no dot) as a string; :func:`load_yaml` reads every float
literal as a float, so a learning rate written the usual way works in files and in ``--set``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

from rxf.errors import RxfError, closest


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Safe YAML (no object construction) with float literals read as floats."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file that must hold a mapping; RxfError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise RxfError(f"config file {path} does not exist")
    try:
        values = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise RxfError(f"config file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise RxfError(f"config file {path} must be a mapping of keys to values")
    return values


class YamlConfig:
    """Mixin for config dataclasses: ``from_dict`` (unknown keys named, with the closest), ``from_yaml``, ``to_dict``.

    Subclasses implement ``validate()``.
    """

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config"):
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        for key in values:
            if key not in names:
                raise RxfError(f"unknown {source} key {key!r}{closest(key, names)}")
        config = cls(**values)
        config.validate()
        return config

    @classmethod
    def from_yaml(cls, path: str | Path):
        return cls.from_dict(read_yaml_mapping(path), source=f"key in {path}:")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def validate(self) -> None:
        raise NotImplementedError
