"""Side by side: every weight-free realism metric for each generator family and for real vs real.

The comparison is between sets of the *same size* against *one* real reference set: real images
``reference`` (A), and for each contender a set of the same number of images -- the other half of
the real held-out images (B: the ``real_vs_real`` baseline) or synthetic images (for a fair
translator comparison: generated from B's own masks). Each block holds:

- ``c2st``: AUC with image-bootstrap CI and permutation p (:mod:`rbcray.evaluate.c2st`);
- ``kid`` (+ std over subsets), ``frechet`` (+ bootstrap CI), ``prdc`` (+ intervals), all in the
  feature space of one :class:`~rbcray.evaluate.encoder.RealEncoder` on cell-centred crops;
- ``mask_fidelity``: the encoder's segmenter on the contender's images vs their masks (Dice, AP50;
  for real images those masks are derived, not ground truth).

``realism: {"<family>": {...}, "real_vs_real": {...}}`` is the shape the demo's report uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rbcray.evaluate.c2st import C2STParams, c2st, cell_centred_crops, median_cell_diameter
from rbcray.evaluate.data import Sample
from rbcray.evaluate.encoder import RealEncoder
from rbcray.evaluate.frechet import frechet
from rbcray.evaluate.kid import kid
from rbcray.evaluate.mask_fidelity import mask_fidelity
from rbcray.evaluate.prdc import prdc_with_ci


@dataclass(frozen=True)
class CompareParams:
    c2st: C2STParams = field(default_factory=C2STParams)
    kid_subsets: int = 50
    kid_subset_size: int = 200
    prdc_k: int = 5
    n_boot: int = 200
    seed: int = 0


def crop_features(enc: RealEncoder, samples: list[Sample] | tuple[Sample, ...], size: int, per_image: int, seed: int) -> np.ndarray:
    """Encoder features of cell-centred crops of ``samples``."""
    crops, _ = cell_centred_crops(samples, size, per_image, np.random.default_rng([seed, 0xFEA7]))
    return enc.features(crops)


def realism_block(enc: RealEncoder, reference: list[Sample], other: list[Sample], p: CompareParams,
                  cell_diameter: float) -> dict[str, Any]:
    """All metrics of ``other`` against ``reference`` (see the module docstring)."""
    size = int(np.ceil(p.c2st.crop_factor * cell_diameter / 8.0) * 8)
    fa = crop_features(enc, reference, size, p.c2st.max_crops_per_image, p.seed)
    fb = crop_features(enc, other, size, p.c2st.max_crops_per_image, p.seed + 1)
    return {
        "n_images": len(other),
        "c2st": c2st(reference, other, p.c2st, cell_diameter),
        "kid": kid(fa, fb, p.kid_subsets, p.kid_subset_size, p.seed),
        "frechet": frechet(fa, fb, n_boot=p.n_boot, seed=p.seed),
        "prdc": prdc_with_ci(fa, fb, k=p.prdc_k, n_boot=min(p.n_boot, 50), seed=p.seed),
        "mask_fidelity": {k: v for k, v in mask_fidelity(enc, other, n_boot=p.n_boot, seed=p.seed).items() if k != "per_image_dice"},
    }


def side_by_side(enc: RealEncoder, reference: list[Sample], real_other: list[Sample],
                 synthetic: dict[str, list[Sample]], p: CompareParams | None = None, log: Any = None) -> dict[str, Any]:
    """``{"real_vs_real": block, "<family>": block, ...}`` plus the shared settings under ``"_setup"``.

    NumPy's BLAS runs single-threaded here: the many small products and eigendecompositions of the
    resamples were ~20x slower with 2 BLAS threads on a busy 2-core host (threads spin-wait).
    """
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency

    p = p or CompareParams()
    d = median_cell_diameter(reference)
    out: dict[str, Any] = {}
    for name, other in [("real_vs_real", real_other), *synthetic.items()]:
        if log:
            log(f"realism: {name} ({len(other)} images)")
        with threadpool_limits(limits=1, user_api="blas"):
            out[name] = realism_block(enc, reference, other, p, d)
    out["_setup"] = {"reference_images": len(reference), "cell_diameter": round(d, 2),
                     "crop": int(np.ceil(p.c2st.crop_factor * d / 8.0) * 8), "encoder_provenance": enc.provenance}
    return out


def _ci(v: Any, ci: Any, fmt: str = "{:.3f}") -> str:
    if v is None:
        return "n/a"
    return fmt.format(v) + (f" [{fmt.format(ci[0])}, {fmt.format(ci[1])}]" if ci else "")


def markdown_table(report: dict[str, Any]) -> str:
    """One row per contender: every metric with its interval."""
    rows = ["| | C2ST AUC [95% CI] (p) | KID x1e3 ± std | Fréchet [95% CI] | precision | recall | density | coverage "
            "| mask Dice [95% CI] | mask AP50 [95% CI] |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, b in report.items():
        if name.startswith("_"):
            continue
        c, k, f, pr, m = b["c2st"], b["kid"], b["frechet"], b["prdc"], b["mask_fidelity"]
        kid_s = f"{k['kid'] * 1e3:.2f} ± {k['std'] * 1e3:.2f}" if k.get("kid") is not None else "n/a"
        pr_s = [_ci(pr.get(x), pr.get(x + "_ci"), "{:.2f}") for x in ("precision", "recall", "density", "coverage")]
        rows.append(f"| {name} | {_ci(c.get('auc'), c.get('ci'))} (p={c.get('p_value', float('nan')):.3f}) | {kid_s} | "
                    f"{_ci(f.get('fd'), f.get('ci'), '{:.2f}')} | {' | '.join(pr_s)} | {_ci(m.get('dice'), m.get('dice_ci'))} | "
                    f"{_ci(m.get('ap50'), m.get('ap50_ci'))} |")
    return "\n".join(rows)
