"""`rxf methods`: the registered methods and their options."""

from __future__ import annotations

import argparse
import dataclasses


def cmd_methods(args: argparse.Namespace) -> int:
    from rxf.methods import METHODS

    for name, config_class in sorted(METHODS.items()):
        options = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(config_class))
        doc = (config_class.__doc__ or "").strip().splitlines()[0]
        print(f"{name}: {doc}\n    {options}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("methods", help="list the methods and their options").set_defaults(handler=cmd_methods)
