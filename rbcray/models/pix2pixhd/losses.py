"""pix2pixHD losses (Wang et al. 2018, Sec. 3.2, Eq. 4; Bailo et al. 2019, Sec. 4.2).

- adversarial: LSGAN (least squares, pix2pixHD's default) or hinge, summed over the
  discriminator scales;
- feature matching: L1 between the discriminator's intermediate features of real and generated
  images, over every intermediate layer of every scale, weighted ``4 / (n_layers + 1)`` per layer
  and ``1 / num_D`` per scale (pix2pixHD's normalisation), times ``lambda_fm`` (10);
- perceptual: L1 between VGG19 features (relu1_1 ... relu5_1) with weights 1/32, 1/16, 1/8,
  1/4, 1, times ``lambda_vgg`` (10). As in NVIDIA's pix2pixHD (``models/networks.py``:
  ``VGGLoss.forward`` calls ``self.vgg(x)`` on the generator's output, and the data loader
  normalises real images with mean 0.5, std 0.5), VGG19 sees images in [-1, 1], without
  ImageNet's mean/std normalisation; ``imagenet_norm=True`` maps them to [0, 1] and normalises
  them the way torchvision's VGG19 was trained instead.

VGG19 weights are never downloaded: they come from an explicit file, or torchvision's file in the
torch hub cache; :func:`resolve_vgg_weights` says how to provide them when neither exists.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rbcray.errors import ConfigError

#: torchvision's ImageNet VGG19 weights file (what ``vgg19(weights="IMAGENET1K_V1")`` caches).
VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
# Slices of torchvision's vgg19().features ending at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
_VGG_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))


def gan_loss(pred: list[list[torch.Tensor]], target_real: bool, mode: str = "lsgan", for_d: bool = True) -> torch.Tensor:
    """Adversarial loss over all scales; ``pred`` is the discriminator's per-scale layer list.

    ``for_d`` matters for hinge only: D uses max(0, 1 -/+ s); G uses -s (its targets are "real").
    """
    total = pred[0][-1].new_zeros((), dtype=torch.float32)
    for scale in pred:
        s = scale[-1].float()
        if mode == "lsgan":
            total = total + F.mse_loss(s, torch.full_like(s, 1.0 if target_real else 0.0))
        elif mode == "hinge":
            if for_d:
                total = total + (F.relu(1 - s) if target_real else F.relu(1 + s)).mean()
            else:
                total = total - s.mean()
        else:
            raise ConfigError(f"gan_mode {mode!r}: use 'lsgan' or 'hinge'")
    return total


def feature_matching_loss(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]], n_layers: int) -> torch.Tensor:
    """Discriminator feature matching (unweighted by lambda_fm): real features are constants."""
    num_d = len(fake)
    w = 4.0 / (n_layers + 1) / num_d
    total = fake[0][0].new_zeros((), dtype=torch.float32)
    for fs, rs in zip(fake, real):
        for f, r in zip(fs[:-1], rs[:-1]):
            total = total + w * F.l1_loss(f.float(), r.detach().float())
    return total


def resolve_vgg_weights(path: str | None) -> Path:
    """The VGG19 weights file to use: ``path`` if given, else torchvision's file in the torch hub cache."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"VGG19 weights file {p} not found (pass an existing --vgg-weights FILE, or --no-vgg-loss)")
        return p
    cached = Path(torch.hub.get_dir()).expanduser() / "checkpoints" / VGG19_FILE  # honours $TORCH_HOME
    if cached.is_file():
        return cached
    raise ConfigError(
        f"VGG19 weights for the perceptual loss not found (looked for {cached}); copy torchvision's "
        f"{VGG19_FILE} there or pass --vgg-weights FILE, or train without it: --no-vgg-loss"
    )


def _vgg19_features() -> nn.Sequential:
    from torchvision.models import vgg19

    return vgg19(weights=None).features[:30]


class VGGLoss(nn.Module):
    """Perceptual loss on frozen VGG19 features; inputs are RGB in [-1, 1] (fed as they are,
    like the reference, unless ``imagenet_norm``).

    ``weights``: a torchvision VGG19 state dict file (loaded with ``weights_only=True``), or ``None``
    for a randomly initialised network (tests only: a random VGG is no perceptual metric).
    """

    def __init__(self, weights: str | Path | None, imagenet_norm: bool = False) -> None:
        super().__init__()
        self.imagenet_norm = bool(imagenet_norm)
        feats = _vgg19_features()
        if weights is not None:
            try:
                sd = torch.load(weights, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
                raise ConfigError(f"{weights}: not a readable VGG19 weights file ({str(e).splitlines()[0][:120]})") from None
            sd = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
            sd = {k: v for k, v in sd.items() if int(k.split(".")[0]) < 30}
            try:
                feats.load_state_dict(sd)
            except RuntimeError:
                raise ConfigError(f"{weights}: not torchvision VGG19 weights (layer names or shapes differ)") from None
        self.slices = nn.ModuleList(feats[a:b] for a, b in _VGG_SLICES)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGLoss:
        return super().train(False)  # always frozen, whatever the caller's mode

    def _prep(self, t: torch.Tensor) -> torch.Tensor:
        return ((t + 1) / 2 - self.mean) / self.std if self.imagenet_norm else t

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        x = self._prep(fake)
        with torch.no_grad():
            y = self._prep(real)
        total = fake.new_zeros((), dtype=torch.float32)
        for w, s in zip(VGG_LAYER_WEIGHTS, self.slices):
            x = s(x)
            with torch.no_grad():
                y = s(y)
            total = total + w * F.l1_loss(x.float(), y.float())
        return total
