"""pix2pixHD networks (Wang et al. 2018, Sec. 3.2-3.3; used by Bailo et al. 2019, Sec. 4.2).

- :class:`GlobalGenerator` G1: c7s1-ngf, ``n_down`` stride-2 downsamples, ``n_blocks`` residual
  blocks, mirrored transposed-conv upsamples, c7s1-3, tanh.
- :class:`LocalEnhancer` G2: a front-end at full resolution whose features are added to G1's last
  feature map (G1 sees the input average-pooled by 2), then residual blocks, one upsample, c7s1-3.
- :class:`NLayerDiscriminator` (70x70-style PatchGAN) and :class:`MultiscaleDiscriminator`
  (``num_D`` copies on inputs average-pooled by 2 between scales); both return every layer's
  output so feature matching can use all of them.
- :class:`Encoder` E: encoder-decoder producing ``feat_nc`` channels that are then averaged per
  instance (:func:`rbcray.models.pix2pixhd.inputs.instance_mean`).

All layers use instance normalisation (as pix2pixHD), so a sample's output never depends on the
other samples in its batch. Generators and the encoder accept any input size: they reflect-pad to
a multiple of their total stride and crop the result back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rbcray.models.registry import register_model


def _norm(c: int) -> nn.Module:
    return nn.InstanceNorm2d(c, affine=False)


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Reflect-pad H and W up to a multiple (replicate when the image is too small to reflect)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


class ResnetBlock(nn.Module):
    """Two reflect-padded 3x3 convs with instance norm and a skip connection."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), _norm(c), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), _norm(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _down(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=2, padding=1), _norm(cout), nn.ReLU(True)]


def _up(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1), _norm(cout), nn.ReLU(True)]


class GlobalGenerator(nn.Module):
    """G1: label map (``input_nc`` channels) -> RGB in [-1, 1] of the same size."""

    def __init__(self, input_nc: int, output_nc: int = 3, ngf: int = 16, n_down: int = 4, n_blocks: int = 9) -> None:
        super().__init__()
        self.stride = 2**n_down
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), _norm(ngf), nn.ReLU(True)]
        for i in range(n_down):
            layers += _down(ngf * 2**i, ngf * 2 ** (i + 1))
        c = ngf * 2**n_down
        layers += [ResnetBlock(c) for _ in range(n_blocks)]
        for i in range(n_down, 0, -1):
            layers += _up(ngf * 2**i, ngf * 2 ** (i - 1))
        self.features = nn.Sequential(*layers)  # up to the last ngf-channel feature map
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The ngf-channel map before the output head (what the local enhancer adds to)."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = _pad_to(x, self.stride)
        return self.head(self.features(x))[..., :h, :w]


class LocalEnhancer(nn.Module):
    """G = {G1, G2}: G1 at half resolution inside a full-resolution front/back end (Sec. 3.2).

    ``global_g`` is a (usually stage-1 trained) :class:`GlobalGenerator`; its output head is
    dropped, because G2 adds G1's last feature map to its own. G2's width is ``ngf_local``
    (pix2pixHD: half of G1's).
    """

    def __init__(self, global_g: GlobalGenerator, input_nc: int, output_nc: int = 3, ngf_local: int = 8,
                 n_blocks_local: int = 3) -> None:
        super().__init__()
        self.global_g = global_g
        self.global_g.head = nn.Identity()
        ngf_global = global_g.features[1].out_channels
        self.stride = 2 * global_g.stride
        self.front = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf_local, 7), _norm(ngf_local), nn.ReLU(True),
            *_down(ngf_local, ngf_global),
        )
        self.back = nn.Sequential(
            *[ResnetBlock(ngf_global) for _ in range(n_blocks_local)],
            *_up(ngf_global, ngf_local),
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf_local, output_nc, 7),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = _pad_to(x, self.stride)
        low = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        y = self.back(self.front(x) + self.global_g.forward_features(low))
        return y[..., :h, :w]


class NLayerDiscriminator(nn.Module):
    """PatchGAN: returns the list of every layer's output (the last is the patch score map)."""

    def __init__(self, input_nc: int, ndf: int = 16, n_layers: int = 3) -> None:
        super().__init__()
        k, p = 4, 2  # pix2pixHD's kernel 4, padding ceil((4 - 1) / 2)
        blocks = [nn.Sequential(nn.Conv2d(input_nc, ndf, k, 2, p), nn.LeakyReLU(0.2, True))]
        c = ndf
        for n in range(1, n_layers + 1):
            cp, c = c, min(ndf * 2**n, 512)
            stride = 2 if n < n_layers else 1
            blocks.append(nn.Sequential(nn.Conv2d(cp, c, k, stride, p), _norm(c), nn.LeakyReLU(0.2, True)))
        blocks.append(nn.Sequential(nn.Conv2d(c, 1, k, 1, p)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for b in self.blocks:
            x = b(x)
            outs.append(x)
        return outs


class MultiscaleDiscriminator(nn.Module):
    """``num_D`` PatchGANs; scale i sees the input average-pooled i times (finest first)."""

    def __init__(self, input_nc: int, ndf: int = 16, n_layers: int = 3, num_D: int = 2) -> None:
        super().__init__()
        self.scales = nn.ModuleList(NLayerDiscriminator(input_nc, ndf, n_layers) for _ in range(num_D))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        outs = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(d(x))
        return outs


class Encoder(nn.Module):
    """E: image -> ``feat_nc`` feature channels at full size (averaged per instance afterwards)."""

    def __init__(self, input_nc: int = 3, feat_nc: int = 3, nef: int = 16, n_down: int = 4) -> None:
        super().__init__()
        self.stride = 2**n_down
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, nef, 7), _norm(nef), nn.ReLU(True)]
        for i in range(n_down):
            layers += _down(nef * 2**i, nef * 2 ** (i + 1))
        for i in range(n_down, 0, -1):
            layers += _up(nef * 2**i, nef * 2 ** (i - 1))
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(nef, feat_nc, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = _pad_to(x, self.stride)
        return self.net(x)[..., :h, :w]


@register_model("pix2pixhd_global")
def build_global(input_nc: int, ngf: int = 16, n_down: int = 4, n_blocks: int = 9, output_nc: int = 3) -> GlobalGenerator:
    """pix2pixHD's global generator G1."""
    return GlobalGenerator(input_nc, output_nc, ngf, n_down, n_blocks)


@register_model("pix2pixhd_local")
def build_local(
    input_nc: int, ngf: int = 16, n_down_global: int = 4, n_blocks_global: int = 9, n_blocks_local: int = 3,
    output_nc: int = 3, ngf_local: int | None = None,
) -> LocalEnhancer:
    """pix2pixHD's local enhancer (width ``ngf_local``, default ``ngf // 2``) around a fresh G1 of width ``ngf``."""
    g1 = GlobalGenerator(input_nc, output_nc, ngf, n_down_global, n_blocks_global)
    return LocalEnhancer(g1, input_nc, output_nc, ngf_local or max(ngf // 2, 1), n_blocks_local)


@register_model("pix2pixhd_discriminator")
def build_discriminator(input_nc: int, ndf: int = 16, n_layers: int = 3, num_D: int = 2) -> MultiscaleDiscriminator:
    """Multi-scale PatchGAN discriminator."""
    return MultiscaleDiscriminator(input_nc, ndf, n_layers, num_D)


@register_model("pix2pixhd_encoder")
def build_encoder(feat_nc: int = 3, nef: int = 16, n_down: int = 4, input_nc: int = 3) -> Encoder:
    """Instance-wise feature encoder."""
    return Encoder(input_nc, feat_nc, nef, n_down)
