"""Independent random streams per sample and purpose.

Every random draw that belongs to sample ``i`` of a run with seed ``S`` comes from its own
stream, one per *purpose* (the mask's geometry, the style clusters of its image, noise, a
quality gate, a morphology draw)::

    np.random.default_rng(np.random.SeedSequence(entropy=S, spawn_key=(i, PURPOSE)))

NumPy's ``SeedSequence`` hashes the entropy and the spawn key together, so streams of different
purposes (or samples) are statistically independent, while each stays a pure function of
``(S, i, purpose)``: the same bytes in any process, for any actor count or batch size. Using one
stream for two purposes instead (e.g. ``default_rng([S, i])`` for the mask and
``default_rng((S, i))`` for its styles, which are the same stream) couples them: the first
draws of both are then the same numbers.

The purpose ids below are part of the output format: changing one changes every sample made
with it. Add new purposes with new ids; never reuse one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: mask synthesis (cell count, exemplars, augmentation, placement): rbcray.synth.engine
MASK = 1
#: style cluster per region at translation: rbcray.models.pix2pixhd.styles
STYLE = 2
#: generator input noise (generators that take noise)
NOISE = 3
#: quality gate / rejection draws on generated samples
QUALITY = 4
#: morphology draws (e.g. rare cell shapes)
MORPHOLOGY = 5
#: white cells and platelets of a mask, one stream per category (spawn key (i, category, 6)):
#: rbcray.synth.others
OTHER_CELLS = 6

PURPOSES: dict[str, int] = {"mask": MASK, "style": STYLE, "noise": NOISE, "quality": QUALITY, "morphology": MORPHOLOGY,
                       "other_cells": OTHER_CELLS}


def _check(purpose: int) -> int:
    if purpose not in PURPOSES.values():
        raise ValueError(f"unknown random-stream purpose {purpose!r}; use one of {PURPOSES}")
    return int(purpose)


def sample_seed(seed: int, index: int, purpose: int) -> np.random.SeedSequence:
    """The ``SeedSequence`` of sample ``index`` of run ``seed`` for one purpose."""
    return np.random.SeedSequence(entropy=int(seed), spawn_key=(int(index), _check(purpose)))


def sample_rng(seed: int, index: int, purpose: int) -> np.random.Generator:
    """The generator of sample ``index`` of run ``seed`` for ``purpose`` (see the module docstring)."""
    return np.random.default_rng(sample_seed(seed, index, purpose))


def purpose_rng(seed: int | Sequence[int], purpose: int) -> np.random.Generator:
    """A purpose's stream for a per-sample seed given as ``(S, i)`` (the same stream as
    :func:`sample_rng`), as a single int ``S`` (spawn key ``(purpose,)``, distinct from every
    ``(S, i)``), or as a longer key ``(S, i, j, ...)`` (spawn key ``(i, j, ..., purpose)``)."""
    parts = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(v) for v in seed]
    if not parts:
        raise ValueError("empty seed: give an int or (seed, sample index)")
    return np.random.default_rng(np.random.SeedSequence(entropy=parts[0], spawn_key=(*parts[1:], _check(purpose))))
