"""The generation job's config: one frozen dataclass, validated at the boundary, saved with the output.

Fields fall in two groups. *Content* fields (inputs, seed, sample count, style, mask synthesis
overrides, shard size, the model's micro-batch size) decide every byte of the output and are
recorded in ``_plan.json``; a re-run into the same output must agree on them. *Execution* fields
(declared resources, actor pools, cluster address, lease takeover) only decide where and how fast
it runs: changing them never changes an output byte (on the same device type).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rbcray.config import check, to_dict

#: fields that do not change the output (see the module docstring)
EXECUTION_FIELDS = ("mask_actors", "mask_actors_max", "gen_actors", "gen_actors_max", "address", "gen_cpus", "gen_gpus",
                    "wait_for_resources", "takeover", "progress")


@dataclass(frozen=True)
class GenerateConfig:
    """Everything ``rbcray generate`` needs."""

    #: what ``rbcray train --out`` wrote (local path or s3:// / gs:// URI), with its style clusters
    checkpoint: str
    #: shape bank of ``rbcray shapes`` (Parquet)
    shapes: str
    #: JSON of ``rbcray stats`` (cell count and size of the real data)
    stats: str
    #: output location (local path or s3:// / gs:// URI)
    out: str
    num_samples: int
    seed: int = 0
    #: 'random' (each cell draws a style cluster from its sample's seed) or a cluster index 0..K-1
    style: str = "random"
    #: also write a PNG tree (images/, instances/, masks/) and a COCO JSON under ``out``
    png: bool = False
    coco: bool = False
    #: mask synthesis overrides (None = from the stats JSON); see rbcray.synth.config.SynthConfig
    width: int | None = None
    height: int | None = None
    cells_mean: float | None = None
    cells_std: float | None = None
    cell_size: float | None = None
    placement: str = "adhesive"
    n_init: int | None = None
    kernel_inner: float | None = None
    #: calibrated placement: params.json of 'rbcray calibrate' (the overrides above win over it)
    params: str | None = None
    #: white cells and platelets (rbcray.synth.others): 'stats' = the real per-image rates of the
    #: stats JSON, 'off' / None = none (the paper's masks), or 'CATEGORY:MEAN[:STD],...'
    other_cells: str | None = None
    #: quality gate: encoder file of ``rbcray encoder`` (scores every sample: the ``quality`` column),
    #: and the threshold below which samples are replaced by further candidates (rbcray.generate.quality)
    quality_encoder: str | None = None
    min_quality: float | None = None
    max_attempts: int = 16
    #: rare morphologies (rbcray.generate.morphology): 'CLASS:SHARE,...' of each smear's RBCs turned
    #: into CLASS by the UNIT folders of ``rbcray morphology unit`` (comma-separated, one per class),
    #: kept only if the classifier gives p(CLASS) >= threshold (no classifier: every one kept)
    morphology: str | None = None
    morphology_model: str | None = None
    morphology_classifier: str | None = None
    morphology_threshold: float | None = None
    #: exponent n of the cosine blending window (Gupta et al.: 2)
    morphology_blend_n: float = 2.0
    #: samples per shard; None = from shard_bytes and the image size
    shard_size: int | None = None
    shard_bytes: int = 256 * 2**20
    #: masks per forward pass of the model (the last one of a shard is padded to this size)
    batch_size: int = 4
    #: execution: actor pools MIN..MAX (None = sized from the cluster; MAX None = MIN); the pools
    #: grow up to MAX as the autoscaler adds nodes
    mask_actors: int | None = None
    mask_actors_max: int | None = None
    gen_actors: int | None = None
    gen_actors_max: int | None = None
    #: GPUs per generator actor (fractions pack several on a GPU; None = one per GPU present at
    #: start, 0 = CPU generators) and its CPUs (None = from the cluster)
    gen_gpus: float | None = None
    gen_cpus: float | None = None
    #: seconds to wait for the declared GPUs to join the cluster before failing
    wait_for_resources: float = 900.0
    #: replace the lease of a run whose heartbeat is stale
    takeover: bool = False
    #: Ray address (None = $RAY_ADDRESS or a private local instance)
    address: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        check(self.num_samples >= 1, f"--num-samples {self.num_samples} must be at least 1")
        check(self.seed >= 0, f"--seed {self.seed} must be >= 0")
        check(self.style == "random" or (self.style.isdigit()), f"--style {self.style!r} must be 'random' or a cluster index (0, 1, ...)")
        check(self.placement in ("adhesive", "uniform"), f"--placement {self.placement!r} must be adhesive or uniform")
        check(self.shard_size is None or self.shard_size >= 1, f"--shard-size {self.shard_size} must be at least 1")
        check(self.shard_bytes >= 2**16, f"--shard-bytes {self.shard_bytes} must be at least 64 KiB")
        check(self.mask_actors is None or self.mask_actors >= 1, f"--mask-actors {self.mask_actors} must be at least 1")
        check(self.gen_actors is None or self.gen_actors >= 1, f"--gen-actors {self.gen_actors} must be at least 1")
        check(self.batch_size >= 1, f"--batch-size {self.batch_size} must be at least 1")
        check(self.gen_cpus is None or self.gen_cpus > 0, f"--gen-cpus {self.gen_cpus} must be positive")
        check(self.gen_gpus is None or self.gen_gpus >= 0, f"--gen-gpus {self.gen_gpus} must be >= 0")
        check(self.gen_gpus is None or self.gen_gpus <= 1 or float(self.gen_gpus).is_integer(),
              f"--gen-gpus {self.gen_gpus}: fractions are for packing several actors on one GPU; above 1 use whole GPUs")
        for lo, hi in (("mask_actors", "mask_actors_max"), ("gen_actors", "gen_actors_max")):
            a, b = getattr(self, lo), getattr(self, hi)
            check(b is None or (a is not None and b >= a),
                  f"--{lo.replace('_', '-')} {a}:{b}: MAX must be at least MIN")
        check(self.wait_for_resources > 0, f"--wait-for-resources {self.wait_for_resources} must be positive")
        check(self.min_quality is None or self.quality_encoder is not None, "--min-quality needs --quality-encoder")
        check(self.min_quality is None or 0.0 <= self.min_quality <= 1.0, f"--min-quality {self.min_quality} must be in [0, 1]")
        check(self.max_attempts >= 1, f"--max-attempts {self.max_attempts} must be at least 1")
        if self.morphology is not None:
            from rbcray.generate.morphology import parse_shares

            parse_shares(self.morphology)
            check(bool(self.morphology_model), "--morphology needs --morphology-model (the UNIT folder(s) of 'rbcray morphology unit')")
        for name in ("morphology_model", "morphology_classifier", "morphology_threshold"):
            check(getattr(self, name) is None or self.morphology is not None, f"--{name.replace('_', '-')} needs --morphology")
        check(self.morphology_threshold is None or self.morphology_classifier is not None,
              "--morphology-threshold needs --morphology-classifier (the classifier that scores the translations)")
        check(self.morphology_threshold is None or 0.0 <= self.morphology_threshold <= 1.0,
              f"--morphology-threshold {self.morphology_threshold} must be within [0, 1]")
        check(self.morphology_blend_n > 0, f"--morphology-blend-n {self.morphology_blend_n} must be > 0")
        if self.other_cells is not None and self.other_cells.strip().lower() != "stats":
            from rbcray.synth.others import parse_spec

            parse_spec(self.other_cells)
        for name in ("checkpoint", "shapes", "stats", "out"):
            check(bool(getattr(self, name)), f"--{name.replace('_', '-')} is required")

    @property
    def style_choice(self) -> int | None:
        """None for random styles, else the fixed cluster index."""
        return None if self.style == "random" else int(self.style)

    def synth_overrides(self) -> dict[str, Any]:
        """The mask-synthesis overrides given (None values left out)."""
        keys = ("width", "height", "cells_mean", "cells_std", "cell_size", "n_init", "kernel_inner")
        out: dict[str, Any] = {}
        if self.params:
            from rbcray.synth.calibrate import load_params

            out.update(load_params(self.params))
        out.update({k: getattr(self, k) for k in keys if getattr(self, k) is not None})
        if self.kernel_inner is not None:
            out["kernel_inside"] = "constant"  # a value inside the kernel's disc is the constant reading
        out["placement"] = self.placement
        if self.other_cells is not None:
            out["other_cells"] = self.other_cells  # resolve_config reads 'stats' against the stats JSON
        return out

    def pool(self, name: str) -> tuple[int, int] | None:
        """(min, max) of the 'mask' or 'gen' actor pool, None when not declared."""
        lo = getattr(self, f"{name}_actors")
        if lo is None:
            return None
        hi = getattr(self, f"{name}_actors_max")
        return lo, hi if hi is not None else lo

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def content_dict(self) -> dict[str, Any]:
        """The fields that decide the output's bytes."""
        return {k: v for k, v in to_dict(self).items() if k not in EXECUTION_FIELDS}
