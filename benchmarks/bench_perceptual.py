"""Benchmark: a generator family with and without the real-image encoder's perceptual loss.

The ablation of ``perceptual_encoder`` (rbcray.train.perceptual) on Chula-RBC-12, with the data,
split and scoring of ``bench_families.py``:

1. The first ``--images`` smears are annotated (derived masks, not ground truth) and split by image.
2. Two encoders learn from the train images only: the *scoring* encoder (seed ``--seed``; the
   feature space of KID/Fréchet/PRDC and the segmenter of mask fidelity) and the *loss* encoder
   (seed ``--seed + 1``) whose features the perceptual loss compares. They are different networks,
   but of the same kind and data: the encoder-space metrics are not fully independent of the loss;
   the C2ST's classifier is.
3. ``--family`` (``--config``, default the demo preset) trains twice on the train images, without
   and with the loss (``lambda_perceptual`` from the config), each for ``--cpu-minutes`` of this
   process's CPU time (stopped at the first epoch end past it).
4. Both render the masks of held-out half B; every metric compares against half A, beside real vs real.

Prints the Markdown table and ends with one line:
``plain_c2st_auc=.. perc_c2st_auc=.. rvr_c2st_auc=.. plain_kid=.. perc_kid=.. plain_mask_dice=.. perc_mask_dice=.. train_cpu_min=..``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from bench_families import add_scoring_args, cpu_seconds, log, prepare, train_budget, translate_set  # noqa: E402

from rbcray.config import replace  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", help="work folder (kept; default: a temporary one)")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--family", default="unet-wgangp", help="generator family (default unet-wgangp)")
    ap.add_argument("--config", default="demo", help="the family's preset or config file (default demo)")
    ap.add_argument("--cpu-minutes", type=float, default=4.0, help="training budget of EACH run (default 4)")
    ap.add_argument("--threads", type=int, default=2)
    add_scoring_args(ap, encoder_steps=300)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from rbcray.cli.train_cmds import resolve_config
    from rbcray.evaluate.c2st import C2STParams
    from rbcray.evaluate.data import Sample
    from rbcray.evaluate.encoder import EncoderConfig, RealEncoder
    from rbcray.evaluate.families import CompareParams, markdown_table, side_by_side

    work = Path(args.work or tempfile.mkdtemp(prefix="rbcray-perceptual-"))
    work.mkdir(parents=True, exist_ok=True)
    d = prepare(work, args.images, 0.2, 0.2, args.seed, args.encoder_steps, log)
    ds = d["ds"]
    loss_enc = work / "encoder-loss.pt"
    if not loss_enc.exists():
        RealEncoder.train([Sample(s, "real", ds.load_image(s), ds.load_instances(s)) for s in d["train"]],
                          EncoderConfig(steps=args.encoder_steps, seed=args.seed + 1), provenance=d["provenance"],
                          log=log).save(str(loss_enc))
    cfg = replace(resolve_config(args.config, args.family), seed=args.seed).with_epochs(10_000)
    if hasattr(cfg, "vgg_loss"):
        cfg = replace(cfg, vgg_loss=False)  # no VGG19 weights here; the ablation is of the encoder loss alone
    runs = {"plain": cfg, "perceptual": replace(cfg, perceptual_encoder=str(loss_enc))}
    training = {}
    for name, c in runs.items():
        rec = work / name / "bench_training.json"
        if rec.exists():
            training[name] = json.loads(rec.read_text())
            continue
        training[name] = train_budget(c, str(d["train_dir"]), str(work / name), args.cpu_minutes * 60, log, cpu_seconds)
        rec.write_text(json.dumps(training[name]) + "\n")
        log(f"{name}: {training[name]['epochs']} epochs, {training[name]['cpu_seconds'] / 60:.1f} CPU-min")

    ref, other = [d["real"][s] for s in d["a"]], [d["real"][s] for s in d["b"]]
    synth = {name: translate_set(str(work / name), other, ds, args.seed) for name in runs}
    t = time.perf_counter()
    report = side_by_side(d["encoder"], ref, other, synth, CompareParams(c2st=C2STParams(epochs=args.c2st_epochs, seed=args.seed),
                                                                         seed=args.seed), log=log)
    report["_setup"].update(family=args.family, config=args.config, train_images=len(d["train"]), threads=args.threads,
                            training=training, lambda_perceptual=cfg.lambda_perceptual,
                            scoring_seconds=round(time.perf_counter() - t, 1))
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown_table(report))
    print()
    p, q, r = report["plain"], report["perceptual"], report["real_vs_real"]
    print(f"plain_c2st_auc={p['c2st']['auc']:.3f} perc_c2st_auc={q['c2st']['auc']:.3f} rvr_c2st_auc={r['c2st']['auc']:.3f} "
          f"plain_kid={p['kid']['kid']:.4f} perc_kid={q['kid']['kid']:.4f} plain_mask_dice={p['mask_fidelity']['dice']:.3f} "
          f"perc_mask_dice={q['mask_fidelity']['dice']:.3f} "
          f"train_cpu_min={training['plain']['cpu_seconds'] / 60:.1f}+{training['perceptual']['cpu_seconds'] / 60:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
