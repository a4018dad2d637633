"""Settings: reading YAML, merging the places settings come from, and checking them once.

A verb assembles its config from up to three places, in order: the YAML file (``--config``), its
flags, then ``--set key=value``. The mapping it builds is a :class:`Settings`, which remembers
where each key came from. The config dataclass is built from it once, after every source is
merged, and checked then:

* :func:`check_fields`: every field against its declared type (the dataclass annotations), with
  numbers finite (NaN and ±inf never pass);
* the config's ``validate()``: ranges and choices, with ``rxf.methods.base.check_number`` and
  ``check_choice``.

An error names the setting, its value and where it came from, in one line::

    learning_rate: -1 (from run.yaml) must be a number >= 0
    batch_size: 8.0 (from --set) must be a whole number

The checks also describe themselves: :func:`requirements` runs a validation and collects what each
check asks of its setting, so that ``--help`` and ``rxf methods`` show the ranges and choices the
code enforces, with the defaults of the dataclass fields and the comments above them
(:func:`field_help`) — one source of truth.

Records that rxf writes and reads back (a sweep's run records, a run's metrics.json, a probe's
result.json) are checked field by field when read; every problem is one :func:`field_error`::

    run record records/x.json: 'seed' must be a whole number (it is 'one'): delete it to redo that run

YAML 1.1 (PyYAML) reads ``3e-5`` (no dot) as a string; :func:`load_yaml` reads every float
literal as a float, so a learning rate written the usual way works in files and in ``--set``.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import dataclasses
import inspect
import io
import math
import numbers
import re
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
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


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file that must hold a mapping; RxfError naming the file (and the line) otherwise."""
    from rxf.io import read_text

    text = read_text(path, what)  # missing, unreadable, not a regular file, not UTF-8: one line
    try:
        values = load_yaml(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise RxfError(f"{what} {path}{line}: not valid YAML: {problem}") from None
    if not isinstance(values, dict):
        raise RxfError(f"{what} {path} must be a mapping of keys to values, got {type(values).__name__}")
    return values


# ---- merging: a mapping that remembers where each key came from -------------------------------


def assign(values: dict[str, Any], dotted: str, value: Any, source: str | None = None) -> None:
    """``values["a"]["b"] = value`` for ``"a.b"``, creating the nested mappings; a Settings records ``source``."""
    *parents, last = dotted.split(".")
    target = values
    for part in parents:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise RxfError(f"{source or 'setting'} {dotted}: {part!r} is not a group of settings")
        target = child
    target[last] = value
    if isinstance(values, Settings):
        values.note_source(dotted, source)


class Settings(dict):
    """A config mapping assembled from several places; ``sources`` maps a dotted key to where it came from.

    >>> settings = Settings({"learning_rate": -1, "method_options": {"sigma": 1e-5}}, source="run.yaml")
    >>> settings.set("method_options.lambda_", 2.0, source="--set")
    >>> settings.source_of("method_options.sigma"), settings.source_of("method_options.lambda_")
    ('run.yaml', '--set')
    """

    def __init__(self, values: Mapping[str, Any] | None = None, source: str | None = None):
        super().__init__()
        self.sources: dict[str, str] = {}
        for key, value in (values or {}).items():
            self.set(key, copy.deepcopy(value), source)  # a copy's groups are its own
        if isinstance(values, Settings):
            self.sources.update(values.sources)

    def set(self, dotted: str, value: Any, source: str | None = None) -> None:
        assign(self, dotted, value, source)

    def note_source(self, dotted: str, source: str | None) -> None:
        # The new value replaces the old one and everything under it.
        for key in [k for k in self.sources if k == dotted or k.startswith(dotted + ".")]:
            del self.sources[key]
        if source:
            self.sources[dotted] = source

    def source_of(self, dotted: str) -> str | None:
        """Where ``dotted`` (or the group holding it) came from; None for a default."""
        return _lookup(self.sources, dotted)

    def copy(self) -> Settings:
        return Settings(self)


def _lookup(sources: Mapping[str, str], dotted: str) -> str | None:
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        key = ".".join(parts[:end])
        if key in sources:
            return sources[key]
    return None


# ---- the context of a check: which setting, from where -----------------------------------------


@dataclasses.dataclass(frozen=True)
class _Context:
    sources: Mapping[str, str]
    prefix: str  # dotted path of the group being checked ("method_options" while a method's config is)


_context: ContextVar[_Context] = ContextVar("rxf_settings_context", default=_Context({}, ""))


@contextlib.contextmanager
def settings_from(values: Mapping[str, Any]) -> Iterator[None]:
    """Within: errors name where each setting came from (when ``values`` is a Settings; else as before)."""
    if not isinstance(values, Settings):
        yield
        return
    token = _context.set(_Context(dict(values.sources), ""))
    try:
        yield
    finally:
        _context.reset(token)


@contextlib.contextmanager
def settings_under(group: str) -> Iterator[None]:
    """Within: the settings checked are those of ``group`` (errors say ``group.name``)."""
    current = _context.get()
    token = _context.set(_Context(current.sources, f"{current.prefix}.{group}" if current.prefix else group))
    try:
        yield
    finally:
        _context.reset(token)


def setting_name(name: str) -> str:
    """The full dotted name of setting ``name`` in the group being checked."""
    prefix = _context.get().prefix
    return f"{prefix}.{name}" if prefix else name


def shown(value: Any) -> str:
    """A value as the user wrote it in YAML: null, true, nan, 'text'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def source_of(name: str) -> str | None:
    """Where setting ``name`` (in the group being checked) came from: a file, a flag, "--set"; None if unknown."""
    return _lookup(_context.get().sources, setting_name(name))


def describe_setting(name: str, value: Any) -> str:
    """``name: value (from where)``, the start of every settings error."""
    source = source_of(name)
    return f"{setting_name(name)}: {shown(value)}" + (f" (from {source})" if source else "")


# ---- checks that describe themselves -----------------------------------------------------------

_recorded: ContextVar[dict[str, str] | None] = ContextVar("rxf_requirements", default=None)


def note_requirement(name: str, requirement: str) -> None:
    """Called by every check: while :func:`requirements` runs, remember what setting ``name`` must be."""
    recorded = _recorded.get()
    if recorded is not None:
        recorded.setdefault(setting_name(name), requirement)


def requirements(run_checks: Callable[[], Any]) -> dict[str, str]:
    """What each check run by ``run_checks()`` asks of its setting, by dotted name ("a number >= 0").

    Run it on a config's defaults (``lambda: R3FConfig()``): the help then shows the ranges and
    choices that validation enforces, from the validation code itself. Defaults that cannot pass
    alone (a sweep without recipes) give the checks made before the one that failed.
    """
    token = _recorded.set({})
    context = _context.set(_Context({}, ""))
    try:
        try:
            run_checks()
        except RxfError:
            pass
        return dict(_recorded.get() or {})
    finally:
        _context.reset(context)
        _recorded.reset(token)


# ---- types -------------------------------------------------------------------------------------

_KINDS: dict[Any, tuple[str, str]] = {  # type -> (a value of it, values of it)
    int: ("a whole number", "whole numbers"),
    float: ("a finite number", "finite numbers"),
    str: ("a string", "strings"),
    bool: ("true or false", "true/false values"),
    type(None): ("null", "nulls"),
}


def is_finite_number(value: Any) -> bool:
    """A real number (not a bool; numpy scalars count) that is neither NaN nor ±inf."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def is_whole_number(value: Any) -> bool:
    """An integer (numpy's count) that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def plain_value(value: Any) -> Any:
    """``value`` with numpy scalars made Python's (``np.float32(1e-5)`` → 1e-05, as written rather than widened;
    ``np.int64(2)`` from ``np.arange`` → 2; ``np.bool_``, ``np.str_``), in plain lists, tuples and dicts too
    (keys too), and a dict of another class (``OrderedDict``, ``defaultdict``) made a plain dict: what the
    rest of rxf, YAML (``safe_dump`` refuses those classes) and JSON take. Anything else is returned as it is.
    ValueError when two keys of a dict become one (``np.float32(0.1)`` and ``0.1``), rather than one silently lost."""
    if type(value) in (list, tuple):
        items = [plain_value(item) for item in value]
        return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    if isinstance(value, dict):
        pairs = [(plain_value(key), plain_value(item)) for key, item in value.items()]
        keys = [key for key, _ in pairs]
        if len(set(keys)) < len(keys):  # np.float32(0.1) and 0.1: two keys that become one
            repeated = next(key for key in keys if keys.count(key) > 1)
            raise ValueError(f"two keys are both {repeated!r} once numpy values are made plain")
        unchanged = type(value) is dict and all(
            new_key is key and new_item is item for (new_key, new_item), (key, item) in zip(pairs, value.items())
        )
        return value if unchanged else dict(pairs)
    if type(value).__module__ != "numpy" or getattr(value, "ndim", None) != 0:
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return float(str(value))  # str: the shortest text that reads back as this float32/float64
    return value.item()


def matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` is of the declared type (ints count as floats; floats must be finite)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, option) for option in arguments)
    if origin is typing.Literal:
        return value in arguments
    if annotation is float:
        return is_finite_number(value)
    if annotation is int:
        return is_whole_number(value)
    if annotation is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(matches(item, arguments[0]) for item in value) if arguments else isinstance(value, list)
    if origin is dict:
        if not isinstance(value, dict):
            return False
        key_type, value_type = arguments or (Any, Any)
        return all(matches(k, key_type) and matches(v, value_type) for k, v in value.items())
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True  # an annotation this checker does not know: accepted, as before


def type_text(annotation: Any, plural: bool = False) -> str:
    """The declared type in words: "a whole number or null", "a list of strings"."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if annotation is Any:
        return "values" if plural else "any value"
    if origin in (typing.Union, types.UnionType):
        options = sorted(arguments, key=lambda option: option is type(None))  # null last
        return " or ".join(type_text(option, plural) for option in options)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, arguments))
    if annotation in _KINDS:
        return _KINDS[annotation][plural]
    if origin is list or annotation is list:
        inner = f" of {type_text(arguments[0], plural=True)}" if arguments and arguments[0] is not Any else ""
        return f"lists{inner}" if plural else f"a list{inner}"
    if origin is dict or annotation is dict:
        inner = f" to {type_text(arguments[1], plural=True)}" if len(arguments) == 2 and arguments[1] is not Any else ""
        return f"mappings{inner}" if plural else f"a mapping{inner}"
    return "mappings" if plural else "a mapping"  # a nested config


def field_types(config_class: type) -> dict[str, Any]:
    """The declared type of every field (annotations resolved)."""
    return typing.get_type_hints(config_class)


def check_fields(config: Any) -> None:
    """Every field of the dataclass ``config`` against its declared type; RxfError naming the first that is not.
    Numpy scalars are stored as Python values first (:func:`plain_value`)."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        try:
            plain = plain_value(value)
        except ValueError as error:
            raise RxfError(f"{field.name}: {error}") from None
        if plain is not value:
            setattr(config, field.name, plain)
    declared = field_types(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        expected = declared[field.name]
        if not matches(value, expected):
            hint = ""
            if "string" in type_text(expected) and isinstance(value, (int, float, bool)):
                hint = f" (quote it: {field.name}: '{shown(value)}')"
            raise RxfError(f"{describe_setting(field.name, value)} must be {type_text(expected)}{hint}")


# ---- the fields of records read back -----------------------------------------------------------

#: What a checker passes as the value of a field the record lacks: shown as "missing".
MISSING: Any = object()


def brief(value: Any) -> str:
    """A value for a one-line message: as written when short, else its kind; "missing" for :data:`MISSING`."""
    if value is MISSING:
        return "missing"
    text = shown(value)
    if len(text) <= 40:
        return text
    return {dict: "a mapping", list: "a list", str: "a long string"}.get(type(value), type(value).__name__)


def field_error(what: str, path: str | Path, field: str | None, requirement: str, value: Any, hint: str) -> RxfError:
    """A record's field that is not what rxf needs, in one line: the file, the field, what it must be, what it is,
    and what to do. ``what``: the kind of file ("run record"); ``field``: its dotted name, None for the whole record.

    ``run record x.json: 'seed' must be a whole number (it is 'one'): delete it to redo that run``
    """
    where = f"{what} {path}" if field is None else f"{what} {path}: {field!r}"
    return RxfError(f"{where} must be {requirement} (it is {brief(value)}): {hint}")


# ---- building a config from settings -----------------------------------------------------------


def construct(config_class: type, values: Mapping[str, Any], source: str = "config") -> Any:
    """``config_class(**values)`` after naming any unknown key (with the closest field)."""
    names = [field.name for field in dataclasses.fields(config_class)]
    for key in values:
        if key not in names:
            where = source_of(str(key))
            origin = f" (from {where})" if where else ""
            raise RxfError(f"unknown {source} key {key!r}{origin}{closest(str(key), names)}")
    return config_class(**values)


class YamlConfig:
    """Mixin for config dataclasses: ``from_dict`` (unknown keys named, with the closest), ``from_yaml``, ``to_dict``.

    Subclasses implement ``validate()``, starting with :func:`check_fields`.
    """

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "config"):
        """Build and validate once; a :class:`Settings` makes every error name the value's source."""
        with settings_from(values):
            config = construct(cls, values, source)
            config.validate()
        return config

    @classmethod
    def from_yaml(cls, path: str | Path):
        return cls.from_dict(Settings(read_yaml_mapping(path), source=str(path)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def validate(self) -> None:
        raise NotImplementedError


# ---- help from the dataclasses -----------------------------------------------------------------


def field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def field_help(config_class: type) -> dict[str, str]:
    """Each field's comment in the class source (the ``#`` lines above it, or the one after it)."""
    found: dict[str, str] = {}
    for klass in reversed(config_class.__mro__):  # a subclass's comment wins
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue  # no source (a frozen install): no help text, the rest still works
        comments: dict[int, str] = {}
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = token.string.lstrip("#").strip()
        lines = source.splitlines()
        body = ast.parse(source).body[0]
        for node in getattr(body, "body", []):
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            above = []
            line = node.lineno - 1
            while line >= 1 and line in comments and lines[line - 1].lstrip().startswith("#"):
                above.insert(0, comments[line])
                line -= 1
            # A short one-line comment after a blank line titles a section ("# Optimisation."): not this field's.
            title = len(above) == 1 and len(above[0].split()) <= 7 and (line < 1 or not lines[line - 1].strip())
            text = comments.get(node.lineno) or ("" if title else " ".join(above))
            if text:
                found[node.target.id] = text
    return found
