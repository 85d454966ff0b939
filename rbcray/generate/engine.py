"""The generation engine as a plain library: plan a run, then mask -> translate -> write, per shard.

A run makes samples ``0..N-1``. Sample ``i`` is fully determined by (run seed S, i): its mask is
``rbcray.synth.engine.synthesize(bank, synth_cfg, S, i)`` (Bailo et al. Sec. 4.1) and its image is
the pix2pixHD translation (Sec. 4.2) with style clusters drawn from the sample's own style stream
(:mod:`rbcray.rng`; independent of the mask's). The model runs on micro-batches of ``batch_size``
masks (the last one of a shard padded to full size), so every forward pass has the same shape: the
output never depends on actor counts or which worker ran what; the micro-batch size is part of the
plan (float rounding may depend on it).

The unit of work is a *shard* (a consecutive id range, see :mod:`rbcray.generate.shards`). Each
stage takes a shard and hands on one compact payload, an Arrow IPC table of that shard's samples:

1. :class:`ShardMasker` (CPU): synthesize the masks, encode the mask PNGs, record boxes -> payload;
2. :class:`ShardTranslator` (GPU when there is one): decode the masks, translate them in
   micro-batches, encode the image PNGs in a thread pool while the next batch runs -> payload;
3. :func:`write_payload` (CPU): the shard's Parquet file (plus optional PNG tree and COCO
   fragment), written whole under its final name, then its index marker.

:func:`prepare` takes the output's lease (one run per output, :mod:`rbcray.generate.lease`) and
does every check that can fail before any of that (inputs readable, output writable, a re-run
agrees with the run it continues); :mod:`rbcray.distributed.generate` runs the three stages as a
streaming Ray Data pipeline, :func:`run_local` runs them in one process.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from rbcray import __version__, storage
from rbcray.config import replace
from rbcray.errors import RbcrayError
from rbcray.generate import shards as S
from rbcray.generate.config import GenerateConfig
from rbcray.generate.lease import Lease
from rbcray.generate.morphology import spec_of as morphology_spec
from rbcray.generate.morphology import summary as morphology_summary
from rbcray.generate.pngenc import encode_png_fast
from rbcray.io import decode_png


class ShardFailed(RbcrayError):
    """A stage failed on a shard for a reason a retry cannot fix (the message names the shard)."""


def named_stage(shard: S.Shard, stage: str, fn: Callable[[], Any]) -> Any:
    """Run a stage on a shard; an error becomes a :class:`ShardFailed` naming the shard and the
    reason (transient storage errors were already retried where they happen)."""
    try:
        return fn()
    except ShardFailed:
        raise
    except Exception as e:  # noqa: BLE001 - every failure is reported with the shard it hit
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ShardFailed(f"{shard.name}: {stage} failed: {msg[:300]}") from None


@dataclass
class RunPlan:
    """What a run will do: its shards, which are already done, and the facts for the manifest."""

    cfg: GenerateConfig
    synth: dict[str, Any]
    per_shard: int
    shards: S.ShardPlan
    done: dict[str, dict[str, Any]]
    checkpoint_sha256: str
    shapes_sha256: str
    num_styles: int
    plan: dict[str, Any] = field(default_factory=dict)
    lease: Lease | None = None
    #: the real images the generator, shape bank and statistics learned from (rbcray.data.provenance)
    provenance: dict[str, Any] = field(default_factory=dict)
    #: --morphology: per class its UNIT folder (rbcray.generate.morphology.check_models); None without it
    morphology: dict[str, Any] | None = None
    #: the generator's family (registry name), recorded in the manifest
    family: str = ""

    @property
    def todo(self) -> list[S.Shard]:
        return [self.shards[int(k)] for k in self.todo_indices()]

    def todo_indices(self) -> np.ndarray:
        """Indices of the shards still to write (int64; 8 bytes per shard, for plans of 10^8 samples)."""
        mask = np.ones(len(self.shards), dtype=bool)
        for name in self.done:
            k = self.shards.index_of(name)
            if k is not None:
                mask[k] = False
        return np.flatnonzero(mask)

    @property
    def plan_id(self) -> str:
        return hashlib.sha256(json.dumps(self.plan, sort_keys=True).encode()).hexdigest()[:16]

    def constants(self) -> dict[str, Any]:
        """Facts that are the same for every sample of the run (each shard's key-value metadata)."""
        return {"checkpoint_sha256": self.checkpoint_sha256, "shapes_sha256": self.shapes_sha256,
                "rbcray_version": __version__, "plan_id": self.plan_id, "config": self.plan}

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()


def _read(uri: str, what: str) -> bytes:
    try:
        return storage.read_bytes(uri)
    except RbcrayError:
        raise RbcrayError(f"{uri}: {what} not found") from None


def _take_lease(cfg: GenerateConfig) -> Lease:
    if not storage.is_remote(cfg.out):
        storage.check_writable(cfg.out)
    lease = Lease(cfg.out, takeover=cfg.takeover)
    try:
        lease.acquire()
    except RbcrayError:
        raise
    except Exception as e:  # noqa: BLE001 - the lease is the first write: a failure means no write access
        raise RbcrayError(f"{cfg.out}: output location is not writable ({storage._brief(e)})") from None
    return lease


def prepare(cfg: GenerateConfig, log: Callable[[str], None] = print) -> RunPlan:
    """Take the output's lease, check inputs and output, plan the shards and find the ones a
    previous run finished (one LIST); the previous manifest is moved aside."""
    if not storage.is_remote(cfg.out) and cfg.out != os.path.abspath(cfg.out):
        cfg = replace(cfg, out=os.path.abspath(cfg.out))  # workers on other nodes must not resolve it
    lease = _take_lease(cfg)
    try:
        return _prepare(cfg, log, lease)
    except BaseException:
        lease.release()
        raise


def _prepare(cfg: GenerateConfig, log: Callable[[str], None], lease: Lease) -> RunPlan:
    from rbcray.models.registry import open_model
    from rbcray.synth.config import resolve_config
    from rbcray.synth.others import check_bank
    from rbcray.synth.shapes import ShapeBank

    try:
        stats = json.loads(_read(cfg.stats, "statistics JSON (from 'rbcray stats')"))
    except json.JSONDecodeError as e:
        raise RbcrayError(f"{cfg.stats}: not valid JSON ({e.msg})") from None
    synth = resolve_config(stats, where=cfg.stats, **cfg.synth_overrides())
    bank = ShapeBank.load(cfg.shapes)
    check_bank(bank, synth)  # every category the masks draw is in the bank (a loaded bank is never empty)
    _family, manifest, files = open_model(cfg.checkpoint)  # any generator family
    ckpt_sha = hashlib.sha256(files["generator.pt"]).hexdigest()
    num_styles = 0
    if "styles.npz" in files:
        from rbcray.models.pix2pixhd.styles import StyleBank

        num_styles = StyleBank.from_bytes(files["styles.npz"], f"{cfg.checkpoint}/styles.npz").k
    if cfg.style_choice is not None and cfg.style_choice >= max(num_styles, 1):
        raise RbcrayError(f"--style {cfg.style}: the model has {num_styles} style clusters (0..{max(num_styles - 1, 0)})")
    encoder_prov = None
    if cfg.quality_encoder is not None:
        from rbcray.evaluate.encoder import RealEncoder

        encoder_prov = RealEncoder.load(cfg.quality_encoder).provenance  # readable before any work
    morph = None
    if cfg.morphology is not None:  # every UNIT folder and the classifier readable before any work
        from rbcray.generate.morphology import check_models, parse_shares

        morph = check_models(parse_shares(cfg.morphology), cfg.morphology_model, cfg.morphology_classifier)
        morph["threshold"] = (0.9 if cfg.morphology_threshold is None else cfg.morphology_threshold) if cfg.morphology_classifier else None
    per_shard = cfg.shard_size or S.samples_per_shard(cfg.shard_bytes, synth.width, synth.height)
    paths = ("out", "checkpoint", "shapes", "stats", "morphology_model", "morphology_classifier")  # their checksums are in the plan
    content = {k: v for k, v in cfg.content_dict().items() if k not in paths}
    plan = {
        "format": S.FORMAT,
        "format_version": S.FORMAT_VERSION,
        "generate": content,
        "synth": synth.to_dict(),
        "per_shard": per_shard,
        "checkpoint_sha256": ckpt_sha,
        "shapes_sha256": bank.sha256,
    }
    if morph is not None:
        from rbcray.generate.morphology import plan_record

        plan["morphology"] = plan_record(morph, cfg.morphology_blend_n)
    old = S.read_plan(cfg.out)
    if old is not None and old != plan:
        diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
        raise RbcrayError(
            f"{cfg.out}: holds a run with a different configuration ({', '.join(diff)} differ); "
            "use another --out or remove it"
        )
    if old is None:
        names = [n for n in storage.listdir(cfg.out) if not n.startswith(".") and n != lease.uri.rsplit("/", 1)[-1]]
        if names:
            raise RbcrayError(f"{cfg.out}: not empty and not an rbcray generate output (found {names[0]!r})")
        S.write_plan(cfg.out, plan)
    S.move_manifest_aside(cfg.out)
    if S.remove_partials(cfg.out):
        log("removed the temporary file(s) of shards a previous run died writing")
    shards = S.plan_shards(cfg.num_samples, per_shard)
    done = S.done_from_listing(cfg.out, shards)
    if done:
        log(f"resuming: {len(done)} of {len(shards)} shard(s) already written, {len(shards) - len(done)} to go")
    provenance = {"generator": manifest.get("provenance"), "shapes": bank.meta.get("provenance"), "stats": stats.get("provenance")}
    if cfg.params:  # calibrated placement: the images it was fitted on
        provenance["params"] = json.loads(_read(cfg.params, "calibration params (from 'rbcray calibrate')")).get("provenance")
    if encoder_prov is not None:  # the quality gate's segmenter learned from real images too
        provenance["quality_encoder"] = encoder_prov
    if morph is not None:  # the UNIT models and the classifier learned from real images too
        provenance["morphology"] = {"units": {k: v["provenance"] for k, v in morph["classes"].items()},
                                    "classifier": (morph["classifier"] or {}).get("provenance")}
    return RunPlan(cfg, synth.to_dict(), per_shard, shards, done, ckpt_sha, bank.sha256, num_styles, plan, lease, provenance,
                   morph, _family.name)


# ----------------------------------------------------------------------------- payloads
#: the payload between stages: PNGs as plain bytes (they become Image structs in the shard)
_PAYLOAD_TYPES = {"instance_mask": pa.binary(), "color_mask": pa.binary(), "image": pa.binary()}


def _payload_field(name: str) -> pa.Field:
    return pa.field(name, _PAYLOAD_TYPES[name]) if name in _PAYLOAD_TYPES else S.SCHEMA.field(name)


def payload_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def payload_table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(io.BytesIO(data)).read_all()


def _shard_of(start: int, stop: int) -> str:
    return f"{S.SHARD_PREFIX}{start:09d}-{stop:09d}.parquet"


class ShardMasker:
    """Stage 1: the masks of a shard (loads the shape bank once, checks it against the plan)."""

    def __init__(self, shapes: str, synth: dict[str, Any], seed: int, shapes_sha256: str | None = None) -> None:
        from rbcray.synth.config import SynthConfig
        from rbcray.synth.shapes import ShapeBank

        self.cfg = SynthConfig.from_dict(dict(synth), where="generate synth config")
        self.bank = ShapeBank.load(shapes)
        if shapes_sha256 and self.bank.sha256 != shapes_sha256:
            raise RbcrayError(f"{shapes}: the shape bank changed since the run was planned (SHA-256 {self.bank.sha256[:12]}, "
                              f"plan {shapes_sha256[:12]})")
        self.seed = int(seed)

    KEYS = ("sample_id", "seed", "instance_mask", "color_mask", "width", "height", "n_cells", "boxes")

    def row(self, i: int) -> dict[str, Any]:
        """The mask columns of sample id ``i``."""
        from rbcray.synth.engine import synthesize

        s = synthesize(self.bank, self.cfg, self.seed, i)
        return {"sample_id": i, "seed": self.seed, "instance_mask": encode_png_fast(s.instances),
                "color_mask": encode_png_fast(s.color_mask(), mask=True), "width": self.cfg.width,
                "height": self.cfg.height, "n_cells": s.n_cells, "boxes": s.box_records()}

    def __call__(self, start: int, stop: int) -> bytes:
        rows = [self.row(i) for i in range(start, stop)]
        schema = pa.schema([_payload_field(k) for k in self.KEYS])
        return payload_bytes(pa.Table.from_pylist(rows, schema=schema))


def check_cuda(gpus: float) -> None:
    """A generator holding ``gpus`` GPUs must be able to use CUDA: fail loudly, never fall back."""
    if not gpus:
        return
    import socket

    import torch

    if not torch.cuda.is_available():
        raise RbcrayError(f"generator actor on {socket.gethostname()} was given {gpus:g} GPU but CUDA is unusable "
                          f"(torch {torch.__version__}, CUDA build {torch.version.cuda}, "
                          f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); check the node's driver and image")


class ShardTranslator:
    """Stage 2: the images of a shard (loads the model once; GPU when available)."""

    def __init__(self, checkpoint: str, style: int | None, batch_size: int, device: str | None = None,
                 threads: int | None = None, encode_threads: int = 4, checkpoint_sha256: str | None = None,
                 gpus: float = 0.0, gate: dict[str, Any] | None = None, morphology: dict[str, Any] | None = None) -> None:
        import torch

        from rbcray.models.registry import load_translator

        check_cuda(gpus)
        if threads:
            torch.set_num_threads(int(threads))
        self.batch_size = int(batch_size)
        # the checkpoint's family
        self.tr = load_translator(checkpoint, device="cuda" if gpus else device, micro_batch=self.batch_size)
        if checkpoint_sha256 and self.tr.sha256 != checkpoint_sha256:
            raise RbcrayError(f"{checkpoint}: the generator changed since the run was planned (SHA-256 {self.tr.sha256[:12]}, "
                              f"plan {checkpoint_sha256[:12]})")
        self.style = style
        self.pool = cf.ThreadPoolExecutor(max_workers=encode_threads)  # the PNG encoder releases the GIL
        self.gate = None
        if gate is not None:  # quality scores, and replacement of samples below --min-quality
            from rbcray.generate.quality import GateSpec, QualityGate

            self.gate = QualityGate(GateSpec(**gate))
        from rbcray.generate.morphology import make_step

        self.morphology = make_step(morphology)  # rare morphologies into chosen cells (--morphology)

    def __call__(self, payload: bytes) -> bytes:
        t = payload_table(payload)
        rows = t.to_pylist()
        images: list[Any] = [None] * len(rows)
        styles: list[list[int]] = [[] for _ in rows]
        quality: list[float | None] = [None] * len(rows)
        attempts = [1] * len(rows)
        morph_cells: list[list[dict[str, Any]] | None] = [None] * len(rows)
        for a in range(0, len(rows), self.batch_size):
            chunk = rows[a : a + self.batch_size]
            inst = [decode_png(r["instance_mask"], f"sample {r['sample_id']}") for r in chunk]
            cats = [{b["instance_id"]: b["class"] for b in r["boxes"]} for r in chunk]
            seeds = [(r["seed"], r["sample_id"]) for r in chunk]
            pad = self.batch_size - len(chunk)  # every forward pass has the same batch shape
            out = self.tr.translate_with_styles(inst + inst[-1:] * pad, cats + cats[-1:] * pad, seeds + seeds[-1:] * pad, self.style)
            for k, (img, clusters) in enumerate(out[: len(chunk)]):
                if self.gate is not None:
                    rows[a + k], img, clusters, quality[a + k], attempts[a + k] = self.gate.fill(
                        self.tr, self.style, rows[a + k], inst[k], img, clusters)
                if self.morphology is not None:  # on the sample kept (after the gate): its mask, not a candidate's
                    r = rows[a + k]
                    m = inst[k] if r is chunk[k] else decode_png(r["instance_mask"], f"sample {r['sample_id']}")
                    img, boxes, morph_cells[a + k] = self.morphology.apply(int(r["sample_id"]), img, m, r["boxes"])
                    rows[a + k] = {**r, "boxes": boxes}
                images[a + k] = self.pool.submit(encode_png_fast, img)
                styles[a + k] = [int(clusters[b["instance_id"]]) for b in rows[a + k]["boxes"]]
        t = pa.Table.from_pylist(rows, schema=t.schema)
        t = t.append_column(_payload_field("image"), pa.array([f.result() for f in images], pa.binary()))
        t = t.append_column(S.SCHEMA.field("styles"), pa.array(styles, pa.list_(pa.int32())))
        t = t.append_column(S.SCHEMA.field("quality"), pa.array(quality, pa.float32()))
        t = t.append_column(S.SCHEMA.field("attempts"), pa.array(attempts, pa.int32()))
        t = t.append_column(S.SCHEMA.field("morphology_cells"), pa.array(morph_cells, S.SCHEMA.field("morphology_cells").type))
        return payload_bytes(t)


def write_payload(out: str, shard: S.Shard, payload: bytes, constants: dict[str, Any], png: bool = False, coco: bool = False, *,
                  fault_hook: S.WriteHook | None = None) -> dict[str, Any]:
    """Stage 3: write a shard whole (PNG tree and COCO fragment first, the Parquet file, its marker;
    ``fault_hook``: tests only, see :data:`rbcray.generate.shards.WriteHook`)."""
    rows = payload_table(payload).to_pylist()
    if png:
        from rbcray.generate.export import write_png_tree

        write_png_tree(out, rows)
    if coco:
        from rbcray.generate.coco import write_coco_fragment

        write_coco_fragment(out, shard, rows)
    return S.write_shard(out, shard, rows, constants, fault_hook=fault_hook)


def finish(plan: RunPlan, entries: list[dict[str, Any]], seconds: float, stage_seconds: dict[str, float]) -> dict[str, Any]:
    """After every shard is written: the manifest, last; then the lease is released."""
    try:
        if plan.lease is not None:
            if plan.lease.lost:
                raise RbcrayError(plan.lease.lost)
            plan.lease.check()  # never write a manifest for an output another run took over
        names = {e["name"] for e in entries}
        missing = [s.name for s in plan.shards if s.name not in names]
        if missing:
            raise RbcrayError(f"{plan.cfg.out}: {len(missing)} shard(s) were not written (first {missing[0]}); re-run to finish")
        info = {
            "seed": plan.cfg.seed,
            "per_shard": plan.per_shard,
            "plan_id": plan.plan_id,
            "checkpoint": plan.cfg.checkpoint,
            "family": plan.family or None,
            "checkpoint_sha256": plan.checkpoint_sha256,
            "shapes": plan.cfg.shapes,
            "shapes_sha256": plan.shapes_sha256,
            "stats": plan.cfg.stats,
            "png_tree": "_png" if plan.cfg.png else None,
            "coco_fragments": "_coco" if plan.cfg.coco else None,
            "config": plan.plan,
            "run_id": plan.lease.run_id if plan.lease else None,
            "timing": {"seconds": seconds, **{f"{k}_seconds": v for k, v in stage_seconds.items()}},
            "quality": quality_summary(plan),
            "morphology": morphology_summary(plan),
            "provenance": plan.provenance,
        }
        manifest = S.write_manifest(plan.cfg.out, entries, info)
    except BaseException:
        plan.release()
        raise
    if plan.lease is not None:
        plan.lease.release(checked=True)
    return manifest


def gate_spec(plan: RunPlan) -> dict[str, Any] | None:
    """The quality gate's settings for the generator stage (None without --quality-encoder)."""
    cfg = plan.cfg
    if cfg.quality_encoder is None:
        return None
    return {"encoder": cfg.quality_encoder, "min_quality": cfg.min_quality, "max_attempts": cfg.max_attempts,
            "num_samples": cfg.num_samples, "shapes": cfg.shapes, "synth": plan.synth, "seed": cfg.seed}


def quality_summary(plan: RunPlan) -> dict[str, Any] | None:
    """Quality scores over the whole run and the gate's acceptance yield (read from the shards)."""
    cfg = plan.cfg
    if cfg.quality_encoder is None:
        return None
    import pyarrow.parquet as pq

    q, att = [], []
    for sh in plan.shards:
        tab = pq.read_table(io.BytesIO(storage.read_bytes(storage.join(cfg.out, sh.name))), columns=["quality", "attempts"])
        q += tab.column("quality").to_pylist()
        att += tab.column("attempts").to_pylist()
    t = cfg.min_quality
    below = sum(1 for v in q if t is not None and v < t)
    candidates = int(sum(att))
    return {"encoder": cfg.quality_encoder, "min_quality": t, "max_attempts": cfg.max_attempts,
            "mean": float(sum(q) / len(q)), "min": float(min(q)), "candidates": candidates,
            "accepted": len(q) - below, "below_min_quality": below, "yield": (len(q) - below) / candidates}


def run_local(plan: RunPlan, device: str | None = None, log: Callable[[str], None] = print, *,
              fault_hook: S.WriteHook | None = None) -> dict[str, Any]:
    """All three stages in this process, shard after shard (no Ray); returns the manifest.
    ``fault_hook`` is for tests only (see :data:`rbcray.generate.shards.WriteHook`)."""
    cfg = plan.cfg
    try:
        t0 = time.perf_counter()
        todo = plan.todo
        if todo:  # a re-run with nothing to do loads nothing
            masker = ShardMasker(cfg.shapes, plan.synth, cfg.seed, plan.shapes_sha256)
            translator = ShardTranslator(cfg.checkpoint, cfg.style_choice, cfg.batch_size, device,
                                         checkpoint_sha256=plan.checkpoint_sha256, gate=gate_spec(plan),
                                         morphology=morphology_spec(plan))
        entries = list(plan.done.values())
        busy = {"mask": 0.0, "generate": 0.0, "write": 0.0}
        constants = plan.constants()
        for sh in todo:
            if plan.lease is not None and plan.lease.lost:
                raise RbcrayError(plan.lease.lost)
            a = time.perf_counter()
            p = named_stage(sh, "masks", lambda sh=sh: masker(sh.start, sh.stop))
            b = time.perf_counter()
            p = named_stage(sh, "images", lambda p=p: translator(p))
            c = time.perf_counter()
            entries.append(named_stage(sh, "write", lambda sh=sh, p=p: write_payload(cfg.out, sh, p, constants, cfg.png, cfg.coco, fault_hook=fault_hook)))
            busy["mask"] += b - a
            busy["generate"] += c - b
            busy["write"] += time.perf_counter() - c
            log(f"  {sh.name}: {sh.count} samples")
    except BaseException:
        plan.release()
        raise
    return finish(plan, entries, time.perf_counter() - t0, busy)
