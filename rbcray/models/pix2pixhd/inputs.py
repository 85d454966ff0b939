"""Generator inputs of pix2pixHD (Wang et al. 2018, Sec. 3.3-3.4), vectorised on any device.

The generator sees, per pixel: a one-hot semantic label (class 0 = background, class c = COCO
category id c: 1 RBC, 2 WBC, 3 Platelet, ...), the instance boundary map (1 where a pixel differs
from one of its 4-neighbours, so touching cells of one class stay separable), and ``feat_nc``
instance-wise features: the encoder's output averaged over each instance (training) or a style
cluster centre per instance (generation, Sec. 3.4).

Instance averaging is a scatter/segment mean over (image, instance id) keys: one ``index_add_``
for sums and one for counts, no Python loop over instances, the same code on CPU and GPU.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from rbcray.errors import DataError


def boundary_map(inst: torch.Tensor) -> torch.Tensor:
    """(B, H, W) integer instance maps -> (B, 1, H, W) float, 1 where a 4-neighbour differs."""
    e = torch.zeros(inst.shape, dtype=torch.bool, device=inst.device)
    dx = inst[:, :, 1:] != inst[:, :, :-1]
    dy = inst[:, 1:, :] != inst[:, :-1, :]
    e[:, :, 1:] |= dx
    e[:, :, :-1] |= dx
    e[:, 1:, :] |= dy
    e[:, :-1, :] |= dy
    return e.unsqueeze(1).float()


def _segment_keys(inst: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Flat (image, instance id) keys of every pixel, and the number of keys."""
    b = inst.shape[0]
    m = int(inst.max().item()) + 1 if inst.numel() else 1
    offs = torch.arange(b, device=inst.device).view(b, 1, 1) * m
    return (inst.long() + offs).reshape(-1), b * m


def _segment_means(feat: torch.Tensor, inst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(means (K, C), counts (K,), keys (B*H*W,)) over the (image, instance) segments."""
    c = feat.shape[1]
    keys, n = _segment_keys(inst)
    flat = feat.permute(0, 2, 3, 1).reshape(-1, c).float()
    sums = torch.zeros(n, c, device=feat.device, dtype=torch.float32).index_add_(0, keys, flat)
    counts = torch.zeros(n, device=feat.device, dtype=torch.float32).index_add_(
        0, keys, torch.ones_like(keys, dtype=torch.float32)
    )
    means = sums / counts.clamp(min=1).unsqueeze(1)
    return means, counts, keys


def instance_mean(feat: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
    """Replace every pixel of ``feat`` (B, C, H, W) by the mean over its instance in ``inst`` (B, H, W).

    The background (id 0) is one more region and is averaged too, as in pix2pixHD.
    """
    b, c, h, w = feat.shape
    means, _, keys = _segment_means(feat, inst)
    out = means[keys].reshape(b, h, w, c).permute(0, 3, 1, 2)
    return out.to(feat.dtype)


def instance_features(feat: torch.Tensor, inst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-instance mean features of every cell (id > 0): (image index (N,), id (N,), features (N, C))."""
    means, counts, _ = _segment_means(feat, inst)
    m = means.shape[0] // inst.shape[0]
    key = torch.nonzero(counts > 0).squeeze(1)
    ids = key % m
    keep = ids > 0
    key = key[keep]
    return key // m, ids[keep], means[key]


def category_lut(inst: np.ndarray, categories: Mapping[int, int] | None, num_classes: int, name: str = "mask") -> np.ndarray:
    """Class index per instance id (length ``max id + 1``; 0 for background; unlisted cells are RBC = 1)."""
    n = int(inst.max()) + 1 if inst.size else 1
    lut = np.ones(n, dtype=np.int64)
    lut[0] = 0
    for cid, cat in (categories or {}).items():
        cid, cat = int(cid), int(cat)
        if cat < 1 or cat >= num_classes:
            raise DataError(
                f"{name}: cell {cid} has category id {cat}, but the model knows classes 1..{num_classes - 1} "
                "(raise num_classes in the config)"
            )
        if 0 < cid < n:
            lut[cid] = cat
    return lut


def class_map(inst: torch.Tensor, luts: list[np.ndarray]) -> torch.Tensor:
    """(B, H, W) class index map from instance maps and per-image category LUTs."""
    m = int(inst.max().item()) + 1 if inst.numel() else 1
    table = torch.zeros(inst.shape[0], m, dtype=torch.long)
    for i, lut in enumerate(luts):
        k = min(len(lut), m)
        table[i, :k] = torch.from_numpy(np.asarray(lut[:k], dtype=np.int64))
        if len(lut) < m:
            table[i, k:] = 1
    table[:, 0] = 0
    table = table.to(inst.device)
    return torch.gather(table, 1, inst.long().reshape(inst.shape[0], -1)).reshape(inst.shape)


def generator_input(
    inst: torch.Tensor, classes: torch.Tensor, feat: torch.Tensor | None, num_classes: int
) -> torch.Tensor:
    """Concatenate one-hot labels, the boundary map and instance features -> (B, num_classes + 1 + F, H, W)."""
    onehot = F.one_hot(classes.long(), num_classes).permute(0, 3, 1, 2).float()
    parts = [onehot, boundary_map(inst)]
    if feat is not None:
        parts.append(feat.float())
    return torch.cat(parts, dim=1)


def features_from_table(inst: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Paint per-instance feature vectors: ``table`` (B, M, F) indexed by instance id -> (B, F, H, W)."""
    b, h, w = inst.shape
    f = table.shape[2]
    idx = inst.long().reshape(b, -1, 1).expand(b, h * w, f)
    return torch.gather(table, 1, idx).reshape(b, h, w, f).permute(0, 3, 1, 2)
