"""Training pix2pixHD on rbcray dataset folders: config and the plain (no Ray) training loop.

Two recipes (``model.generator``; see :mod:`rbcray.models.pix2pixhd.model`). Stage 1 always
trains the global generator, the discriminators D and the encoder E at half resolution. Then:

- ``global`` — Bailo et al. 2019 (Sec. 4.2, 5.1), the ``paper`` config: stage 2 trains the
  same global G, D and E at full resolution (no local enhancer);
- ``global+local`` — pix2pixHD (Wang et al. 2018, Sec. 3.2), the ``demo`` config: stage 2 wraps
  G1 in the local enhancer G2 at full resolution, with G1 frozen for ``freeze_global_epochs``
  epochs and then trained jointly.

Adam (lr 2e-4, beta1 0.5), constant then linearly decaying learning rate in each stage; each
stage starts its own Adam state. Networks are initialised as the NVIDIA reference does, its VGG19
perceptual loss sees images in [-1, 1] as the reference feeds them (no ImageNet normalisation
unless ``vgg_imagenet_norm``), and style clusters are drawn uniformly per class at generation
(``style_sampling``), as the reference's ``sample_features`` does.

:func:`train` is the single-process loop (what the benchmark compares Ray Train against);
:mod:`rbcray.distributed.train` runs the same :class:`~rbcray.train.pix2pixhd_loop.Trainer` on
Ray Train workers. Both write the same output layout under ``out`` (a local folder or URI):
per-epoch sample grids in ``samples/``, checkpoints, and finally ``model/`` (see
:mod:`rbcray.models.pix2pixhd.checkpoint`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rbcray import storage
from rbcray.config import check, to_dict
from rbcray.models.pix2pixhd.model import Pix2PixHDConfig

if TYPE_CHECKING:
    from rbcray.data.splits import Splits


@dataclass(frozen=True)
class Pix2PixHDTrainConfig:
    """Every hyper-parameter of a pix2pixHD training run (saved with every checkpoint)."""

    model: Pix2PixHDConfig = field(default_factory=Pix2PixHDConfig)
    #: resize every image (W, H) before cropping; None keeps the native size
    load_size: tuple[int, int] | None = None
    #: random crop (W, H) at full resolution (stage 2); None trains on whole images
    crop_size: tuple[int, int] | None = (512, 512)
    #: stage-1 input size (W, H); None = half of the stage-2 crop (pix2pixHD)
    stage1_size: tuple[int, int] | None = None
    flip: bool = True
    batch_size: int = 1  # per worker
    #: crops per epoch over all workers; None = one per image
    samples_per_epoch: int | None = None
    stage1_epochs: int = 100
    stage2_epochs: int = 100
    #: first epochs of stage 2 during which G1 is frozen and only G2 (and E) learn
    freeze_global_epochs: int = 10
    #: last fraction of each stage's epochs over which the lr decays linearly towards 0
    decay_fraction: float = 0.5
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    gan_mode: Literal["lsgan", "hinge"] = "lsgan"
    lambda_fm: float = 10.0
    lambda_vgg: float = 10.0
    vgg_loss: bool = True
    #: torchvision VGG19 weights file; None looks in the torch hub cache
    vgg_weights: str | None = None
    #: false: VGG19 sees images in [-1, 1] as NVIDIA's pix2pixHD feeds it (its VGGLoss applies no
    #: normalisation); true: mapped to [0, 1] and normalised with ImageNet's mean and std
    vgg_imagenet_norm: bool = False
    #: perceptual loss without downloaded weights: an 'rbcray encoder' file learned from this run's
    #: training images (rbcray.train.perceptual); None: off
    perceptual_encoder: str | None = None
    lambda_perceptual: float = 10.0
    #: training on a few dozen images (issue 13; all off in the paper's recipe):
    #: DiffAugment policy for D's inputs, comma-separated of color, translation, cutout ('' off)
    diffaug: str = ""
    #: R1 penalty on real pairs (gamma / 2 * ||grad D(real)||^2, summed over D's scales; 0 off)
    r1_gamma: float = 0.0
    #: EMA of G's (and E's) weights, used for samples, style clusters and the exported model
    #: (0: no EMA, the raw weights); each stage starts its own average
    ema_decay: float = 0.0
    #: K-means clusters per class for style control
    style_clusters: int = 10
    #: how generation draws a region's style cluster: ``uniform`` over the class's clusters (the
    #: reference's ``sample_features``) or ``proportional`` to the clusters' training sizes
    style_sampling: Literal["uniform", "proportional"] = "uniform"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = True  # autocast to bfloat16 on GPU (ignored on CPU)
    channels_last: bool = True  # on GPU
    loader_workers: int = 0
    cache_images: bool = True
    grid_samples: int = 4
    checkpoint_every: int = 1  # epochs; the last epoch is always saved
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        for k in ("load_size", "crop_size", "stage1_size"):
            v = getattr(self, k)
            check(v is None or (v[0] >= 8 and v[1] >= 8), f"{k} must be None or (width, height) >= 8, got {v}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(self.samples_per_epoch is None or self.samples_per_epoch >= 1, "samples_per_epoch must be >= 1")
        check(self.stage1_epochs >= 0 and self.stage2_epochs >= 0, "stage1_epochs and stage2_epochs must be >= 0")
        check(self.stage1_epochs + self.total_stage2 >= 1, "train at least one epoch (stage1_epochs + stage2_epochs)")
        check(self.freeze_global_epochs >= 0, "freeze_global_epochs must be >= 0")
        check(0.0 <= self.decay_fraction <= 1.0, f"decay_fraction must be in [0, 1], got {self.decay_fraction}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1 and beta2 must be in [0, 1)")
        check(self.lambda_fm >= 0 and self.lambda_vgg >= 0, "lambda_fm and lambda_vgg must be >= 0")
        check(self.lambda_perceptual >= 0, f"lambda_perceptual must be >= 0, got {self.lambda_perceptual}")
        check(self.style_clusters >= 1, f"style_clusters must be >= 1, got {self.style_clusters}")
        check(self.checkpoint_every >= 1 and self.keep_checkpoints >= 1, "checkpoint_every and keep_checkpoints must be >= 1")
        check(self.grid_samples >= 1, "grid_samples must be >= 1")
        check(self.r1_gamma >= 0, f"r1_gamma must be >= 0, got {self.r1_gamma}")
        check(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        from rbcray.train.diffaug import parse_policy

        parse_policy(self.diffaug)

    @property
    def total_stage2(self) -> int:
        return self.stage2_epochs if self.model.stages == 2 else 0

    @property
    def total_epochs(self) -> int:
        return self.stage1_epochs + self.total_stage2

    def stage_of(self, epoch: int) -> int:
        """Stage (1 or 2) that 0-based ``epoch`` belongs to."""
        return 1 if epoch < self.stage1_epochs else 2

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch``: constant, then linear decay over the stage's last epochs."""
        if self.stage_of(epoch) == 1:
            k, n = epoch, self.stage1_epochs
        else:
            k, n = epoch - self.stage1_epochs, self.total_stage2
        nd = round(n * self.decay_fraction)
        if nd == 0:
            return self.lr
        return self.lr * min(1.0, (n - k) / (nd + 1))

    def with_epochs(self, epochs: int | None) -> Pix2PixHDTrainConfig:
        """Total ``epochs`` split over the stages in the config's proportion (``--epochs``)."""
        if epochs is None:
            return self
        check(epochs >= 1, f"--epochs must be >= 1, got {epochs}")
        from rbcray.config import replace

        if not self.total_stage2:
            return replace(self, stage1_epochs=epochs)
        s1 = max(1, round(epochs * self.stage1_epochs / self.total_epochs)) if epochs > 1 else 1
        s1 = min(s1, epochs - 1) if epochs > 1 else 1
        s2 = epochs - s1
        return replace(self, stage1_epochs=s1, stage2_epochs=s2, freeze_global_epochs=min(self.freeze_global_epochs, s2))


def config_json(cfg: Pix2PixHDTrainConfig) -> str:
    return json.dumps(to_dict(cfg), sort_keys=True)


# ----------------------------------------------------------------------------- plain loop
EpochHook = Callable[[int, dict[str, Any]], None]


def checkpoints_uri(out: str) -> str:
    return storage.join(out, "checkpoints")


def checkpoint_folders(out: str) -> list[str]:
    """Complete checkpoints under ``out``, newest first: the plain loop's ``checkpoints/epoch_NNNN``
    and Ray Train's ``checkpoint_epoch_NNNN`` (a folder counts once its ``state.pt`` exists)."""
    found = [(n, storage.join(checkpoints_uri(out), n)) for n in storage.listdir(checkpoints_uri(out)) if n.startswith("epoch_")]
    found += [(n[len("checkpoint_"):], storage.join(out, n)) for n in storage.listdir(out) if n.startswith("checkpoint_epoch_")]
    return [uri for _, uri in sorted(found, reverse=True) if storage.exists(storage.join(uri, "state.pt"))]


def latest_checkpoint(out: str) -> str | None:
    """The newest complete checkpoint under ``out`` (see :func:`checkpoint_folders`), or None."""
    folders = checkpoint_folders(out)
    return folders[0] if folders else None


def load_latest_state(out: str, log: Callable[[str], None] = print, skip: str | None = None) -> tuple[str, dict[str, Any]] | None:
    """(folder, state) of the newest checkpoint under ``out`` that reads back intact, or None when
    there is none. A corrupt newer one (hash mismatch, truncated, unreadable) is reported through
    ``log`` and passed over, so a run resumes from the previous good checkpoint; when every one is
    corrupt that is an error (starting again from scratch silently would discard the run).
    ``skip`` is a folder already known to be bad."""
    from rbcray.errors import DataError
    from rbcray.models.pix2pixhd.checkpoint import load_state

    bad = []
    for uri in checkpoint_folders(out):
        if skip is not None and uri.rstrip("/") == skip.rstrip("/"):
            continue
        try:
            return uri, load_state(uri)
        except DataError as e:
            bad.append(uri)
            log(f"warning: {e}; trying the previous checkpoint")
    if bad:
        raise DataError(f"{out}: no intact checkpoint ({len(bad)} corrupt: {', '.join(bad)}); "
                        "move them away to start the run again")
    return None


def train(
    cfg: Pix2PixHDTrainConfig,
    data: str | Path,
    out: str,
    *,
    log: Callable[[str], None] = print,
    on_epoch: EpochHook | None = None,
    export: bool = True,
    splits: Splits | None = None,
    role: str | None = None,
) -> dict[str, Any]:
    """Train in this process (no Ray), resuming from ``out``'s latest checkpoint; returns a summary.

    With ``splits`` and ``role`` (e.g. ``"train"``) only that role's images are used; either way
    the images used are recorded as ``provenance`` in every checkpoint and in ``model.json``.
    The loop is the family-neutral :func:`rbcray.train.runner.train` (pix2pixHD's Trainer and export).
    """
    from rbcray.train.runner import train as run

    return run(cfg, data, out, log=log, on_epoch=on_epoch, export=export, splits=splits, role=role)


def _upload_dir(local: Path, uri: str) -> None:
    """Copy a checkpoint folder; ``state.pt`` last, so a folder with it is complete."""
    files = sorted(local.iterdir(), key=lambda p: p.name == "state.pt")
    for p in files:
        storage.write_bytes(storage.join(uri, p.name), p.read_bytes())


def _prune(out: str, keep: int) -> None:
    names = sorted(n for n in storage.listdir(checkpoints_uri(out)) if n.startswith("epoch_"))
    for n in names[:-keep]:
        storage.remove(storage.join(checkpoints_uri(out), n))


def format_metrics(epoch: int, total: int, m: dict[str, Any]) -> str:
    """One log line per epoch: every loss, the learning rate and images/s."""
    losses = " ".join(f"{k}={v:.4f}" for k, v in m.items() if k.startswith(("G_", "D_", "L1")))
    return f"epoch {epoch}/{total} stage {m['stage']} lr={m['lr']:.2e} {losses} img/s={m['img_s']:.2f} ({m['seconds']:.1f} s)"


def check_vgg(cfg: Pix2PixHDTrainConfig) -> None:
    """Fail before any work when the perceptual loss is on and its weights cannot be found."""
    if cfg.vgg_loss and cfg.lambda_vgg > 0:
        from rbcray.models.pix2pixhd.losses import resolve_vgg_weights

        resolve_vgg_weights(cfg.vgg_weights)

