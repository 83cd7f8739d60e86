"""Typed settings: the machinery every settings dataclass shares.

A settings class is a frozen dataclass whose fields carry their help text (:func:`setting`). :meth:`Settings.
from_dict` turns what a file or a command line gives (strings included) into typed values; every setting is
checked once, when the object is built, with messages in library terms (settings are named in backquotes,
`` `lr` ``, which the CLI shows as ``--lr``). The CLI generates its options from the same fields.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from .errors import BertLSTMError, first_line

S = TypeVar("S", bound="Settings")


def setting(default: Any, help: str, **metadata: Any) -> Any:
    """A settings field with its help text (shown by ``--help``); ``metavar`` may be given too, and
    ``repeat=True`` makes a tuple field an option given once per value (``--text A --text B``)."""
    if isinstance(default, list | dict):
        raise TypeError("use a tuple for a sequence default")
    return field(default=default, metadata={"help": help, **metadata})


def typed_values(cls: type, values: dict[str, Any], where: str = "", skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``values`` converted to the types of ``cls``'s fields; a name that is not a field is an error."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise BertLSTMError(f"{where}unknown setting(s) {', '.join(unknown)}; known here: {', '.join(names)}")
    return {k: coerce(v, hints[k], k) for k, v in values.items()}


class Settings:
    """What every settings dataclass shares: building from a dict (typed, checked) and back."""

    @classmethod
    def from_dict(cls: type[S], values: dict[str, Any], where: str = "") -> S:
        """Build from plain values (a file's, or strings from a command line); unknown names are an error."""
        return cls(**typed_values(cls, values, where))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # type: ignore[call-overload]  # tuples as lists

    def as_kwargs(self) -> dict[str, Any]:
        """The settings as keyword arguments, values as they are (tuples stay tuples, sections stay objects)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def check_choices(self) -> None:
        """Every field whose type is a ``Literal`` holds one of its values."""
        for name, hint in typing.get_type_hints(type(self)).items():
            if get_origin(hint) is Literal:
                check_choice(getattr(self, name), hint, name)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a ``.yaml``/``.yml`` or ``.json`` file, as a plain dict (checked by ``from_dict``)."""
    path = Path(path)
    if not path.is_file():
        raise BertLSTMError(f"config file {path} not found")
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise BertLSTMError(f"config file {path}: use a .yaml, .yml or .json file")
    import yaml  # only when a settings file is read

    try:
        text = path.read_text(encoding="utf-8")
        values = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise BertLSTMError(f"config file {path} cannot be read: {first_line(err)}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise BertLSTMError(f"config file {path} must hold a mapping of settings")
    return values


# --- typed values from plain ones -------------------------------------------------------------------
def coerce(value: Any, hint: Any, name: str) -> Any:
    """``value`` (a string from a command line, or a file's value) as the type ``hint`` says."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        for alt in (a for a in args if a is not type(None)):
            try:
                return coerce(value, alt, name)
            except BertLSTMError:
                continue
        raise BertLSTMError(f"`{name}` must be {describe(hint)}, not {value!r}", name)
    if origin is Literal:
        if value in args:
            return value
        raise BertLSTMError(f"`{name}` must be one of {', '.join(map(str, args))}, not {value!r}", name)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise BertLSTMError(f"`{name}` must be {describe(hint)}, not {value!r}", name)
        try:
            return tuple(coerce(item.strip() if isinstance(item, str) else item, args[0], name) for item in items)
        except BertLSTMError:
            raise BertLSTMError(f"`{name}` must be {describe(hint)}, not {value!r}", name) from None
    return _scalar(value, hint, name)


def _scalar(value: Any, hint: Any, name: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"no rule to read a setting of type {hint}")
    raise BertLSTMError(f"`{name}` must be {describe(hint)}, not {value!r}", name)


def describe(hint: Any) -> str:
    """A type in words, for messages and help."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        words = [", ".join(get_args(a)) if get_origin(a) is Literal else describe(a) for a in args]
        return " or ".join(w for a, w in zip(args, words, strict=True) if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is tuple:
        return f"a comma-separated list of {describe(args[0]).removeprefix('a ')}s"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a text"}.get(hint, str(hint))


# --- checks ---------------------------------------------------------------------------------------------
def check_int(value: int, name: str, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise BertLSTMError(f"`{name}` must be a whole number {bound}, not {value!r}", name)


def check_number(value: float, name: str, strict: bool = False, high: float = math.inf) -> None:
    """A finite number above 0 (``strict``) or at least 0, and at most ``high``."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0 or (strict and value == 0) or value > high:
        bound = "above 0" if strict else "at least 0"
        bound += f" and at most {high:g}" if high < math.inf else ""
        raise BertLSTMError(f"`{name}` must be a finite number {bound}, not {value!r}", name)


def check_choice(value: Any, hint: Any, name: str) -> None:
    if value not in get_args(hint):
        raise BertLSTMError(f"`{name}` must be one of {', '.join(get_args(hint))}, not {value!r}", name)


def check_device(device: str) -> None:
    """A device name that can be right (whether it is there is :func:`~bertlstm.core.device.resolve_device`'s)."""
    if device.partition(":")[0] not in ("auto", "cpu", "cuda", "mps"):
        raise BertLSTMError(f"`device` must be auto, cpu, cuda, cuda:N or mps, not {device!r}", "device")
