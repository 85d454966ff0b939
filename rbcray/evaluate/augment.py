"""Classical augmentation for the "+aug" regimes (Bailo et al. Sec. 5, Table 2).

The paper's list: horizontal and vertical flips, Gaussian blur, sharpening, emboss, Gaussian
noise, channel inversion, brightness add and multiply, contrast normalisation and greyscale,
each applied at random. Built on ``torchvision.transforms.v2`` (already an rbcray dependency):
its flips move the instance map and boxes with the image (``tv_tensors``), and its photometric
transforms leave them alone. torchvision has no emboss and no additive brightness, so those two
are small tensor functions here (emboss: imgaug's 3x3 kernel blended with the image).

Randomness comes from a numpy Generator the caller derives from (seed, sample id), so an
augmented copy is the same whatever the worker or batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as T
from torchvision import tv_tensors

from rbcray.config import check


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and strengths of the paper's augmentations."""

    p_flip: float = 0.5
    #: probability of each photometric augmentation, independently
    p_op: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    sharpness: float = 2.0
    emboss_alpha: tuple[float, float] = (0.2, 0.8)
    emboss_strength: tuple[float, float] = (0.5, 1.5)
    noise_sigma: float = 0.03
    brightness_add: float = 0.08
    brightness_mul: tuple[float, float] = (0.8, 1.2)
    contrast: tuple[float, float] = (0.7, 1.4)

    def __post_init__(self) -> None:
        check(0 <= self.p_flip <= 1 and 0 <= self.p_op <= 1, "augment probabilities must be in [0, 1]")
        check(self.noise_sigma >= 0 and self.brightness_add >= 0, "augment noise_sigma / brightness_add must be >= 0")


def _emboss(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """imgaug-style emboss: kernel [[-1-s, -s, 0], [-s, 1, s], [0, s, 1+s]], blended by alpha."""
    s = float(torch.empty(1).uniform_(*cfg.emboss_strength))
    a = float(torch.empty(1).uniform_(*cfg.emboss_alpha))
    k = torch.tensor([[-1 - s, -s, 0.0], [-s, 1.0, s], [0.0, s, 1 + s]], dtype=x.dtype)
    c = x.shape[-3]
    w = k.expand(c, 1, 3, 3).contiguous()
    y = F.conv2d(F.pad(x.unsqueeze(0), (1, 1, 1, 1), mode="replicate"), w, groups=c)[0]
    return tv_tensors.wrap(((1 - a) * x + a * y).clamp(0, 1), like=x)


def _brightness_add(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    d = float(torch.empty(1).uniform_(-cfg.brightness_add, cfg.brightness_add))
    return tv_tensors.wrap((x + d).clamp(0, 1), like=x)


def build_pipeline(cfg: AugmentConfig) -> T.Compose:
    """The paper's augmentations as one torchvision v2 pipeline over float [0, 1] images."""
    p = cfg.p_op

    def maybe(t: T.Transform) -> T.Transform:
        return T.RandomApply([t], p=p)

    return T.Compose([
        T.RandomHorizontalFlip(cfg.p_flip),
        T.RandomVerticalFlip(cfg.p_flip),
        maybe(T.GaussianBlur(5, sigma=cfg.blur_sigma)),
        T.RandomAdjustSharpness(cfg.sharpness, p=p),
        maybe(T.Lambda(lambda x: _emboss(x, cfg), tv_tensors.Image)),
        maybe(T.GaussianNoise(0.0, cfg.noise_sigma, clip=True)),
        T.RandomInvert(p),  # channel inversion
        maybe(T.Lambda(lambda x: _brightness_add(x, cfg), tv_tensors.Image)),
        maybe(T.ColorJitter(brightness=cfg.brightness_mul)),  # brightness multiply
        maybe(T.ColorJitter(contrast=cfg.contrast)),  # contrast normalisation
        T.RandomGrayscale(p),
    ])


class Augmenter:
    """Apply the pipeline to (image, instance map, boxes) with a caller-supplied generator."""

    def __init__(self, cfg: AugmentConfig | None = None) -> None:
        self.cfg = cfg or AugmentConfig()
        self.pipeline = build_pipeline(self.cfg)

    def __call__(
        self,
        image: np.ndarray,
        instances: np.ndarray | None,
        boxes: np.ndarray | None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Augmented copies (uint8 RGB image, uint16 instances or None, float32 boxes or None)."""
        h, w = image.shape[:2]
        inputs: list = [tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255)]
        if instances is not None:
            inputs.append(tv_tensors.Mask(torch.from_numpy(instances.astype(np.int32))))
        if boxes is not None:
            inputs.append(tv_tensors.BoundingBoxes(torch.from_numpy(boxes.astype(np.float32)).reshape(-1, 4),
                                                   format="XYXY", canvas_size=(h, w)))
        # torchvision draws from torch's global generator: seed a private fork of it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(0, 2**63 - 1)))
            out = list(self.pipeline(tuple(inputs)))
        img = (out.pop(0).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        inst = out.pop(0).numpy().astype(np.uint16) if instances is not None else None
        bx = out.pop(0).numpy().astype(np.float32) if boxes is not None else None
        return np.ascontiguousarray(img), inst, bx
