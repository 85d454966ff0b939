"""The mask synthesis job's config (paper Sec. 4.1) and how it is resolved from ``rbcray stats``.

One frozen dataclass, :class:`SynthConfig`, holds every parameter of mask synthesis; it is
validated when built and saved (``to_dict``) with every output. :func:`resolve_config` fills it
from the ``synthesis`` block of the stats JSON plus command-line overrides.

Cell count on another canvas. The stats give mu_n, sigma_n for images of the stats' size
(``width`` x ``height``). For a canvas of a different size, both are multiplied by the area ratio
r = (W * H) / (w_stats * h_stats): the density (cells per pixel) stays the real one, and the
coefficient of variation sigma_n / mu_n stays the real one too. Scaling sigma by r rather than
sqrt(r) is deliberate: the spread of real counts comes mostly from smears being thicker or thinner
from field to field (a density change that scales with the field's area), not from Poisson noise.
An explicit ``--cells-mean`` / ``--cells-std`` is used as given, without scaling.

Cell size. ``cell_size`` (px, the mean of bbox height and width of whole cells) is both the
half width at half maximum of the placement kernel of Eq. 3 and the target mean size of the cells:
bank shapes are rescaled by ``cell_size / bank mean size`` before augmentation, so a cell-size
override (e.g. the paper's 46 px) gives cells of that size from any bank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from rbcray.config import check, from_dict, to_dict
from rbcray.data.formats import PALETTE
from rbcray.errors import ConfigError

#: Default number of palette colours: 8, the first 8 of the palette (well separated hues).
#: Sequential greedy colouring (each new cell takes a colour none of its touching neighbours has)
#: needs at most (touching neighbours + 1) colours. Synthetic cells touch only when placed exactly
#: side by side, so few colours would do (at the benchmark density no place was ever rejected for
#: want of a colour with 3 colours or more; docs/masks.md), and 8 leaves room for banks whose cells
#: touch a lot (re-sampling for colour would then bias where cells go).
DEFAULT_COLORS = 8


@dataclass(frozen=True)
class SynthConfig:
    """Every parameter of one mask-synthesis job (saved with its outputs)."""

    #: canvas size in pixels
    width: int = 640
    height: int = 480
    #: cell count n ~ Norm(cells_mean, cells_std), rounded, at least 0
    cells_mean: float = 40.0
    cells_std: float = 0.0
    #: mean cell size in px (kernel HWHM of Eq. 3 and target shape size)
    cell_size: float = 46.0
    #: 'adhesive' (Eq. 3) or 'uniform' (the paper's baseline, Fig. 4)
    placement: Literal["adhesive", "uniform"] = "adhesive"
    #: the first n_init centres are uniform (Eq. 3)
    n_init: int = 20
    #: Eq. 3's kernel within cell_size of its centre ("reverted"): 'reverted' = 1 - G (the plain
    #: reading, continuous at the disc's edge) or 'constant' = the value ``kernel_inner``
    kernel_inside: Literal["reverted", "constant"] = "reverted"
    #: with kernel_inside 'constant': the kernel's value there, relative to the Gaussian's peak
    #: ("set low so occupied places are avoided"); 0 = never there
    kernel_inner: float = 0.0
    #: kernel width: its half width at half maximum (and disc radius) is kernel_scale * cell_size
    #: (1 = the paper's; calibration may change it)
    kernel_scale: float = 1.0
    #: contact (beyond the paper, see contact.py): the share of cells that may press against
    #: placed cells, and how deep: a proposal of such a cell is accepted when it overlaps placed
    #: cells by at most ``contact_overlap`` of its own area (and of each neighbour's); the shared
    #: pixels are split along the bisector of the two centres. 0 = the paper's rule (no overlap)
    contact_prob: float = 0.0
    contact_overlap: float = 0.0
    #: palette colours used (the first K of rbcray.data.formats.PALETTE)
    colors: int = DEFAULT_COLORS
    #: placement tries per cell (overlap or no free colour -> try again) before the cell is given up
    max_tries: int = 1000
    #: fraction of the requested cells of one mask that may be given up before the mask is an
    #: error. Random sequential placement jams near 45-55 % coverage while real smears (whose
    #: cells deform and overlap) reach higher counts: the densest masks of a count distribution
    #: taken from real data are truncated (recorded in n_unplaced) rather than failing a run.
    max_unplaced: float = 0.5
    #: augmentation: rotation by any angle with this probability
    rotate_prob: float = 1.0
    #: augmentation: scale factor uniform in [scale_min, scale_max] (on top of the cell-size match)
    scale_min: float = 0.9
    scale_max: float = 1.1
    #: augmentation: horizontal / vertical flip probabilities
    flip_h_prob: float = 0.5
    flip_v_prob: float = 0.5
    #: distinct augmented shapes per mask (0 = every cell its own): a mask with more cells re-uses
    #: them, each re-use turned by a random grid symmetry that leaves the augmentation law
    #: unchanged (see engine.py); bounds the cost of augmentation on large canvases. 64 stays the
    #: default because every cell its own costs more than a quarter of the mask time on the paper's
    #: 669-cell canvas (42 %, benchmarks/bench_masks.py, docs/masks.md); 0 gives full independence
    shapes_per_mask: int = 64
    #: shape-bank categories to draw exemplars from (COCO ids; 1 = RBC)
    categories: tuple[int, ...] = (1,)
    #: white cells and platelets per image, ``(category, mean, std)`` each (rbcray.synth.others:
    #: Poisson or Gamma-Poisson counts, placed before the red cells); () = none, the paper's masks
    other_cells: tuple[tuple[int, float, float], ...] = ()

    def __post_init__(self) -> None:
        check(self.width >= 8 and self.height >= 8, f"canvas {self.width}x{self.height} is too small (at least 8x8)")
        check(self.width * self.height <= 100_000_000, f"canvas {self.width}x{self.height} is larger than 100 megapixels")
        check(math.isfinite(self.cells_mean) and self.cells_mean >= 0, f"cells_mean = {self.cells_mean} must be a number >= 0")
        check(math.isfinite(self.cells_std) and self.cells_std >= 0, f"cells_std = {self.cells_std} must be a number >= 0")
        check(self.cells_mean + 6 * self.cells_std < 65535, f"cells_mean = {self.cells_mean} is more than a uint16 instance map holds")
        check(math.isfinite(self.cell_size) and self.cell_size >= 2, f"cell_size = {self.cell_size} px must be >= 2")
        check(self.placement in ("adhesive", "uniform"), f"placement = {self.placement!r} must be 'adhesive' or 'uniform'")
        check(self.n_init >= 1, f"n_init = {self.n_init} must be >= 1")
        check(self.kernel_inside in ("reverted", "constant"), f"kernel_inside = {self.kernel_inside!r} must be 'reverted' or 'constant'")
        check(0.0 <= self.kernel_inner <= 0.5, f"kernel_inner = {self.kernel_inner} must be in [0, 0.5] (the kernel is 0.5 at cell_size)")
        check(self.kernel_inner == 0.0 or self.kernel_inside == "constant",
              f"kernel_inner = {self.kernel_inner} applies to kernel_inside 'constant' (the kernel is 1 - G inside its disc otherwise)")
        check(0.25 <= self.kernel_scale <= 4.0, f"kernel_scale = {self.kernel_scale} must be in [0.25, 4]")
        check(0.0 <= self.contact_prob <= 1.0, f"contact_prob = {self.contact_prob} must be a probability in [0, 1]")
        check(0.0 <= self.contact_overlap <= 0.5, f"contact_overlap = {self.contact_overlap} must be in [0, 0.5] (a fraction of a cell's area)")
        check(2 <= self.colors <= min(len(PALETTE), 15), f"colors = {self.colors} must be in 2..{min(len(PALETTE), 15)}")
        check(1 <= self.max_tries <= 100_000, f"max_tries = {self.max_tries} must be in 1..100000")
        check(0.0 <= self.max_unplaced < 1.0, f"max_unplaced = {self.max_unplaced} must be in [0, 1)")
        for k in ("rotate_prob", "flip_h_prob", "flip_v_prob"):
            v = getattr(self, k)
            check(0.0 <= v <= 1.0, f"{k} = {v} must be a probability in [0, 1]")
        check(0.1 <= self.scale_min <= self.scale_max <= 10.0, f"scale range [{self.scale_min}, {self.scale_max}] must satisfy 0.1 <= min <= max <= 10")
        check(self.shapes_per_mask >= 0, f"shapes_per_mask = {self.shapes_per_mask} must be >= 0 (0 = no re-use)")
        check(len(self.categories) >= 1, "categories must name at least one category id")
        if self.other_cells:
            from rbcray.synth.others import check_spec

            check_spec(self.other_cells, self.categories)
        longest = self.cell_size * self.scale_max
        check(
            longest < min(self.width, self.height),
            f"cell size {self.cell_size:g} px (x{self.scale_max:g} max scale) does not fit the {self.width}x{self.height} "
            "canvas; lower --cell-size or enlarge the canvas",
        )

    @property
    def sigma(self) -> float:
        """Standard deviation of the Gaussian kernel z: HWHM = cell_size."""
        return self.cell_size / math.sqrt(2.0 * math.log(2.0))

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "synth config") -> SynthConfig:
        return from_dict(cls, data, where=where)


#: the paper's setting: 20 uniform seeds on a 1920x1200 canvas
PAPER_N_INIT, PAPER_CANVAS = 20, (1920, 1200)


def area_scaled_n_init(width: int, height: int) -> int:
    """n_init giving the paper's density of uniform seeds (20 per 1920x1200) on another canvas."""
    return max(1, round(PAPER_N_INIT * width * height / (PAPER_CANVAS[0] * PAPER_CANVAS[1])))


def synthesis_params(stats: dict[str, Any], where: str = "stats") -> dict[str, float]:
    """The ``synthesis`` block of an ``rbcray stats`` JSON, checked."""
    syn = stats.get("synthesis") if isinstance(stats, dict) else None
    if not isinstance(syn, dict):
        raise ConfigError(f"{where}: no 'synthesis' block; pass the JSON written by 'rbcray stats'")
    out = {}
    for k in ("cells_mean", "cells_std", "cell_size", "width", "height"):
        v = syn.get(k)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise ConfigError(f"{where}: synthesis.{k} = {v!r} is not a number (was the dataset empty?)")
        out[k] = float(v)
    if out["width"] <= 0 or out["height"] <= 0:
        raise ConfigError(f"{where}: synthesis image size {out['width']:g}x{out['height']:g} is not positive")
    for k in ("cells_mean", "cells_std", "cell_size"):
        if out[k] < 0 or (k == "cell_size" and out[k] == 0):
            raise ConfigError(f"{where}: synthesis.{k} = {out[k]:g} must be {'positive' if k == 'cell_size' else '>= 0'}")
    return out


def resolve_config(
    stats: dict[str, Any] | None,
    *,
    where: str = "stats",
    width: int | None = None,
    height: int | None = None,
    cells_mean: float | None = None,
    cells_std: float | None = None,
    cell_size: float | None = None,
    other_cells: Any = None,
    **overrides: Any,
) -> SynthConfig:
    """A :class:`SynthConfig` from stats JSON (may be ``None`` when everything is given) + overrides.

    The canvas defaults to the stats' image size; counts are scaled by area when it differs (see
    the module docstring). ``overrides`` are other :class:`SynthConfig` fields (``None`` = keep).
    ``other_cells`` (white cells and platelets, rbcray.synth.others): ``'stats'`` = the stats'
    real rates scaled to the canvas, ``'off'``, ``'CATEGORY:MEAN[:STD],...'`` or a list of
    ``(category, mean, std)``, used as given.
    """
    data: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    stats_rates = isinstance(other_cells, str) and other_cells.strip().lower() == "stats"
    if isinstance(other_cells, str) and not stats_rates:
        from rbcray.synth.others import parse_spec

        data["other_cells"] = parse_spec(other_cells)
    elif other_cells is not None and not stats_rates:
        data["other_cells"] = other_cells
    if stats is not None:
        syn = synthesis_params(stats, where)
        w = int(width if width is not None else syn["width"])
        h = int(height if height is not None else syn["height"])
        ratio = (w * h) / (syn["width"] * syn["height"])
        data.update(
            width=w,
            height=h,
            cells_mean=cells_mean if cells_mean is not None else syn["cells_mean"] * ratio,
            cells_std=cells_std if cells_std is not None else syn["cells_std"] * ratio,
            cell_size=cell_size if cell_size is not None else syn["cell_size"],
        )
        if stats_rates:
            from rbcray.synth.others import from_stats

            data["other_cells"] = from_stats(stats, ratio, where)
    else:
        if stats_rates:
            raise ConfigError("--other-cells stats needs --stats (the JSON of 'rbcray stats')")
        missing = [n for n, v in (("cells_mean", cells_mean), ("cell_size", cell_size)) if v is None]
        if missing:
            raise ConfigError(f"without a stats JSON, give {' and '.join('--' + m.replace('_', '-') for m in missing)}")
        for k, v in (("width", width), ("height", height), ("cells_mean", cells_mean), ("cells_std", cells_std), ("cell_size", cell_size)):
            if v is not None:
                data[k] = v
    return SynthConfig.from_dict(data, where="synth config")
