"""White cells and platelets in synthetic masks (Bailo et al.'s future work; issue 14 item 7).

The paper's masks hold red cells only. With ``SynthConfig.other_cells`` set, each mask also gets
white cells (category 2) and platelets (3) at the real per-image rates, drawn from the bank's
exemplars of that category (the annotator types them; ``rbcray shapes`` keeps them), augmented
like red cells and placed through the same placement, overlap, contact and colouring rules
(engine.py). Nothing changes when it is off (the default): the red cells' draws come from the
mask stream exactly as before, so RBC-only outputs keep every byte.

**Count law.** Real per-image counts of these rare cells are small integers, mostly 0 for white
cells; ``rbcray stats`` records their mean m and standard deviation s per image (train split).
When s² > m the count is the Gamma-Poisson (negative binomial) with that mean and variance:
n ~ Poisson(m * G), G ~ Gamma(k, 1/k), k = m² / (s² - m). The gamma factor is the field-to-field
change of thickness and lysis; the Poisson part is the cells' own scatter. Chula's counts are of
this kind (docs/masks.md). When s² = m it is Poisson(m); when s² < m (BCCD frames are centred on
one white cell each) a mixture of Poisson(m) and the least-variance law floor(m) + Bernoulli(frac m)
with the same two moments (:func:`draw_count`). On another canvas (area ratio r) the density
stays the real one: the mean becomes r m, the Poisson part of the variance scales by r and the
field part by r² (``scaled``), the same reasoning as the red-cell count (config.py).

**Streams.** Category c of sample i draws its count, exemplars, augmentation, colour choice and
contact flag from its own stream ``SeedSequence(seed, spawn_key=(i, c, OTHER_CELLS))``
(:func:`rbcray.rng.purpose_rng`), so adding platelets leaves the white cells' draws unchanged and
neither touches the red cells' draws. Where they go is drawn from the mask's placement stream.

**Order.** They are placed before the red cells (white cells first, then platelets, in the order
configured): large cells placed late into a crowded field often find no free place (random
sequential placement jams near 45-55 % cover, docs/masks.md), which would bias their rate low;
placed first, the red cells pack around them. Their instance ids come first (1..k).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rbcray.errors import ConfigError
from rbcray.rng import OTHER_CELLS, purpose_rng

#: categories that may be placed this way (COCO ids), and their names
OTHER_NAMES = {2: "WBC", 3: "Platelet"}

#: ``(category, mean, std)`` per image, as ``SynthConfig.other_cells`` holds them
Spec = tuple[tuple[int, float, float], ...]


def check_spec(spec: Spec, red: tuple[int, ...] = (1,)) -> None:
    """Raise ConfigError (one line) unless ``spec`` is a valid ``other_cells`` value."""
    seen: set[int] = set()
    for item in spec:
        if len(item) != 3:
            raise ConfigError(f"other_cells entry {item!r} must be (category, mean, std)")
        c, m, s = item
        if c not in OTHER_NAMES:
            raise ConfigError(f"other_cells category {c!r} must be one of {sorted(OTHER_NAMES)} (2 WBC, 3 Platelet)")
        if c in seen or c in red:
            raise ConfigError(f"other_cells category {c} is given twice (or is also one of categories {list(red)})")
        seen.add(c)
        if not (math.isfinite(m) and 0 <= m <= 1000 and math.isfinite(s) and 0 <= s <= 1000):
            raise ConfigError(f"other_cells category {c}: mean {m} and std {s} per image must be numbers in [0, 1000]")


def parse_spec(text: str) -> Spec:
    """``'2:0.3:0.6,3:2.1:1.9'`` (category:mean[:std] per image) -> spec; ``'off'`` -> ``()``."""
    if text.strip().lower() in ("off", "none", ""):
        return ()
    out = []
    for part in text.split(","):
        bits = part.strip().split(":")
        try:
            if len(bits) not in (2, 3):
                raise ValueError
            c, m = int(bits[0]), float(bits[1])
            s = float(bits[2]) if len(bits) == 3 else math.sqrt(max(m, 0.0))  # no std: Poisson
        except ValueError:
            raise ConfigError(f"--other-cells {text!r}: expected 'stats', 'off' or CATEGORY:MEAN[:STD],... "
                              "(e.g. 2:0.3:0.6,3:2.1:1.9)") from None
        out.append((c, m, s))
    spec = tuple(out)
    check_spec(spec)
    return spec


def scaled(mean: float, std: float, ratio: float) -> tuple[float, float]:
    """(mean, std) per image on a canvas ``ratio`` times the area (see the module docstring)."""
    extra = max(std * std - mean, 0.0)  # the field-to-field part of the variance
    m = mean * ratio
    return m, math.sqrt(m + ratio * ratio * extra) if m > 0 else 0.0


def from_stats(stats: dict[str, Any], ratio: float, where: str = "stats") -> Spec:
    """The ``other_cells`` spec of an ``rbcray stats`` JSON (its ``synthesis.other_cells``), area-scaled."""
    block = (stats.get("synthesis") or {}).get("other_cells") if isinstance(stats, dict) else None
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: no synthesis.other_cells (white cell and platelet rates); re-run 'rbcray stats' "
                          "with this version, or give --other-cells CATEGORY:MEAN:STD,...")
    out = []
    for c in sorted(OTHER_NAMES):
        rec = block.get(str(c))
        if not isinstance(rec, dict) or not all(isinstance(rec.get(k), (int, float)) for k in ("mean", "std")):
            raise ConfigError(f"{where}: synthesis.other_cells.{c} must hold a numeric mean and std")
        if rec["mean"] > 0:
            out.append((c, *scaled(float(rec["mean"]), float(rec["std"]), ratio)))
    spec = tuple(out)
    check_spec(spec)
    return spec


def check_bank(bank: Any, cfg: Any) -> None:
    """DataError (one line, naming the bank) unless ``bank`` holds every category ``cfg`` draws."""
    from rbcray.errors import DataError

    have = sorted({int(c) for c in bank.category})
    for c in (*cfg.categories, *(c for c, _, _ in cfg.other_cells)):
        if c not in have:
            name = OTHER_NAMES.get(c, f"category {c}")
            raise DataError(f"{bank.path}: the shape bank has no cells of category {c} ({name}; it has {have}); "
                            "build it from annotated smears that hold some ('rbcray shapes'), or leave --other-cells off")


def _poisson_share(mean: float, std: float) -> float:
    """Under-dispersed counts (std² < mean): the weight w of Poisson(mean) in a mixture with the
    least-variance law of that mean, floor(mean) + Bernoulli(frac(mean)), whose variance is
    f (1 - f): w = (std² - f (1 - f)) / (mean - f (1 - f)), clamped to [0, 1]. Both parts have
    the mean, so the mixture has mean ``mean`` and variance ``std²`` (down to f (1 - f), the least
    any integer law of that mean has)."""
    f = mean - math.floor(mean)
    low = f * (1 - f)
    return min(1.0, max(0.0, (std * std - low) / (mean - low)))


def draw_count(rng: np.random.Generator, mean: float, std: float) -> int:
    """A count with this mean and std: Gamma-Poisson when std² > mean, Poisson when std² = mean,
    else the Poisson / least-variance mixture of :func:`_poisson_share` (e.g. a white cell in every
    BCCD frame: 1.05 +- 0.22)."""
    if mean <= 0:
        return 0
    extra = std * std - mean
    if extra > 1e-12:
        k = mean * mean / extra
        return int(rng.poisson(rng.gamma(k, mean / k)))
    w = _poisson_share(mean, std)
    if w >= 1.0 - 1e-12 or rng.random() < w:
        return int(rng.poisson(mean))
    return int(math.floor(mean)) + int(rng.random() < mean - math.floor(mean))


def count_law(mean: float, std: float) -> str:
    """The count law in words (for logs and stats.md)."""
    if mean <= 0:
        return "none"
    extra = std * std - mean
    if extra > 1e-12:
        return f"Gamma-Poisson(mean {mean:.2f}, k {mean * mean / extra:.2f})"
    w = _poisson_share(mean, std)
    return f"Poisson({mean:.2f})" if w >= 1.0 - 1e-12 else f"{w:.2f} Poisson({mean:.2f}) + {1 - w:.2f} least-variance"


def add_others(bank: Any, cfg: Any, seed: int, index: int, base: float, n_red: int, lists: dict[str, list],
               pool_of: Any) -> tuple[int, list[int]]:
    """Append the white cells and platelets of sample ``index`` to the per-cell draw lists.

    ``lists`` holds the engine's per-cell lists (``ex, angle, scale, flip_h, flip_v, color_u,
    entry, turn_of`` and ``sticky`` or None); each extra cell is its own shape (entry = its
    position, no turn). ``base`` is the red cells' size factor, so a white cell keeps its real size
    relative to red cells. Returns the total cell count and the placement order (extras first).
    """
    start = n_red
    for c, mean, std in cfg.other_cells:
        rng = purpose_rng((seed, index, c), OTHER_CELLS)
        pool, _ = pool_of(bank, (c,))  # a bank without the category fails on every sample, not by chance
        n = draw_count(rng, mean, std)
        if n == 0:
            continue
        ex = pool[rng.integers(0, len(pool), n)]
        rot = rng.random(n) < cfg.rotate_prob
        lists["ex"] += ex.tolist()
        lists["angle"] += np.where(rot, rng.random(n) * 360.0, 0.0).tolist()
        lists["scale"] += (base * rng.uniform(cfg.scale_min, cfg.scale_max, n)).tolist()
        lists["flip_h"] += (rng.random(n) < cfg.flip_h_prob).tolist()
        lists["flip_v"] += (rng.random(n) < cfg.flip_v_prob).tolist()
        lists["color_u"] += rng.random(n).tolist()
        if lists["sticky"] is not None:
            lists["sticky"] += (rng.random(n) < cfg.contact_prob).tolist()
        k = len(lists["entry"])
        lists["entry"] += list(range(k, k + n))
        lists["turn_of"] += [0] * n
    total = len(lists["entry"])
    return total, list(range(start, total)) + list(range(n_red))
