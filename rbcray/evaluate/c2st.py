"""Classifier two-sample test (C2ST) on cell-centred crops, with a bootstrap CI and a permutation p.

Lopez-Paz & Oquab 2017: if a classifier cannot tell real from synthetic better than chance, the
two are indistinguishable *to it*. Crops are centred on cells (centroids of the instance map; the
conditioning mask for synthetic images) and ``crop_factor`` (>= 1.5) times the median cell
diameter of the real set, so every crop holds a whole cell and its surroundings. Images -- never
crops -- are cross-fitted: each side's images are split in two folds, a small CNN trained on one
fold scores the crops of the other, and the AUC is taken over all held-out scores.

Intervals: the AUC's percentile bootstrap resamples *images* (all crops of a drawn image move
together) within each side; the permutation p-value shuffles the real/synthetic labels between
images, keeping the held-out scores (valid because no held-out score saw its own label).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from rbcray.evaluate.data import Sample


@dataclass(frozen=True)
class C2STParams:
    crop_factor: float = 1.5  # crop side / median cell diameter (>= 1.5)
    max_crops_per_image: int = 24
    epochs: int = 8
    width: int = 16
    batch: int = 32
    lr: float = 1e-3
    n_boot: int = 500
    n_perm: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        from rbcray.config import check

        check(self.crop_factor >= 1.5, f"crop_factor must be >= 1.5 (a whole cell and its neighbourhood), got {self.crop_factor}")


def median_cell_diameter(samples: list[Sample] | tuple[Sample, ...]) -> float:
    """Median equivalent diameter sqrt(4 A / pi) of all cells of ``samples`` (pixels)."""
    areas = []
    for s in samples:
        if s.instances is not None:
            a = np.bincount(s.instances.ravel())[1:]
            areas.append(a[a > 0])
    a = np.concatenate(areas) if areas else np.zeros(0)
    if a.size == 0:
        raise ValueError("no cells in the instance maps: cannot size cell-centred crops")
    return float(np.sqrt(4 * np.median(a) / np.pi))


def cell_centred_crops(samples: list[Sample] | tuple[Sample, ...], size: int, max_per_image: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """((N, size, size, 3) uint8 crops centred on cell centroids, (N,) image index of each crop).

    Images are reflect-padded so cells at the border give full crops; at most ``max_per_image``
    cells per image, drawn by ``rng``.
    """
    crops, groups = [], []
    half = size // 2
    for gi, s in enumerate(samples):
        if s.instances is None:
            continue
        inst = s.instances
        ids = np.unique(inst)
        ids = ids[ids > 0]
        if len(ids) > max_per_image:
            ids = np.sort(rng.choice(ids, max_per_image, replace=False))
        padded = np.pad(s.image, ((half, half), (half, half), (0, 0)), mode="reflect")
        ys, xs = np.nonzero(inst)
        lab = inst[ys, xs]
        cnt = np.bincount(lab, minlength=int(inst.max()) + 1).astype(float)
        cy = np.bincount(lab, ys, minlength=len(cnt)) / np.maximum(cnt, 1)
        cx = np.bincount(lab, xs, minlength=len(cnt)) / np.maximum(cnt, 1)
        for i in ids:
            y, x = int(round(cy[i])), int(round(cx[i]))
            crops.append(padded[y : y + size, x : x + size])
            groups.append(gi)
    if not crops:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros(0, int)
    return np.stack(crops), np.asarray(groups)


class _Net(nn.Module):
    def __init__(self, width: int) -> None:
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


def _fit_score(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, p: C2STParams, fold: int) -> np.ndarray:
    torch.manual_seed(p.seed * 7 + fold)
    net = _Net(p.width)
    opt = torch.optim.Adam(net.parameters(), p.lr)
    loss_fn = nn.BCEWithLogitsLoss()
    xt = torch.from_numpy(x_tr).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    yt = torch.from_numpy(y_tr).float()
    for epoch in range(p.epochs):
        net.train()
        order = torch.from_numpy(np.random.default_rng([p.seed, fold, epoch]).permutation(len(xt)))
        for i in range(0, len(order), p.batch):
            idx = order[i : i + p.batch]
            if len(idx) < 2:
                continue
            loss = loss_fn(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    xe = torch.from_numpy(x_te).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    with torch.no_grad():
        return torch.cat([net(xe[i : i + 256]) for i in range(0, len(xe), 256)]).numpy()


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC = P(score of a random positive > a random negative), ties counted half."""
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    n1, n0 = labels.sum(), (~labels).sum()
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(scores)
    return float((r[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def c2st_crops(a: np.ndarray, ga: np.ndarray, b: np.ndarray, gb: np.ndarray, p: C2STParams | None = None) -> dict[str, Any]:
    """C2ST of crop sets ``a`` (label 0) and ``b`` (label 1) with their image groups ``ga``, ``gb``."""
    p = p or C2STParams()
    ua, ub = np.unique(ga), np.unique(gb)
    if len(ua) < 2 or len(ub) < 2:
        return {"auc": None, "note": "C2ST needs at least 2 images with cells per side"}
    rng = np.random.default_rng([p.seed, 0xC25])
    fold_a = dict(zip(rng.permutation(ua), np.arange(len(ua)) % 2))
    fold_b = dict(zip(rng.permutation(ub), np.arange(len(ub)) % 2))
    x = np.concatenate([a, b])
    y = np.concatenate([np.zeros(len(a), int), np.ones(len(b), int)])
    g = np.concatenate([ga, gb + (ga.max() + 1 if len(ga) else 0)])  # image ids unique across sides
    fold = np.concatenate([[fold_a[i] for i in ga], [fold_b[i] for i in gb]]).astype(int)
    scores = np.empty(len(x))
    for f in (0, 1):
        tr, te = fold != f, fold == f
        scores[te] = _fit_score(x[tr], y[tr], x[te], p, f)
    point = auc(y, scores)
    images = np.unique(g)
    img_label = np.array([y[g == i][0] for i in images])
    members = [np.nonzero(g == i)[0] for i in images]
    side = [np.nonzero(img_label == c)[0] for c in (0, 1)]
    boot = []
    for _ in range(p.n_boot):
        pick = np.concatenate([rng.choice(s, len(s)) for s in side])
        idx = np.concatenate([members[i] for i in pick])
        boot.append(auc(y[idx], scores[idx]))
    lo, hi = np.quantile(boot, [0.025, 0.975])
    exceed = 0
    for _ in range(p.n_perm):
        perm_label = rng.permutation(img_label)
        yp = np.empty(len(y), int)
        for i, m in enumerate(members):
            yp[m] = perm_label[i]
        exceed += auc(yp, scores) >= point
    return {"auc": point, "ci": [float(lo), float(hi)], "p_value": (1 + exceed) / (1 + p.n_perm),
            "n_crops": [int(len(a)), int(len(b))], "n_images": [int(len(ua)), int(len(ub))]}


def c2st(real: list[Sample] | tuple[Sample, ...], synthetic: list[Sample] | tuple[Sample, ...],
         p: C2STParams | None = None, cell_diameter: float | None = None) -> dict[str, Any]:
    """C2ST of real vs synthetic images on cell-centred crops (see the module docstring)."""
    p = p or C2STParams()
    d = cell_diameter or median_cell_diameter(real)
    size = int(np.ceil(p.crop_factor * d / 8.0) * 8)  # a multiple of the CNN's 3 poolings
    rng = np.random.default_rng([p.seed, 0xCE11])
    a, ga = cell_centred_crops(real, size, p.max_crops_per_image, rng)
    b, gb = cell_centred_crops(synthetic, size, p.max_crops_per_image, rng)
    out = c2st_crops(a, ga, b, gb, p)
    out.update(crop=size, cell_diameter=round(d, 2))
    return out
