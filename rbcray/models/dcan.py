"""DCAN-style detection from segmentation (Bailo et al. Sec. 5, Table 2 "DCAN"; Chen et al. 2016).

The FCN-8s encoder is shared by two FCN-8s decoders: an objectness head (cell vs background) and
a contour head (cell boundaries). The loss is the sum of both heads' binary cross-entropies; the
contour term weights its rare positive pixels up. Cells are then recovered as the connected
components of objectness minus contour (see :mod:`rbcray.evaluate.postprocess`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rbcray.config import check, from_dict
from rbcray.models.fcn import FCN8sDecoder, FCNConfig, VGGEncoder, load_fcn_weights, pad_to_multiple
from rbcray.models.registry import register_model


@dataclass(frozen=True)
class DCANConfig:
    """DCAN hyper-parameters (encoder as :class:`~rbcray.models.fcn.FCNConfig`)."""

    in_channels: int = 3
    width: int = 64
    fc_channels: int = 4096
    batch_norm: bool = True
    dropout: float = 0.5
    #: weight of positive (boundary) pixels in the contour BCE: boundaries are ~10-15% of pixels
    #: at 1-pixel width, and an unweighted head learns to predict no contour at all
    contour_pos_weight: float = 3.0
    weights: str | None = None

    def __post_init__(self) -> None:
        check(self.contour_pos_weight > 0, f"DCAN contour_pos_weight must be > 0, got {self.contour_pos_weight}")
        FCNConfig(in_channels=self.in_channels, width=self.width, fc_channels=self.fc_channels, dropout=self.dropout)


class DCAN(nn.Module):
    """(N, C, H, W) images -> {"objectness", "contour"} logits, each (N, 1, H, W)."""

    def __init__(self, cfg: DCANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        enc_cfg = FCNConfig(
            in_channels=cfg.in_channels, width=cfg.width, fc_channels=cfg.fc_channels,
            batch_norm=cfg.batch_norm, dropout=cfg.dropout,
        )
        self.encoder = VGGEncoder(enc_cfg)
        self.objectness = FCN8sDecoder(self.encoder, 1)
        self.contour = FCN8sDecoder(self.encoder, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x, h, w = pad_to_multiple(x)
        feats = self.encoder(x)
        return {
            "objectness": self.objectness(*feats)[..., :h, :w],
            "contour": self.contour(*feats)[..., :h, :w],
        }

    def loss(self, out: dict[str, torch.Tensor], objectness: torch.Tensor, contour: torch.Tensor) -> torch.Tensor:
        """Sum of the two heads' losses; targets are (N, 1, H, W) floats in {0, 1}."""
        obj = F.binary_cross_entropy_with_logits(out["objectness"].float(), objectness)
        pw = torch.tensor(self.cfg.contour_pos_weight, device=contour.device)
        con = F.binary_cross_entropy_with_logits(out["contour"].float(), contour, pos_weight=pw)
        return obj + con


@register_model("dcan")
def build_dcan(**kwargs: object) -> DCAN:
    """DCAN from keyword arguments of :class:`DCANConfig` (validated)."""
    cfg = from_dict(DCANConfig, dict(kwargs), where="dcan")
    model = DCAN(cfg)
    if cfg.weights:
        load_fcn_weights(model, model.encoder, cfg.weights)
    return model
