"""Frozen configs of the unet-wgangp family: the architecture and the training run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rbcray.config import check

#: model.json "format" of exported unet-wgangp models, and of their training states (+ "-state")
MODEL_FORMAT = "rbcray-unet-wgangp"


@dataclass(frozen=True)
class UNetWGANGPConfig:
    """Architecture: U-Net generator and (mask, image) critic."""

    #: semantic classes including background (0 background, 1 RBC, 2 WBC, 3 Platelet)
    num_classes: int = 4
    #: channels of the per-sample noise map fed beside the labels (0: a deterministic translator)
    z_nc: int = 1
    ngf: int = 32  # generator width at full resolution
    ndf: int = 32  # critic width
    #: down-sampling steps of the U-Net (inputs are padded to a multiple of 2**n_down)
    n_down: int = 5
    #: widths grow by 2 per level up to ngf * max_mult
    max_mult: int = 8
    #: stride-2 convolutions of the critic
    n_layers_D: int = 4

    def __post_init__(self) -> None:
        check(self.num_classes >= 2, f"num_classes must be >= 2 (background + one cell class), got {self.num_classes}")
        check(self.z_nc >= 0, f"z_nc must be >= 0, got {self.z_nc}")
        for k in ("ngf", "ndf", "n_down", "max_mult", "n_layers_D"):
            check(getattr(self, k) >= 1, f"{k} must be >= 1, got {getattr(self, k)}")

    @property
    def label_nc(self) -> int:
        """One-hot classes + the instance boundary map (pix2pixHD's label input)."""
        return self.num_classes + 1

    @property
    def stride(self) -> int:
        return 2 ** self.n_down


@dataclass(frozen=True)
class UNetWGANGPTrainConfig:
    """Every hyper-parameter of a unet-wgangp run (saved with every checkpoint and the model).

    Defaults are WGAN-GP's (lambda 10, Adam 1e-4, betas (0, 0.9), 5 critic steps per G step).
    """

    model: UNetWGANGPConfig = field(default_factory=UNetWGANGPConfig)
    #: resize every image (W, H) before cropping; None keeps the native size
    load_size: tuple[int, int] | None = None
    #: random crop (W, H); None trains on whole images
    crop_size: tuple[int, int] | None = (256, 256)
    flip: bool = True
    batch_size: int = 4  # per worker
    #: crops per epoch over all workers; None = one per image
    samples_per_epoch: int | None = None
    epochs: int = 100
    lr: float = 1e-4
    beta1: float = 0.0
    beta2: float = 0.9
    #: critic steps per generator step (WGAN-GP: 5; Chen et al. alternate 1:1)
    n_critic: int = 5
    lambda_gp: float = 10.0
    #: optional pix2pix-style L1 to the real image (0: the pure WGAN-GP objective)
    lambda_l1: float = 0.0
    #: optional R1 penalty on real pairs (gamma / 2 * ||grad D(real)||^2; 0: off)
    r1_gamma: float = 0.0
    #: perceptual loss without downloaded weights: an 'rbcray encoder' file learned from this run's
    #: training images (rbcray.train.perceptual); None: off
    perceptual_encoder: str | None = None
    lambda_perceptual: float = 10.0
    #: DiffAugment policy for the critic's inputs: comma-separated of color, translation, cutout ('' off)
    diffaug: str = ""
    #: EMA of G's weights used for samples and the exported model (0: no EMA, the raw weights)
    ema_decay: float = 0.999
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    loader_workers: int = 0
    cache_images: bool = True
    grid_samples: int = 4
    checkpoint_every: int = 1  # epochs; the last epoch is always saved
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        for k in ("load_size", "crop_size"):
            v = getattr(self, k)
            check(v is None or (v[0] >= 8 and v[1] >= 8), f"{k} must be None or (width, height) >= 8, got {v}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(self.samples_per_epoch is None or self.samples_per_epoch >= 1, "samples_per_epoch must be >= 1")
        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1 and beta2 must be in [0, 1)")
        check(self.n_critic >= 1, f"n_critic must be >= 1, got {self.n_critic}")
        for k in ("lambda_gp", "lambda_l1", "r1_gamma", "lambda_perceptual"):
            check(getattr(self, k) >= 0, f"{k} must be >= 0, got {getattr(self, k)}")
        check(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        from rbcray.train.diffaug import parse_policy

        parse_policy(self.diffaug)
        check(self.checkpoint_every >= 1 and self.keep_checkpoints >= 1, "checkpoint_every and keep_checkpoints must be >= 1")
        check(self.grid_samples >= 1, "grid_samples must be >= 1")

    @property
    def total_epochs(self) -> int:
        return self.epochs

    def with_epochs(self, epochs: int | None) -> UNetWGANGPTrainConfig:
        """This config trained for ``epochs`` epochs (``--epochs``)."""
        if epochs is None:
            return self
        check(epochs >= 1, f"--epochs must be >= 1, got {epochs}")
        from rbcray.config import replace

        return replace(self, epochs=epochs)
