"""A small model registry: ``@register_model("name")`` on a builder, ``create_model("name", ...)``,
and the generator families (``register_family``; see :mod:`rbcray.models.translator`).

Builders live in their own modules; :data:`MODEL_MODULES` lists the modules imported on first use
so that their ``@register_model`` decorators run; :data:`FAMILY_MODULES` likewise for families.
Everything that depends on which family a run or a model folder belongs to goes through
:func:`get_family`, :func:`family_of_config` or :func:`open_model` here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from rbcray.errors import ConfigError, DataError
from rbcray.models.translator import ModelFamily, Translator

#: Modules whose import registers models (one line per model family).
MODEL_MODULES: tuple[str, ...] = (
    "rbcray.models.pix2pixhd.networks",
    "rbcray.models.fcn",  # fcn8s
    "rbcray.models.unet_wgangp.networks",
    "rbcray.models.dcan",  # dcan
    "rbcray.models.detection",  # faster_rcnn
    "rbcray.models.morphology",  # morphology_cnn (issue 14)
    "rbcray.models.unit.networks",  # unit (issue 14)
)

#: Modules whose import registers a generator family (mask -> image translator).
FAMILY_MODULES: tuple[str, ...] = (
    "rbcray.models.pix2pixhd.family",
    "rbcray.models.unet_wgangp.family",
)

_REGISTRY: dict[str, Callable[..., Any]] = {}
_FAMILIES: dict[str, ModelFamily] = {}
_loaded = False
_families_loaded = False


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


# ----------------------------------------------------------------------------- generator families
def register_family(family: ModelFamily) -> ModelFamily:
    """Register a generator family (called once at import of its ``family`` module)."""
    old = _FAMILIES.get(family.name)
    if old is not None and old != family:
        raise ValueError(f"family {family.name!r} registered twice")
    _FAMILIES[family.name] = family
    return family


def _load_families() -> None:
    global _families_loaded
    if not _families_loaded:
        for m in FAMILY_MODULES:
            importlib.import_module(m)
        _families_loaded = True


def list_families() -> list[str]:
    """Names of the generator families (what ``rbcray train --model`` takes)."""
    _load_families()
    return sorted(_FAMILIES)


def get_family(name: str) -> ModelFamily:
    """The family registered as ``name``; an unknown name is a one-line :class:`ConfigError`."""
    _load_families()
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ConfigError(f"unknown model family {name!r}; known: {', '.join(sorted(_FAMILIES))}") from None


def family_of_config(cfg: Any) -> ModelFamily:
    """The family whose training config class ``cfg`` is an instance of."""
    _load_families()
    for fam in _FAMILIES.values():
        if type(cfg) is fam.config_class():
            return fam
    raise ConfigError(f"{type(cfg).__name__} is not the training config of any registered family")


def open_model(uri: str) -> tuple[ModelFamily, dict[str, Any], dict[str, bytes]]:
    """(family, manifest, verified file bytes) of the model folder of a finished ``rbcray train``."""
    from rbcray.models.pix2pixhd.checkpoint import read_model

    _load_families()
    manifest, files = read_model(uri, fmt=None)
    by_format = {f.model_format: f for f in _FAMILIES.values()}
    fam = by_format.get(manifest.get("format"))
    if fam is None:
        raise DataError(f"{uri}: model format {manifest.get('format')!r} is not one of {', '.join(sorted(by_format))}")
    return fam, manifest, files


def load_translator(uri: str, device: Any = None, **kwargs: Any) -> Translator:
    """Load the finished model at ``uri`` with its family's translator (any family)."""
    fam, _, _ = open_model(uri)
    return fam.translator_class().load(uri, device=device, **kwargs)
