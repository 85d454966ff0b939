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
from rbcray.evaluate.morphology_aug_config import MorphologyAugConfig
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
    #: split file ('rbcray split'): RD draws from its train role, checkpoint selection uses val,
    #: the test set is its test role; None = the test set is drawn from the folder by split_seed
    splits: str | None = None
    #: every image and mask is resized by this factor when loaded
    scale: float = 1.0
    #: real test images (a seeded sample of the test role / pool); None = the whole test role
    n_test: int | None = 20
    #: validation images (from the split's val role) for checkpoint selection; 0 = none
    n_val: int = 0
    split_seed: int = 0

    def __post_init__(self) -> None:
        check(self.scale > 0, f"dataset {self.name!r}: scale must be > 0, got {self.scale}")
        check(self.n_test is None or self.n_test >= 1, f"dataset {self.name!r}: n_test must be >= 1, got {self.n_test}")
        check(self.n_val >= 0, f"dataset {self.name!r}: n_val must be >= 0, got {self.n_val}")


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
    #: score the validation images every this many epochs and test the best state (checkpoint
    #: selection, alike for every regime); None = test the last epoch's weights
    val_every: int | None = None
    #: stop after this many validation scores without improvement (early stopping); None = never
    patience: int | None = None

    def __post_init__(self) -> None:
        check(self.epochs >= 1, f"train.epochs must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}")
        check(self.crop >= 32, f"train.crop must be >= 32 pixels, got {self.crop}")
        check(self.lr > 0, f"train.lr must be > 0, got {self.lr}")
        check(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "train.steps_per_epoch must be >= 1")
        check(self.contour_width >= 1, "train.contour_width must be >= 1")
        check(self.checkpoint_every >= 1, "train.checkpoint_every must be >= 1")
        check(self.val_every is None or self.val_every >= 1, "train.val_every must be >= 1")
        check(self.patience is None or (self.patience >= 1 and self.val_every is not None),
              "train.patience must be >= 1 and needs train.val_every")


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
    """Image realism beside the table: weight-free metrics per synthetic source and real vs real.

    See :mod:`rbcray.evaluate.realism`. Every metric is computed in the feature space (and with the
    segmenter) of one encoder trained on real train-split images only: the file ``encoder`` (from
    ``rbcray encoder``) or, without it, one trained inside the evaluation (``encoder_steps``).
    """

    enabled: bool = True
    #: the dataset whose real held-out images are the reference (default: the only dataset, else
    #: the first one with a ``synthetic`` source)
    dataset: str | None = None
    #: synthetic sources to compare, label -> Parquet shards / synthetic dataset folder (the label
    #: is the report's key; the generator family is read from each source's manifest); empty = the
    #: dataset's own ``synthetic`` source under its family's name
    compare: dict[str, str] = field(default_factory=dict)
    #: held-out real images used (split in two halves: reference and real-vs-real baseline);
    #: each synthetic source contributes as many images as one half
    max_images: int = 60
    #: real-image encoder file ('rbcray encoder'); None = train one on the train split here
    encoder: str | None = None
    #: training of the in-evaluation encoder: steps, crop, and at most this many train images
    encoder_steps: int = 400
    encoder_crop: int = 96
    max_train_images: int = 60
    #: C2ST: crop side / median cell diameter, cells per image, CNN epochs, resamples
    crop_factor: float = 1.5
    max_crops_per_image: int = 24
    epochs: int = 8
    n_boot: int = 200
    n_perm: int = 500
    kid_subsets: int = 50
    #: Inception-v3 state dict (torchvision layout) for FID/KID; None = torch hub cache
    inception_weights: str | None = None

    def __post_init__(self) -> None:
        check(self.max_images >= 8, f"realism.max_images must be >= 8 (two halves of >= 4 images), got {self.max_images}")
        check(self.encoder_steps >= 1, f"realism.encoder_steps must be >= 1, got {self.encoder_steps}")
        check(self.encoder_crop >= 32, f"realism.encoder_crop must be >= 32 pixels, got {self.encoder_crop}")
        check(self.max_train_images >= 1, f"realism.max_train_images must be >= 1, got {self.max_train_images}")
        check(self.crop_factor >= 1.5, f"realism.crop_factor must be >= 1.5 (a whole cell and its surroundings), got {self.crop_factor}")
        check(self.max_crops_per_image >= 1, f"realism.max_crops_per_image must be >= 1, got {self.max_crops_per_image}")
        check(self.epochs >= 1, f"realism.epochs must be >= 1, got {self.epochs}")
        check(self.n_boot >= 10 and self.n_perm >= 10, f"realism.n_boot and n_perm must be >= 10, got {self.n_boot}, {self.n_perm}")
        check(self.kid_subsets >= 2, f"realism.kid_subsets must be >= 2, got {self.kid_subsets}")
        for label, uri in self.compare.items():
            check(isinstance(label, str) and bool(label) and not label.startswith("_") and label != "real_vs_real",
                  f"realism.compare: label {label!r} is reserved or empty (real_vs_real, names starting with '_')")
            check(isinstance(uri, str) and bool(uri), f"realism.compare.{label}: expected a path or URI, got {uri!r}")


@dataclass(frozen=True)
class LearningCurveConfig:
    """RD alone and RD+SD at several real-image counts, for one model (issue 10 item 5).

    RD+SD at size n trains on the n real images plus ``total - n_real`` synthetic ones (the
    main table's count), so at ``n = n_real`` both are the main table's trials.
    """

    model: str
    sizes: tuple[int, ...] = (15, 30, 60, 120)
    regimes: tuple[str, ...] = ("RD", "RD+SD")

    def __post_init__(self) -> None:
        check(len(self.sizes) >= 2 and list(self.sizes) == sorted(set(self.sizes)) and self.sizes[0] >= 1,
              f"learning_curve.sizes must be >= 2 increasing counts, got {list(self.sizes)}")
        check(set(self.regimes) == {"RD", "RD+SD"}, "learning_curve.regimes must be [RD, RD+SD]")


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
    #: seeds of the draws of the RD images from the train pool (>= 3 fold subset variance into
    #: the intervals); every regime of a subset uses the same real images
    rd_subsets: tuple[int, ...] = (0,)
    learning_curve: LearningCurveConfig | None = None
    #: ablations only: run although a synthetic input was built from val/test images (or records
    #: none); every report says so (CLI --allow-overlap)
    allow_overlap: bool = False
    #: Gupta et al.'s morphology evaluation (real vs real + synthetic rare cells); with it,
    #: ``models`` may be empty (a morphology-only sweep)
    morphology: MorphologyAugConfig | None = None

    def __post_init__(self) -> None:
        check(len(self.datasets) >= 1, "sweep: 'datasets' must list at least one dataset")
        check(len(self.models) >= 1 or (self.morphology is not None and self.morphology.enabled), "sweep: 'models' must list at least one model (or give a 'morphology' section)")
        check(len(self.seeds) >= 1, "sweep: 'seeds' must list at least one seed")
        check(len(set(self.seeds)) == len(self.seeds), f"sweep: seeds repeat: {list(self.seeds)}")
        check(len(self.rd_subsets) >= 1 and len(set(self.rd_subsets)) == len(self.rd_subsets),
              f"sweep: rd_subsets must list distinct subset seeds, got {list(self.rd_subsets)}")
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

        rd = self.realism.dataset
        if rd is not None and rd not in by_name:
            raise ConfigError(f"realism.dataset {rd!r}: unknown dataset; datasets: {', '.join(names)}")
        if self.realism.enabled and self.realism.compare and rd is None and len(self.datasets) > 1:
            raise ConfigError("realism.compare needs realism.dataset (which dataset's real images the sources are compared with)")

        md = self.morphology.dataset if self.morphology is not None else None
        if md is not None and md not in by_name:
            raise ConfigError(f"morphology.dataset {md!r}: unknown dataset; datasets: {', '.join(names)}")
        if self.morphology is not None and md is None and len(self.datasets) > 1:
            raise ConfigError("morphology.dataset: the sweep has several datasets; name the one with morphology labels")

        lc = self.learning_curve
        if lc is not None:
            if lc.model not in labels:
                raise ConfigError(f"learning_curve.model {lc.model!r}: not a model label; models: {', '.join(labels)}")
            if by_name[self.model(lc.model).dataset].synthetic is None:
                raise ConfigError(f"learning_curve: model {lc.model!r} has no synthetic data for RD+SD")

    def realism_dataset(self) -> DataConfig | None:
        """The dataset of the realism comparison (see :class:`RealismConfig`); None = nothing to compare."""
        r = self.realism
        if not r.enabled:
            return None
        if r.dataset is not None:
            return self.dataset(r.dataset)
        if len(self.datasets) == 1:
            return self.datasets[0]
        return next((d for d in self.datasets if d.synthetic is not None), None)

    def morphology_dataset(self) -> DataConfig:
        """The dataset of the morphology section (its ``real`` folder and ``splits`` file)."""
        assert self.morphology is not None
        return self.dataset(self.morphology.dataset) if self.morphology.dataset else self.datasets[0]

    def dataset(self, name: str) -> DataConfig:
        return next(d for d in self.datasets if d.name == name)

    def model(self, label: str) -> ModelEntry:
        return next(m for m in self.models if m.label == label)

    def model_regimes(self, m: ModelEntry) -> tuple[str, ...]:
        return tuple(m.regimes) if m.regimes is not None else tuple(self.regimes)

    def trials(self) -> list[dict[str, Any]]:
        """One dict per (model, regime, RD size, subset, seed): the table's trials first (in table
        order), then the learning curve's that the table does not already hold."""
        out = [
            {"model": m.label, "regime": r, "n_real": self.n_real, "subset": k, "seed": s}
            for m in self.models for r in self.model_regimes(m) for k in self.rd_subsets for s in self.seeds
        ]
        lc = self.learning_curve
        if lc is not None:
            have = {tuple(t.values()) for t in out}
            for n in lc.sizes:
                for r in lc.regimes:
                    for k in self.rd_subsets:
                        for s in self.seeds:
                            t = {"model": lc.model, "regime": r, "n_real": n, "subset": k, "seed": s}
                            if tuple(t.values()) not in have:
                                out.append(t)
        return out

    def trial_total(self, n_real: int) -> int:
        """Training items of the mixed regimes at ``n_real`` real images: the table's extra
        (synthetic / augmented) count ``total - n_real`` stays fixed."""
        return n_real + self.total - self.n_real

    def max_real(self) -> int:
        """The most real training images any trial uses."""
        sizes = self.learning_curve.sizes if self.learning_curve is not None else ()
        return max((self.n_real, *sizes))

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
