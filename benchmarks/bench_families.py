"""Benchmark: pix2pixHD vs unet-wgangp vs real-vs-real on Chula-RBC-12, same train split, same budget.

1. The first ``--images`` Chula smears are annotated (``rbcray annotate``'s classical segmentation:
   derived masks, not ground truth) and split by image (seeded; ``--val``/``--test`` fractions).
2. A real-image encoder/segmenter is trained on the train split only (the feature space of KID,
   Fréchet distance and PRDC, and the segmenter of mask fidelity; the same file scores everything).
3. pix2pixHD (``--p2p-config``, default the demo preset) trains on the train split, in this process,
   on ``--threads`` CPU threads; its wall time is the budget unet-wgangp then gets on the same
   threads (its ``--unet-config`` preset, stopped at the first epoch end past the budget).
4. Each translator renders the masks of one half (B) of the held-out (val + test) images; every
   metric compares B-real and B-synthetic sets against the other half (A): real-vs-real is the
   baseline on the same images and masks.

Prints the Markdown table and ends with one line:
``p2p_c2st_auc=.. unet_c2st_auc=.. rvr_c2st_auc=.. p2p_mask_dice=.. unet_mask_dice=.. rvr_mask_dice=.. train_s=.. total_cpu_min=..``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from rbcray.config import replace  # noqa: E402


class Stop(Exception):
    pass


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def train_budget(cfg, data: str, out: str, budget_s: float | None, log, clock=time.perf_counter) -> dict:
    """Train ``cfg`` (plain loop); with a budget (seconds of ``clock``: wall time, or this
    process's CPU time), stop after the first epoch that ends past it and export the model of that
    epoch. Returns wall seconds, CPU seconds and epochs."""
    from rbcray.train.runner import train

    t0, c0 = time.perf_counter(), cpu_seconds()
    b0 = clock()
    reached = {"epoch": 0}

    def hook(epoch: int, metrics: dict) -> None:
        reached["epoch"] = epoch
        if budget_s is not None and clock() - b0 >= budget_s:
            raise Stop

    try:
        train(cfg, data, out, log=log, on_epoch=hook)
    except Stop:
        train(cfg.with_epochs(reached["epoch"]), data, out, log=log)  # resumes at the end: exports only
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": round(cpu_seconds() - c0, 1), "epochs": reached["epoch"]}


def translate_set(ck: str, samples, ds, seed: int):
    from rbcray.evaluate.data import Sample
    from rbcray.models.registry import load_translator

    tr = load_translator(ck, device="cpu")
    out = []
    for i, s in enumerate(samples):
        img = tr.translate([s.instances], [ds.load_categories(s.name)], [(seed, i)])[0]
        out.append(Sample(s.name, "synthetic", img, s.instances))
    return out


def log(m: str) -> None:
    print(m, file=sys.stderr, flush=True)


def add_scoring_args(ap: argparse.ArgumentParser, encoder_steps: int) -> None:
    """Options of the scoring side that the family benchmarks share."""
    ap.add_argument("--encoder-steps", type=int, default=encoder_steps)
    ap.add_argument("--c2st-epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-json", help="write the report JSON here")


def prepare(work: Path, images: int, val: float, test: float, seed: int, encoder_steps: int, log) -> dict:
    """Annotate the first ``images`` Chula smears into ``work`` (reused when there), split them by
    image, write the train images as their own dataset, and train (or load) the scoring encoder on
    them. Returns the dataset, the roles, the held-out halves A / B, their real samples, the encoder."""
    from rbcray.data.annotate import annotate_source, config_for_source
    from rbcray.data.dataset import Dataset, DatasetWriter
    from rbcray.data.provenance import provenance_record
    from rbcray.data.registry import resolve_dataset
    from rbcray.data.sources import open_source
    from rbcray.data.splits import make_splits
    from rbcray.evaluate.data import Sample
    from rbcray.evaluate.encoder import EncoderConfig, RealEncoder

    ann = work / "annotated"
    if not (ann / "dataset.json").exists():
        src = open_source("chula-rbc-12", resolve_dataset("chula-rbc-12"))
        annotate_source(src, ann, config_for_source(src.name), limit=images)
    ds = Dataset.open(ann)
    splits = make_splits(ds.stems, dataset="chula-rbc-12", val=val, test=test, seed=seed)
    train_stems = splits.stems("train")
    held = sorted(splits.stems("val") + splits.stems("test"), key=lambda s: (len(s), s))
    a_stems, b_stems = held[0::2], held[1::2]
    train_dir = work / "train"
    if not (train_dir / "dataset.json").exists():
        with DatasetWriter(train_dir, name="chula-rbc-12", kind="annotated") as w:
            for s in train_stems:
                w.add(s, ds.load_instances(s), image=ds.load_image(s), categories=ds.load_categories(s))
    prov = provenance_record("chula-rbc-12", train_stems, root=str(ann), splits=splits, role="train")
    log(f"{len(ds)} images: train {len(train_stems)}, held-out A {len(a_stems)} / B {len(b_stems)}")

    real = {s: Sample(s, "real", ds.load_image(s), ds.load_instances(s)) for s in held}
    enc_path = work / "encoder.pt"
    t = time.perf_counter()
    if enc_path.exists():
        enc = RealEncoder.load(str(enc_path))
    else:
        enc = RealEncoder.train([Sample(s, "real", ds.load_image(s), ds.load_instances(s)) for s in train_stems],
                                EncoderConfig(steps=encoder_steps, seed=seed), provenance=prov, log=log)
        enc.save(str(enc_path))
    enc_s = time.perf_counter() - t

    return {"ds": ds, "splits": splits, "train": train_stems, "train_dir": train_dir, "a": a_stems, "b": b_stems,
            "real": real, "encoder": enc, "encoder_s": enc_s, "provenance": prov}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", help="work folder (kept; default: a temporary one)")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--val", type=float, default=0.2)
    ap.add_argument("--test", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--p2p-config", default="demo")
    ap.add_argument("--p2p-epochs", type=int, help="override the pix2pixHD preset's epochs")
    ap.add_argument("--unet-config", default="demo")
    ap.add_argument("--budget-s", type=float, help="unet-wgangp budget (default: pix2pixHD's measured wall time)")
    ap.add_argument("--cpu-minutes", type=float,
                    help="train EACH family for this many CPU-minutes of this process (stopping at the first epoch end "
                         "past it; overrides --p2p-epochs and --budget-s)")
    ap.add_argument("--reuse", action="store_true", help="with --cpu-minutes: keep a family already trained in --work")
    add_scoring_args(ap, encoder_steps=400)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from rbcray.cli.train_cmds import resolve_config
    from rbcray.evaluate.c2st import C2STParams
    from rbcray.evaluate.families import CompareParams, markdown_table, side_by_side

    t_start, c_start = time.perf_counter(), cpu_seconds()
    work = Path(args.work or tempfile.mkdtemp(prefix="rbcray-families-"))
    work.mkdir(parents=True, exist_ok=True)
    d = prepare(work, args.images, args.val, args.test, args.seed, args.encoder_steps, log)
    ds, train_dir, a_stems, b_stems, real, enc, enc_s = (d[k] for k in ("ds", "train_dir", "a", "b", "real", "encoder", "encoder_s"))
    train_stems = d["train"]

    p2p_cfg = resolve_config(args.p2p_config, "pix2pixhd")
    p2p_cfg = replace(p2p_cfg.with_epochs(args.p2p_epochs), vgg_loss=False, seed=args.seed)
    unet_cfg = replace(resolve_config(args.unet_config, "unet-wgangp"), seed=args.seed, epochs=10_000)
    if args.cpu_minutes:
        # --reuse: a family trained by an earlier run into --work (its record kept) is not retrained
        def budgeted(cfg, name: str) -> dict:
            rec = work / name / "bench_training.json"
            if args.reuse and rec.exists():
                log(f"{name}: reusing the model trained by an earlier run ({rec})")
                return json.loads(rec.read_text())
            info = train_budget(cfg, str(train_dir), str(work / name), args.cpu_minutes * 60, log, cpu_seconds)
            rec.write_text(json.dumps(info) + "\n")
            return info

        # CPU time, not wall time: a budget that other jobs on a shared host cannot shrink
        # pix2pixHD's schedule (stage 1, then the local enhancer, lr decay) follows its epoch count:
        # give --p2p-epochs sized to the budget; the budget still stops it at an epoch end
        p2p_cfg = p2p_cfg if args.p2p_epochs else p2p_cfg.with_epochs(10_000)
        p2p = budgeted(p2p_cfg, "p2p")
        unet = budgeted(unet_cfg, "unet")
    else:
        p2p = train_budget(p2p_cfg, str(train_dir), str(work / "p2p"), None, log)
        unet = train_budget(unet_cfg, str(train_dir), str(work / "unet"), args.budget_s or p2p["seconds"], log)
    log(f"training on {args.threads} threads: pix2pixHD {p2p['seconds']:.0f} s wall, {p2p['cpu_seconds'] / 60:.1f} CPU-min "
        f"({p2p['epochs']} epochs); unet-wgangp {unet['seconds']:.0f} s wall, {unet['cpu_seconds'] / 60:.1f} CPU-min ({unet['epochs']} epochs)")

    ref = [real[s] for s in a_stems]
    other = [real[s] for s in b_stems]
    synth = {"pix2pixhd": translate_set(str(work / "p2p"), other, ds, args.seed),
             "unet-wgangp": translate_set(str(work / "unet"), other, ds, args.seed)}
    params = CompareParams(c2st=C2STParams(epochs=args.c2st_epochs, seed=args.seed), seed=args.seed)
    report = side_by_side(enc, ref, other, synth, params, log=log)
    cpu_min = (cpu_seconds() - c_start) / 60
    report["_setup"].update(train_images=len(train_stems), threads=args.threads, encoder_seconds=round(enc_s, 1),
                            training={"pix2pixhd": p2p, "unet-wgangp": unet}, total_wall_s=round(time.perf_counter() - t_start, 1),
                            total_cpu_min=round(cpu_min, 2), configs={"pix2pixhd": args.p2p_config, "unet-wgangp": args.unet_config})
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown_table(report))
    print()
    g = {k: report[k] for k in ("pix2pixhd", "unet-wgangp", "real_vs_real")}
    print(f"p2p_c2st_auc={g['pix2pixhd']['c2st']['auc']:.3f} unet_c2st_auc={g['unet-wgangp']['c2st']['auc']:.3f} "
          f"rvr_c2st_auc={g['real_vs_real']['c2st']['auc']:.3f} p2p_mask_dice={g['pix2pixhd']['mask_fidelity']['dice']:.3f} "
          f"unet_mask_dice={g['unet-wgangp']['mask_fidelity']['dice']:.3f} rvr_mask_dice={g['real_vs_real']['mask_fidelity']['dice']:.3f} "
          f"train_cpu_min={p2p['cpu_seconds'] / 60:.1f}+{unet['cpu_seconds'] / 60:.1f} total_cpu_min={cpu_min:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
