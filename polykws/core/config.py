"""The one strict converter from YAML mappings to validated frozen dataclasses.

from_dict rejects unknown keys (a typo must not silently fall back to a default) and checks each
value against the field's type hint, naming the dotted path of the bad field.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from typing import Any, Mapping

from polykws.core.errors import ConfigError, PolykwsError


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    where = f"{path}: " if path else ""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}unknown key(s) {unknown}; known: {sorted(known)}")
    missing = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in data and _required(f)]
    if missing:
        keys = ", ".join(f"{path}.{m}" if path else m for m in missing)
        raise ConfigError(f"missing required key(s): {keys}")
    kwargs = {name: _coerce(hints[name], value, f"{path}.{name}" if path else name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(path) and path else f"{where}{msg}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}{exc}") from None


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def read_yaml_mapping(path: Any, sections: str = "") -> dict[str, Any]:
    """A YAML file's top-level mapping (an empty file is {}); every error names the file.
    `sections` names the expected keys in the message for a top level that is not a mapping."""
    from pathlib import Path

    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolykwsError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        hint = f" ({sections})" if sections else ""
        raise ConfigError(f"{path}: the top level must be a mapping of sections{hint}, got a {type(raw).__name__}")
    return dict(raw)


def from_yaml_file(cls: type, path: Any, overrides: Mapping[str, Any] | None = None) -> Any:
    """Read a YAML file into `cls` with from_dict; every error names the file."""
    raw = read_yaml_mapping(path)
    try:
        return from_dict(cls, merge_overrides(raw, overrides or {}))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse_set_overrides(items: typing.Iterable[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings (a command line's `--set`) as overrides, each value parsed as YAML."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"--set {k.strip()}: the value {v!r} is not valid YAML ({problem}); quote a string value, as in {k.strip()}='\"{v}\"'") from None
    return out


def merge_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`raw` with `overrides` applied: nested mappings merge, `a.b.c` keys address nested fields."""
    out = dict(raw)
    for key, value in overrides.items():
        head, dot, rest = key.partition(".")
        if dot:
            inner = out.get(head, {}) or {}
            if not isinstance(inner, Mapping):
                raise ConfigError(f"override {key}: {head} is not a mapping")
            out[head] = merge_overrides(inner, {rest: value})
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    return out


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _coerce(args[0], value, path)
        # `bool | str` and the like: the first alternative the value fits (YAML gives `false`
        # for an on/off switch that also takes words such as "auto").
        for alt in args:
            try:
                return _coerce(alt, value, path)
            except ConfigError:
                continue
        names = " or ".join(getattr(a, "__name__", str(a)) for a in args)
        raise ConfigError(f"{path}: expected {names}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        item = typing.get_args(tp)[0]
        return tuple(_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin in (collections.abc.Mapping, dict) or tp in (Mapping, dict, collections.abc.Mapping):
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        args = typing.get_args(tp)
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(vt, v, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def to_plain(obj: Any) -> Any:
    """JSON-able copy of a config (dataclasses -> dicts, tuples -> lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj
