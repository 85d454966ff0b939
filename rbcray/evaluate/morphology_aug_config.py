"""Config of Gupta et al.'s evaluation: the morphology classifier trained on real vs real + synthetic
rare cells (see :mod:`rbcray.evaluate.morphology_aug`), validated at the boundary.

A frozen dataclass with no heavy imports, so the sweep config (:mod:`rbcray.evaluate.config`) can
hold it as its optional ``morphology:`` section.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rbcray.config import check
from rbcray.train.morphology import MorphologyTrainConfig

#: Gupta et al. report t = 0.9 best and worse elsewhere; a grid around it (0 = unfiltered is its own regime).
DEFAULT_GRID: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class MorphologyAugConfig:
    """Real vs real + synthetic rare cells: which models, which grid, how many cells, how to train.

    ``classifier`` is the pseudo-labeller (``rbcray morphology train`` on the train split); it sets
    the crop window and size. ``units`` are UNIT folders (``rbcray morphology unit``), one per target
    class (read from each folder). Every regime's classifier is trained with ``train``.
    """

    #: pseudo-labeller checkpoint folder (rbcray morphology train)
    classifier: str
    #: UNIT checkpoint folders, one per target class (rbcray morphology unit)
    units: tuple[str, ...]
    enabled: bool = True
    #: sweep dataset (by name) whose ``real`` folder and ``splits`` file are used; None = the only one
    dataset: str | None = None
    #: pseudo-label thresholds t searched on val (each is one regime "real+syn (t)")
    thresholds: tuple[float, ...] = DEFAULT_GRID
    #: synthetic cells per target class; None = as many as the class's real train cells
    n_synthetic: int | None = None
    #: seed of the draw of source normal cells (numpy SeedSequence of (seed, class))
    seed: int = 0
    #: training of every regime's classifier (window/size must match the pseudo-labeller's)
    train: MorphologyTrainConfig = field(default_factory=lambda: MorphologyTrainConfig(epochs=4))
    #: test-image bootstrap replicates and interval level
    n_boot: int = 1000
    ci: float = 0.95

    def __post_init__(self) -> None:
        check(isinstance(self.classifier, str) and bool(self.classifier), "morphology.classifier: give the pseudo-labeller checkpoint folder")
        check(len(self.units) >= 1, "morphology.units: list at least one UNIT folder (one per target class)")
        check(len(set(self.units)) == len(self.units), f"morphology.units repeat: {list(self.units)}")
        check(len(self.thresholds) >= 1, "morphology.thresholds: list at least one threshold")
        for t in self.thresholds:
            check(0.0 < t <= 1.0, f"morphology.thresholds: t = {t} must be within (0, 1] (the unfiltered regime is always run)")
        check(len(set(self.thresholds)) == len(self.thresholds), f"morphology.thresholds repeat: {list(self.thresholds)}")
        check(self.n_synthetic is None or self.n_synthetic >= 1, f"morphology.n_synthetic = {self.n_synthetic}: must be >= 1 (or null: as many as real train cells)")
        check(self.n_boot >= 10, f"morphology.n_boot = {self.n_boot}: must be >= 10")
        check(0.0 < self.ci < 1.0, f"morphology.ci = {self.ci}: must be within (0, 1)")
