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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rbcray.data.splits import ROLES, Splits, load_splits
from rbcray.errors import ConfigError, DataError
from rbcray.evaluate.config import DataConfig, SweepConfig
from rbcray.evaluate.data import (
    RealSource,
    Sample,
    SyntheticSource,
    load_synthetic,
    open_real,
    open_synthetic,
)
from rbcray.evaluate.regimes import split_real


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset's fixed roles, RD subset draws and the synthetic samples its regimes use."""

    name: str
    scale: float
    real: RealSource
    test_idx: tuple[int, ...]
    #: RD subset seed -> real indices in draw order (the first n are a trial's n real images)
    draws: dict[int, tuple[int, ...]]
    synthetic: SyntheticSource | None
    n_synthetic: int
    val_idx: tuple[int, ...] = ()
    splits: Splits | None = None
    #: what the synthetic inputs were learned from, and what the check found
    provenance: dict[str, Any] = field(default_factory=dict)
    #: the whole real training pool (the split's train role), which the realism encoder learns from
    pool: tuple[int, ...] = ()

    @property
    def train_idx(self) -> tuple[int, ...]:
        """Every real index some RD subset draws (in first-draw order)."""
        return tuple(dict.fromkeys(i for d in self.draws.values() for i in d))

    def role_stems(self) -> dict[str, Any]:
        """The stems used per role (for report.json's ``splits``)."""
        names = self.real.names
        out: dict[str, Any] = {
            "test": [names[i] for i in self.test_idx],
            "val": [names[i] for i in self.val_idx],
            "rd_subsets": {str(k): [names[i] for i in d] for k, d in self.draws.items()},
        }
        if self.splits is not None:
            out["split_file"] = {"dataset": self.splits.dataset, "method": self.splits.method,
                                 "seed": self.splits.seed, "sha256": self.splits.sha256(),
                                 "roles": {r: list(self.splits.stems(r)) for r in ROLES}}
        return out


@dataclass(frozen=True)
class SweepPlan:
    cfg: SweepConfig
    datasets: dict[str, DatasetPlan]


@dataclass(frozen=True)
class DataBundle:
    """The in-memory data of one dataset: real training pool, val and test sets, synthetic pool."""

    name: str
    train: tuple[Sample, ...]
    test: tuple[Sample, ...]
    synthetic: tuple[Sample, ...]
    provenance: str
    #: RD subset seed -> positions in ``train`` in draw order (default: one subset, all of train)
    subsets: dict[int, tuple[int, ...]] = field(default_factory=dict)
    val: tuple[Sample, ...] = ()

    def __post_init__(self) -> None:
        # The paper's rule, enforced where the data is assembled: the test set is real only.
        bad = [s.name for s in (*self.test, *self.val) if s.origin != "real"]
        if bad:
            raise DataError(f"dataset {self.name!r}: test/val set holds non-real sample {bad[0]!r}")
        held = {s.name for s in (*self.test, *self.val)}
        leak = [s.name for s in self.train if s.name in held]
        if leak:
            raise DataError(f"dataset {self.name!r}: real image {leak[0]!r} is in the training pool and in val/test")

    def real_indices(self, subset: int, n: int) -> tuple[int, ...]:
        """Positions in ``train`` of the ``n`` real images of RD subset ``subset``."""
        order = self.subsets.get(subset, tuple(range(len(self.train)))) if self.subsets else tuple(range(len(self.train)))
        if n > len(order):
            raise DataError(f"dataset {self.name!r}: {n} real images asked of subset {subset}, {len(order)} drawn")
        return order[:n]


def _check_weights(cfg: SweepConfig) -> None:
    for m in cfg.models:
        for key in ("weights", "backbone_weights"):
            p = m.params.get(key)
            if p and not Path(str(p)).expanduser().is_file():
                raise DataError(f"model {m.label!r}: {key} file {p} not found (weights are never downloaded)")


def _sample(idx: list[int], n: int | None, seed: int, what: str, key: int) -> list[int]:
    """A fixed seeded sample of ``n`` of ``idx`` (all of them when n is None), sorted."""
    if n is None:
        return sorted(idx)
    if n > len(idx):
        raise DataError(f"{what} = {n} but the split's role holds only {len(idx)} images")
    rng = np.random.default_rng([seed, key])
    return sorted(int(idx[j]) for j in rng.permutation(len(idx))[:n])


def _roles(d: DataConfig, real: RealSource, n_pool: int) -> tuple[list[int], list[int], list[int], Splits | None]:
    """(test, val, train pool) real indices and the split file of one dataset."""
    if d.splits is None:
        if d.n_val:
            raise ConfigError(f"dataset {d.name!r}: n_val > 0 needs a split file with a val role ('splits:' or --splits)")
        if d.n_test is None and real.test_pool is None:
            raise ConfigError(f"dataset {d.name!r}: n_test may be left out only with a split file ('splits:' or --splits)")
        n_test = d.n_test if d.n_test is not None else len(real.test_pool or ())
        test, _ = split_real(len(real), n_test, n_pool, d.split_seed, real.test_pool)
        held = set(test) | set(real.test_pool or ())
        return test, [], [i for i in range(len(real)) if i not in held], None
    sp = load_splits(d.splits)
    if sp.dataset and real.dataset_name and sp.dataset != real.dataset_name:
        raise DataError(f"{d.splits}: a split of {sp.dataset!r}, but dataset {d.name!r} is {real.dataset_name!r}")
    index = {n: i for i, n in enumerate(real.names)}

    def role(r: str) -> list[int]:
        stems = sp.stems(r)
        missing = [s for s in stems if s not in index]
        # a box-only source lists only its labelled images; a folder must hold every stem
        if missing and real.has_masks:
            raise DataError(f"{d.splits}: {len(missing)} {r} image(s) are not in {d.real} (first: {missing[0]!r})")
        return sorted(index[s] for s in stems if s in index)

    test = _sample(role("test"), d.n_test, d.split_seed, "n_test", 0x7E57)
    val = _sample(role("val"), d.n_val, d.split_seed, "n_val", 0x7A1) if d.n_val else []
    return test, val, role("train"), sp


def _draws(pool: list[int], subsets: tuple[int, ...], n: int, where: str) -> dict[int, tuple[int, ...]]:
    """Per RD subset seed, ``n`` real indices drawn from the pool (nested: smaller RD sizes are
    the first images of the same draw)."""
    if n > len(pool):
        raise DataError(f"{where}: {n} real training images needed but the train pool holds only {len(pool)}")
    pool = sorted(pool)
    return {k: tuple(int(pool[j]) for j in np.random.default_rng([k, 0x5EB5E7]).permutation(len(pool))[:n])
            for k in subsets}


def plan_sweep(cfg: SweepConfig) -> SweepPlan:
    """Validate ``cfg`` against its data, fix every role and draw, and check the synthetic
    inputs' provenance against the held-out images (no images decoded, no training)."""
    from rbcray.evaluate.leakage import check_leakage, synthetic_provenance
    from rbcray.evaluate.regimes import regime_counts

    _check_weights(cfg)
    plans: dict[str, DatasetPlan] = {}
    trials = cfg.trials()
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
            if m.train.val_every is not None and not d.n_val:
                raise ConfigError(f"model {m.label!r}: train.val_every needs validation images (n_val) on {d.name!r}")
        labels = {m.label for m in models}
        mine = [t for t in trials if t["model"] in labels]
        n_max = max(t["n_real"] for t in mine)
        try:
            test, val, pool, sp = _roles(d, real, n_max)
            draws = _draws(pool, cfg.rd_subsets, n_max, f"dataset {d.name!r}")
        except DataError as e:
            raise DataError(f"dataset {d.name!r} ({d.real}): {e}") from None
        crop = max(m.train.crop for m in models)
        for i in dict.fromkeys((*test, *val, *(i for dr in draws.values() for i in dr))):
            h, w = real.sizes[i]
            if min(h, w) * d.scale < crop:
                raise DataError(
                    f"dataset {d.name!r}: image {real.names[i]} is {w}x{h}, {round(w * d.scale)}x{round(h * d.scale)} "
                    f"after scale {d.scale}: smaller than the training crop {crop}"
                )
        n_syn = max(regime_counts(t["regime"], t["n_real"], cfg.trial_total(t["n_real"]), cfg.synthetic_share).synthetic
                    for t in mine)
        syn = None
        prov: dict[str, Any] = {"real": real.provenance}
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
            records, unrecorded = synthetic_provenance(d.synthetic, syn.kind)
            # without a split file the held-out images are the test images this sweep uses
            held = sp if sp is not None else Splits(
                dataset=real.dataset_name, roles={"val": tuple(real.names[i] for i in val),
                                                  "test": tuple(real.names[i] for i in test)})
            notes = check_leakage(d.name, d.synthetic, records, unrecorded, held, cfg.allow_overlap)
            prov["synthetic"] = {
                "uri": d.synthetic,
                "inputs": records,
                "unrecorded": unrecorded,
                "checked_against": "val and test roles of the split file" if sp is not None else "the test images used",
                "allow_overlap": cfg.allow_overlap,
                "overlaps": notes,
            }
        plans[d.name] = DatasetPlan(d.name, d.scale, real, tuple(test), draws, syn, n_syn, tuple(val), sp, prov, tuple(pool))
    rd = cfg.realism_dataset()
    if rd is not None and rd.name in plans:
        from rbcray.evaluate.realism import check_sources, held_splits

        # the compared sources are opened and leak-checked now, not after hours of training
        plans[rd.name].provenance["realism"] = check_sources(cfg, held_splits(plans[rd.name]))
    return SweepPlan(cfg, plans)


SyntheticLoader = Callable[[SyntheticSource, int, float], list[Sample]]


def load_bundles(plan: SweepPlan, synthetic_loader: SyntheticLoader = load_synthetic) -> dict[str, DataBundle]:
    """Decode (and scale) every image the trials use; synthetic data via ``synthetic_loader``
    (pyarrow by default; the Ray sweep passes its Ray Data reader)."""
    out = {}
    for name, p in plan.datasets.items():
        pool = p.train_idx
        pos = {i: k for k, i in enumerate(pool)}
        train = tuple(p.real.load(i, p.scale) for i in pool)
        test = tuple(p.real.load(i, p.scale) for i in p.test_idx)
        val = tuple(p.real.load(i, p.scale) for i in p.val_idx)
        syn: tuple[Sample, ...] = ()
        prov = p.real.provenance
        if p.synthetic is not None and p.n_synthetic:
            syn = tuple(synthetic_loader(p.synthetic, p.n_synthetic, p.scale))
            if len(syn) != p.n_synthetic:
                raise DataError(f"{p.synthetic.uri}: read {len(syn)} synthetic samples, expected {p.n_synthetic}")
            prov += f"; synthetic: {p.synthetic.provenance}"
        subsets = {k: tuple(pos[i] for i in d) for k, d in p.draws.items()}
        out[name] = DataBundle(name, train, test, syn, prov, subsets, val)
    return out
