"""A feature encoder and segmenter learned from real train-split images only (no downloaded weights).

:class:`RealEncoder` is a small U-Net-style segmenter (3 classes per pixel: background, cell
interior, cell boundary -- the boundary class keeps touching cells apart) trained on random crops
of real images and their instance maps. It serves two metrics, always as *one saved file* so that
every model compared is scored by the same network:

- **features** (:meth:`RealEncoder.features`): per crop, the global mean of each encoder stage and
  the global std of the deepest -- the space of KID, Fréchet distance and PRDC
  (:mod:`rbcray.evaluate.kid`, :mod:`.frechet`, :mod:`.prdc`);
- **segmentation** (:meth:`RealEncoder.segment`): what mask fidelity runs on synthetic images
  (:mod:`rbcray.evaluate.mask_fidelity`).

The training images' stems are saved in the file as a provenance record
(:func:`rbcray.data.provenance.provenance_record`); the masks it learns from are derived by
classical segmentation (``rbcray annotate``), not drawn by people.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rbcray import storage
from rbcray.errors import DataError
from rbcray.evaluate.data import Sample

FORMAT = "rbcray-real-encoder"


@dataclass(frozen=True)
class EncoderConfig:
    width: int = 16
    crop: int = 96
    steps: int = 400
    batch: int = 8
    lr: float = 2e-3
    seed: int = 0


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegNet(nn.Module):
    """Three encoder stages (full, 1/2, 1/4 resolution), a two-step decoder, 3-class head."""

    def __init__(self, width: int) -> None:
        super().__init__()
        w = width
        self.e1, self.e2, self.e3 = _conv(3, w), _conv(w, 2 * w), _conv(2 * w, 4 * w)
        self.d2, self.d1 = _conv(6 * w, 2 * w), _conv(3 * w, w)
        self.head = nn.Conv2d(w, 3, 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.e1(x)
        f2 = self.e2(F.max_pool2d(f1, 2))
        f3 = self.e3(F.max_pool2d(f2, 2))
        return [f1, f2, f3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        f1, f2, f3 = self.encode(x)
        y = self.d2(torch.cat([F.interpolate(f3, size=f2.shape[-2:]), f2], 1))
        y = self.d1(torch.cat([F.interpolate(y, size=f1.shape[-2:]), f1], 1))
        return self.head(y)[..., :h, :w]


def targets(inst: np.ndarray) -> np.ndarray:
    """Per-pixel class: 0 background, 1 cell interior, 2 cell boundary (a 4-neighbour differs)."""
    t = (inst > 0).astype(np.int64)
    edge = np.zeros(inst.shape, bool)
    dx, dy = inst[:, 1:] != inst[:, :-1], inst[1:, :] != inst[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    t[edge & (inst > 0)] = 2
    return t


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1)


class RealEncoder:
    """The trained segmenter/encoder plus its config and provenance (see the module docstring)."""

    def __init__(self, net: SegNet, cfg: EncoderConfig, provenance: dict[str, Any] | None = None) -> None:
        self.net, self.cfg, self.provenance = net.eval(), cfg, provenance or {}

    @classmethod
    def train(cls, samples: list[Sample] | tuple[Sample, ...], cfg: EncoderConfig | None = None,
              provenance: dict[str, Any] | None = None, log: Any = None) -> RealEncoder:
        """Fit on random crops of real ``samples`` (their instance maps as targets)."""
        cfg = cfg or EncoderConfig()
        usable = [s for s in samples if s.instances is not None and min(s.shape) >= cfg.crop]
        if not usable:
            raise DataError(f"no real image with an instance map of at least {cfg.crop}x{cfg.crop} pixels to train the encoder on")
        tgts = [targets(s.instances) for s in usable]
        torch.manual_seed(cfg.seed)
        net = SegNet(cfg.width)
        opt = torch.optim.Adam(net.parameters(), cfg.lr)
        rng = np.random.default_rng([cfg.seed, 0xE7C])
        weight = torch.tensor([1.0, 1.0, 3.0])  # the thin boundary class would be drowned otherwise
        net.train()
        for step in range(cfg.steps):
            xs, ts = [], []
            for _ in range(cfg.batch):
                k = int(rng.integers(len(usable)))
                h, w = usable[k].shape
                y, x = int(rng.integers(0, h - cfg.crop + 1)), int(rng.integers(0, w - cfg.crop + 1))
                img, t = usable[k].image[y : y + cfg.crop, x : x + cfg.crop], tgts[k][y : y + cfg.crop, x : x + cfg.crop]
                if rng.random() < 0.5:
                    img, t = img[:, ::-1], t[:, ::-1]
                if rng.random() < 0.5:
                    img, t = img[::-1], t[::-1]
                xs.append(img)
                ts.append(t)
            loss = F.cross_entropy(net(_to_tensor(np.stack(xs))), torch.from_numpy(np.ascontiguousarray(np.stack(ts))), weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if log is not None and (step + 1) % 100 == 0:
                log(f"encoder step {step + 1}/{cfg.steps}: loss {float(loss):.4f}")
        return cls(net, cfg, provenance)

    # ------------------------------------------------------------------ use
    @torch.no_grad()
    def segment(self, image: np.ndarray) -> np.ndarray:
        """(3, H, W) class probabilities (background, interior, boundary) of one RGB uint8 image."""
        return torch.softmax(self.net(_to_tensor(image[None])), 1)[0].numpy()

    @torch.no_grad()
    def features(self, crops: np.ndarray, batch: int = 128) -> np.ndarray:
        """(N, 11 * width) float64 features of (N, h, w, 3) uint8 crops."""
        out = []
        for i in range(0, len(crops), batch):
            f1, f2, f3 = self.net.encode(_to_tensor(crops[i : i + batch]))
            out.append(torch.cat([f1.mean((2, 3)), f2.mean((2, 3)), f3.mean((2, 3)), f3.std((2, 3))], 1).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, 11 * self.cfg.width))

    # ------------------------------------------------------------------ file
    def save(self, uri: str) -> None:
        """One file (torch zip of tensors + JSON strings; loads with ``weights_only``)."""
        from rbcray.models.pix2pixhd.checkpoint import torch_bytes

        storage.write_bytes(uri, torch_bytes({"format": FORMAT, "state": self.net.state_dict(),
                                              "config": json.dumps(asdict(self.cfg)), "provenance": json.dumps(self.provenance)}))

    @classmethod
    def load(cls, uri: str) -> RealEncoder:
        from rbcray.models.pix2pixhd.checkpoint import load_torch_bytes

        d = load_torch_bytes(storage.read_bytes(uri), uri)
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise DataError(f"{uri}: not an rbcray real-image encoder file")
        cfg = EncoderConfig(**json.loads(d["config"]))
        net = SegNet(cfg.width)
        net.load_state_dict(d["state"])
        return cls(net, cfg, json.loads(d["provenance"]))
