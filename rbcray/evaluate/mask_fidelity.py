"""Mask fidelity: does a synthetic image show the cells of the mask it was generated from?

The segmenter of :class:`~rbcray.evaluate.encoder.RealEncoder` (trained on real train-split
images only) segments each synthetic image; its cells are compared with the *conditioning* mask:
Dice of the foreground, and AP at IoU 0.5 of its instances (connected components of the interior
class, grown by the boundary width, scored by their mean interior probability) against the mask's
cells. The same measurement on real held-out images against their derived masks is the baseline:
it is the segmenter's own error, which a synthetic image cannot be expected to beat. Derived masks
are not ground truth; a real-image Dice below 1 says as much about them as about the segmenter.

:func:`sample_quality` is the per-sample score of the quality gate (the Dice).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from rbcray.evaluate.data import Sample
from rbcray.evaluate.encoder import RealEncoder
from rbcray.evaluate.metrics import ap_from_records, coco_match_records, dice


def predicted_instances(prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((N, 4) boxes x0, y0, x1, y1, (N,) scores) of the cells in a (3, H, W) probability map."""
    interior = (prob.argmax(0) == 1).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(interior, connectivity=4)
    boxes, scores = [], []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area < 4:
            continue
        boxes.append([x - 1, y - 1, x + w + 1, y + h + 1])  # the boundary ring around the interior
        scores.append(float(prob[1][lab == i].mean()))
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32)


def sample_fidelity(enc: RealEncoder, image: np.ndarray, instances: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(foreground Dice, predicted boxes, scores) of one image against its conditioning mask."""
    prob = enc.segment(image)
    boxes, scores = predicted_instances(prob)
    return dice(prob.argmax(0) > 0, instances > 0), boxes, scores


def sample_quality(enc: RealEncoder, image: np.ndarray, instances: np.ndarray) -> float:
    """The quality-gate score of one generated sample: its mask-fidelity Dice."""
    return sample_fidelity(enc, image, instances)[0]


def mask_fidelity(enc: RealEncoder, samples: list[Sample] | tuple[Sample, ...], n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Dice (mean over images) and AP50 against each sample's instance map, with bootstrap CIs over images."""
    from rbcray.data.formats import instance_boxes

    dices, gts, dets, scs = [], [], [], []
    for s in samples:
        d, b, sc = sample_fidelity(enc, s.image, s.instances)
        dices.append(d)
        gts.append(instance_boxes(s.instances)[1].astype(np.float32))
        dets.append(b)
        scs.append(sc)
    if not dices:
        return {"dice": None, "ap50": None, "note": "no images"}
    dices_a = np.asarray(dices)
    records = coco_match_records(gts, dets, scs)
    rng = np.random.default_rng([seed, 0xF1D])
    idx = rng.integers(0, len(dices_a), size=(n_boot, len(dices_a)))
    d_reps = dices_a[idx].mean(1)
    ap_reps = [ap_from_records(records, i) for i in idx]
    q = [0.025, 0.975]
    return {"dice": float(dices_a.mean()), "dice_ci": [float(v) for v in np.quantile(d_reps, q)],
            "ap50": float(ap_from_records(records)), "ap50_ci": [float(v) for v in np.quantile(ap_reps, q)],
            "n_images": len(dices_a), "per_image_dice": [round(float(v), 4) for v in dices_a]}
