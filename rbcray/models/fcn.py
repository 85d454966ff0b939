"""FCN-8s for cell segmentation (Bailo et al. Sec. 5, Table 2 "FCN-8s"; Long et al. 2015).

A VGG16-layout encoder (conv blocks of 2, 2, 3, 3, 3 layers, a max-pool after each), fc6/fc7 as
convolutions, and the FCN-8s decoder: class scores from fc7 upsampled x2 and fused with scores
from pool4, upsampled x2 again and fused with scores from pool3, then upsampled x8 to the input
size. Inputs of any size are padded to a multiple of 32 and the output cropped back.

``width`` scales every channel count (64 is VGG16; a demo on a CPU uses 8) and ``fc_channels``
the fc6/fc7 width (4096 in VGG16). Weights are random (``weights=None``) or read from a file the
user provides: an rbcray checkpoint of this model, or a torchvision VGG16 / VGG16-BN state dict
whose ``features.*`` tensors initialise the encoder. Nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rbcray.config import check, from_dict
from rbcray.errors import DataError
from rbcray.models.registry import register_model

VGG16_BLOCKS = (2, 2, 3, 3, 3)


@dataclass(frozen=True)
class FCNConfig:
    """FCN-8s hyper-parameters (defaults: the paper's VGG16 network, one foreground class)."""

    in_channels: int = 3
    num_classes: int = 1
    width: int = 64
    fc_channels: int = 4096
    #: batch norm after every encoder conv (VGG16-BN layout): trains from scratch far more
    #: reliably than plain VGG16, which FCN-8s only ever trained from ImageNet weights.
    batch_norm: bool = True
    dropout: float = 0.5
    weights: str | None = None

    def __post_init__(self) -> None:
        check(self.in_channels >= 1, f"FCN in_channels must be >= 1, got {self.in_channels}")
        check(self.num_classes >= 1, f"FCN num_classes must be >= 1, got {self.num_classes}")
        check(self.width >= 1, f"FCN width must be >= 1, got {self.width}")
        check(self.fc_channels >= 1, f"FCN fc_channels must be >= 1, got {self.fc_channels}")
        check(0.0 <= self.dropout < 1.0, f"FCN dropout must be in [0, 1), got {self.dropout}")


def _vgg_features(in_ch: int, width: int, batch_norm: bool) -> nn.Sequential:
    """VGG16's ``features`` with torchvision's layer indexing (so its state dicts load)."""
    layers: list[nn.Module] = []
    chans = (width, 2 * width, 4 * width, 8 * width, 8 * width)
    c = in_ch
    for n, out in zip(VGG16_BLOCKS, chans):
        for _ in range(n):
            layers.append(nn.Conv2d(c, out, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            c = out
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


def _bilinear_kernel(channels: int, k: int) -> torch.Tensor:
    """Per-channel bilinear upsampling kernel (FCN's initialisation of its deconvolutions)."""
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    og = torch.arange(k, dtype=torch.float32)
    filt1 = 1 - (og - center).abs() / factor
    filt = filt1[:, None] * filt1[None, :]
    w = torch.zeros(channels, channels, k, k)
    for i in range(channels):
        w[i, i] = filt
    return w


def _upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    k = 2 * factor
    up = nn.ConvTranspose2d(channels, channels, k, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(_bilinear_kernel(channels, k))
    return up


class VGGEncoder(nn.Module):
    """VGG16 features plus fc6/fc7 as convolutions; returns (pool3, pool4, fc7)."""

    def __init__(self, cfg: FCNConfig) -> None:
        super().__init__()
        self.features = _vgg_features(cfg.in_channels, cfg.width, cfg.batch_norm)
        self.pool3_channels = 4 * cfg.width
        self.pool4_channels = 8 * cfg.width
        self.fc = nn.Sequential(
            nn.Conv2d(8 * cfg.width, cfg.fc_channels, 7, padding=3),
            nn.ReLU(inplace=True),
            nn.Dropout2d(cfg.dropout),
            nn.Conv2d(cfg.fc_channels, cfg.fc_channels, 1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(cfg.dropout),
        )
        self.fc_channels = cfg.fc_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pools = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                pools.append(x)
        return pools[2], pools[3], self.fc(pools[4])


class FCN8sDecoder(nn.Module):
    """Scores at fc7, pool4 and pool3 fused by learned (bilinear-initialised) upsampling."""

    def __init__(self, enc: VGGEncoder, num_classes: int) -> None:
        super().__init__()
        self.score_fr = nn.Conv2d(enc.fc_channels, num_classes, 1)
        self.score_pool4 = nn.Conv2d(enc.pool4_channels, num_classes, 1)
        self.score_pool3 = nn.Conv2d(enc.pool3_channels, num_classes, 1)
        # FCN zero-initialises the skip scores so training starts from the coarse prediction.
        for m in (self.score_pool4, self.score_pool3):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        self.up2 = _upsampler(num_classes, 2)
        self.up2_pool4 = _upsampler(num_classes, 2)
        self.up8 = _upsampler(num_classes, 8)

    def forward(self, pool3: torch.Tensor, pool4: torch.Tensor, fc7: torch.Tensor) -> torch.Tensor:
        s = self.up2(self.score_fr(fc7)) + self.score_pool4(pool4)
        s = self.up2_pool4(s) + self.score_pool3(pool3)
        return self.up8(s)


def pad_to_multiple(x: torch.Tensor, m: int = 32) -> tuple[torch.Tensor, int, int]:
    """Reflect-pad (N, C, H, W) on the bottom/right to multiples of ``m``; returns (x, H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        mode = "reflect" if h > ph and w > pw else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


class FCN8s(nn.Module):
    """FCN-8s: (N, C, H, W) images -> (N, num_classes, H, W) logits."""

    def __init__(self, cfg: FCNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = VGGEncoder(cfg)
        self.decoder = FCN8sDecoder(self.encoder, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = pad_to_multiple(x)
        return self.decoder(*self.encoder(x))[..., :h, :w]


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict (or a checkpoint dict holding ``model``/``state_dict``) from ``path``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: weights file not found (rbcray never downloads weights; give a local file)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise DataError(f"{p}: not a readable PyTorch weights file ({type(e).__name__})") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(f"{p}: does not hold a state dict of tensors")
    return obj


def load_into(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path, prefix_map: dict[str, str] | None = None) -> None:
    """Load ``state`` into ``module``; every tensor must fit, or a one-line error names the file."""
    if prefix_map:
        renamed = {}
        for k, v in state.items():
            for src, dst in prefix_map.items():
                if k.startswith(src):
                    renamed[dst + k[len(src):]] = v
                    break
        state = renamed
    own = module.state_dict()
    # frozen batch norm (pretrained detector backbones) keeps no batch counter
    state = {k: v for k, v in state.items() if k in own or not k.endswith("num_batches_tracked")}
    unknown = [k for k in state if k not in own]
    bad = [k for k in state if k in own and own[k].shape != state[k].shape]
    if unknown or bad or not state:
        what = f"unexpected tensor {unknown[0]!r}" if unknown else (
            f"tensor {bad[0]!r} has shape {tuple(state[bad[0]].shape)}, the model needs {tuple(own[bad[0]].shape)}"
            if bad else "no matching tensors")
        raise DataError(f"{path}: weights do not fit this model ({what})")
    module.load_state_dict(state, strict=False)


def load_fcn_weights(model: nn.Module, encoder: VGGEncoder, path: str) -> None:
    """rbcray checkpoint of the whole model, or torchvision VGG16(-BN) features for the encoder."""
    state = load_state_file(path)
    if all(k.startswith("features.") for k in state if not k.startswith("classifier.")):
        state = {k: v for k, v in state.items() if k.startswith("features.")}
        load_into(encoder, state, path)
    else:
        missing = [k for k in model.state_dict() if k not in state]
        if missing:
            raise DataError(f"{path}: weights do not fit this model (missing tensor {missing[0]!r})")
        load_into(model, state, path)


@register_model("fcn8s")
def build_fcn8s(**kwargs: object) -> FCN8s:
    """FCN-8s from keyword arguments of :class:`FCNConfig` (validated)."""
    cfg = from_dict(FCNConfig, dict(kwargs), where="fcn8s")
    model = FCN8s(cfg)
    if cfg.weights:
        load_fcn_weights(model, model.encoder, cfg.weights)
    return model
