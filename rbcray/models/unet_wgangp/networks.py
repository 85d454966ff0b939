"""U-Net generator with batch renormalisation, and the (mask, image) WGAN critic with layer norm.

Both are registered in the model registry (``unet_wgangp_generator``, ``unet_wgangp_critic``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rbcray.models.registry import register_model
from rbcray.models.unet_wgangp.config import UNetWGANGPConfig

SLOPE_G = 0.01  # LeakyReLU slope of the generator (Chen et al.)
SLOPE_D = 0.2  # of the critic (DCGAN / WGAN-GP practice)


class BatchRenorm2d(nn.Module):
    """Batch renormalisation (Ioffe 2017) over (B, H, W) per channel.

    In training, batch statistics are corrected towards the running ones by ``r`` (clipped to
    [1/r_max, r_max]) and ``d`` (clipped to [-d_max, d_max]), both without gradient, so that training
    and inference compute the same function as the running statistics settle -- which matters for
    small batches; in eval mode only the running statistics are used, so a sample's output never
    depends on the other samples of its batch.
    """

    def __init__(self, channels: int, eps: float = 1e-3, momentum: float = 0.1, r_max: float = 3.0, d_max: float = 5.0) -> None:
        super().__init__()
        self.eps, self.momentum, self.r_max, self.d_max = eps, momentum, r_max, d_max
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        if self.training:
            xf = x.float()
            mean = xf.mean(dim=(0, 2, 3))
            var = xf.var(dim=(0, 2, 3), unbiased=False)
            std = (var + self.eps).sqrt()
            rstd = (self.running_var + self.eps).sqrt()
            r = (std.detach() / rstd).clamp(1 / self.r_max, self.r_max)
            d = ((mean.detach() - self.running_mean) / rstd).clamp(-self.d_max, self.d_max)
            y = (xf - mean.view(shape)) / std.view(shape) * r.view(shape) + d.view(shape)
            with torch.no_grad():
                n = x.numel() / x.shape[1]
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach() * n / max(n - 1, 1), self.momentum)
        else:
            y = (x.float() - self.running_mean.view(shape)) / (self.running_var + self.eps).sqrt().view(shape)
        return (y * self.weight.view(shape) + self.bias.view(shape)).to(x.dtype)


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), BatchRenorm2d(cout), nn.LeakyReLU(SLOPE_G))


class UNetGenerator(nn.Module):
    """U-Net: ``n_down`` stride-2 encoder blocks, a bottleneck, and decoder blocks that upsample
    (nearest + 3x3 conv, no checkerboard) and concatenate the encoder feature of the same scale.

    Any input size works: the input is padded (replicate) to a multiple of ``2**n_down`` and the
    output cropped back. Output: RGB in [-1, 1].
    """

    def __init__(self, cfg: UNetWGANGPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = [min(cfg.ngf * 2**k, cfg.ngf * cfg.max_mult) for k in range(cfg.n_down + 1)]
        self.stem = nn.Sequential(nn.Conv2d(cfg.label_nc + cfg.z_nc, w[0], 3, 1, 1), nn.LeakyReLU(SLOPE_G), _block(w[0], w[0], 1))
        self.down = nn.ModuleList(nn.Sequential(_block(w[k], w[k + 1], 2), _block(w[k + 1], w[k + 1], 1)) for k in range(cfg.n_down))
        self.up = nn.ModuleList(_block(w[k + 1], w[k], 1) for k in reversed(range(cfg.n_down)))
        self.fuse = nn.ModuleList(_block(2 * w[k], w[k], 1) for k in reversed(range(cfg.n_down)))
        self.head = nn.Sequential(nn.Conv2d(w[0], 3, 3, 1, 1), nn.Tanh())

    @property
    def stride(self) -> int:
        return self.cfg.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = self.stride
        ph, pw = (-h) % s, (-w) % s
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = [self.stem(x)]
        for blk in self.down:
            skips.append(blk(skips[-1]))
        y = skips.pop()
        for up, fuse in zip(self.up, self.fuse):
            skip = skips.pop()
            y = up(F.interpolate(y, size=skip.shape[-2:], mode="nearest"))
            y = fuse(torch.cat([y, skip], dim=1))
        return self.head(y)[..., :h, :w]


class PairCritic(nn.Module):
    """Wasserstein critic of (label map, image) pairs: stride-2 convs with layer norm (GroupNorm
    with one group: per-sample statistics over C, H, W, so the gradient penalty of each sample is
    its own), then a 1-channel patch map averaged to one score per sample."""

    def __init__(self, cfg: UNetWGANGPConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cfg.label_nc + 3, cfg.ndf, 4, 2, 1), nn.LeakyReLU(SLOPE_D)]
        c = cfg.ndf
        for _ in range(cfg.n_layers_D - 1):
            c2 = min(c * 2, cfg.ndf * 8)
            layers += [nn.Conv2d(c, c2, 4, 2, 1), nn.GroupNorm(1, c2), nn.LeakyReLU(SLOPE_D)]
            c = c2
        layers += [nn.Conv2d(c, 1, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, label: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """(B,) critic scores (higher: more real)."""
        return self.net(torch.cat([label, image.to(label.dtype)], dim=1)).mean(dim=(1, 2, 3))


@register_model("unet_wgangp_generator")
def build_generator(cfg: UNetWGANGPConfig) -> UNetGenerator:
    return UNetGenerator(cfg)


@register_model("unet_wgangp_critic")
def build_critic(cfg: UNetWGANGPConfig) -> PairCritic:
    return PairCritic(cfg)
