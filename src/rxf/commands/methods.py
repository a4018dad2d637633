"""`rxf methods`: the registered methods and how to set each of their options.

Every line comes from the method's config dataclass: the option's default, the range or choices
its checks enforce (:func:`rxf.config.requirements`) and the comment above the field.
"""

from __future__ import annotations

import argparse
import dataclasses
import textwrap

from rxf.commands.options import METHOD_FLAGS, setting_help, shown_default


def option_lines(config_class: type, names: list[str]) -> list[str]:
    """``--set method_options.NAME=DEFAULT`` and, below it, what the option is and may be."""
    from rxf.config import field_default

    flags = {option: flag for flag, (option, _) in METHOD_FLAGS.items()}
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    lines = []
    for name in names:
        also = f" (or {flags[name]})" if name in flags else ""
        lines.append(f"  --set method_options.{name}={shown_default(field_default(fields[name]))}{also}")
        about = setting_help(config_class, name, label="")
        lines.append(textwrap.fill(about, width=100, initial_indent="      ", subsequent_indent="      "))
    return lines


def describe_methods() -> str:
    from rxf.methods import METHODS
    from rxf.methods.base import MethodConfig

    shared = [field.name for field in dataclasses.fields(MethodConfig)]
    blocks = []
    for name, config_class in sorted(METHODS.items()):
        doc = (config_class.__doc__ or "").strip().splitlines()[0]
        own = [field.name for field in dataclasses.fields(config_class) if field.name not in shared]
        blocks.append("\n".join([f"{name}: {doc}", *option_lines(config_class, own)]))
    blocks.append("\n".join(["Options of every method:", *option_lines(MethodConfig, shared)]))
    blocks.append("In a YAML config the options go under method_options (e.g. method_options: {lambda_: 0.5}).")
    return "\n\n".join(blocks)


def cmd_methods(args: argparse.Namespace) -> int:
    print(describe_methods())
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    commands.add_parser(
        "methods",
        help="list the methods and their options (with defaults and ranges)",
        description="The registered methods; each option as --set method_options.NAME=VALUE with its default and range.",
    ).set_defaults(handler=cmd_methods)
