"""How real do synthetic images look? (Bailo et al. Table 1, extended; issue 6 item 5.)

Three measures, real vs synthetic images of one dataset:

- **colour inside cells**: per-channel mean and standard deviation of the RGB values of cell
  pixels (the paper's Table 1 row), over all images of each side;
- **classifier two-sample test**: a small CNN learns to tell real from synthetic crops; its AUC on
  crops of held-out images is reported (0.5: indistinguishable, 1.0: always told apart). Images,
  not crops, are split, so the classifier cannot recognise an image it trained on;
- **FID / KID** with Inception-v3 pool features, only when the torchvision Inception-v3 weights
  file is available locally (never downloaded); otherwise a one-line reason. torchvision's
  Inception-v3 is not the TensorFlow graph of the original FID, so values compare across rbcray
  runs, not with published FIDs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from rbcray.evaluate.data import Sample

INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"  # torchvision's file name for these weights


@dataclass(frozen=True)
class RealismParams:
    crop: int = 32
    crops_per_image: int = 8
    epochs: int = 10
    seed: int = 0


def colour_stats(samples: list[Sample] | tuple[Sample, ...]) -> dict[str, list[float]]:
    """Per-channel mean and std of cell pixels (instances > 0) over ``samples`` (RGB, 0-255)."""
    n = 0
    s1 = np.zeros(3)
    s2 = np.zeros(3)
    for s in samples:
        if s.instances is None:
            continue
        px = s.image[s.instances > 0].astype(np.float64)
        n += len(px)
        s1 += px.sum(0)
        s2 += (px ** 2).sum(0)
    if n == 0:
        return {"mean": [float("nan")] * 3, "std": [float("nan")] * 3, "pixels": 0}
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean ** 2, 0))
    return {"mean": [round(float(v), 2) for v in mean], "std": [round(float(v), 2) for v in std], "pixels": int(n)}


def random_crops(samples: list[Sample] | tuple[Sample, ...], crop: int, per_image: int, rng: np.random.Generator) -> np.ndarray:
    """(N, crop, crop, 3) uint8 crops, ``per_image`` from each sample."""
    out = []
    for s in samples:
        h, w = s.shape
        if h < crop or w < crop:
            continue
        for _ in range(per_image):
            y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
            out.append(s.image[y:y + crop, x:x + crop])
    return np.stack(out) if out else np.zeros((0, crop, crop, 3), np.uint8)


class CropClassifier(nn.Module):
    """A small CNN: three conv blocks, global average pooling, one logit (synthetic vs real)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3))).squeeze(1)


def two_sample_auc(
    real: list[Sample] | tuple[Sample, ...], synthetic: list[Sample] | tuple[Sample, ...], p: RealismParams | None = None
) -> dict[str, Any]:
    """Held-out AUC of a CNN telling real from synthetic crops (half the images of each side train it)."""
    from sklearn.metrics import roc_auc_score

    p = p or RealismParams()
    rng = np.random.default_rng([p.seed, 0xC25])
    if len(real) < 2 or len(synthetic) < 2:
        return {"auc": None, "note": "needs at least 2 real and 2 synthetic images"}

    def halves(xs: list[Sample] | tuple[Sample, ...]) -> tuple[list[Sample], list[Sample]]:
        perm = rng.permutation(len(xs))
        k = len(xs) // 2
        return [xs[i] for i in perm[:k]], [xs[i] for i in perm[k:]]

    r_tr, r_te = halves(real)
    s_tr, s_te = halves(synthetic)

    def crops(rs: list[Sample], ss: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        a = random_crops(rs, p.crop, p.crops_per_image, rng)
        b = random_crops(ss, p.crop, p.crops_per_image, rng)
        x = torch.from_numpy(np.concatenate([a, b])).permute(0, 3, 1, 2).float().div(255)
        y = torch.cat([torch.zeros(len(a)), torch.ones(len(b))])
        return x, y

    x_tr, y_tr = crops(r_tr, s_tr)
    x_te, y_te = crops(r_te, s_te)
    if len(x_tr) == 0 or len(x_te) == 0 or y_te.min() == y_te.max():
        return {"auc": None, "note": f"images smaller than the {p.crop}-pixel crop"}
    torch.manual_seed(p.seed)
    model = CropClassifier()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    for epoch in range(p.epochs):
        model.train()
        order = torch.from_numpy(np.random.default_rng([p.seed, epoch]).permutation(len(x_tr)))
        for i in range(0, len(order), 32):
            idx = order[i:i + 32]
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        scores = torch.cat([model(x_te[i:i + 256]) for i in range(0, len(x_te), 256)]).numpy()
    return {"auc": round(float(roc_auc_score(y_te.numpy(), scores)), 4), "train_crops": len(x_tr), "test_crops": len(x_te)}


# ----------------------------------------------------------------------------- FID / KID
def find_inception_weights(path: str | None = None) -> Path | None:
    """The Inception-v3 weights file: ``path`` if given, else torch hub's checkpoint cache."""
    if path:
        return Path(path).expanduser()
    cand = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    return cand if cand.is_file() else None


def inception_features(samples: list[Sample] | tuple[Sample, ...], weights: Path, batch: int = 16) -> np.ndarray:
    """(N, 2048) pool features of torchvision's Inception-v3 (images resized to 299x299)."""
    from torchvision.models import inception_v3

    from rbcray.models.fcn import load_into, load_state_file

    net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    load_into(net, load_state_file(weights), weights)
    net.fc = nn.Identity()
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    feats = []
    with torch.no_grad():
        for i in range(0, len(samples), batch):
            imgs = [cv2.resize(s.image, (299, 299), interpolation=cv2.INTER_LINEAR) for s in samples[i:i + batch]]
            x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div(255)
            feats.append(net((x - mean) / std).numpy())
    return np.concatenate(feats).astype(np.float64)


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets."""
    import warnings

    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        # fewer images than feature dimensions make the covariances singular; sqrtm still
        # returns the usual (approximate) root, as in every FID implementation
        warnings.simplefilter("ignore")
        covmean = np.asarray(linalg.sqrtm(c1 @ c2)).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean))


def kid(a: np.ndarray, b: np.ndarray) -> float:
    """Kernel Inception Distance: unbiased MMD² with the cubic kernel (x·y / d + 1)³."""
    d = a.shape[1]
    kxx = (a @ a.T / d + 1) ** 3
    kyy = (b @ b.T / d + 1) ** 3
    kxy = (a @ b.T / d + 1) ** 3
    m, n = len(a), len(b)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


def fid_kid(real: list[Sample] | tuple[Sample, ...], synthetic: list[Sample] | tuple[Sample, ...], weights: str | None) -> dict[str, Any]:
    """FID and KID, or ``{"note": why not}`` when the weights are absent or too few images."""
    path = find_inception_weights(weights)
    if path is None or not path.is_file():
        where = path or Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
        return {"fid": None, "kid": None, "note": f"FID/KID not computed: Inception-v3 weights not found at {where} "
                f"(rbcray never downloads; put torchvision's {INCEPTION_FILE} there or set realism.inception_weights)"}
    if len(real) < 2 or len(synthetic) < 2:
        return {"fid": None, "kid": None, "note": "FID/KID need at least 2 images per side"}
    fr, fs = inception_features(real, path), inception_features(synthetic, path)
    return {"fid": round(fid(fr, fs), 3), "kid": round(kid(fr, fs), 5), "n_real": len(real), "n_synthetic": len(synthetic),
            "note": "torchvision Inception-v3 features; compare across rbcray runs only"}


def realism_report(
    name: str, real: list[Sample] | tuple[Sample, ...], synthetic: list[Sample] | tuple[Sample, ...],
    p: RealismParams, inception_weights: str | None,
) -> dict[str, Any]:
    """All three measures for one dataset."""
    return {
        "dataset": name,
        "n_real": len(real),
        "n_synthetic": len(synthetic),
        "colour_inside_cells": {"real": colour_stats(real), "synthetic": colour_stats(synthetic)},
        "two_sample_test": two_sample_auc(real, synthetic, p),
        "fid_kid": fid_kid(real, synthetic, inception_weights),
    }


def realism_markdown(reports: list[dict[str, Any]]) -> str:
    """The realism section of ``table.md`` / ``realism.md``."""
    lines = ["## Image realism (real vs synthetic)", ""]
    for r in reports:
        c = r["colour_inside_cells"]
        t = r["two_sample_test"]
        f = r["fid_kid"]
        lines += [
            f"**{r['dataset']}** ({r['n_real']} real, {r['n_synthetic']} synthetic images)",
            "",
            "| | mean R, G, B inside cells | std R, G, B inside cells |",
            "|---|---|---|",
            f"| real | {', '.join(f'{v:.1f}' for v in c['real']['mean'])} | {', '.join(f'{v:.1f}' for v in c['real']['std'])} |",
            f"| synthetic | {', '.join(f'{v:.1f}' for v in c['synthetic']['mean'])} | "
            f"{', '.join(f'{v:.1f}' for v in c['synthetic']['std'])} |",
            "",
            f"- Classifier two-sample test, held-out AUC: {t['auc'] if t.get('auc') is not None else 'n/a (' + t['note'] + ')'}"
            " (0.5 = indistinguishable).",
            f"- FID: {f['fid']}, KID: {f['kid']}." if f.get("fid") is not None else f"- {f['note']}.",
            "",
        ]
    return "\n".join(lines)
