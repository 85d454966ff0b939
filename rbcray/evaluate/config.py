"""The evaluation sweep's config (Bailo et al. Table 2 at any scale), validated before training.

One YAML file describes the datasets, the models, the regimes, the seeds and the counts; see
``rbcray/configs/sweep-demo.yaml`` (CPU, minutes) and ``sweep-paper.yaml`` (GPU cluster, the
paper's counts). :func:`load_sweep` checks the config's own consistency (unknown model, regime,
key, or a regime needing synthetic data where none is configured); :func:`rbcray.evaluate.plan.plan_sweep`
then checks it against the data (counts larger than the data, missing synthetic shards, image
sizes smaller than the crop, missing weight files) — all before any training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rbcray.config import check, from_dict, load_config
from rbcray.errors import ConfigError
from rbcray.evaluate.augment import AugmentConfig
from rbcray.evaluate.postprocess import DCANPostConfig
from rbcray.evaluate.regimes import REGIMES

#: registry model name -> (task, metric, config class path)
MODEL_TASKS: dict[str, tuple[str, str]] = {
    "fcn8s": ("segmentation", "dice"),
    "dcan": ("dcan", "ap50"),
    "faster_rcnn": ("detection", "ap50"),
}
METRIC_LABEL = {"dice": "Dice", "ap50": "AP@0.5"}


def model_config_class(model: str) -> type:
    """The frozen config dataclass of a registered evaluation model."""
    if model == "fcn8s":
        from rbcray.models.fcn import FCNConfig

        return FCNConfig
    if model == "dcan":
        from rbcray.models.dcan import DCANConfig

        return DCANConfig
    if model == "faster_rcnn":
        from rbcray.models.detection import DetectorConfig

        return DetectorConfig
    raise ConfigError(f"unknown model {model!r}; evaluation models: {', '.join(MODEL_TASKS)}")


@dataclass(frozen=True)
class DataConfig:
    """A real dataset (and the synthetic data meant to stand beside it)."""

    name: str
    #: rbcray dataset folder with instance masks (e.g. 'rbcray annotate' on chula-rbc-12), or
    #: 'bccd-txl-pbc' (RBC boxes; detection only)
    real: str
    #: issue 5 Parquet shard folder / s3:// URI, or a synthetic dataset folder; None = no SD regimes
    synthetic: str | None = None
    #: every image and mask is resized by this factor when loaded
    scale: float = 1.0
    n_test: int = 20
    split_seed: int = 0

    def __post_init__(self) -> None:
        check(self.scale > 0, f"dataset {self.name!r}: scale must be > 0, got {self.scale}")
        check(self.n_test >= 1, f"dataset {self.name!r}: n_test must be >= 1, got {self.n_test}")


@dataclass(frozen=True)
class TrainConfig:
    """One downstream training run."""

    epochs: int = 30
    batch_size: int = 4
    #: square training crop (pixels, after scaling); test images are used whole
    crop: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: Literal["adam", "sgd"] = "adam"
    #: optimizer steps per epoch; None = one pass over the regime's items (so RD, with fewer
    #: items, takes fewer steps than RD+SD); a number gives every regime the same budget
    steps_per_epoch: int | None = None
    #: bf16 autocast on CUDA (ignored on CPU)
    amp: bool = True
    #: DCAN contour target thickness in pixels
    contour_width: int = 1
    #: epoch checkpoint (for resuming) every this many epochs
    checkpoint_every: int = 1

    def __post_init__(self) -> None:
        check(self.epochs >= 1, f"train.epochs must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}")
        check(self.crop >= 32, f"train.crop must be >= 32 pixels, got {self.crop}")
        check(self.lr > 0, f"train.lr must be > 0, got {self.lr}")
        check(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "train.steps_per_epoch must be >= 1")
        check(self.contour_width >= 1, "train.contour_width must be >= 1")
        check(self.checkpoint_every >= 1, "train.checkpoint_every must be >= 1")


@dataclass(frozen=True)
class ResourceConfig:
    """Ray resources of one trial."""

    cpu: float = 1.0
    gpu: float = 0.0

    def __post_init__(self) -> None:
        check(self.cpu > 0 and self.gpu >= 0, f"resources: cpu must be > 0 and gpu >= 0, got cpu={self.cpu} gpu={self.gpu}")


@dataclass(frozen=True)
class ModelEntry:
    """One column of the table: a model trained on one dataset."""

    label: str
    model: str
    dataset: str
    params: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    #: regimes of this model (None = the sweep's list)
    regimes: tuple[str, ...] | None = None
    post: DCANPostConfig = field(default_factory=DCANPostConfig)
    resources: ResourceConfig | None = None

    def __post_init__(self) -> None:
        if self.model not in MODEL_TASKS:
            raise ConfigError(f"model {self.label!r}: unknown model {self.model!r}; evaluation models: {', '.join(MODEL_TASKS)}")
        from_dict(model_config_class(self.model), dict(self.params), where=f"model {self.label!r} params")

    @property
    def task(self) -> str:
        return MODEL_TASKS[self.model][0]

    @property
    def metric(self) -> str:
        return MODEL_TASKS[self.model][1]


@dataclass(frozen=True)
class RealismConfig:
    """Image realism measures beside the table (issue 6 item 5)."""

    enabled: bool = True
    #: images per side (real / synthetic) used for colour statistics and crops
    max_images: int = 60
    crop: int = 32
    crops_per_image: int = 8
    epochs: int = 10
    #: Inception-v3 state dict (torchvision layout) for FID/KID; None = torch hub cache
    inception_weights: str | None = None


@dataclass(frozen=True)
class SweepConfig:
    """The whole sweep: every (model, regime, seed) trial and how its results are summarised."""

    datasets: tuple[DataConfig, ...]
    models: tuple[ModelEntry, ...]
    name: str = "rbcray-eval"
    regimes: tuple[str, ...] = REGIMES
    seeds: tuple[int, ...] = (0,)
    #: real training images of every regime with real data (60 in the paper)
    n_real: int = 60
    #: training items of RD+aug, RD+SD and RD+SD+aug (960 in the paper)
    total: int = 960
    #: share of the synthetic items among the extra items of RD+SD+aug
    synthetic_share: float = 0.5
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    resources: ResourceConfig = field(default_factory=ResourceConfig)
    max_concurrent_trials: int | None = None
    bootstrap: int = 1000
    ci: float = 0.95
    bootstrap_seed: int = 0
    max_dets: int = 300
    #: Tune results and checkpoints (local path or s3://); default: <out>/tune
    storage: str | None = None
    #: keep each trial's trained weights (model.pt) in its final checkpoint (FCN-8s at VGG16
    #: width is ~0.5 GB per trial)
    keep_weights: bool = False
    #: where public datasets are looked up (see rbcray.data.registry)
    data_dir: str | None = None
    realism: RealismConfig = field(default_factory=RealismConfig)

    def __post_init__(self) -> None:
        check(len(self.datasets) >= 1, "sweep: 'datasets' must list at least one dataset")
        check(len(self.models) >= 1, "sweep: 'models' must list at least one model")
        check(len(self.seeds) >= 1, "sweep: 'seeds' must list at least one seed")
        check(len(set(self.seeds)) == len(self.seeds), f"sweep: seeds repeat: {list(self.seeds)}")
        check(self.n_real >= 1, f"sweep: n_real must be >= 1, got {self.n_real}")
        check(self.total >= self.n_real, f"sweep: total ({self.total}) must be >= n_real ({self.n_real})")
        check(0 <= self.synthetic_share <= 1, f"sweep: synthetic_share must be in [0, 1], got {self.synthetic_share}")
        check(self.bootstrap >= 10, f"sweep: bootstrap must be >= 10 resamples, got {self.bootstrap}")
        check(0 < self.ci < 1, f"sweep: ci must be in (0, 1), got {self.ci}")
        names = [d.name for d in self.datasets]
        check(len(set(names)) == len(names), f"sweep: dataset names repeat: {names}")
        labels = [m.label for m in self.models]
        check(len(set(labels)) == len(labels), f"sweep: model labels repeat: {labels}")
        for r in self.regimes:
            check(r in REGIMES, f"sweep: unknown regime {r!r}; regimes: {', '.join(REGIMES)}")
        by_name = {d.name: d for d in self.datasets}
        for m in self.models:
            if m.dataset not in by_name:
                raise ConfigError(f"model {m.label!r}: unknown dataset {m.dataset!r}; datasets: {', '.join(names)}")
            for r in self.model_regimes(m):
                check(r in REGIMES, f"model {m.label!r}: unknown regime {r!r}; regimes: {', '.join(REGIMES)}")
                if "SD" in r and by_name[m.dataset].synthetic is None:
                    raise ConfigError(
                        f"model {m.label!r}: regime {r} needs synthetic data but dataset {m.dataset!r} has no 'synthetic' source"
                    )

    def dataset(self, name: str) -> DataConfig:
        return next(d for d in self.datasets if d.name == name)

    def model(self, label: str) -> ModelEntry:
        return next(m for m in self.models if m.label == label)

    def model_regimes(self, m: ModelEntry) -> tuple[str, ...]:
        return tuple(m.regimes) if m.regimes is not None else tuple(self.regimes)

    def trials(self) -> list[dict[str, Any]]:
        """One dict per (model, regime, seed), in table order."""
        return [
            {"model": m.label, "regime": r, "seed": s}
            for m in self.models for r in self.model_regimes(m) for s in self.seeds
        ]

    def resources_of(self, m: ModelEntry) -> ResourceConfig:
        return m.resources or self.resources


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and check a sweep YAML/JSON file (errors name the file and key)."""
    try:
        return load_config(SweepConfig, path)
    except ConfigError as e:
        # checks inside nested configs do not know the file; name it once
        msg = str(e)
        raise ConfigError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None


def sweep_from_dict(data: dict[str, Any], where: str = "sweep") -> SweepConfig:
    """A :class:`SweepConfig` from a mapping (tests, saved configs)."""
    return from_dict(SweepConfig, data, where=where)
