"""Differentiable augmentation of the discriminator's inputs (Zhao et al. 2020, DiffAugment).

Training a GAN on a few dozen images lets D memorise them; DiffAugment applies the same family of
random, differentiable transforms to every batch D sees -- real and generated, in both the D and
the G updates -- so D cannot memorise and G still gets gradients through the transforms. Here the
input is a (label map, image) pair: geometric transforms (translation, cutout) move both alike so
the pair stays aligned; colour transforms touch the image only. Each sample of a batch draws its
own parameters from torch's RNG (seeded per run by the trainer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rbcray.errors import ConfigError

POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation"`` -> ("color", "translation"); '' -> (); an unknown name is a ConfigError."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise ConfigError(f"diffaug: unknown transform(s) {', '.join(map(repr, bad))}; known: {', '.join(POLICIES)}")
    return names


def _color(img: torch.Tensor) -> torch.Tensor:
    """Brightness, saturation and contrast, per sample (DiffAugment's ranges); image in [-1, 1]."""
    b = img.shape[0]
    r = torch.rand(b, 3, 1, 1, 1, device=img.device, dtype=img.dtype)
    img = img + (r[:, 0] - 0.5)
    mean = img.mean(dim=1, keepdim=True)
    img = (img - mean) * (r[:, 1] * 2) + mean
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    return (img - mean) * (r[:, 2] + 0.5) + mean


def _translate(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift every sample by up to ``ratio`` of its size (zero padding), per sample."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    tx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = torch.clamp(gy.unsqueeze(0) + ty + 1, 0, h + 1)
    gx = torch.clamp(gx.unsqueeze(0) + tx + 1, 0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1))
    idx = (gy * (w + 2) + gx).reshape(b, 1, -1).expand(-1, x.shape[1], -1)
    return padded.reshape(b, x.shape[1], -1).gather(2, idx).reshape_as(x)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a random square of ``ratio`` of the size in every sample."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    inside = ((gy.unsqueeze(0) >= oy - ch // 2) & (gy.unsqueeze(0) < oy - ch // 2 + ch)
              & (gx.unsqueeze(0) >= ox - cw // 2) & (gx.unsqueeze(0) < ox - cw // 2 + cw))
    return x * (~inside).unsqueeze(1).to(x.dtype)


def diff_augment(label: torch.Tensor, image: torch.Tensor, policy: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch of (label, image) pairs with ``policy`` (see :func:`parse_policy`)."""
    if not policy:
        return label, image
    if "color" in policy:
        image = _color(image)
    nl = label.shape[1]
    x = torch.cat([label, image.to(label.dtype)], dim=1)
    if "translation" in policy:
        x = _translate(x)
    if "cutout" in policy:
        x = _cutout(x)
    return x[:, :nl], x[:, nl:]
