"""Check a sweep against its data, then load the images every trial needs (without Ray).

:func:`plan_sweep` opens every dataset (reading only names, sizes and sample ids), fixes the
real test split, and fails with a one-line :class:`~rbcray.errors.RbcrayError` when the data
cannot support the config: counts larger than the data, images smaller than a crop, masks missing
for a segmentation model, synthetic shards missing or too few, weight files missing. Nothing is
trained before it returns. :func:`load_bundles` then loads the images into :class:`DataBundle`s
(Bailo et al. Sec. 5: the test set is real and fixed; synthetic images only ever train).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rbcray.errors import ConfigError, DataError
from rbcray.evaluate.config import SweepConfig
from rbcray.evaluate.data import (
    RealSource,
    Sample,
    SyntheticSource,
    load_synthetic,
    open_real,
    open_synthetic,
)
from rbcray.evaluate.regimes import split_real, synthetic_needed


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset's fixed split and the synthetic samples its regimes draw on."""

    name: str
    scale: float
    real: RealSource
    test_idx: tuple[int, ...]
    train_idx: tuple[int, ...]
    synthetic: SyntheticSource | None
    n_synthetic: int


@dataclass(frozen=True)
class SweepPlan:
    cfg: SweepConfig
    datasets: dict[str, DatasetPlan]


@dataclass(frozen=True)
class DataBundle:
    """The in-memory data of one dataset: real training pool, real test set, synthetic pool."""

    name: str
    train: tuple[Sample, ...]
    test: tuple[Sample, ...]
    synthetic: tuple[Sample, ...]
    provenance: str

    def __post_init__(self) -> None:
        # The paper's rule, enforced where the data is assembled: the test set is real only.
        bad = [s.name for s in self.test if s.origin != "real"]
        if bad:
            raise DataError(f"dataset {self.name!r}: test set holds non-real sample {bad[0]!r}")


def _check_weights(cfg: SweepConfig) -> None:
    for m in cfg.models:
        for key in ("weights", "backbone_weights"):
            p = m.params.get(key)
            if p and not Path(str(p)).expanduser().is_file():
                raise DataError(f"model {m.label!r}: {key} file {p} not found (weights are never downloaded)")


def plan_sweep(cfg: SweepConfig) -> SweepPlan:
    """Validate ``cfg`` against its data and fix every split (no images decoded, no training)."""
    _check_weights(cfg)
    plans: dict[str, DatasetPlan] = {}
    for d in cfg.datasets:
        models = [m for m in cfg.models if m.dataset == d.name]
        if not models:
            continue
        real = open_real(d.real, cfg.data_dir)
        for m in models:
            if m.task in ("segmentation", "dcan") and not real.has_masks:
                raise ConfigError(
                    f"model {m.label!r}: {m.model} needs instance masks but dataset {d.name!r} ({d.real}) has boxes only"
                )
        try:
            test, train = split_real(len(real), d.n_test, cfg.n_real, d.split_seed, real.test_pool)
        except DataError as e:
            raise DataError(f"dataset {d.name!r} ({d.real}): {e}") from None
        crop = max(m.train.crop for m in models)
        for i in (*test, *train):
            h, w = real.sizes[i]
            if min(h, w) * d.scale < crop:
                raise DataError(
                    f"dataset {d.name!r}: image {real.names[i]} is {w}x{h}, {round(w * d.scale)}x{round(h * d.scale)} "
                    f"after scale {d.scale}: smaller than the training crop {crop}"
                )
        n_syn = max(synthetic_needed(cfg.model_regimes(m), cfg.n_real, cfg.total, cfg.synthetic_share) for m in models)
        syn = None
        if n_syn:
            assert d.synthetic is not None  # SweepConfig checked that SD regimes have a source
            syn = open_synthetic(d.synthetic)
            if syn.count < n_syn:
                raise DataError(
                    f"dataset {d.name!r}: its regimes need {n_syn} synthetic samples but {d.synthetic} holds {syn.count}"
                )
            for k, (h, w) in enumerate(syn.sizes[:n_syn]):
                if min(h, w) * d.scale < crop:
                    raise DataError(
                        f"{d.synthetic}: sample {syn.ids[k]} is {w}x{h}, smaller than the training crop {crop} after scale {d.scale}"
                    )
        plans[d.name] = DatasetPlan(d.name, d.scale, real, tuple(test), tuple(train), syn, n_syn)
    return SweepPlan(cfg, plans)


SyntheticLoader = Callable[[SyntheticSource, int, float], list[Sample]]


def load_bundles(plan: SweepPlan, synthetic_loader: SyntheticLoader = load_synthetic) -> dict[str, DataBundle]:
    """Decode (and scale) every image the trials use; synthetic data via ``synthetic_loader``
    (pyarrow by default; the Ray sweep passes its Ray Data reader)."""
    out = {}
    for name, p in plan.datasets.items():
        train = tuple(p.real.load(i, p.scale) for i in p.train_idx)
        test = tuple(p.real.load(i, p.scale) for i in p.test_idx)
        syn: tuple[Sample, ...] = ()
        prov = p.real.provenance
        if p.synthetic is not None and p.n_synthetic:
            syn = tuple(synthetic_loader(p.synthetic, p.n_synthetic, p.scale))
            if len(syn) != p.n_synthetic:
                raise DataError(f"{p.synthetic.uri}: read {len(syn)} synthetic samples, expected {p.n_synthetic}")
            prov += f"; synthetic: {p.synthetic.provenance}"
        out[name] = DataBundle(name, train, test, syn, prov)
    return out
