"""Mask -> image inference with a trained pix2pixHD (Bailo et al. 2019, Sec. 4.2-4.3), without Ray.

The generation engine loads one :class:`Pix2PixHDTranslator` per actor and calls
:meth:`Pix2PixHDTranslator.translate` on batches. Contract:

- ``Pix2PixHDTranslator.load(uri, device=None)``: ``uri`` is what ``rbcray train --out`` wrote
  (local path or ``s3://``/``gs://`` URI; its ``model/`` folder) or that ``model/`` folder itself.
  Files are verified against the manifest's sha256 and loaded with ``weights_only=True``.
  ``device=None`` picks CUDA when available. On CUDA, bf16 autocast and channels_last are used
  unless ``bf16=False``.
- ``translate(instances, categories, seeds, style=None) -> list[np.ndarray]``:
  ``instances[i]`` is a (H, W) integer instance map (0 background, 1..N cells; any size, sizes
  may differ within a batch); ``categories[i]`` maps cell id -> COCO category id (1 RBC, 2 WBC,
  3 Platelet; missing ids and ``None`` mean RBC); ``seeds[i]`` is the sample's seed, an int or a
  sequence of ints such as ``(S, sample_id)`` (anything ``np.random.default_rng`` takes);
  ``style`` is ``None`` (each region draws a style cluster from the sample's style stream,
  ``rbcray.rng.purpose_rng(seed, STYLE)``, uniformly or by cluster size as the model's
  ``style_sampling`` says),
  an int k (every region uses cluster k), or a per-sample list of those. Returns RGB ``uint8``
  (H, W, 3) arrays in input order.
- Determinism: a sample's image depends only on (model, mask, categories, seed, style, device
  type): samples are run one at a time through the network (``micro_batch=1``, the default), so
  batch composition and order never change a pixel. ``micro_batch > 1`` stacks same-sized masks
  for throughput and may change outputs by float rounding (at most a level or two of uint8).
- :meth:`translate_with_styles` also returns the chosen cluster per instance id (index 0 is the
  background; -1 for ids absent from the mask), for the dataset's ``styles`` column.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from rbcray.errors import DataError, RbcrayError
from rbcray.models.pix2pixhd.checkpoint import load_torch_bytes, read_model
from rbcray.models.pix2pixhd.inputs import category_lut, class_map, features_from_table, generator_input
from rbcray.models.pix2pixhd.model import Pix2PixHD, Pix2PixHDConfig
from rbcray.models.pix2pixhd.styles import StyleBank
from rbcray.models.translator import TranslatorBase


def pick_device(device: str | torch.device | None) -> torch.device:
    """``None``/'auto' -> CUDA when available, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise RbcrayError("device 'cuda' requested but no CUDA GPU is available")
    return d


def _seed(s: Any) -> int | tuple[int, ...]:
    """A per-sample seed: an int or a sequence of non-negative ints."""
    if isinstance(s, (int, np.integer)):
        return int(s)
    try:
        return tuple(int(v) for v in s)
    except TypeError:
        raise RbcrayError(f"seed {s!r}: use an int or a sequence of ints such as (seed, sample_id)") from None


class Pix2PixHDTranslator(TranslatorBase):
    """A trained generator plus its style clusters: instance maps -> RGB images (see module docs)."""

    def __init__(
        self,
        model: Pix2PixHD,
        styles: StyleBank | None,
        config: dict[str, Any],
        device: torch.device,
        bf16: bool | None = None,
        micro_batch: int = 1,
        sha256: str = "",
    ) -> None:
        self.cfg: Pix2PixHDConfig = model.cfg
        self.G = model.G.to(device).eval()
        self.styles = styles
        self.config = config
        self.device = device
        self.bf16 = (device.type == "cuda") if bf16 is None else bool(bf16 and device.type == "cuda")
        if device.type == "cuda":
            self.G = self.G.to(memory_format=torch.channels_last)
        self.micro_batch = max(1, int(micro_batch))
        #: sha256 of the generator weights file (provenance for generated datasets)
        self.sha256 = sha256
        if self.cfg.feat_nc and styles is None:
            raise DataError("this model uses instance features but has no style clusters (styles.npz)")

    @classmethod
    def load(cls, uri: str, device: str | torch.device | None = None, bf16: bool | None = None, micro_batch: int = 1) -> Pix2PixHDTranslator:
        """Load the final model of ``rbcray train --out URI`` (or its ``model/`` folder)."""
        manifest, files = read_model(uri)
        try:
            config = json.loads(files["config.json"])
            mcfg = Pix2PixHDConfig(**config["model"])
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{uri}: model config.json is not a pix2pixHD training config ({e})") from None
        weights = load_torch_bytes(files["generator.pt"], f"{uri}/generator.pt")
        model = Pix2PixHD(mcfg, stage=int(weights.get("stage", 1)))
        try:
            model.G.load_state_dict(weights["G"])
        except (RuntimeError, KeyError) as e:
            raise DataError(f"{uri}: generator weights do not match its config ({str(e).splitlines()[0][:120]})") from None
        styles = StyleBank.from_bytes(files["styles.npz"], f"{uri}/styles.npz") if "styles.npz" in files else None
        if styles is not None and (styles.num_classes != mcfg.num_classes or styles.feat_nc != mcfg.feat_nc):
            raise DataError(f"{uri}: styles.npz does not fit the model ({styles.centers.shape} vs {mcfg.num_classes} classes, {mcfg.feat_nc} features)")
        sha = hashlib.sha256(files["generator.pt"]).hexdigest()
        return cls(model, styles, config, pick_device(device), bf16, micro_batch, sha)

    @property
    def num_styles(self) -> int:
        """Number of style clusters per class (0 for a model without instance features)."""
        return self.styles.k if self.styles is not None else 0


    def translate_with_styles(
        self,
        instances: Sequence[np.ndarray],
        categories: Sequence[Mapping[int, int] | None] | None,
        seeds: Sequence[int | Sequence[int]],
        style: int | None | Sequence[int | None] = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(image, cluster per instance id) for each sample."""
        cats, styles = self.batch_args(instances, categories, seeds, style)
        n = len(instances)
        prepared = []
        for i, inst in enumerate(instances):
            seed = _seed(seeds[i])
            name = f"sample {i} (seed {seed})"
            if not isinstance(inst, np.ndarray) or inst.ndim != 2 or not np.issubdtype(inst.dtype, np.integer):
                raise DataError(f"{name}: an instance map must be a 2-D integer array, got {getattr(inst, 'dtype', type(inst))} {getattr(inst, 'shape', '')}")
            if inst.size == 0 or inst.min() < 0:
                raise DataError(f"{name}: instance map is empty or has negative ids")
            lut = category_lut(inst, cats[i], self.cfg.num_classes, name)
            if self.styles is not None:
                present = np.unique(inst)
                clusters = self.styles.choose(lut, present, seed, styles[i], self.config.get("style_sampling", "uniform"))
                table = self.styles.feature_table(lut, clusters)
            else:
                clusters, table = np.full(len(lut), -1, dtype=np.int64), None
            prepared.append((inst.astype(np.int64), lut, table, clusters))
        out: list[Any] = [None] * n
        order = sorted(range(n), key=lambda j: prepared[j][0].shape)
        groups: list[list[int]] = []
        for j in order:
            if groups and len(groups[-1]) < self.micro_batch and prepared[groups[-1][0]][0].shape == prepared[j][0].shape:
                groups[-1].append(j)
            else:
                groups.append([j])
        for g in groups:
            imgs = self._run([prepared[j] for j in g])
            for j, img in zip(g, imgs):
                out[j] = (img, prepared[j][3])
        return out

    @torch.no_grad()
    def _run(self, items: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]]) -> list[np.ndarray]:
        dev = self.device
        inst = torch.from_numpy(np.stack([it[0] for it in items])).to(dev)
        classes = class_map(inst, [it[1] for it in items])
        feat = None
        if self.styles is not None:
            m = max(len(it[2]) for it in items)
            table = np.zeros((len(items), m, self.cfg.feat_nc), dtype=np.float32)
            for k, it in enumerate(items):
                table[k, : len(it[2])] = it[2]
            feat = features_from_table(inst, torch.from_numpy(table).to(dev))
        x = generator_input(inst, classes, feat, self.cfg.num_classes)
        if dev.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with ctx:
            y = self.G(x)
        y = ((y.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return list(y.permute(0, 2, 3, 1).cpu().numpy())
