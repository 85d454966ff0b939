"""A perceptual loss that needs no downloaded weights: the real-image encoder's features.

pix2pixHD's perceptual term compares VGG19 features of the fake and the real image; VGG19's
ImageNet weights are not available everywhere (never here), and an ImageNet network is not what a
blood smear looks like anyway. Both generator families can instead compare the three encoder stages
of :class:`rbcray.evaluate.encoder.RealEncoder` -- a small segmenter trained by ``rbcray encoder``
on real train-split smears only -- as an L1 distance with weights 1/4, 1/2, 1 (coarser stages count
more, as in pix2pixHD's VGG loss). The encoder is frozen (parameters and BatchNorm statistics).

Leak rule: the encoder must have learned from no image the generator does not learn from
(:func:`check_encoder_images`), so the generator's own provenance record still names every real
image behind the model. Config keys (both families): ``perceptual_encoder`` (file or None) and
``lambda_perceptual``; on the command line ``rbcray train --perceptual-encoder FILE``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rbcray import storage
from rbcray.errors import ConfigError, DataError

#: weights of the encoder's three stages (full, 1/2, 1/4 resolution)
LAYER_WEIGHTS = (0.25, 0.5, 1.0)


class EncoderPerceptualLoss(nn.Module):
    """``loss(fake, real)``: weighted L1 between the frozen encoder's stage features; both in [-1, 1]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> EncoderPerceptualLoss:
        # the encoder's BatchNorm statistics are part of what it learned: never update them
        return super().train(False)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        feats_fake = self.net.encode(fake.float())
        with torch.no_grad():
            feats_real = self.net.encode(real.float())
        return sum(w * F.l1_loss(a, b) for w, a, b in zip(LAYER_WEIGHTS, feats_fake, feats_real))


def check_file(path: str | None) -> None:
    """Fail before any work when the configured encoder file is absent."""
    if path and not storage.exists(path):
        raise ConfigError(f"perceptual_encoder {path}: file not found (make one with 'rbcray encoder')")


def check_encoder_images(path: str, encoder_provenance: Any, provenance: dict[str, Any]) -> None:
    """Refuse an encoder that learned from images outside the generator's own training images."""
    from rbcray.data.provenance import flatten

    ours = set(provenance.get("stems") or ())
    records = flatten(encoder_provenance)
    if not records:
        raise DataError(f"{path}: the encoder records no training images; cannot check it against this run's")
    for _, rec in records:
        ds = rec.get("dataset")
        if ds and provenance.get("dataset") and ds != provenance["dataset"]:
            raise DataError(f"{path}: encoder learned from dataset {ds!r}, this run trains on {provenance['dataset']!r}")
        extra = sorted(set(rec.get("stems") or ()) - ours)
        if extra:
            more = f" (+{len(extra) - 3} more)" if len(extra) > 3 else ""
            raise DataError(f"{path}: encoder learned from image(s) {', '.join(extra[:3])}{more} that this run does not "
                            "train on (train it with the same --splits/--split)")


def load_perceptual(path: str, provenance: dict[str, Any], device: torch.device) -> EncoderPerceptualLoss:
    """The loss module of an ``rbcray encoder`` file, after the leak check against ``provenance``."""
    from rbcray.evaluate.encoder import RealEncoder

    check_file(path)
    enc = RealEncoder.load(path)
    check_encoder_images(path, enc.provenance, provenance)
    return EncoderPerceptualLoss(enc.net).to(device)


def check_for_run(path: str, data: str, splits: Any, role: str | None) -> None:
    """The same check before a run starts (``rbcray train``), on the images the run will select."""
    from rbcray.data.provenance import select_dataset
    from rbcray.evaluate.encoder import RealEncoder
    from rbcray.train.pix2pixhd_loop import open_dataset

    check_file(path)
    _, prov = select_dataset(open_dataset(data), splits, role)
    check_encoder_images(path, RealEncoder.load(path).provenance, prov)
