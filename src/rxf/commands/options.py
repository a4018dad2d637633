"""What every verb does with its options: typed flags, and ``--set key=value`` overrides.

Each verb builds its config mapping the same way: the YAML file (``--config``), then its flags,
then ``--set`` items. A dotted ``--set`` key reaches into nested settings
(``--set method_options.sigma=1e-4``, ``--set train.data_seed=0``); values are YAML scalars
read by :func:`rxf.config.load_yaml` (so ``3e-5`` is a number, ``null`` is None).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import textwrap
from typing import Any, NoReturn

import yaml

from rxf.config import (
    Settings,
    assign,
    field_default,
    field_help,
    field_types,
    load_yaml,
    read_yaml_mapping,
    requirements,
    shown,
    type_text,
)
from rxf.errors import RxfError

# The method options that have their own flag in `rxf train` and `rxf summarize`: flag -> (option, type).
METHOD_FLAGS: dict[str, tuple[str, type]] = {
    "--lambda": ("lambda_", float),
    "--sigma": ("sigma", float),
    "--noise-type": ("noise_type", str),
    "--gradient-mode": ("gradient_mode", str),
}


_KIND_WORDS = {int: "a whole number (int)", float: "a number (float)"}


def typed(flag: str, kind: type, text: str) -> Any:
    """``kind(text)``, or an RxfError naming the flag."""
    try:
        return kind(text)
    except ValueError:
        raise RxfError(f"{flag} expects {_KIND_WORDS.get(kind, kind.__name__)}, got {text!r}") from None


def yaml_value(text: str) -> Any:
    """A ``--set`` value: a YAML scalar or list (1e-5, true, null, [1, 2]); otherwise the text itself."""
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def apply_set(values: dict[str, Any], items: list[str] | None) -> dict[str, Any]:
    """Apply ``--set key=value`` items, in order, to the config mapping ``values`` (a Settings records "--set")."""
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise RxfError(f"--set expects key=value, got {item!r}")
        assign(values, key, yaml_value(text), "--set")
    return values


def apply_flags(
    values: dict[str, Any], args: argparse.Namespace, flags: dict[str, tuple[str, type]], *, into: str | None = None
) -> dict[str, Any]:
    """Copy the flags that were given into ``values`` (or ``values[into]``), typed (a Settings records the flag).

    ``flags`` maps a flag to (dotted config key, type); the argparse destination is the key with
    dots as double underscores.
    """
    for flag, (key, kind) in flags.items():
        given = getattr(args, key.replace(".", "__"))
        if given is not None:
            assign(values, f"{into}.{key}" if into else key, typed(flag, kind, given), flag)
    return values


def file_settings(path: str | None) -> Settings:
    """The settings of a ``--config`` file (none without one), each remembered as coming from it."""
    return Settings(read_yaml_mapping(path), source=path) if path else Settings()


def config_values(
    config_class: Any,
    args: argparse.Namespace,
    flags: dict[str, tuple[str, type]],
    method_flags: dict[str, tuple[str, type]],
    switches: dict[str, tuple[str, Any]] | None = None,
) -> Settings:
    """The settings of a training verb: ``--config``, the flags, then ``--set``, in that order.

    Nothing is checked here: the config is checked once, when it is built from all of them
    (``config_class.from_dict``), and an error then says which of them a bad value came from.
    ``method_flags`` land in ``method_options``; ``switches`` maps a store_true destination to the
    (field, value) it sets. A ``--method`` other than the config's drops the config's options of its
    method (``lambda_``, ``sigma``, ...) but keeps the ones every method shares (``label_smoothing``),
    so that one config serves every arm of a comparison.
    """
    from rxf.methods.base import MethodConfig

    values = file_settings(args.config)
    options = values.get("method_options")
    if not isinstance(options, dict):
        options = {}
    configured_method = values.get("method", config_default(config_class, "method"))
    if args.method is not None and args.method != configured_method and options:
        shared = {field.name for field in dataclasses.fields(MethodConfig)}
        values.set("method_options", {k: v for k, v in options.items() if k in shared}, values.source_of("method_options"))
    apply_flags(values, args, flags)
    apply_flags(values, args, method_flags, into="method_options")
    for destination, (field, value) in (switches or {}).items():
        if getattr(args, destination):
            values.set(field, value, "--" + destination.replace("_", "-"))
    apply_set(values, args.set)
    return values


def config_default(config_class: Any, name: str) -> Any:
    """The default of field ``name`` of a config dataclass."""
    return next(field_default(f) for f in dataclasses.fields(config_class) if f.name == name)


# ---- help: generated from the config dataclasses -----------------------------------------------


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (the usage is in --help), exit status 2.

    Sub-command parsers are made of the same class, so every verb's mistakes look alike.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def format_help(self) -> str:
        if callable(self.epilog):  # made when asked for: it runs the config's checks
            self.epilog = self.epilog()
        return super().format_help()


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and epilogs; an option's help made from its setting when shown."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        make = getattr(action, "make_help", None)
        return make().replace("%", "%%") if make else action.help


def imported(where: str) -> Any:
    """The object named ``"module:name"``, imported now (help imports what it describes only when shown)."""
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)


def config_class_of(where: Any) -> type:
    """A config class, given as itself, as ``"module:Class"`` or as a function returning it (resolved when help is shown)."""
    if isinstance(where, str):
        return imported(where)
    return where if isinstance(where, type) else where()


@functools.cache
def _class_notes(config_class: type) -> tuple[dict[str, str], dict[str, str]]:
    """(comment above each field, what validation requires of each setting) of a config class."""

    def validate_defaults() -> None:
        config = config_class()  # __post_init__ checks run here
        if callable(getattr(config, "validate", None)):
            config.validate()

    return field_help(config_class), requirements(validate_defaults)


def setting_help(
    config_class: type | str, name: str, *, label: str | None = None, hint: str = "", default_at: str | None = None,
) -> str:
    """Help for setting ``name`` of ``config_class``: its comment, its type or range or choices, its default.

    Everything comes from the class: the comment above the field, the checks of ``validate()`` run on
    the defaults (:func:`rxf.config.requirements`), the field's declared type and default — or, for a
    command that uses another default than the class's, the value named by ``default_at`` ("module:NAME").
    """
    config_class = config_class_of(config_class)
    comments, required = _class_notes(config_class)
    field = next((f for f in dataclasses.fields(config_class) if f.name == name), None)
    if field is None:
        return f"sets {label or name}"
    declared = field_types(config_class)[name]
    requirement = required.get(name) or type_text(declared)
    if name in required and "list" in type_text(declared):  # the checks ran on each element
        requirement = f"a list, each {requirement}"
    default = imported(default_at) if default_at else field_default(field)
    comment = " ".join(part for part in (comments.get(name, ""), hint) if part)
    head = name if label is None else label
    facts = f"[{requirement}; default: {shown_default(default)}]"
    return " ".join(part for part in (f"{head}:" if head and comment else head, comment, facts) if part)


def shown_default(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip() if value else ("[]" if isinstance(value, list) else "{}")
    return shown(value)


def add_setting_flags(
    parser: argparse.ArgumentParser,
    flags: dict[str, tuple[str, Any]],
    config_class: type | str,
    *,
    groups: dict[str, type | str] | None = None,
    label_prefix: str = "",
    hint: str = "",
    default_at: str | None = None,
    **argparse_options: Any,
) -> None:
    """One option per flag (flag -> (dotted key, type)), with help generated from the config dataclass.

    ``groups`` names the class of a nested group of settings (``{"train": TrainConfig}``) so that
    ``train.max_steps`` gets TrainConfig's help. The argparse destination is the key with dots as
    double underscores (what :func:`apply_flags` reads). The help is made only when shown
    (:class:`HelpFormatter`): it runs the config's checks on its defaults.
    """
    for flag, (key, kind) in flags.items():
        *group, name = key.split(".")
        owner = (groups or {}).get(".".join(group), config_class) if group else config_class
        action = parser.add_argument(
            flag,
            dest=key.replace(".", "__"),
            metavar=getattr(kind, "__name__", "VALUE").upper(),
            help=f"sets {key}",
            **argparse_options,
        )
        help_from(action, owner, name, label=label_prefix + key, hint=hint, default_at=default_at)


def help_from(
    action: argparse.Action, config_class: Any, name: str, *, label: str | None = None, hint: str = "", default_at: str | None = None,
) -> None:
    """Give an option the help of setting ``name`` of ``config_class``, made when shown (see :func:`setting_help`)."""
    action.help = action.help or f"sets {name}"  # argparse shows only options that have a help text
    action.make_help = functools.partial(  # type: ignore[attr-defined]
        setting_help, config_class, name, label=label, hint=hint, default_at=default_at,
    )


def settings_epilog(
    config_class: type | str, flags: dict[str, tuple[str, Any]], *, prefix: str = "", header: str | None = None
) -> str:
    """The settings that have no flag of their own, one per line, as ``--set`` takes them (or under ``header``)."""
    config_class = config_class_of(config_class)
    with_flags = {key for key, _ in flags.values()}
    lines = [header or f"Other settings (--set {prefix}NAME=VALUE; a --config YAML file takes the same names):"]
    for field in dataclasses.fields(config_class):
        if field.name in with_flags:
            continue
        text = setting_help(config_class, field.name, label=prefix + field.name)
        lines.append(textwrap.fill(text, width=100, initial_indent="  ", subsequent_indent="      "))
    return "\n".join(lines)  # argparse %-formats an epilog only when it holds "%(prog)": not escaped


def default_method_class(config_class: Any) -> type:
    """The config class of the default method of a training config (for the help of --lambda, --sigma, ...)."""
    from rxf.methods.base import METHODS

    return METHODS[config_default(config_class_of(config_class), "method")]
