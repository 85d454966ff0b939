"""Train / val / test splits by source image: made first, seeded, recorded, checked.

Every stage that learns from real data (shape bank, synthesis statistics, mask calibration,
generators, downstream models) takes a split file plus a role (``--splits FILE --split train``)
and records the exact image stems it used (:mod:`rbcray.data.provenance`); evaluation refuses
any input whose provenance touches its val or test images.

A split file is JSON::

    {"format": "rbcray-splits", "format_version": 1, "dataset": "chula-rbc-12",
     "seed": 0, "fractions": {"val": 0.15, "test": 0.15}, "method": "seeded" | "source",
     "roles": {"train": [...stems], "val": [...], "test": [...]}}

Images are assigned whole (never by crop). A dataset that ships its own split (BCCD-TXL's
``images/{train,val,test}``, recorded by ``rbcray annotate`` as each sample's ``split``) keeps
it unless a reshuffle is asked for; others are shuffled with ``seed``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rbcray.errors import ConfigError, DataError

FORMAT = "rbcray-splits"
FORMAT_VERSION = 1
ROLES: tuple[str, ...] = ("train", "val", "test")
#: Roles that evaluation holds out: nothing that learns may have seen them.
HELD_OUT: tuple[str, ...] = ("val", "test")


@dataclass(frozen=True)
class Splits:
    """Which source image is in which role (every stem in exactly one)."""

    dataset: str
    roles: dict[str, tuple[str, ...]]
    seed: int | None = None
    fractions: dict[str, float] = field(default_factory=dict)
    method: str = "seeded"

    def __post_init__(self) -> None:
        unknown = set(self.roles) - set(ROLES)
        if unknown:
            raise DataError(f"splits of {self.dataset}: unknown role(s) {sorted(unknown)}; roles are {', '.join(ROLES)}")
        seen: dict[str, str] = {}
        for role, stems in self.roles.items():
            for s in stems:
                if s in seen:
                    raise DataError(f"splits of {self.dataset}: image {s!r} is in both {seen[s]} and {role}")
                seen[s] = role

    def stems(self, role: str) -> tuple[str, ...]:
        """Stems of one role (``train``, ``val`` or ``test``)."""
        if role not in ROLES:
            raise ConfigError(f"split role {role!r}: use one of {', '.join(ROLES)}")
        return self.roles.get(role, ())

    def role_of(self, stem: str) -> str | None:
        for role, stems in self.roles.items():
            if stem in stems:
                return role
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dataset": self.dataset,
            "seed": self.seed,
            "fractions": dict(self.fractions),
            "method": self.method,
            "roles": {r: list(self.roles.get(r, ())) for r in ROLES},
        }

    def sha256(self) -> str:
        """Content hash of the assignment (dataset + stems per role), recorded with every use."""
        body = json.dumps({"dataset": self.dataset, "roles": self.to_json()["roles"]}, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()

    @classmethod
    def from_json(cls, d: Any, where: str = "splits") -> Splits:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise DataError(f"{where}: not an rbcray split file (format must be {FORMAT!r})")
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise DataError(f"{where}: split format version {d['format_version']} is newer than this rbcray reads")
        roles = d.get("roles")
        if not isinstance(roles, dict) or not all(isinstance(v, list) for v in roles.values()):
            raise DataError(f"{where}: 'roles' must map train/val/test to lists of image stems")
        if not all(isinstance(s, str) for v in roles.values() for s in v):
            raise DataError(f"{where}: every stem in 'roles' must be a string")
        return cls(
            dataset=str(d.get("dataset", "")),
            roles={r: tuple(v) for r, v in roles.items()},
            seed=d.get("seed"),
            fractions={k: float(v) for k, v in (d.get("fractions") or {}).items()},
            method=str(d.get("method", "seeded")),
        )


def make_splits(
    stems: Sequence[str],
    *,
    dataset: str,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    given: dict[str, str | None] | None = None,
    reshuffle: bool = False,
) -> Splits:
    """Assign every stem to train / val / test.

    ``given`` maps stems to a split the source ships (e.g. BCCD-TXL's folders); when every stem
    has one and ``reshuffle`` is false, that assignment is kept. Otherwise the stems are sorted,
    permuted by ``np.random.default_rng(seed)`` and cut at the fractions (each non-empty role
    gets at least one image when the fraction is positive).
    """
    for name, f in (("val", val), ("test", test)):
        if not 0.0 <= f < 1.0:
            raise ConfigError(f"--{name} {f}: must be a fraction in [0, 1)")
    if val + test >= 1.0:
        raise ConfigError(f"--val {val} + --test {test} leaves no training images")
    stems = sorted(set(stems))
    if len(stems) < 3:
        raise DataError(f"{dataset}: {len(stems)} image(s) cannot be split into train/val/test (need at least 3)")
    if given and not reshuffle and all(given.get(s) in ROLES for s in stems):
        roles = {r: tuple(s for s in stems if given[s] == r) for r in ROLES}
        return Splits(dataset=dataset, roles=roles, seed=None, fractions={}, method="source")
    order = [stems[i] for i in np.random.default_rng(seed).permutation(len(stems))]
    n = len(order)
    n_test = max(1, int(round(test * n))) if test > 0 else 0
    n_val = max(1, int(round(val * n))) if val > 0 else 0
    test_s, val_s, train_s = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    roles = {"train": tuple(sorted(train_s)), "val": tuple(sorted(val_s)), "test": tuple(sorted(test_s))}
    return Splits(dataset=dataset, roles=roles, seed=seed, fractions={"val": val, "test": test}, method="seeded")


def save_splits(splits: Splits, path: str | Path) -> Path:
    """Write a split file atomically."""
    from rbcray.io import write_json

    p = Path(path)
    write_json(p, splits.to_json())
    return p


def load_splits(path: str | Path) -> Splits:
    """Read a split file; :class:`DataError` naming the file when it is missing or malformed."""
    from rbcray.io import read_json

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: split file not found (make one with 'rbcray split')")
    return Splits.from_json(read_json(p), where=str(p))


def select(
    stems: Iterable[str], splits: Splits | None, role: str | None, *, where: str = "dataset"
) -> list[str]:
    """The stems of ``stems`` a stage may learn from.

    With no split file, all of them (the folder is taken to be a train set itself); with one, the
    stems of ``role`` — every one of which must be present in ``stems``.
    """
    stems = list(stems)
    if splits is None:
        if role is not None:
            raise ConfigError(f"--split {role}: needs --splits FILE")
        return stems
    if role is None:
        raise ConfigError("--splits given without --split ROLE (train, val or test)")
    want = splits.stems(role)
    have = set(stems)
    missing = [s for s in want if s not in have]
    if missing:
        raise DataError(
            f"{where}: {len(missing)} image(s) of split {role!r} are not in it (first: {missing[0]!r}); "
            f"was the split made for {splits.dataset!r}?"
        )
    return [s for s in stems if s in set(want)]
