"""The pix2pixHD model as one unit: config, generator side (G + E) and discriminator.

Two recipes, chosen by ``generator``:

- ``global+local`` (pix2pixHD, Wang et al. 2018, Sec. 3.2): stage 1 trains the global generator
  G1 alone at half resolution; stage 2 wraps G1 in the local enhancer G2 at full resolution.
- ``global`` (Bailo et al. 2019, Sec. 4.2 and 5.1: "only the global generator without a local
  enhancement"): one global generator G; stage 1 trains it at half resolution, stage 2 goes on
  training the same G (the same module, the same weights) at full resolution.

:class:`Pix2PixHD` holds G and the instance encoder E, and maps (instance map, class map, real
image or style features) to a generated image, so that data-parallel wrappers see one module.
Every network is initialised as the NVIDIA reference does (:func:`init_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from rbcray.config import check
from rbcray.models.pix2pixhd.inputs import generator_input, instance_mean
from rbcray.models.pix2pixhd.networks import (
    Encoder,
    GlobalGenerator,
    LocalEnhancer,
    MultiscaleDiscriminator,
)
from rbcray.models.registry import create_model


@dataclass(frozen=True)
class Pix2PixHDConfig:
    """Architecture of pix2pixHD. Defaults: Bailo et al.'s widths (16) and pix2pixHD's depths."""

    #: semantic classes including background (0 background, then COCO category ids 1 RBC, 2 WBC, 3 Platelet)
    num_classes: int = 4
    #: instance-wise feature channels from the encoder E (0: no encoder, no style control)
    feat_nc: int = 3
    ngf: int = 16  # width of the global generator G1 (the local enhancer G2 uses ngf // 2)
    ndf: int = 16
    nef: int = 16
    n_down_global: int = 4
    n_blocks_global: int = 9
    n_blocks_local: int = 3
    #: ``global+local``: pix2pixHD's G1 then G1 inside the local enhancer G2 (stage 2);
    #: ``global``: Bailo et al.'s recipe, the same global G trained at half, then full resolution
    generator: Literal["global+local", "global"] = "global+local"
    #: global+local only: 1 = two stages (G1, then G1+G2 at twice the resolution); 0 = G1 alone,
    #: one stage (ignored by ``generator: global``, which always has two stages)
    n_local_enhancers: int = 1
    num_D: int = 2
    n_layers_D: int = 3
    n_down_E: int = 4

    def __post_init__(self) -> None:
        check(self.num_classes >= 2, f"num_classes must be >= 2 (background + one cell class), got {self.num_classes}")
        check(self.feat_nc >= 0, f"feat_nc must be >= 0, got {self.feat_nc}")
        for k in ("ngf", "ndf", "nef", "n_down_global", "num_D", "n_layers_D", "n_down_E"):
            check(getattr(self, k) >= 1, f"{k} must be >= 1, got {getattr(self, k)}")
        for k in ("n_blocks_global", "n_blocks_local"):
            check(getattr(self, k) >= 0, f"{k} must be >= 0, got {getattr(self, k)}")
        check(self.n_local_enhancers in (0, 1), f"n_local_enhancers must be 0 or 1, got {self.n_local_enhancers}")

    @property
    def stages(self) -> int:
        """Training stages: 2 (half, then full resolution) or 1 (global+local without enhancer)."""
        return 2 if self.generator == "global" or self.n_local_enhancers else 1

    @property
    def label_nc(self) -> int:
        """Label channels: one-hot classes + the boundary map."""
        return self.num_classes + 1

    @property
    def g_input_nc(self) -> int:
        return self.label_nc + self.feat_nc


class Pix2PixHD(nn.Module):
    """Generator side of pix2pixHD: G (global, or global + local enhancer) and encoder E."""

    def __init__(self, cfg: Pix2PixHDConfig, stage: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        self.stage = 1
        self.G: nn.Module = create_model(
            "pix2pixhd_global", input_nc=cfg.g_input_nc, ngf=cfg.ngf, n_down=cfg.n_down_global, n_blocks=cfg.n_blocks_global
        )
        self.E: Encoder | None = (
            create_model("pix2pixhd_encoder", feat_nc=cfg.feat_nc, nef=cfg.nef, n_down=cfg.n_down_E) if cfg.feat_nc else None
        )
        init_weights(self)
        if stage == 2:
            self.to_stage2()

    def to_stage2(self) -> None:
        """Enter stage 2: ``global+local`` wraps the (trained) global generator in a fresh local
        enhancer; ``global`` keeps the very same G (it is now trained at full resolution)."""
        if self.stage == 2:
            return
        if self.cfg.stages == 1:
            raise ValueError("this model has one training stage (global+local with n_local_enhancers = 0)")
        if self.cfg.generator == "global+local":
            assert isinstance(self.G, GlobalGenerator)
            self.G = LocalEnhancer(self.G, self.cfg.g_input_nc, 3, max(self.cfg.ngf // 2, 1), self.cfg.n_blocks_local)
            init_weights(self.G.front)  # only the new layers: G1 keeps its stage-1 weights
            init_weights(self.G.back)
        self.stage = 2

    @property
    def global_generator(self) -> GlobalGenerator:
        return self.G.global_g if isinstance(self.G, LocalEnhancer) else self.G

    @property
    def stride(self) -> int:
        return int(self.G.stride)

    def encode(self, image: torch.Tensor, inst: torch.Tensor) -> torch.Tensor | None:
        """Instance-averaged encoder features of real images (B, feat_nc, H, W), or None without E."""
        if self.E is None:
            return None
        return instance_mean(self.E(image), inst)

    def forward(
        self, inst: torch.Tensor, classes: torch.Tensor, image: torch.Tensor | None = None, feat: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Generate RGB in [-1, 1]. Features come from ``image`` through E (training) or ``feat`` (styles)."""
        if self.E is not None and feat is None:
            if image is None:
                raise ValueError("a model with an encoder needs the real image or style features")
            feat = self.encode(image, inst)
        x = generator_input(inst, classes, feat if self.E is not None else None, self.cfg.num_classes)
        if x.is_cuda:  # channels_last is the fast layout for convs on tensor cores
            x = x.contiguous(memory_format=torch.channels_last)
        return self.G(x)


def build_discriminator(cfg: Pix2PixHDConfig) -> MultiscaleDiscriminator:
    """The multi-scale discriminator; it sees the label channels and an RGB image."""
    d = create_model("pix2pixhd_discriminator", input_nc=cfg.label_nc + 3, ndf=cfg.ndf, n_layers=cfg.n_layers_D, num_D=cfg.num_D)
    init_weights(d)
    return d


@torch.no_grad()
def init_weights(module: nn.Module) -> None:
    """The NVIDIA reference's ``weights_init`` (pix2pixHD models/networks.py): every convolution
    and transposed convolution weight ~ N(0, 0.02) (their biases keep PyTorch's default, as
    there), every norm layer with affine weights ~ N(1, 0.02) with bias 0. pix2pixHD's instance
    norm has no affine weights, so in practice this sets the conv weights."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.weight.normal_(0.0, 0.02)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and getattr(m, "weight", None) is not None:
            m.weight.normal_(1.0, 0.02)
            if m.bias is not None:
                m.bias.zero_()
