"""Downstream training and testing of one trial (Bailo et al. Sec. 5): plain PyTorch, no Ray.

:func:`run_trial` trains one model (FCN-8s, DCAN or Faster R-CNN) on one regime's items with one
seed, then scores every real test image: Dice for FCN-8s, COCO match records (AP at IoU 0.5)
for the detectors. Every random choice derives from (seed, item index, epoch) — crops, augmented
copies, batch order — so a trial's data does not depend on workers or batch sizes, and a trial
resumed from an epoch checkpoint continues exactly as it would have.

Training uses random square crops of the (scaled) images; testing uses whole test images (the
FCNs are fully convolutional and the detector keeps images at their size).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from typing import Any

import numpy as np
import torch

from rbcray.data.formats import instance_boxes
from rbcray.evaluate.augment import Augmenter
from rbcray.evaluate.config import SweepConfig, TrainConfig
from rbcray.evaluate.data import Sample
from rbcray.evaluate.metrics import coco_match_records, dice, metric_value
from rbcray.evaluate.plan import DataBundle
from rbcray.evaluate.postprocess import DCANPostConfig, contour_targets, dcan_cells
from rbcray.evaluate.regimes import TrainItem, regime_items
from rbcray.models import create_model

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
_AUG, _CROP, _ORDER, _TORCH = 0xA06, 0xC40, 0x0DE, 0x7C4
MIN_BOX = 2.0  # boxes thinner than this (pixels) after cropping are dropped


@dataclass
class TrialResult:
    """What a trial hands back: its metric on the test set and per-image records for the bootstrap."""

    model: str
    regime: str
    seed: int
    metric: str
    value: float
    records: list[dict[str, Any]]
    test_names: list[str]
    losses: list[float] = field(default_factory=list)
    train_items: int = 0
    seconds: float = 0.0
    #: RD subset seed and real-image count of the trial
    subset: int = 0
    n_real: int = 0
    #: (epoch, validation metric) at every selection point; the tested state is the best one
    val: list[list[float]] = field(default_factory=list)
    selected_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def pick_device(prefer_gpu: bool = True) -> torch.device:
    """CUDA when asked for and present (Tune sets CUDA_VISIBLE_DEVICES per trial), else CPU."""
    return torch.device("cuda") if prefer_gpu and torch.cuda.is_available() else torch.device("cpu")


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def make_example(
    item: TrainItem, k: int, bundle: DataBundle, crop: int, seed: int, epoch: int, augmenter: Augmenter, draw: int = 0
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Training example ``k`` of a regime, drawn as the ``draw``-th example of ``epoch``:
    (image crop, instance crop or None, boxes)."""
    s: Sample = bundle.train[item.index] if item.origin == "real" else bundle.synthetic[item.index]
    h, w = s.shape
    r = _rng(seed, k, epoch, draw, _CROP)
    y0, x0 = int(r.integers(0, h - crop + 1)), int(r.integers(0, w - crop + 1))
    img = s.image[y0:y0 + crop, x0:x0 + crop]
    inst = None if s.instances is None else s.instances[y0:y0 + crop, x0:x0 + crop]
    boxes = None
    if inst is None:
        boxes = (np.asarray(s.boxes, np.float32).reshape(-1, 4) - [x0, y0, x0, y0]).clip(0, crop)
    if item.augment:
        # augmentation parameters are fixed per (seed, item): the paper's offline augmented copies
        # (applied to the crop, not the whole image: the same transforms, at a fraction of the cost)
        img, inst, boxes = augmenter(img, inst, boxes, _rng(seed, k, _AUG))
    b = instance_boxes(inst)[1].astype(np.float32) if inst is not None else boxes
    keep = ((b[:, 2] - b[:, 0]) >= MIN_BOX) & ((b[:, 3] - b[:, 1]) >= MIN_BOX)
    return np.ascontiguousarray(img), inst, b[keep]


def to_tensor(images: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """uint8 (H, W, 3) images -> float (N, 3, H, W) in [0, 1]."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255)
    return x.to(device)


def normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - IMAGENET_MEAN.to(x.device)) / IMAGENET_STD.to(x.device)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice (the FCN-8s loss), averaged over the foreground and background classes.

    Foreground-only soft Dice pushes foreground pixels up (N + |G|) / |G| times harder than it
    pushes background down, so a network trained from scratch saturates at "all cells" (Dice
    2|G| / (N + |G|)) and stays there; the two-class form is symmetric and does not.
    """
    p = torch.sigmoid(logits.float())
    dims = tuple(range(1, p.ndim))

    def soft(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (2 * (a * b).sum(dims) + eps) / (a.sum(dims) + b.sum(dims) + eps)

    return 1 - 0.5 * (soft(p, target) + soft(1 - p, 1 - target)).mean()


def batch_loss(task: str, model: torch.nn.Module, batch: list, tcfg: TrainConfig, device: torch.device) -> torch.Tensor:
    """The loss of one batch of (image, instances, boxes) examples for ``task``."""
    x = to_tensor([b[0] for b in batch], device)
    if task == "detection":
        targets = [
            {"boxes": torch.from_numpy(b[2]).to(device), "labels": torch.ones(len(b[2]), dtype=torch.int64, device=device)}
            for b in batch
        ]
        return sum(model(list(x), targets).values())
    fg = torch.from_numpy(np.stack([b[1] > 0 for b in batch])).float().unsqueeze(1).to(device)
    out = model(normalise(x))
    if task == "segmentation":
        return soft_dice_loss(out, fg)
    con = np.stack([contour_targets(b[1], tcfg.contour_width) for b in batch])
    con_t = torch.from_numpy(con).float().unsqueeze(1).to(device)
    return model.loss(out, fg, con_t)


@torch.no_grad()
def predict(
    task: str, model: torch.nn.Module, sample: Sample, device: torch.device, post: DCANPostConfig, max_dets: int
) -> dict[str, Any]:
    """Score one test image: {'dice'} or {'boxes', 'scores'} (top ``max_dets`` by score)."""
    x = to_tensor([sample.image], device)
    if task == "detection":
        from rbcray.models.detection import set_native_size

        set_native_size(model, *sample.shape)
        out = model(list(x))[0]
        order = torch.argsort(out["scores"].float(), descending=True)[:max_dets]
        return {"boxes": out["boxes"][order].float().cpu().numpy(), "scores": out["scores"][order].float().cpu().numpy()}
    out = model(normalise(x))
    if task == "segmentation":
        pred = (torch.sigmoid(out.float())[0, 0] >= 0.5).cpu().numpy()
        return {"dice": dice(pred, sample.instances > 0)}
    obj = torch.sigmoid(out["objectness"].float())[0, 0].cpu().numpy()
    con = torch.sigmoid(out["contour"].float())[0, 0].cpu().numpy()
    _, boxes, scores = dcan_cells(obj, con, post)
    order = np.argsort(-scores, kind="stable")[:max_dets]
    return {"boxes": boxes[order], "scores": scores[order]}


def evaluate(
    task: str, model: torch.nn.Module, test: tuple[Sample, ...], device: torch.device, post: DCANPostConfig,
    max_dets: int, autocast: Callable[[], Any],
) -> list[dict[str, Any]]:
    """Per-test-image records: Dice values, or COCO match records of the detections."""
    model.eval()
    with autocast():
        preds = [predict(task, model, s, device, post, max_dets) for s in test]
    if task == "segmentation":
        return [{"dice": float(p["dice"])} for p in preds]
    return coco_match_records(
        [s.cell_boxes() for s in test], [p["boxes"] for p in preds], [p["scores"] for p in preds], max_dets
    )


def run_trial(
    cfg: SweepConfig,
    trial: dict[str, Any],
    bundle: DataBundle,
    device: torch.device | None = None,
    resume: dict[str, Any] | None = None,
    on_epoch: Callable[[int, dict[str, Any], float], None] | None = None,
    on_end: Callable[[torch.nn.Module], None] | None = None,
) -> TrialResult:
    """Train ``trial`` ({'model': label, 'regime', 'seed', 'subset', 'n_real'}) on ``bundle`` and test it.

    The real items are the first ``n_real`` images of RD subset ``subset``. With
    ``train.val_every`` the model is scored on the bundle's validation images every that many
    epochs (and after the last), and the best-scoring state is the one tested (ties: the later);
    ``train.patience`` stops training after that many scores without improvement.

    ``resume`` is a state saved by ``on_epoch`` (model, optimizer, epoch, losses, selection);
    ``on_epoch(epoch, state, mean_loss)`` is called after every ``checkpoint_every`` epochs
    (checkpoints, reports); the state holds the live model tensors, so save or copy it at once.
    ``on_end(model)`` receives the trained model (to keep its weights).
    """
    t0 = time.perf_counter()
    m = cfg.model(trial["model"])
    tcfg, seed, task = m.train, int(trial["seed"]), m.task
    device = device or pick_device(cfg.resources_of(m).gpu > 0)
    n_real = int(trial.get("n_real", cfg.n_real))
    subset = int(trial.get("subset", cfg.rd_subsets[0]))
    real_idx = bundle.real_indices(subset, n_real)
    items = [it if it.origin != "real" else dc_replace(it, index=real_idx[it.index])
             for it in regime_items(trial["regime"], n_real, cfg.trial_total(n_real), cfg.synthetic_share)]
    augmenter = Augmenter(cfg.augment)
    torch.manual_seed(seed)
    model = create_model(m.model, **m.params).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if tcfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=tcfg.lr, momentum=0.9, weight_decay=tcfg.weight_decay)
    start, losses = 0, []
    sel: dict[str, Any] = {"val": [], "best": None, "best_epoch": None, "stale": 0}
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        start, losses = int(resume["epoch"]) + 1, list(resume["losses"])
        sel = resume.get("selection", sel)

    use_amp = tcfg.amp and device.type == "cuda"

    def autocast() -> Any:
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()

    if task == "detection":
        from rbcray.models.detection import set_native_size

        set_native_size(model, tcfg.crop, tcfg.crop)
    steps = tcfg.steps_per_epoch or -(-len(items) // tcfg.batch_size)
    for epoch in range(start, tcfg.epochs):
        model.train()
        # dropout and the detector's box samplers draw from torch's generator: seed it per epoch
        # so a trial resumed at any epoch continues exactly as if it had never stopped
        torch.manual_seed(int(_rng(seed, epoch, _TORCH).integers(0, 2**62)))
        if task == "detection":
            set_native_size(model, tcfg.crop, tcfg.crop)
        # enough shuffled passes over the items for this epoch's steps
        passes = -(-steps * tcfg.batch_size // len(items))
        order = np.concatenate([_rng(seed, epoch, j, _ORDER).permutation(len(items)) for j in range(passes)])
        total, done = 0.0, 0
        for step in range(steps):
            first = step * tcfg.batch_size
            ks = order[first:first + tcfg.batch_size]
            if len(ks) == 0:
                break
            batch = [make_example(items[k], int(k), bundle, tcfg.crop, seed, epoch, augmenter, first + i)
                     for i, k in enumerate(ks)]
            with autocast():
                loss = batch_loss(task, model, batch, tcfg, device)
            if not torch.isfinite(loss):
                continue  # one bad batch (a from-scratch detector's early blow-up) must not poison the weights
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # from-scratch detectors occasionally spike early; clipping keeps one batch from derailing a trial
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            total += float(loss.detach())
            done += 1
        losses.append(total / done if done else float("nan"))
        last = epoch == tcfg.epochs - 1
        stop = False
        if tcfg.val_every is not None and bundle.val and ((epoch + 1) % tcfg.val_every == 0 or last):
            v = metric_value(m.metric, evaluate(task, model, bundle.val, device, m.post, cfg.max_dets, autocast), None, cfg.max_dets)
            sel["val"].append([epoch, v])
            if sel["best_epoch"] is None or v >= max(x[1] for x in sel["val"][:-1]):
                sel["best"] = {k: t.detach().to("cpu", copy=True) for k, t in model.state_dict().items()}
                sel["best_epoch"], sel["stale"] = epoch, 0
            else:
                sel["stale"] += 1
            stop = tcfg.patience is not None and sel["stale"] >= tcfg.patience
        if on_epoch is not None and not last and not stop and (epoch + 1) % tcfg.checkpoint_every == 0:
            on_epoch(epoch, {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                             "losses": list(losses), "selection": copy.copy(sel)}, losses[-1])
        if stop:
            break
    if sel["best"] is not None:
        model.load_state_dict(sel["best"])
    if on_end is not None:
        on_end(model)
    records = evaluate(task, model, bundle.test, device, m.post, cfg.max_dets, autocast)
    value = metric_value(m.metric, records, None, cfg.max_dets)
    return TrialResult(
        model=m.label, regime=trial["regime"], seed=seed, metric=m.metric, value=value, records=records,
        test_names=[s.name for s in bundle.test], losses=losses, train_items=len(items),
        seconds=time.perf_counter() - t0, subset=subset, n_real=n_real, val=sel["val"], selected_epoch=sel["best_epoch"],
    )
