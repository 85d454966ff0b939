"""``rbcray train`` and ``rbcray styles``: generator training (any registered family) and style grids.

Thin front-ends over :mod:`rbcray.train.runner` (plain loop), :mod:`rbcray.distributed.train`
(Ray Train) and the families of :mod:`rbcray.models.registry` (``--model``: pix2pixhd, the default
(Bailo et al. 2019, Sec. 4.2), or unet-wgangp).
"""

from __future__ import annotations

import argparse
import os
from importlib import resources
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads; see rbcray.models.pix2pixhd

from rbcray.cli.data_cmds import add_split_args  # noqa: E402
from rbcray.config import load_config, replace  # noqa: E402
from rbcray.errors import ConfigError, DataError  # noqa: E402

DEFAULT_MODEL = "pix2pixhd"


def resolve_config(spec: str | None, model: str = DEFAULT_MODEL):
    """Training config of family ``model`` from a file, a packaged preset ('demo', 'paper') or the defaults."""
    from rbcray.models.registry import get_family

    family = get_family(model)
    cls = family.config_class()
    if spec is None:
        return cls()
    if spec in family.presets and not Path(spec).exists():
        with resources.as_file(resources.files("rbcray") / "configs" / family.presets[spec]) as p:
            return load_config(cls, p)
    if not Path(spec).is_file():
        raise ConfigError(f"{spec}: config file not found (give a .yaml/.json file or one of {', '.join(family.presets)})")
    return load_config(cls, spec)


def config_from_args(args: argparse.Namespace):
    """The run's config: --model and --config, then the command-line overrides (a flag the family's
    config has no key for is a one-line error naming the key)."""
    cfg = resolve_config(args.config, args.model)
    overrides = {
        "stage1_epochs": args.stage1_epochs,
        "stage2_epochs": args.stage2_epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "vgg_weights": args.vgg_weights,
        "device": args.device,
        "samples_per_epoch": args.samples_per_epoch,
        "vgg_loss": False if args.no_vgg_loss else None,
        "crop_size": list(args.crop) if args.crop is not None else None,
        "perceptual_encoder": args.perceptual_encoder,
    }
    cfg = replace(cfg, **overrides)
    return cfg.with_epochs(args.epochs)


def cmd_train(args: argparse.Namespace) -> int:
    from rbcray.data.provenance import load_selection
    from rbcray.models.registry import get_family
    from rbcray.train.runner import train

    family = get_family(args.model)
    cfg = config_from_args(args)
    family.check(cfg)  # before any data loading or cluster start
    from rbcray.cli.generate_cmds import parse_duration

    wait_s = parse_duration(args.wait_for_resources)
    splits, role = load_selection(args.splits, args.split)
    if getattr(cfg, "perceptual_encoder", None):  # a config key of every family; checked before the cluster starts
        from rbcray.train.perceptual import check_for_run

        check_for_run(cfg.perceptual_encoder, args.data, splits, role)
    val = None
    if args.val_data or args.val_encoder:
        from rbcray.train.validate import ValSpec

        if not (args.val_data and args.val_encoder):
            raise ConfigError("--val-data and --val-encoder go together (val images + a real-image encoder from 'rbcray encoder')")
        for f in (args.val_data, args.val_encoder):
            if not Path(f).exists():
                raise DataError(f"{f}: not found")
        val = ValSpec(data=args.val_data, encoder=args.val_encoder, every=args.val_every)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.no_ray:
        summary = train(cfg, args.data, args.out, splits=splits, role=role, val=val)
        model = summary.get("model")
    else:
        from rbcray.distributed.train import train_distributed

        if args.threads and args.cpus_per_worker is None:
            args.cpus_per_worker = float(args.threads)
        train_distributed(
            cfg, args.data, args.out, workers=args.workers, use_gpu={"cuda": True, "cpu": False}.get(args.device or ""),
            cpus_per_worker=args.cpus_per_worker, max_failures=args.max_failures, splits=splits, role=role, val=val,
            wait_for_resources=wait_s,
        )
        from rbcray import storage

        model = storage.join(args.out, "model")
    print(f"trained {family.title}: {model} (use: rbcray generate --checkpoint {args.out} ...)")
    return 0


def cmd_encoder(args: argparse.Namespace) -> int:
    from rbcray.data.dataset import Dataset
    from rbcray.data.provenance import load_selection, select_dataset
    from rbcray.evaluate.data import Sample
    from rbcray.evaluate.encoder import EncoderConfig, RealEncoder

    splits, role = load_selection(args.splits, args.split)
    ds, prov = select_dataset(Dataset.open(args.data), splits, role)
    stems = ds.stems
    samples = [Sample(s, "real", ds.load_image(s), ds.load_instances(s)) for s in stems]
    enc = RealEncoder.train(samples, EncoderConfig(crop=args.crop, steps=args.steps, seed=args.seed), provenance=prov, log=print)
    enc.save(args.out)
    print(f"wrote {args.out}: encoder trained on {len(stems)} real images ({prov['split']})")
    return 0


def read_mask(path: str):
    """A mask file as an instance map: a uint16/uint8 label PNG or a colour-coded RGB mask."""
    from rbcray.data.formats import read_color_mask, read_instances
    from rbcray.io import read_png_unchanged

    arr = read_png_unchanged(path)
    if arr.ndim == 2:
        return read_instances(path)
    if arr.ndim == 3:
        return read_color_mask(path)
    raise DataError(f"{path}: not a mask image")


def cmd_styles(args: argparse.Namespace) -> int:
    from rbcray.io import write_png
    from rbcray.models.registry import load_translator
    from rbcray.train.pix2pixhd_export import styles_grid

    inst = read_mask(args.mask)
    if not str(args.out).lower().endswith(".png"):
        raise DataError(f"{args.out}: the styles grid is written as PNG; give a .png file name")
    tr = load_translator(args.checkpoint, device=args.device)
    write_png(args.out, styles_grid(tr, inst, seed=args.seed))
    print(f"wrote {args.out}: the mask and {tr.num_styles} styles")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a mask -> image generator (pix2pixHD or unet-wgangp) on a dataset folder, with Ray Train")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"generator family (default {DEFAULT_MODEL}; see rbcray.models.registry: pix2pixhd, unet-wgangp)")
    p.add_argument("--data", required=True, help="dataset folder (images + instances), e.g. from 'rbcray annotate'")
    p.add_argument("--out", required=True, help="run folder: local path or s3://bucket/prefix; re-running resumes")
    p.add_argument("--config", help="training config of the --model family (.yaml/.json), or 'demo' / 'paper'")
    p.add_argument("--workers", type=int, help="Ray Train workers (default: #GPUs, or 1 on CPU)")
    p.add_argument("--epochs", type=int, help="total epochs (pix2pixHD: split over the two stages as in the config)")
    p.add_argument("--stage1-epochs", type=int, help="pix2pixHD only")
    p.add_argument("--stage2-epochs", type=int, help="pix2pixHD only")
    p.add_argument("--batch-size", type=int, help="crops per worker and step")
    p.add_argument("--samples-per-epoch", type=int, help="crops per epoch (default: one per image)")
    p.add_argument("--crop", type=int, nargs=2, metavar=("W", "H"), help="training crop size (stage 2)")
    p.add_argument("--seed", type=int)
    p.add_argument("--no-vgg-loss", action="store_true", help="pix2pixHD: train without the VGG19 perceptual loss")
    p.add_argument("--perceptual-encoder", help="'rbcray encoder' file learned from this run's training images: "
                   "its features give a perceptual loss without downloaded weights (either family)")
    p.add_argument("--vgg-weights", help="pix2pixHD: torchvision VGG19 weights file (default: torch hub cache)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-ray", action="store_true", help="single-process loop in this process (no Ray)")
    p.add_argument("--max-failures", type=int, default=2, help="worker-group restarts from the last checkpoint")
    p.add_argument("--cpus-per-worker", type=float)
    p.add_argument("--wait-for-resources", default="15m", metavar="DURATION",
                   help="with --workers and --device cuda: how long to wait for the declared GPU workers to fit "
                        "(autoscaling clusters start small), e.g. 20s, 15m (default 15m); then fail in one line")
    p.add_argument("--threads", type=int, help="torch CPU threads (per worker)")
    add_split_args(p, "train on")
    p.add_argument("--val-data", help="dataset folder of held-out val images: scored every --val-every epochs, best kept in OUT/best")
    p.add_argument("--val-encoder", help="real-image encoder file of 'rbcray encoder' (trained on the train split)")
    p.add_argument("--val-every", type=int, default=5, help="epochs between validation scores (default 5)")
    p.set_defaults(func=cmd_train)

    e = sub.add_parser("encoder", help="train the real-image encoder/segmenter of the weight-free realism metrics")
    e.add_argument("--data", required=True, help="dataset folder (images + instance masks)")
    e.add_argument("--out", required=True, help="encoder file to write (.pt)")
    add_split_args(e, "train on")
    e.add_argument("--steps", type=int, default=400)
    e.add_argument("--crop", type=int, default=96, help="training crop side (pixels)")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=cmd_encoder)

    s = sub.add_parser("styles", help="render one mask in every style cluster of a trained model (a grid PNG)")
    s.add_argument("--checkpoint", required=True, help="the --out of 'rbcray train' (local path or URI)")
    s.add_argument("--mask", required=True, help="instance map PNG (uint16 labels) or colour-coded mask PNG")
    s.add_argument("--out", required=True, help="output .png")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    s.set_defaults(func=cmd_styles)
