"""Mask -> image inference with a trained unet-wgangp model, without Ray.

:class:`UNetTranslator` follows the same contract as
:class:`~rbcray.models.pix2pixhd.inference.Pix2PixHDTranslator` (see that module and
:class:`rbcray.models.translator.Translator`): same arguments, RGB uint8 outputs in input order.
The family has no style clusters (``num_styles == 0``; the ``styles`` per instance are -1); a
sample's seed draws its noise map (``np.random.default_rng(seed)``, ``z_nc`` standard-normal
channels), so different seeds give different images of one mask. Samples run one at a time and
batch renormalisation uses its running statistics: an image depends only on (model, mask,
categories, seed, device type), never on the batch it came in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from rbcray.errors import DataError, RbcrayError
from rbcray.models.pix2pixhd.checkpoint import load_torch_bytes, read_model
from rbcray.models.pix2pixhd.inference import _seed, pick_device
from rbcray.models.pix2pixhd.inputs import category_lut, class_map, generator_input
from rbcray.models.registry import create_model
from rbcray.models.translator import TranslatorBase
from rbcray.models.unet_wgangp.config import MODEL_FORMAT, UNetWGANGPConfig


def noise_map(seed: Any, z_nc: int, h: int, w: int) -> np.ndarray:
    """The (z_nc, H, W) float32 noise of a sample: a pure function of its seed."""
    return np.random.default_rng(seed).standard_normal((z_nc, h, w), dtype=np.float32)


class UNetTranslator(TranslatorBase):
    """A trained U-Net generator: instance maps -> RGB images (see the module docstring)."""

    def __init__(self, G: torch.nn.Module, config: dict[str, Any], device: torch.device, sha256: str = "") -> None:
        self.cfg: UNetWGANGPConfig = G.cfg
        self.G = G.to(device).eval()
        self.config = config
        self.device = device
        self.sha256 = sha256

    @classmethod
    def load(cls, uri: str, device: str | torch.device | None = None, **_: Any) -> UNetTranslator:
        """Load the final model of ``rbcray train --model unet-wgangp --out URI`` (or its ``model/``)."""
        _, files = read_model(uri, fmt=MODEL_FORMAT)
        try:
            config = json.loads(files["config.json"])
            mcfg = UNetWGANGPConfig(**config["model"])
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{uri}: model config.json is not a unet-wgangp training config ({e})") from None
        weights = load_torch_bytes(files["generator.pt"], f"{uri}/generator.pt")
        G = create_model("unet_wgangp_generator", cfg=mcfg)
        try:
            G.load_state_dict(weights["G"])
        except (RuntimeError, KeyError, TypeError) as e:
            raise DataError(f"{uri}: generator weights do not match its config ({str(e).splitlines()[0][:120]})") from None
        return cls(G, config, pick_device(device), hashlib.sha256(files["generator.pt"]).hexdigest())

    @property
    def num_styles(self) -> int:
        return 0


    def translate_with_styles(
        self,
        instances: Sequence[np.ndarray],
        categories: Sequence[Mapping[int, int] | None] | None,
        seeds: Sequence[int | Sequence[int]],
        style: int | None | Sequence[int | None] = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(image, -1 per instance id: no style clusters) for each sample."""
        cats, styles = self.batch_args(instances, categories, seeds, style)
        if any(s is not None for s in styles):
            raise RbcrayError("this model has no style clusters (unet-wgangp); use style=None")
        out = []
        for i, inst in enumerate(instances):
            seed = _seed(seeds[i])
            name = f"sample {i} (seed {seed})"
            if not isinstance(inst, np.ndarray) or inst.ndim != 2 or not np.issubdtype(inst.dtype, np.integer):
                raise DataError(f"{name}: an instance map must be a 2-D integer array, got {getattr(inst, 'dtype', type(inst))} {getattr(inst, 'shape', '')}")
            if inst.size == 0 or inst.min() < 0:
                raise DataError(f"{name}: instance map is empty or has negative ids")
            lut = category_lut(inst, cats[i], self.cfg.num_classes, name)
            out.append((self._run(inst.astype(np.int64), lut, seed), np.full(len(lut), -1, dtype=np.int64)))
        return out

    @torch.no_grad()
    def _run(self, inst: np.ndarray, lut: np.ndarray, seed: Any) -> np.ndarray:
        dev = self.device
        t = torch.from_numpy(inst).unsqueeze(0).to(dev)
        x = generator_input(t, class_map(t, [lut]), None, self.cfg.num_classes)
        if self.cfg.z_nc:
            z = torch.from_numpy(noise_map(seed, self.cfg.z_nc, *inst.shape)).unsqueeze(0).to(dev)
            x = torch.cat([x, z], dim=1)
        y = self.G(x)
        y = ((y.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return y[0].permute(1, 2, 0).cpu().numpy()
