"""CLI for the morphology classifier: ``rbcray morphology train`` and ``rbcray morphology eval``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rbcray.errors import RbcrayError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("morphology", help="red-cell morphology classifier (the pseudo-labeller of issue 14)")
    msub = p.add_subparsers(dest="morphology_command", metavar="ACTION")
    msub.required = True

    t = msub.add_parser("train", help="train the classifier on labelled cell crops of a split's images")
    t.add_argument("dir", help="annotated dataset folder with morphology labels (rbcray annotate chula-rbc-12)")
    t.add_argument("--out", required=True, help="checkpoint folder to write")
    t.add_argument("--splits", help="split file (rbcray split); without it every image is used")
    t.add_argument("--split", help="role to learn from (train)")
    t.add_argument("--config", help="training config, JSON or YAML (rbcray.train.morphology.MorphologyTrainConfig)")
    t.add_argument("--epochs", type=int, help="training epochs (default 8)")
    t.add_argument("--batch-size", type=int, help="cells per step (default 128)")
    t.add_argument("--seed", type=int, help="seed (default 0)")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint folder")
    t.set_defaults(func=cmd_train)

    e = msub.add_parser("eval", help="per-class AUC/F1 with image-bootstrap intervals on a split's images")
    e.add_argument("dir", help="annotated dataset folder with morphology labels")
    e.add_argument("--checkpoint", required=True, help="checkpoint folder (rbcray morphology train)")
    e.add_argument("--splits", required=True, help="split file the checkpoint was trained with")
    e.add_argument("--split", default="test", help="role to evaluate on (default test)")
    e.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (default 1000)")
    e.add_argument("--json", help="write the results as JSON here")
    e.add_argument("--markdown", help="write the table as Markdown here")
    e.add_argument("--threads", type=int, help="torch CPU threads")
    e.set_defaults(func=cmd_eval)


def _threads(n: int | None) -> None:
    if n is not None:
        if n < 1:
            raise RbcrayError(f"--threads {n}: must be at least 1")
        import torch

        torch.set_num_threads(n)


def cmd_train(args: argparse.Namespace) -> int:
    from rbcray.config import load_config, replace
    from rbcray.data.cells import extract_cells
    from rbcray.data.dataset import Dataset
    from rbcray.data.morphology import CLASSES
    from rbcray.data.provenance import provenance_record
    from rbcray.data.splits import load_splits, select
    from rbcray.train.morphology import MorphologyTrainConfig, save_classifier, train_classifier

    _threads(args.threads)
    base = load_config(MorphologyTrainConfig, args.config) if args.config else MorphologyTrainConfig()
    cfg = replace(base, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size)
    ds = Dataset.open(args.dir)
    splits = load_splits(args.splits) if args.splits else None
    stems = select(ds.stems, splits, args.split, where=str(args.dir))
    crops = extract_cells(ds, stems, window=cfg.window, size=cfg.size)
    used = sorted({crops.stems[i] for i in crops.image_index.tolist()})
    print(f"training on {len(crops)} labelled cells of {len(used)} image(s)", file=sys.stderr)
    model, hist = train_classifier(crops, cfg, log=lambda m: print(m, file=sys.stderr))
    prov = provenance_record(ds.name, used, root=str(Path(args.dir).resolve()), splits=splits, role=args.split)
    counts = {name: int((crops.labels == k).sum()) for k, name in enumerate(CLASSES)}
    save_classifier(args.out, model, cfg, prov, {"history": hist, "train_counts": counts}, overwrite=args.overwrite)
    print(args.out)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rbcray.data.cells import extract_cells
    from rbcray.data.dataset import Dataset
    from rbcray.data.provenance import check_no_overlap
    from rbcray.data.splits import load_splits, select
    from rbcray.evaluate.morphology import image_bootstrap, to_markdown
    from rbcray.io import atomic_write_bytes, write_json
    from rbcray.models.morphology import predict_proba
    from rbcray.train.morphology import load_classifier

    if args.n_boot < 1:
        raise RbcrayError(f"--n-boot {args.n_boot}: must be at least 1")
    _threads(args.threads)
    model, cfg, meta = load_classifier(args.checkpoint)
    splits = load_splits(args.splits)
    # The classifier must not have seen the images it is scored on (nor any other held-out ones).
    check_no_overlap(meta.get("provenance"), splits)
    ds = Dataset.open(args.dir)
    stems = select(ds.stems, splits, args.split, where=str(args.dir))
    crops = extract_cells(ds, stems, window=cfg.window, size=cfg.size)
    if len(crops) == 0:
        raise RbcrayError(f"{args.dir}: no labelled cells in the {args.split} images")
    probs = predict_proba(model, crops.crops)
    res = image_bootstrap(probs, crops.labels, crops.image_index, n_boot=args.n_boot)
    res["checkpoint"] = str(args.checkpoint)
    res["split"] = args.split
    md = to_markdown(res)
    if args.json:
        write_json(args.json, res)
    if args.markdown:
        atomic_write_bytes(args.markdown, md.encode())
    print(md)
    print(f"macro_auc={res['macro_auc']:.4f} macro_f1={res['macro_f1']:.4f} n_cells={res['n_cells']} n_images={res['n_images']}")
    return 0
