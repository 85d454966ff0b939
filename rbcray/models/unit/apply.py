"""Turning chosen cells of a real or synthetic smear into class c: crop, translate, filter, blend.

For each chosen cell: the classifier-sized crop around its centroid (:func:`rbcray.data.cells.crop_cell`)
is translated A -> B by UNIT, scored by the real-data morphology classifier, and — only if
p(c) >= t (:func:`~rbcray.models.unit.filter.pseudo_label_filter`) — resized back to the window's
source pixels and blended into the smear with the cosine window
(:func:`~rbcray.models.unit.blend.blend_cells`). Rejected cells leave the smear untouched. The
instance map is not changed: the host shape is kept (see :mod:`rbcray.models.unit.masks` for the
measured alternative).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from rbcray.data.cells import crop_cell
from rbcray.models.morphology import MorphologyNet, predict_proba
from rbcray.models.unit.blend import blend_cells
from rbcray.models.unit.filter import pseudo_label_filter
from rbcray.models.unit.networks import UNIT


@dataclass(frozen=True)
class SmearTranslation:
    """The translated smear and what happened to each chosen cell."""

    image: np.ndarray
    cell_ids: np.ndarray
    p_target: np.ndarray
    accepted: np.ndarray


def translate_smear(
    model: UNIT,
    classifier: MorphologyNet | None,
    img: np.ndarray,
    inst: np.ndarray,
    cell_ids: Sequence[int],
    target: int,
    t: float,
    window: int,
    size: int,
    n: float = 2.0,
) -> SmearTranslation:
    """Translate the cells ``cell_ids`` of one smear (RGB uint8) into class ``target``; keep p >= t.

    Without a ``classifier`` every translation is kept (the unfiltered regime; ``p_target`` NaN).
    """
    from rbcray.train.unit import translate_crops

    ids = np.asarray(list(cell_ids), dtype=np.int64)
    if len(ids) == 0:
        return SmearTranslation(img.copy(), ids, np.zeros(0), np.zeros(0, bool))
    centres = []
    for cid in ids:
        ys, xs = np.nonzero(inst == cid)
        centres.append((float(xs.mean()), float(ys.mean())))
    crops = np.stack([crop_cell(img, inst, int(c), cx, cy, window, size) for c, (cx, cy) in zip(ids, centres)])
    translated = translate_crops(model, crops)
    if classifier is None:
        probs = np.full((len(ids), target + 1), np.nan)
        keep = np.ones(len(ids), bool)
    else:
        probs = predict_proba(classifier, translated)
        keep = pseudo_label_filter(probs, target, t)
    # The translated crop covers `window` source pixels: back to that scale before blending.
    patches = [cv2.resize(np.ascontiguousarray(tc[:3].transpose(1, 2, 0)), (window, window), interpolation=cv2.INTER_CUBIC) for tc in translated]
    # an even window has no centre pixel: blend the (window+1)-wide patch so the cell sits in the middle
    patches = [cv2.copyMakeBorder(q, 0, 1, 0, 1, cv2.BORDER_REPLICATE) if window % 2 == 0 else q for q in patches]
    out = blend_cells(img, patches, centres, keep.tolist(), n)
    return SmearTranslation(out, ids, probs[:, target], keep)
