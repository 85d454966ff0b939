"""Tiny untrained UNIT translators and morphology classifiers for tests (seconds to make).

Random weights, so what they produce is meaningless as morphology; tests use them for the
plumbing (selection, filter, blending, labels, formats, determinism), never for figures.
"""

from __future__ import annotations

from pathlib import Path

import torch

PROVENANCE = {"dataset": "test", "root": None, "split": "train", "splits_sha256": None, "n_images": 0, "stems": []}


def make_unit(out: Path, target: int, seed: int = 0) -> str:
    """A UNIT folder translating normal cells into class ``target`` (width 4)."""
    from rbcray.config import to_dict
    from rbcray.models.registry import create_model
    from rbcray.models.unit.networks import UNITConfig
    from rbcray.train.unit import UNITTrainConfig, save_unit

    torch.manual_seed(seed)
    cfg = UNITTrainConfig(model=UNITConfig(dim=4, n_res=1, dis_dim=4, dis_layers=1), target=target)
    model = create_model("unit", **to_dict(cfg.model)).eval()
    save_unit(out, model, cfg, {"unit": PROVENANCE}, {"crop": {"window": 80, "size": 32}})
    return str(out)


def make_classifier(out: Path, seed: int = 0) -> str:
    """A morphology classifier folder (width 4, 13 classes)."""
    from rbcray.config import to_dict
    from rbcray.models.morphology import MorphologyNetConfig
    from rbcray.models.registry import create_model
    from rbcray.train.morphology import MorphologyTrainConfig, save_classifier

    torch.manual_seed(seed)
    cfg = MorphologyTrainConfig(model=MorphologyNetConfig(width=4, blocks=1))
    model = create_model("morphology_cnn", **to_dict(cfg.model)).eval()
    save_classifier(out, model, cfg, PROVENANCE)
    return str(out)
