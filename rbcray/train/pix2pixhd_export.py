"""After training: style clusters, the final model folder, and image grids.

Style clusters follow Wang et al. 2018 (Sec. 3.4) and Bailo et al. 2019 (Fig. 6): the trained
encoder E is run on every training image at the generator's working resolution, features are
averaged per region (each cell, and each image's background), and K-means per class gives the
style centres (:mod:`rbcray.models.pix2pixhd.styles`). :func:`export_model` then writes
``OUT/model/`` (weights, styles, config, statistics, manifest last), which is what
``rbcray styles`` and ``rbcray generate`` read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rbcray import storage
from rbcray.data.dataset import utc_now
from rbcray.data.formats import encode_color_mask
from rbcray.io import encode_png
from rbcray.models.pix2pixhd.checkpoint import MODEL_DIR, torch_bytes, write_model
from rbcray.models.pix2pixhd.inputs import instance_features
from rbcray.models.pix2pixhd.styles import fit_styles
from rbcray.train.pix2pixhd import config_json
from rbcray.train.pix2pixhd_data import resize_pair

if TYPE_CHECKING:
    from rbcray.train.pix2pixhd_loop import Trainer


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8."""
    return ((t.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def tile(images: list[np.ndarray], ncols: int, pad: int = 4, fill: int = 255) -> np.ndarray:
    """Arrange equal-sized RGB images in a grid with ``pad`` pixels of ``fill`` between them."""
    h, w = images[0].shape[:2]
    nrows = math.ceil(len(images) / ncols)
    out = np.full((nrows * h + (nrows - 1) * pad, ncols * w + (ncols - 1) * pad, 3), fill, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, ncols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = im
    return out


def grid_png(inst: np.ndarray, real: torch.Tensor, fake: torch.Tensor) -> bytes:
    """PNG with one row per sample: colour-coded mask | real image | generated image."""
    real8, fake8 = to_uint8(real), to_uint8(fake)
    cells = []
    for i in range(len(inst)):
        cells += [encode_color_mask(inst[i].astype(np.uint16), name=f"preview {i}"), real8[i], fake8[i]]
    return encode_png(tile(cells, 3))


def working_scale(trainer: Trainer) -> tuple[float, float]:
    """Scale from full-resolution images to the final generator's input (stage 1 only: < 1)."""
    stage = trainer.model.stage
    spec = trainer.crop_spec(stage)
    if spec.out_size is None:
        return 1.0, 1.0
    ref = spec.crop_size or spec.load_size or (trainer.ds.samples[0]["width"], trainer.ds.samples[0]["height"])
    return spec.out_size[0] / ref[0], spec.out_size[1] / ref[1]


@torch.no_grad()
def encode_regions(trainer: Trainer, log: Callable[[str], None] = print) -> dict[int, np.ndarray]:
    """Per-class (N, feat_nc) encoder features of every region of every training image (class 0 = background)."""
    model, dev = trainer.inference_model, trainer.device  # the exported E (the EMA copy when there is one)
    assert model.E is not None
    was_training = model.training
    model.eval()
    sx, sy = working_scale(trainer)
    out: dict[int, list[np.ndarray]] = {}
    from rbcray.train.pix2pixhd_data import PairDataset

    data = PairDataset(trainer.ds, trainer.crop_spec(model.stage), trainer.cfg.model.num_classes)
    for stem in trainer.ds.stems:
        img, inst, lut = data.load(stem)
        if (sx, sy) != (1.0, 1.0):
            img, inst = resize_pair(img, inst, (max(8, round(img.shape[1] * sx)), max(8, round(img.shape[0] * sy))))
        x = torch.from_numpy(img.transpose(2, 0, 1).copy()).float().div(127.5).sub(1).unsqueeze(0).to(dev)
        regions = torch.from_numpy(inst.astype(np.int64) + 1).unsqueeze(0).to(dev)  # background -> region 1
        _, ids, feats = instance_features(model.E(x), regions)
        cls = np.where(ids.cpu().numpy() == 1, 0, lut[np.maximum(ids.cpu().numpy() - 1, 0)])
        f = feats.cpu().numpy()
        for c in np.unique(cls):
            out.setdefault(int(c), []).append(f[cls == c])
    model.train(was_training)
    res = {c: np.concatenate(v) for c, v in out.items()}
    log("style features: " + ", ".join(f"class {c}: {len(v)} regions" for c, v in sorted(res.items())))
    return res


def exported_epoch(out: str) -> int | None:
    """Epoch of the model already exported under ``out/model`` (None when there is none)."""
    uri = storage.join(out, MODEL_DIR, "model.json")
    if not storage.exists(uri):
        return None
    try:
        return int(json.loads(storage.read_bytes(uri))["epoch"])
    except (ValueError, KeyError, TypeError):
        return None


def export_model(trainer: Trainer, out: str, log: Callable[[str], None] = print, force: bool = False) -> str:
    """Fit style clusters and write ``out/model/`` (manifest last); returns the model folder URI.

    Skipped when ``out/model`` already holds this epoch's model (re-running a finished run).
    """
    if not force and exported_epoch(out) == trainer.epoch:
        log(f"model of epoch {trainer.epoch} already at {storage.join(out, MODEL_DIR)}")
        return storage.join(out, MODEL_DIR)
    cfg = trainer.cfg
    files: dict[str, bytes] = {}
    if trainer.model.E is not None:
        bank = fit_styles(encode_regions(trainer, log), cfg.model.num_classes, cfg.model.feat_nc, cfg.style_clusters, cfg.seed)
        files["styles.npz"] = bank.to_bytes()
    model = trainer.inference_model  # the EMA weights when ema_decay > 0
    weights = {
        "G": model.G.state_dict(),
        "E": model.E.state_dict() if model.E is not None else None,
        "stage": trainer.model.stage,
        "epoch": trainer.epoch,
    }
    files["generator.pt"] = torch_bytes(weights)
    files["config.json"] = (json.dumps(json.loads(config_json(cfg)), indent=2) + "\n").encode()
    if trainer.stats is None:
        from rbcray.train.pix2pixhd_loop import dataset_summary

        trainer.stats = dataset_summary(trainer.ds, trainer.provenance)
    stats = trainer.stats
    files["stats.json"] = (json.dumps(stats, indent=2) + "\n").encode()
    meta: dict[str, Any] = {
        "created": utc_now(),
        "epoch": trainer.epoch,
        "stage": trainer.model.stage,
        "style_clusters": cfg.style_clusters if "styles.npz" in files else 0,
        "weights": "ema" if trainer.ema is not None else "raw",
        "resumed_at_epochs": trainer.resumes,
        "provenance": trainer.provenance,
        "history": trainer.history,
    }
    uri = write_model(out, files, meta)
    log(f"model written to {uri}")
    return uri


def styles_grid(translator: Any, inst: np.ndarray, categories: dict[int, int] | None = None, seed: int = 0) -> np.ndarray:
    """The mask (colour-coded) followed by the image in each of the model's K styles (Bailo Fig. 6)."""
    k = translator.num_styles
    if k == 0:
        from rbcray.errors import RbcrayError

        raise RbcrayError("this model has no style clusters (trained with feat_nc = 0)")
    imgs = translator.translate([inst] * k, [categories] * k, [seed] * k, style=list(range(k)))
    cells = [encode_color_mask(inst.astype(np.uint16), name="mask")] + imgs
    return tile(cells, math.ceil(math.sqrt(len(cells))))

