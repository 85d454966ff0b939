"""Training UNIT normal -> class c on real train-split cell crops, scoring translations, the figure.

Domain A is every labelled *normal* cell (class 0) of the training images, domain B every cell of
the target class c; patches are the RGB channels of the classifier's crops
(:mod:`rbcray.data.cells`: a fixed window of source pixels centred on the cell, so size survives).
Training runs in one process for a wall-clock budget or a number of iterations, alternating the
two explicit GAN phases of :class:`~rbcray.models.unit.networks.UNIT`.

:func:`score_translations` feeds translated cells to the real-data morphology classifier with the
*host cell's* mask as the fourth channel (the host shape kept — the mask option this module
measures) and returns p(c), next to p(c) of real normal and real class-c cells of the same
images: the contrast an acceptance rate must be read against.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rbcray.config import check, from_dict, to_dict
from rbcray.data.cells import CellCrops
from rbcray.errors import DataError
from rbcray.io import read_json, staged_dir, write_json
from rbcray.models.morphology import MorphologyNet, predict_proba
from rbcray.models.registry import create_model
from rbcray.models.unit.networks import UNIT, UNITConfig

CHECKPOINT_FORMAT = "rbcray-unit"


@dataclass(frozen=True)
class UNITTrainConfig:
    """Everything that decides a trained translator (saved in its ``unit.json``)."""

    model: UNITConfig = field(default_factory=UNITConfig)
    #: morphology class to translate normal cells into (rbcray.data.morphology.CLASSES index)
    target: int = 4
    batch_size: int = 8
    #: stop after this many iterations or this many seconds, whichever comes first
    iterations: int = 20000
    max_seconds: float = 480.0
    seed: int = 0

    def __post_init__(self) -> None:
        check(1 <= self.target <= 12, f"target = {self.target}: must be a rare class 1..12 (0 is normal, the source domain)")
        check(self.batch_size >= 1, f"batch_size = {self.batch_size}: must be >= 1")
        check(self.iterations >= 1, f"iterations = {self.iterations}: must be >= 1")
        check(self.max_seconds > 0, f"max_seconds = {self.max_seconds}: must be > 0")


def to_rgb_tensor(crops: np.ndarray) -> torch.Tensor:
    """uint8 (N, 4, S, S) crops -> RGB float tensor in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(crops[:, :3])).float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """RGB float tensor in [-1, 1] -> uint8 (N, 3, S, S)."""
    return ((x.clamp(-1, 1) + 1.0) * 127.5).round().byte().cpu().numpy()


def train_unit(
    normal: CellCrops, rare: CellCrops, cfg: UNITTrainConfig, log: Callable[[str], None] | None = None
) -> tuple[UNIT, list[dict[str, float]]]:
    """Train UNIT with A = ``normal`` crops and B = ``rare`` crops; returns (model in eval mode, history)."""
    if len(normal) < cfg.batch_size or len(rare) < cfg.batch_size:
        raise DataError(f"UNIT needs at least batch_size = {cfg.batch_size} cells per domain; got {len(normal)} normal, {len(rare)} of class {cfg.target}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model: UNIT = create_model("unit", **to_dict(cfg.model))
    model.train()
    xa, xb = to_rgb_tensor(normal.crops), to_rgb_tensor(rare.crops)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    it = 0
    while it < cfg.iterations and time.perf_counter() - t0 < cfg.max_seconds:
        a = xa[torch.from_numpy(rng.integers(0, len(xa), cfg.batch_size))]
        b = xb[torch.from_numpy(rng.integers(0, len(xb), cfg.batch_size))]
        if rng.random() < 0.5:  # cells have no preferred orientation
            a, b = a.flip(-1), b.flip(-1)
        d = model.dis_step(a, b)
        g = model.gen_step(a, b)
        it += 1
        if it % 50 == 0 or it == 1:
            history.append({"iteration": it, "seconds": time.perf_counter() - t0, "dis": d, **g})
            if log and it % 200 == 0:
                log(f"iter {it}: gen {g['total']:.2f} (recon {g['recon']:.3f}, cycle {g['cycle']:.3f}, gan {g['gan']:.3f}) dis {d:.3f}")
    history.append({"iteration": it, "seconds": time.perf_counter() - t0})
    model.eval()
    return model, history


@torch.no_grad()
def translate_crops(model: UNIT, crops: np.ndarray, batch: int = 256) -> np.ndarray:
    """Translate crops A -> B; returns uint8 (N, 4, S, S) with the source cell's mask kept."""
    out = crops.copy()
    for i in range(0, len(crops), batch):
        out[i : i + batch, :3] = to_uint8(model.translate(to_rgb_tensor(crops[i : i + batch]), "b"))
    return out


def score_translations(classifier: MorphologyNet, target: int, normal: np.ndarray, translated: np.ndarray, rare: np.ndarray) -> dict[str, np.ndarray]:
    """p(target) of real normal cells, their translations and real target-class cells."""
    return {
        "real_normal": predict_proba(classifier, normal)[:, target],
        "translated": predict_proba(classifier, translated)[:, target],
        "real_target": predict_proba(classifier, rare)[:, target],
    }


def acceptance_table(scores: dict[str, np.ndarray], thresholds: tuple[float, ...], n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Share of each group with p(target) >= t, with 95% bootstrap intervals (cells resampled)."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in thresholds:
        row: dict[str, Any] = {"t": float(t)}
        for k, p in scores.items():
            keep = (p >= t).astype(float)
            reps = keep[rng.integers(0, len(keep), (n_boot, len(keep)))].mean(1) if len(keep) else np.array([np.nan])
            row[k] = float(keep.mean()) if len(keep) else float("nan")
            row[k + "_ci"] = [float(v) for v in np.quantile(reps, [0.025, 0.975])]
        rows.append(row)
    return rows


def save_unit(
    out: str | Path,
    model: UNIT,
    cfg: UNITTrainConfig,
    provenance: dict[str, Any],
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
    write_more: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``unit.pt`` (all weights), anything ``write_more(folder)`` adds, then ``unit.json``; staged."""
    with staged_dir(out, overwrite=overwrite) as tmp:
        torch.save(model.state_dict(), tmp / "unit.pt")
        if write_more is not None:
            write_more(tmp)
        write_json(tmp / "unit.json", {"format": CHECKPOINT_FORMAT, "model": "unit", "config": to_dict(cfg), "provenance": provenance, **(extra or {})})
    return Path(out)


def load_unit(path: str | Path) -> tuple[UNIT, UNITTrainConfig, dict[str, Any]]:
    """Read a translator folder -> (model in eval mode, config, unit.json)."""
    p = Path(path)
    if not (p / "unit.json").is_file() or not (p / "unit.pt").is_file():
        raise DataError(f"{p}: not a UNIT checkpoint (needs unit.json and unit.pt)")
    meta = read_json(p / "unit.json")
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{p / 'unit.json'}: not a UNIT checkpoint")
    cfg = from_dict(UNITTrainConfig, meta["config"], where=str(p / "unit.json"))
    model: UNIT = create_model("unit", **to_dict(cfg.model))
    try:
        model.load_state_dict(torch.load(p / "unit.pt", map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise DataError(f"{p / 'unit.pt'}: cannot load ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    model.eval()
    return model, cfg, meta


def figure(path: str | Path, normal: np.ndarray, translated: np.ndarray, rare: np.ndarray, p_trans: np.ndarray, title: str, k: int = 10) -> Path:
    """PNG: a row of real normal cells, their translations (with p(c)) and a row of real class-c cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = min(k, len(normal), len(rare))
    fig, axes = plt.subplots(3, k, figsize=(1.3 * k, 4.4))
    rows = (("real normal", normal), ("translated", translated), ("real " + title, rare))
    for r, (name, arr) in enumerate(rows):
        for c in range(k):
            ax = axes[r, c]
            ax.imshow(arr[c, :3].transpose(1, 2, 0))
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 1:
                ax.set_title(f"p={p_trans[c]:.2f}", fontsize=7)
    fig.suptitle(f"UNIT normal -> {title}: real vs translated cells (held-out images)", fontsize=9)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p
