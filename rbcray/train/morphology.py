"""Training the morphology classifier on real train-split cell crops, and its checkpoint.

Plain PyTorch, one process (the model is small; a CPU trains it in minutes). Class imbalance in
Chula-RBC-12 is steep (normal cells outnumber teardrops 20 to 1), so the cross-entropy weights
each class by 1/sqrt(frequency) — a compromise that keeps rare classes visible without letting
a handful of cells dominate. Crops are augmented by the 8 flips/rotations of the square (a cell's
class does not depend on its orientation).

A checkpoint is a folder: ``model.pt`` (state dict) and ``model.json`` (architecture, training
config, classes, and the provenance record of the image stems it learned from), written through
a staging folder so a checkpoint that exists is complete.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rbcray.config import check, from_dict, to_dict
from rbcray.data.cells import CellCrops
from rbcray.data.morphology import CLASSES
from rbcray.errors import DataError
from rbcray.io import read_json, staged_dir, write_json
from rbcray.models.morphology import MorphologyNet, MorphologyNetConfig, to_input
from rbcray.models.registry import create_model

CHECKPOINT_FORMAT = "rbcray-morphology-classifier"


@dataclass(frozen=True)
class MorphologyTrainConfig:
    """Everything that decides a trained classifier (saved in its ``model.json``)."""

    model: MorphologyNetConfig = field(default_factory=MorphologyNetConfig)
    #: crop window in source pixels and the crop's side after resizing (see rbcray.data.cells)
    window: int = 80
    size: int = 32
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    #: exponent of the inverse class-frequency loss weights (0 = unweighted, 1 = fully balanced)
    class_weight_power: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        check(16 <= self.window <= 512, f"window = {self.window}: must be within 16..512 px")
        check(16 <= self.size <= 256, f"size = {self.size}: must be within 16..256 px")
        check(self.epochs >= 1, f"epochs = {self.epochs}: must be >= 1")
        check(self.batch_size >= 2, f"batch_size = {self.batch_size}: must be >= 2")
        check(self.lr > 0, f"lr = {self.lr}: must be > 0")
        check(self.weight_decay >= 0, f"weight_decay = {self.weight_decay}: must be >= 0")
        check(0.0 <= self.class_weight_power <= 1.0, f"class_weight_power = {self.class_weight_power}: must be within 0..1")


def class_weights(labels: np.ndarray, num_classes: int, power: float) -> np.ndarray:
    """Loss weight per class, proportional to count^-power, mean 1 over present classes; 0 when absent."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, np.maximum(counts, 1.0) ** -power, 0.0)
    present = counts > 0
    return w / w[present].mean()


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 symmetries of the square (k in 0..7) applied to (N, C, S, S)."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


def train_classifier(
    train: CellCrops,
    cfg: MorphologyTrainConfig,
    log: Callable[[str], None] | None = None,
) -> tuple[MorphologyNet, list[dict[str, float]]]:
    """Train a :class:`MorphologyNet` on labelled crops; returns the model (eval mode) and history."""
    if len(train) < cfg.batch_size:
        raise DataError(f"{len(train)} labelled training cells: need at least batch_size = {cfg.batch_size}")
    if (train.labels < 0).any() or (train.labels >= cfg.model.num_classes).any():
        raise DataError("training crops must all carry a class within 0..num_classes-1")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model: MorphologyNet = create_model("morphology_cnn", **to_dict(cfg.model))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * (len(train) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    weights = torch.tensor(class_weights(train.labels, cfg.model.num_classes, cfg.class_weight_power), dtype=torch.float32)
    x_all = to_input(train.crops, cfg.model.in_channels)
    y_all = torch.from_numpy(train.labels)
    history = []
    model.train()
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        order = rng.permutation(len(train))
        total, n = 0.0, 0
        for b in range(len(train) // cfg.batch_size):
            idx = torch.from_numpy(order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
            x = dihedral(x_all[idx], int(rng.integers(8)))
            loss = F.cross_entropy(model(x), y_all[idx], weight=weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        history.append({"epoch": epoch + 1, "loss": total / n, "seconds": time.perf_counter() - t0})
        if log:
            log(f"epoch {epoch + 1}/{cfg.epochs}: loss {total / n:.4f} ({history[-1]['seconds']:.1f} s)")
    model.eval()
    return model, history


def save_classifier(out: str | Path, model: MorphologyNet, cfg: MorphologyTrainConfig, provenance: dict[str, Any], extra: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write a checkpoint folder (``model.pt`` then ``model.json``, staged, renamed into place)."""
    with staged_dir(out, overwrite=overwrite) as tmp:
        torch.save(model.state_dict(), tmp / "model.pt")
        meta = {
            "format": CHECKPOINT_FORMAT,
            "model": "morphology_cnn",
            "classes": list(CLASSES),
            "config": to_dict(cfg),
            "provenance": provenance,
            **(extra or {}),
        }
        write_json(tmp / "model.json", meta)
    return Path(out)


def load_classifier(path: str | Path) -> tuple[MorphologyNet, MorphologyTrainConfig, dict[str, Any]]:
    """Read a checkpoint folder -> (model in eval mode, its training config, its model.json)."""
    p = Path(path)
    if not (p / "model.json").is_file() or not (p / "model.pt").is_file():
        raise DataError(f"{p}: not a morphology classifier checkpoint (needs model.json and model.pt; train one with 'rbcray morphology train')")
    meta = read_json(p / "model.json")
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{p / 'model.json'}: not a morphology classifier checkpoint")
    cfg = from_dict(MorphologyTrainConfig, meta["config"], where=str(p / "model.json"))
    model: MorphologyNet = create_model("morphology_cnn", **to_dict(cfg.model))
    try:
        model.load_state_dict(torch.load(p / "model.pt", map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise DataError(f"{p / 'model.pt'}: cannot load ({str(e).splitlines()[0]})") from None
    model.eval()
    return model, cfg, meta
