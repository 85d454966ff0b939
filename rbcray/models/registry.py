"""A small model registry: ``@register_model("name")`` on a builder, ``create_model("name", ...)``.

Builders live in their own modules; :data:`MODEL_MODULES` lists the modules imported on first use
so that their ``@register_model`` decorators run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from rbcray.errors import ConfigError

#: Modules whose import registers models (one line per model family).
MODEL_MODULES: tuple[str, ...] = (
    "rbcray.models.pix2pixhd.networks",
    "rbcray.models.fcn",  # fcn8s
    "rbcray.models.dcan",  # dcan
    "rbcray.models.detection",  # faster_rcnn
    "rbcray.models.morphology",  # morphology_cnn (issue 14)
    "rbcray.models.unit.networks",  # unit (issue 14)
)

_REGISTRY: dict[str, Callable[..., Any]] = {}
_loaded = False


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a model builder (a class or a function returning a module)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model name {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for m in MODEL_MODULES:
            importlib.import_module(m)
        _loaded = True


def list_models() -> list[str]:
    """Names of all registered models."""
    _load_all()
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: Any) -> Any:
    """Build the model registered as ``name`` with keyword arguments ``kwargs``."""
    _load_all()
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY)) or 'none'}") from None
    return builder(**kwargs)
