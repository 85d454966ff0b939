"""The contract every mask -> image model family fulfils (pix2pixHD, unet-wgangp, ...).

A *family* is one :class:`ModelFamily` record registered in :mod:`rbcray.models.registry`. It
names, by ``"module:attribute"`` strings resolved on first use (so that listing families imports
no torch), the pieces the shared code paths call:

- ``config``: the frozen training config dataclass (``total_epochs``, ``checkpoint_every``,
  ``keep_checkpoints`` and ``with_epochs(n)`` are required of it);
- ``trainer``: ``Trainer(cfg, dataset, device=None, provenance=None)`` with ``epoch``, ``history``,
  ``resumes``, ``provenance`` (saved in checkpoints and ``model.json``),
  ``train_epoch() -> metrics``, ``sample_grid() -> PNG bytes``, ``state_dict()`` and
  ``load_state_dict(state, name)`` -- run by both the plain loop (:mod:`rbcray.train.runner`) and
  the Ray Train workers (:mod:`rbcray.distributed.train`);
- ``export``: ``export(trainer, out, log, force=False) -> model folder URI`` writing ``OUT/model/``
  (files, then ``model.json`` whose ``format`` is the family's ``model_format``);
- ``translator``: a class whose ``load(uri, device=None)`` returns a :class:`Translator`;
- ``preflight`` (optional): ``preflight(cfg)`` raising before any work (e.g. missing weights);
- ``format_metrics``: ``format_metrics(epoch, total, metrics) -> str``, one log line per epoch.

So ``rbcray train --model NAME`` and ``rbcray generate --checkpoint RUN`` never branch on the
family: a third family is one new module with one :func:`~rbcray.models.registry.register_family`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Translator(Protocol):
    """A loaded generator: instance maps -> RGB images (see pix2pixHD's inference module for the
    full contract, which every family follows: same arguments, same determinism guarantees)."""

    #: sha256 of the generator weights file (provenance of generated datasets)
    sha256: str

    @property
    def num_styles(self) -> int:
        """Style clusters per class (0: the family has no style control)."""
        ...

    def translate(
        self,
        instances: Sequence[np.ndarray],
        categories: Sequence[Mapping[int, int] | None] | None,
        seeds: Sequence[int | Sequence[int]],
        style: int | None | Sequence[int | None] = None,
    ) -> list[np.ndarray]:
        """RGB uint8 (H, W, 3) images, one per instance map, in input order."""
        ...

    def translate_with_styles(
        self,
        instances: Sequence[np.ndarray],
        categories: Sequence[Mapping[int, int] | None] | None,
        seeds: Sequence[int | Sequence[int]],
        style: int | None | Sequence[int | None] = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(image, style cluster per instance id; -1 where none) per sample."""
        ...


def resolve(ref: str) -> Any:
    """The object a ``"package.module:attribute"`` string names."""
    mod, _, attr = ref.partition(":")
    return getattr(importlib.import_module(mod), attr)


@dataclass(frozen=True)
class ModelFamily:
    """One generator family: its name, model-folder format and the pieces the shared paths call."""

    name: str  # what --model takes
    title: str  # for messages ("pix2pixHD")
    model_format: str  # model.json "format" of its exported models
    config: str
    trainer: str
    export: str
    translator: str
    format_metrics: str
    preflight: str | None = None
    #: packaged presets: name -> YAML file in rbcray/configs/
    presets: Mapping[str, str] = field(default_factory=dict)

    def config_class(self) -> type:
        return resolve(self.config)

    def trainer_class(self) -> Any:
        return resolve(self.trainer)

    def export_fn(self) -> Any:
        return resolve(self.export)

    def translator_class(self) -> Any:
        return resolve(self.translator)

    def metrics_line(self, epoch: int, total: int, metrics: dict[str, Any]) -> str:
        return resolve(self.format_metrics)(epoch, total, metrics)

    def check(self, cfg: Any) -> None:
        """Fail before any work when the config cannot run here (e.g. weights missing)."""
        if self.preflight is not None:
            resolve(self.preflight)(cfg)


class TranslatorBase:
    """What every family's translator shares: :meth:`translate` is
    :meth:`translate_with_styles` without the clusters (subclasses implement the latter)."""

    def translate(
        self,
        instances: Sequence[np.ndarray],
        categories: Sequence[Mapping[int, int] | None] | None,
        seeds: Sequence[int | Sequence[int]],
        style: int | None | Sequence[int | None] = None,
    ) -> list[np.ndarray]:
        """RGB uint8 (H, W, 3) images, one per instance map, in input order."""
        return [img for img, _ in self.translate_with_styles(instances, categories, seeds, style)]  # type: ignore[attr-defined]

    @staticmethod
    def batch_args(
        instances: Sequence[np.ndarray],
        categories: Sequence[Mapping[int, int] | None] | None,
        seeds: Sequence[int | Sequence[int]],
        style: int | None | Sequence[int | None],
    ) -> tuple[list[Mapping[int, int] | None], list[int | None]]:
        """(category map, style) per sample, ``None``/a single style broadcast to every sample;
        one error line when the per-sample lists disagree in length."""
        n = len(instances)
        cats = list(categories) if categories is not None else [None] * n
        styles = list(style) if isinstance(style, (list, tuple)) else [style] * n
        if not (len(cats) == len(seeds) == len(styles) == n):
            from rbcray.errors import RbcrayError

            raise RbcrayError(f"translate: got {n} masks, {len(cats)} category maps, {len(seeds)} seeds, {len(styles)} styles")
        return cats, styles
