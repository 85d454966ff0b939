"""Style clusters: K-means on per-instance encoder features (Wang et al. 2018, Sec. 3.4; Bailo Fig. 6).

After training, the encoder E is run on every training image; each instance's averaged feature
vector (and each image's background region, as pix2pixHD treats background as a region too) is
grouped by semantic class, and scikit-learn's K-means finds ``K`` (10) centres per class. At
generation each instance gets the centre of one cluster of its class: drawn uniformly among the
class's clusters (as the NVIDIA reference implementation does; ``style_sampling: proportional``
weighs clusters by their size instead) from the sample's own style stream (:mod:`rbcray.rng`), or
fixed by the caller, so one mask can be rendered in every style.

A class that never occurred in training (e.g. WBC in an RBC-only dataset) borrows the RBC (class
1) clusters, or failing that the first class that has any.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rbcray.errors import ConfigError, DataError
from rbcray.rng import STYLE, purpose_rng


@dataclass(frozen=True)
class StyleBank:
    """Per-class cluster centres: ``centers`` (C, K, F), ``sizes`` (C, K) members (0 = unused slot)."""

    centers: np.ndarray
    sizes: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.centers.shape[0])

    @property
    def k(self) -> int:
        return int(self.centers.shape[1])

    @property
    def feat_nc(self) -> int:
        return int(self.centers.shape[2])

    def n_clusters(self, cls: int) -> int:
        return int((self.sizes[cls] > 0).sum())

    def source_classes(self) -> np.ndarray:
        """Class whose clusters each class uses (itself, else RBC, else the first class with any)."""
        n = (self.sizes > 0).sum(axis=1)
        have = [c for c in (1, *range(self.num_classes)) if c < self.num_classes and n[c]]
        if not have:
            raise DataError("style bank has no clusters at all")
        return np.array([c if n[c] else have[0] for c in range(self.num_classes)], dtype=np.int64)

    def choose(
        self, lut: np.ndarray, present: np.ndarray, seed: int | tuple[int, ...] | None, style: int | None,
        sampling: str = "uniform",
    ) -> np.ndarray:
        """Cluster index per instance id (index 0 = background; -1 for ids not in ``present``).

        ``lut`` maps instance id -> class; ``present`` lists the ids in the mask. With
        ``style=None`` clusters are drawn from the sample's style stream
        (``rbcray.rng.purpose_rng(seed, STYLE)``: one uniform number for the background, then one
        per instance in ascending id order), so a sample's styles depend on its seed and mask
        only. ``sampling="uniform"`` gives every cluster of the class the same chance, as the
        NVIDIA reference does (``np.random.randint`` over a class's clusters); ``"proportional"``
        weighs a cluster by its share of the training regions. A fixed ``style`` k uses cluster k
        for every region (k modulo the class's cluster count).
        """
        if style is not None and not 0 <= int(style) < self.k:
            raise ConfigError(f"style {style} out of range: this model has {self.k} style clusters (0..{self.k - 1})")
        ids = np.concatenate([[0], np.unique(np.asarray(present, dtype=np.int64))])
        ids = ids[(ids > 0) | (np.arange(len(ids)) == 0)]
        cls = self.source_classes()[lut[ids]]
        n = (self.sizes > 0).sum(axis=1)[cls]
        if style is None:
            u = (np.random.default_rng() if seed is None else purpose_rng(seed, STYLE)).random(len(ids))
            if sampling == "uniform":
                k = np.minimum((u * n).astype(np.int64), n - 1)
            elif sampling == "proportional":
                cdf = np.cumsum(self.sizes, axis=1) / np.maximum(self.sizes.sum(axis=1, keepdims=True), 1)
                k = np.minimum((u[:, None] >= cdf[cls]).sum(axis=1), n - 1)
            else:
                raise ConfigError(f"style sampling {sampling!r}: use 'uniform' or 'proportional'")
        else:
            k = int(style) % n
        out = np.full(len(lut), -1, dtype=np.int64)
        out[ids] = k
        return out

    def feature_table(self, lut: np.ndarray, clusters: np.ndarray) -> np.ndarray:
        """(len(lut), F) float32 feature per instance id from chosen ``clusters`` (0 for absent ids)."""
        table = np.zeros((len(lut), self.feat_nc), dtype=np.float32)
        ids = np.nonzero(clusters >= 0)[0]
        table[ids] = self.centers[self.source_classes()[lut[ids]], clusters[ids]]
        return table

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, centers=self.centers.astype(np.float32), sizes=self.sizes.astype(np.int64))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "styles.npz") -> StyleBank:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                centers, sizes = z["centers"], z["sizes"]
        except Exception as e:  # noqa: BLE001 - zip / format errors
            raise DataError(f"{name}: not a readable style cluster file ({str(e).splitlines()[0][:120]})") from None
        if centers.ndim != 3 or sizes.shape != centers.shape[:2]:
            raise DataError(f"{name}: style centres {centers.shape} and sizes {sizes.shape} do not fit together")
        return cls(centers, sizes)


def fit_styles(features: Mapping[int, np.ndarray], num_classes: int, feat_nc: int, k: int = 10, seed: int = 0) -> StyleBank:
    """K-means (scikit-learn) with ``k`` clusters per class on per-region features ``features[cls]`` (N, F).

    A class with fewer distinct vectors than ``k`` gets one cluster per distinct vector.
    """
    from sklearn.cluster import KMeans

    centers = np.zeros((num_classes, k, feat_nc), dtype=np.float32)
    sizes = np.zeros((num_classes, k), dtype=np.int64)
    for cls, x in features.items():
        x = np.asarray(x, dtype=np.float64).reshape(-1, feat_nc)
        if len(x) == 0:
            continue
        n = min(k, len(np.unique(np.round(x, 6), axis=0)))
        km = KMeans(n_clusters=n, n_init=10, random_state=seed).fit(x)
        counts = np.bincount(km.labels_, minlength=n)
        order = np.argsort(-counts, kind="stable")  # cluster 0 = the most common style
        centers[cls, :n] = km.cluster_centers_[order]
        sizes[cls, :n] = counts[order]
    return StyleBank(centers, sizes)
