"""A small CNN that names a red cell's morphology from a cell-centred crop (the pseudo-labeller).

Input: (N, 4, S, S) floats — RGB in [-1, 1] and the centred cell's mask in {-1, 1}
(:mod:`rbcray.data.cells`); output: (N, num_classes) logits over the 13 Chula classes
(:data:`rbcray.data.morphology.CLASSES`). Three conv blocks (2 x conv-BN-ReLU, then halving), global average
pooling and a linear head: small enough to train on a CPU in minutes, trained from scratch (no
pretrained weights). It is the classifier of Gupta et al.'s pseudo-label filter: a translated cell
is kept when this model gives its target class p >= t (:mod:`rbcray.models.unit.filter`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rbcray.config import check, from_dict
from rbcray.models.registry import register_model


@dataclass(frozen=True)
class MorphologyNetConfig:
    """Architecture of :class:`MorphologyNet`."""

    in_channels: int = 4
    num_classes: int = 13
    #: channels of the first block; each later block doubles it
    width: int = 16
    blocks: int = 3
    dropout: float = 0.2

    def __post_init__(self) -> None:
        check(self.in_channels in (3, 4), f"morphology in_channels = {self.in_channels}: must be 3 (RGB) or 4 (RGB + mask)")
        check(self.num_classes >= 2, f"morphology num_classes = {self.num_classes}: must be >= 2")
        check(4 <= self.width <= 256, f"morphology width = {self.width}: must be within 4..256")
        check(1 <= self.blocks <= 6, f"morphology blocks = {self.blocks}: must be within 1..6")
        check(0.0 <= self.dropout < 1.0, f"morphology dropout = {self.dropout}: must be within [0, 1)")


class MorphologyNet(nn.Module):
    """(N, C, S, S) crops -> (N, num_classes) logits."""

    def __init__(self, cfg: MorphologyNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        c_in = cfg.in_channels
        for b in range(cfg.blocks):
            c_out = cfg.width * 2**b
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(c_in, cfg.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def to_input(crops: np.ndarray, in_channels: int = 4) -> torch.Tensor:
    """uint8 (N, 4, S, S) crops -> float tensor in [-1, 1] with ``in_channels`` channels."""
    x = torch.from_numpy(np.ascontiguousarray(crops[:, :in_channels])).float()
    return x / 127.5 - 1.0


@torch.no_grad()
def predict_proba(model: MorphologyNet, crops: np.ndarray, batch: int = 512) -> np.ndarray:
    """Class probabilities (N, num_classes) of uint8 crops, in eval mode, on the model's device."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(crops), batch):
        x = to_input(crops[i : i + batch], model.cfg.in_channels).to(dev)
        out.append(torch.softmax(model(x).float(), dim=1).cpu().numpy())
    model.train(was)
    if not out:
        return np.zeros((0, model.cfg.num_classes), np.float32)
    return np.concatenate(out)


@register_model("morphology_cnn")
def build_morphology_cnn(**kwargs: object) -> MorphologyNet:
    """:class:`MorphologyNet` from keyword arguments of :class:`MorphologyNetConfig` (validated)."""
    return MorphologyNet(from_dict(MorphologyNetConfig, dict(kwargs), where="morphology_cnn"))
