"""Frozen dataclass configs: load, validate at the boundary, save with every output.

Every model and job has one ``@dataclass(frozen=True)`` config (nanoGPT's ``GPTConfig`` style).
This module turns dicts / JSON / YAML files into those configs with strict checking: unknown keys,
wrong types and out-of-range values fail with a one-line :class:`~rbcray.errors.ConfigError` that
names the key and the file. A config class may define ``validate(self)`` for its own range checks;
``from_dict`` calls it.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from rbcray.errors import ConfigError

T = TypeVar("T")


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Convert ``value`` to type ``tp`` (JSON/YAML scalars, lists, nested dataclasses)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key, where)
            except ConfigError as e:
                errors.append(str(e))
        if len(errors) == 1:  # an optional value (X | None): X's own error names the bad key
            raise ConfigError(errors[0])
        raise ConfigError(f"{where}: '{key}' = {value!r} does not match {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: '{key}' = {value!r} must be one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where=f"{where}:{key}")
    if origin in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: '{key}' must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: '{key}' must have {len(args)} items, got {len(value)}")
            items = [_coerce(v, a, key, where) for v, a in zip(value, args)]
        else:
            inner = args[0] if args else Any
            items = [_coerce(v, inner, key, where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: '{key}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{where}: '{key}' must be an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: '{key}' must be a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build the frozen dataclass ``cls`` from ``data``; unknown keys and bad types are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown config key(s) {', '.join(repr(k) for k in unknown)} for {cls.__name__}; "
            f"known keys: {', '.join(sorted(fields))}"
        )
    kwargs = {k: _coerce(v, hints[k], k, where) for k, v in data.items()}
    try:
        cfg = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict of a (possibly nested) dataclass config; tuples become lists."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        return v

    return conv(cfg)


def replace(cfg: T, **changes: Any) -> T:
    """``dataclasses.replace`` that ignores ``None`` values (handy for CLI overrides)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return cfg
    data = to_dict(cfg)
    data.update(changes)
    return from_dict(type(cfg), data, where="override")


def load_config(cls: type[T], path: str | Path) -> T:
    """Load ``cls`` from a JSON or YAML file (by extension); errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - parser errors come in many types
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'} ({msg})") from None
    if data is None:
        data = {}
    return from_dict(cls, data, where=str(path))


def check(cond: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` when ``cond`` is false (for ``__post_init__``)."""
    if not cond:
        raise ConfigError(message)
