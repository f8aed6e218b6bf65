"""YAML configs read into typed dataclasses, with errors that name the bad key.

A config class is a (possibly nested) dataclass with defaults; a YAML file sets any subset of its
fields. Unknown keys, wrong types and malformed YAML are reported as ``FeatflowError`` (a user error)
with the path of the offending key and the file that set it, so a typo never silently falls back to a
default.

Configs that differ in a few settings share the rest through inheritance: a top-level
``_base_: NAME_OR_PATH`` (or a list of them, applied in order) names the config(s) a file starts
from, resolved like a config source: a path relative to the including file's folder first, else a
packaged config of the same kind by name. The file's mapping is deep-merged over its bases' (nested
mappings merge key by key; lists, scalars and null replace). ``KEY=VALUE`` overrides (dotted keys,
YAML values) are merged last, as if by one more child file, and go through the same typed conversion.
Files and override values read ``3e-4`` as a number (YAML 1.2's reading; PyYAML's 1.1 makes it a string).
The resolved config is what training records in its run folder, so a run never depends on the chain.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from featflow.errors import FeatflowError, MissingInput
from featflow.registry import FOOTAGE_PREFIX, shipped_models

T = TypeVar("T")

#: The top-level key that names the config(s) a file inherits from.
BASE_KEY = "_base_"

#: Where an override's settings came from, in error messages (in place of a file's path).
OVERRIDES_SOURCE = "overrides"

Key = tuple[str, ...]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, also reading exponent floats without a dot (``3e-4``, as YAML 1.2 does) as numbers:
    YAML 1.1 reads them as strings, and ``train.lr=3e-4`` is how an override is typed."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)


@dataclasses.dataclass(frozen=True)
class _Origins:
    """Who set each key (a file's path, or ``OVERRIDES_SOURCE``), for naming it in errors: the latest setter of
    the longest recorded prefix of a key, else ``default``."""
    default: str
    setters: Mapping[Key, str] = dataclasses.field(default_factory=dict)

    def where(self, key: Key, setter_of: Key | None = None) -> str:
        """``key`` as ``SOURCE.a.b[0]``, SOURCE being whoever set ``setter_of`` (default: ``key`` itself)."""
        probe = key if setter_of is None else setter_of
        source = next((self.setters[probe[:n]] for n in range(len(probe), 0, -1) if probe[:n] in self.setters),
                      self.default)
        return source + "".join(part if part.startswith("[") else f".{part}" for part in key)


def _convert(value: Any, annotation: Any, key: Key, origins: _Origins) -> Any:
    where = origins.where(key)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, key, origins)
            except ValueError as err:
                errors.append(str(err))
        raise FeatflowError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise FeatflowError(f"{where}: expected a mapping, got {value!r}")
        return _build(annotation, value, key, origins)  # type: ignore[arg-type]
    if origin is tuple or annotation is tuple:
        if not isinstance(value, (list, tuple)):
            raise FeatflowError(f"{where}: expected a list, got {value!r}")
        if args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise FeatflowError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(v, a, (*key, f"[{i}]"), origins) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        return tuple(_convert(v, item, (*key, f"[{i}]"), origins) for i, v in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise FeatflowError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FeatflowError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FeatflowError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise FeatflowError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _build(cls: type[T], data: dict[str, Any], key: Key, origins: _Origins) -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names, key=str)
    if unknown:
        raise FeatflowError(f"{origins.where(key, setter_of=(*key, str(unknown[0])))}: unknown key {unknown[0]!r} "
                            f"(known: {', '.join(sorted(names))})")
    kwargs = {name: _convert(value, hints[name], (*key, name), origins) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise FeatflowError(f"{origins.where(key)}: {err}") from None


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ``FeatflowError`` naming the key
    as ``{where}.section.key``."""
    return _build(cls, data, (), _Origins(where))


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


def _merge(base: dict[str, Any], child: Mapping[str, Any], setters: dict[Key, str] | None = None,
           source: str = "", key: Key = ()) -> dict[str, Any]:
    """``child`` deep-merged over ``base`` (a new dict; neither is changed): mappings merge key by key, anything
    else (lists, scalars, null) replaces. Records ``source`` in ``setters`` for every key ``child`` sets."""
    merged = dict(base)
    for name, value in child.items():
        here = (*key, str(name))
        if setters is not None:
            setters[here] = source
        if isinstance(value, dict):  # over a mapping: key by key; over anything else: a copy, its keys recorded
            under = merged[name] if isinstance(merged.get(name), dict) else {}
            merged[name] = _merge(under, value, setters, source, here)
        else:
            merged[name] = copy.deepcopy(value)
    return merged


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        data = _parse_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise FeatflowError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise FeatflowError(f"{path}: expected a mapping of settings at the top level")
    return data


def _find(source: str | os.PathLike, kind: str, folder: Path | None = None) -> Path | None:
    """A config source as a file: ``source`` as a path (relative to ``folder`` if given), else the packaged
    config of that name."""
    path = Path(source) if folder is None else folder / source
    return path if path.is_file() else packaged_config(kind, str(source))


def _resolve(path: Path, kind: str, chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], dict[Key, str]]:
    """The settings of config file ``path`` with its ``_base_`` chain merged in, and who set each key."""
    resolved = path.resolve()
    if resolved in chain:
        raise FeatflowError("config _base_ cycle: " + " -> ".join(str(p) for p in (*chain, resolved)))
    data = _read_mapping(path)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise FeatflowError(f"{path}.{BASE_KEY}: expected a config name or path, or a list of them, got {bases!r}")
    merged: dict[str, Any] = {}
    setters: dict[Key, str] = {}
    for name in bases:
        base_path = _find(name, kind, folder=path.parent)
        if base_path is None:
            raise MissingInput(f"{path}.{BASE_KEY}: no config file {path.parent / name} "
                               f"(and no packaged {kind} config of that name)")
        base_data, base_setters = _resolve(base_path, kind, (*chain, resolved))
        merged = _merge(merged, base_data)
        setters.update(base_setters)
    return _merge(merged, data, setters, str(path)), setters


def _source_path(source: str | os.PathLike, kind: str) -> Path:
    path = _find(source, kind)
    if path is None:
        raise MissingInput(f"no config file {source} (and no packaged {kind} config of that name)")
    return path


def merged_config_dict(source: str | os.PathLike, kind: str) -> dict[str, Any]:
    """The settings of a config (a YAML path, or a packaged config's name) with its ``_base_`` chain merged in,
    before any typed conversion: what ``load_config`` converts, less overrides."""
    return _resolve(_source_path(source, kind), kind)[0]


def _parse_overrides(overrides: Sequence[str]) -> list[dict[str, Any]]:
    """Each ``KEY=VALUE`` as the one-key nested mapping it sets (``a.b=1`` -> ``{'a': {'b': 1}}``)."""
    if isinstance(overrides, str):
        raise TypeError("overrides: a sequence of 'KEY=VALUE' strings, not one string")
    layers = []
    for item in overrides:
        key, sep, text = item.partition("=") if isinstance(item, str) else ("", "", "")
        parts = key.strip().split(".")
        if not sep or not all(part.strip() for part in parts):
            raise FeatflowError(f"override {item!r}: expected KEY=VALUE with a dotted KEY such as train.lr=0.01")
        try:
            value = _parse_yaml(text)
        except yaml.YAMLError as err:
            raise FeatflowError(f"override {item!r}: the value is not valid YAML ({err})") from None
        for part in reversed(parts):
            value = {part.strip(): value}
        layers.append(value)
    return layers


def _apply_overrides(data: dict[str, Any], overrides: Sequence[str], setters: dict[Key, str] | None = None
                     ) -> dict[str, Any]:
    for layer in _parse_overrides(overrides):
        data = _merge(data, layer, setters, OVERRIDES_SOURCE)
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with ``KEY=VALUE`` overrides merged over it in order, as by a child config setting just that key
    (``train.lr=0.01``, ``model.anchor_sizes=[32,64,128]``, ``model.init=null``: VALUE is YAML). Returns a new
    dict; a malformed item raises ``FeatflowError`` naming it. Keys are checked by the typed conversion after."""
    return _apply_overrides(data, overrides)


#: A path setting may name another run instead of a file: ``run:NAME`` (a packaged config of the same kind) or
#: ``run:KIND/NAME`` is that config's weights, where ``featflow train KIND --config NAME`` writes them.
RUN_PREFIX = "run:"
#: The weights file of a training run, inside its output folder.
RUN_WEIGHTS = "model.safetensors"
_RUN_KEYS: tuple[tuple[str, ...], ...] = (("model", "init"), ("model", "features_init"), ("model", "flow_init"),
                                          ("init",))  # flow configs: the flow weights to start from


def run_weights(reference: str, kind: str) -> str:
    """``run:NAME`` / ``run:KIND/NAME`` -> the weights path that packaged config's training writes (its
    ``output`` / ``RUN_WEIGHTS``). An unknown config raises ``FeatflowError``."""
    name = reference[len(RUN_PREFIX):]
    run_kind, _, run_name = name.rpartition("/")
    run_kind = run_kind or kind
    config = packaged_config(run_kind, run_name)
    if config is None:
        raise FeatflowError(f"{reference}: no packaged {run_kind} config {run_name!r} (a run reference names one)")
    output = merged_config_dict(config, run_kind).get("output") or f"runs/{run_kind}"
    return str(Path(output) / RUN_WEIGHTS)


def _resolve_runs(data: dict[str, Any], kind: str) -> dict[str, Any]:
    """Replace every ``run:`` reference among the path settings by the weights path it names, and every shipped
    model's name (``featflow models``) by its packaged file, so that a chain can continue from shipped weights."""
    shipped = {info.name: str(info.path) for info in shipped_models()}
    for keys in _RUN_KEYS:
        parent = data
        for key in keys[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        value = parent.get(keys[-1]) if isinstance(parent, dict) else None
        if isinstance(value, str) and value.startswith(RUN_PREFIX):
            parent[keys[-1]] = run_weights(value, kind)
        elif isinstance(value, str) and value in shipped:
            parent[keys[-1]] = shipped[value]
    return data


def load_config(cls: type[T], source: str | os.PathLike, kind: str, overrides: Sequence[str] = ()) -> T:
    """Read a config from a YAML path, or by the name of a packaged config of this ``kind``, with its ``_base_``
    chain resolved and then ``overrides`` (``KEY=VALUE``, see ``apply_overrides``) applied; ``run:`` references
    in path settings become the weights paths they name (``run_weights``). An unknown key or bad value raises
    ``FeatflowError`` naming the key and the file (or ``overrides``) that set it."""
    path = _source_path(source, kind)
    data, setters = _resolve(path, kind)
    data = _resolve_runs(_apply_overrides(data, overrides, setters), kind)
    return _build(cls, data, (), _Origins(str(path), setters))


#: Values of path settings that name something built in, not a file.
BUILT_IN_SOURCES: tuple[str, ...] = ("synthetic", "shipped")


def check_paths(config: Any, keys: tuple[str, ...]) -> None:
    """Fail before any work starts when a path setting (dotted ``keys`` such as ``model.init``) names a file or
    folder that does not exist; the message names the key. Unset values, ``BUILT_IN_SOURCES`` and packaged videos
    (``footage:NAME``, checked where they are resolved) pass."""
    for key in keys:
        value: Any = config
        for part in key.split("."):
            value = getattr(value, part, None)
        if value is None or value in BUILT_IN_SOURCES or str(value).startswith(FOOTAGE_PREFIX):
            continue
        if not Path(value).exists():
            raise MissingInput(f"{key}: no such file or folder: {value}{producer_hint(value)}")


def producer_hint(path: str | os.PathLike) -> str:
    """How to make a missing file that a packaged config writes: its runs land in ``runs/{kind}/{name}/`` (the
    packaged configs' ``output``), so a missing ``runs/det/vid_frame_r18/model.safetensors`` is the output of
    ``featflow train det --config vid_frame_r18``. Empty when no packaged config writes there."""
    parts = Path(path).parts
    if len(parts) < 3 or parts[0] != "runs":
        return ""
    kind, name = parts[1], parts[2]
    config = packaged_config(kind, name)
    if config is None:
        return ""
    output = merged_config_dict(config, kind).get("output")
    if output is not None and Path(output) != Path("runs", kind, name):
        return ""
    return f" (the output of a pre-training step: run `featflow train {kind} --config {name}` first)"
