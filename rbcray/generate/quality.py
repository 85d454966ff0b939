"""The per-sample quality gate of generation (the pseudo-label filter of Gupta et al., generalised).

Every generated sample gets a ``quality`` score: its mask fidelity, the foreground Dice between the
conditioning mask and what a segmenter trained on real train-split images only
(:class:`~rbcray.evaluate.encoder.RealEncoder`, ``rbcray encoder``) finds in the image. With
``min_quality = t``, a sample below t is replaced by a further candidate -- a new mask and image
-- until one reaches t, so the run still holds ``num_samples`` rows. Candidate ``a`` (1, 2, ...) of
output sample ``i`` is generated as sample id ``num_samples + i * max_attempts + (a - 1)`` of the
same run seed: a pure function of (run, i, a), so the gate is deterministic whatever the shards,
actors or batches. After ``max_attempts`` failed candidates the best one seen is kept and counted
in the manifest's ``below_min_quality``. Rows record ``quality`` and ``attempts``; the manifest
reports the acceptance yield (rows / candidates generated).

Choosing t: on the val split, generate with a few thresholds (e.g. 0.70 ... 0.95), train the
downstream model on each (``rbcray evaluate``) and keep the t with the best val metric -- Gupta et
al. found the result sensitive to it (AUC .877-.924 over t = .70-.95). Mask fidelity rests on
derived masks, not ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rbcray.config import check


@dataclass(frozen=True)
class GateSpec:
    """What the gate needs on a generator actor (plain values: it travels to Ray actors)."""

    encoder: str
    min_quality: float | None
    max_attempts: int
    num_samples: int
    shapes: str
    synth: dict[str, Any]
    seed: int

    def __post_init__(self) -> None:
        check(self.min_quality is None or 0.0 <= self.min_quality <= 1.0, f"--min-quality {self.min_quality} must be in [0, 1]")
        check(self.max_attempts >= 1, f"--max-attempts {self.max_attempts} must be at least 1")

    def candidate_id(self, sample_id: int, attempt: int) -> int:
        """Sample id of candidate ``attempt`` (1-based) replacing output sample ``sample_id``."""
        return self.num_samples + sample_id * self.max_attempts + (attempt - 1)


class QualityGate:
    """Scores samples and, with a threshold, replaces the ones below it (see the module docstring)."""

    def __init__(self, spec: GateSpec) -> None:
        from rbcray.evaluate.encoder import RealEncoder

        self.spec = spec
        self.enc = RealEncoder.load(spec.encoder)
        self.masker = None
        if spec.min_quality is not None:
            from rbcray.generate.engine import ShardMasker

            self.masker = ShardMasker(spec.shapes, spec.synth, spec.seed)

    def score(self, image: np.ndarray, inst: np.ndarray) -> float:
        from rbcray.evaluate.mask_fidelity import sample_quality

        return round(float(sample_quality(self.enc, image, inst)), 6)

    def fill(self, tr: Any, style: Any, row: dict[str, Any], inst: np.ndarray, image: np.ndarray,
             clusters: np.ndarray) -> tuple[dict[str, Any], np.ndarray, np.ndarray, float, int]:
        """(row, image, clusters, quality, attempts) of output sample ``row['sample_id']``."""
        from rbcray.io import decode_png

        q = self.score(image, inst)
        t = self.spec.min_quality
        if t is None or q >= t:
            return row, image, clusters, q, 1
        best = (q, row, image, clusters)
        for a in range(1, self.spec.max_attempts + 1):
            cid = self.spec.candidate_id(int(row["sample_id"]), a)
            cand = {**self.masker.row(cid), "sample_id": row["sample_id"]}
            cinst = decode_png(cand["instance_mask"], f"candidate {cid}")
            cats = {b["instance_id"]: b["class"] for b in cand["boxes"]}
            img, cl = tr.translate_with_styles([cinst], [cats], [(self.spec.seed, cid)], style)[0]
            cq = self.score(img, cinst)
            if cq >= t:
                return cand, img, cl, cq, a + 1
            if cq > best[0]:
                best = (cq, cand, img, cl)
        return best[1], best[2], best[3], best[0], self.spec.max_attempts + 1
