"""YAML configs read into typed dataclasses, with errors that name the bad key.

A config class is a (possibly nested) dataclass with defaults; a YAML file sets any subset of its
fields. Unknown keys, wrong types and malformed YAML are reported as ``ValueError`` with the path
of the offending key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _convert(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, where)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, where)
    if origin is tuple or annotation is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        return tuple(_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ``ValueError``."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(names))})")
    kwargs = {name: _convert(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain YAML/JSON-ready data."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return plain(dataclasses.asdict(config))


def packaged_config(kind: str, name: str) -> Path | None:
    """The config ``name`` shipped with featflow under ``configs/{kind}/``, if there is one."""
    candidate = resources.files("featflow") / "configs" / kind / f"{name}.yaml"
    return Path(str(candidate)) if candidate.is_file() else None


def load_config(cls: type[T], source: str | os.PathLike, kind: str) -> T:
    """Read a config from a YAML path, or by the name of a packaged config of this ``kind``."""
    path = Path(source)
    if not path.is_file():
        packaged = packaged_config(kind, str(source))
        if packaged is None:
            raise FileNotFoundError(f"no config file {source} (and no packaged {kind} config of that name)")
        path = packaged
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings at the top level")
    return from_dict(cls, data, where=str(path))


#: Values of path settings that name something built in, not a file.
BUILT_IN_SOURCES: tuple[str, ...] = ("synthetic", "shipped")


def check_paths(config: Any, keys: tuple[str, ...]) -> None:
    """Fail before any work starts when a path setting (dotted ``keys`` such as ``model.init``) names a file or
    folder that does not exist; the message names the key. Unset values and ``BUILT_IN_SOURCES`` pass."""
    for key in keys:
        value: Any = config
        for part in key.split("."):
            value = getattr(value, part, None)
        if value is None or value in BUILT_IN_SOURCES:
            continue
        if not Path(value).exists():
            raise ValueError(f"{key}: no such file or folder: {value}")
