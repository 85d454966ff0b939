"""CLI for the morphology classifier: ``rbcray morphology train`` and ``rbcray morphology eval``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rbcray.errors import RbcrayError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("morphology", help="red-cell morphology: cell classifier (the pseudo-labeller) and UNIT translation to rare classes")
    msub = p.add_subparsers(dest="morphology_command", metavar="ACTION")
    msub.required = True

    t = msub.add_parser("train", help="train the classifier on labelled cell crops of a split's images")
    t.add_argument("dir", help="annotated dataset folder with morphology labels (rbcray annotate chula-rbc-12)")
    t.add_argument("--out", required=True, help="checkpoint folder to write")
    t.add_argument("--splits", help="split file (rbcray split); without it every image is used")
    t.add_argument("--split", help="role to learn from (train)")
    t.add_argument("--config", help="training config, JSON or YAML (rbcray.train.morphology.MorphologyTrainConfig)")
    t.add_argument("--epochs", type=int, help="training epochs (default 10)")
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
    register_unit(msub)


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


def register_unit(msub: argparse._SubParsersAction) -> None:
    u = msub.add_parser("unit", help="train UNIT normal -> one rare class on train-split cells; score and show translations")
    # outputs: unit.pt, unit.json (config, provenance, summary), scores.json, figure.png (real normal /
    # translated / real class-c cells of val images), smear.png (one val smear: host | all its
    # normal cells translated and blended | only those with p(c) >= --threshold)
    u.add_argument("dir", help="annotated dataset folder with morphology labels")
    u.add_argument("--classifier", required=True, help="morphology classifier checkpoint (scores translations; sets crop window/size)")
    u.add_argument("--splits", required=True, help="split file: UNIT learns from --split, translations are scored on val")
    u.add_argument("--split", default="train", help="role to learn from (default train)")
    u.add_argument("--target", default="target", help="rare class to translate into (name or number; default target)")
    u.add_argument("--out", required=True, help="folder to write (unit.pt, unit.json, figure.png)")
    u.add_argument("--minutes", type=float, default=8.0, help="training wall-clock budget (default 8)")
    u.add_argument("--iterations", type=int, help="stop after this many iterations (default: the time budget decides)")
    u.add_argument("--dim", type=int, help="UNIT width (default 16)")
    u.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4, Gupta et al.'s)")
    u.add_argument("--threshold", type=float, default=0.9, help="pseudo-label threshold t for the blended example smear (default 0.9)")
    u.add_argument("--max-eval", type=int, default=1500, help="at most this many val cells per group are scored")
    u.add_argument("--round-iterations", type=int, help="iterations per round: progress line and Ray checkpoint (default 100)")
    u.add_argument("--ray", action="store_true", help="train with Ray Train: --out is the run folder (local or s3://); re-running resumes")
    u.add_argument("--workers", type=int, help="Ray Train workers, gradients averaged (implies --ray; default 1)")
    u.add_argument("--max-failures", type=int, default=2, help="Ray Train restarts after a lost worker (default 2)")
    u.add_argument("--threads", type=int, help="torch CPU threads (with --ray: per worker)")
    u.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    u.set_defaults(func=cmd_unit)


def cmd_unit(args: argparse.Namespace) -> int:
    from rbcray.config import replace
    from rbcray.data.cells import extract_cells
    from rbcray.data.dataset import Dataset
    from rbcray.data.morphology import CLASSES, class_id
    from rbcray.data.provenance import check_no_overlap, provenance_record
    from rbcray.data.splits import load_splits, select
    from rbcray.models.unit.networks import UNITConfig
    from rbcray.train.morphology import load_classifier
    from rbcray.train.unit import UNITTrainConfig, save_unit, train_unit
    from rbcray.train.unit_report import report_unit

    if args.minutes <= 0:
        raise RbcrayError(f"--minutes {args.minutes}: must be > 0")
    use_ray = args.ray or args.workers is not None
    _threads(args.threads)
    target = class_id(args.target)
    model_cfg = replace(UNITConfig(), dim=args.dim, lr=args.lr)
    cfg = replace(UNITTrainConfig(model=model_cfg, target=target, max_seconds=args.minutes * 60),
                  iterations=args.iterations, round_iterations=args.round_iterations)
    clf, clf_cfg, clf_meta = load_classifier(args.classifier)
    splits = load_splits(args.splits)
    check_no_overlap(clf_meta.get("provenance"), splits)
    ds = Dataset.open(args.dir)
    win = {"window": clf_cfg.window, "size": clf_cfg.size}
    train_stems = select(ds.stems, splits, args.split, where=str(args.dir))
    normal = extract_cells(ds, train_stems, classes=[0], **win)
    rare = extract_cells(ds, train_stems, classes=[target], **win)
    name = CLASSES[target]
    print(f"UNIT normal -> {name}: {len(normal)} normal and {len(rare)} {name} cells of the {args.split} images", file=sys.stderr)
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if use_ray:
        from rbcray.distributed.train_unit import train_unit_distributed

        model, hist = train_unit_distributed(normal, rare, cfg, args.out, workers=args.workers or 1, cpus_per_worker=args.threads,
                                             max_failures=args.max_failures, overwrite=args.overwrite, log=log)
    else:
        model, hist = train_unit(normal, rare, cfg, log=log)
    used = sorted({normal.stems[i] for i in normal.image_index.tolist()} | {rare.stems[i] for i in rare.image_index.tolist()})
    prov = provenance_record(ds.name, used, root=str(Path(args.dir).resolve()), splits=splits, role=args.split)
    # Scored on val images: neither UNIT nor the classifier has seen them.
    val_stems = select(ds.stems, splits, "val", where=str(args.dir))
    rep = report_unit(model, clf, clf_cfg, ds, val_stems, target, hist, {"normal": len(normal), name: len(rare)},
                      threshold=args.threshold, max_eval=args.max_eval, classifier=str(args.classifier), where=str(args.dir))
    rep.summary["trainer"] = {"ray": use_ray, "workers": (args.workers or 1) if use_ray else 0}
    save_unit(args.out, model, cfg, {"unit": prov, "classifier": clf_meta.get("provenance")}, {"history": hist, "summary": rep.summary, "crop": win},
              overwrite=args.overwrite, write_more=rep.write, run_folder=use_ray)
    print("\n".join(rep.lines))
    print(args.out)
    return 0
