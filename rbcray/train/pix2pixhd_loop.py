"""The pix2pixHD training step and epoch, shared by the plain loop and the Ray Train workers.

One iteration is two explicit phases (stylegan3's Gmain / Dmain), as in pix2pixHD:

- **Gmain**: G (+E) generates from the label map and the real image's instance features; D,
  with its parameters frozen, scores real and fake in one pass; G's loss is adversarial +
  lambda_fm * feature matching + lambda_vgg * VGG19. Step G and E.
- **Dmain**: D scores real and the detached fake in one pass (one forward per backward keeps DDP
  happy); LSGAN or hinge loss, halved as in pix2pixHD [+ r1_gamma / 2 * R1 on the real pairs, from
  a separate pass of the unwrapped D whose gradients accumulate before DDP's all-reduce]. Step D.

Few-image options (issue 13; off in the paper config): ``diffaug`` transforms every pair D sees
(:mod:`rbcray.train.diffaug`; in Gmain a fake and its real get the same transform, so feature
matching compares like with like), ``r1_gamma`` and ``ema_decay`` (an EMA copy of G and E, used
for preview grids, style clusters and the exported model; reset at the stage switch, where G2 is new).

Under ``torch.distributed`` (Ray Train's process group) the generator side and D are wrapped in
DistributedDataParallel and re-wrapped whenever the set of trainable parameters changes (stage 2,
unfreezing G1); metrics are averaged over ranks. On GPU: bf16 autocast and channels_last.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from rbcray.config import from_dict
from rbcray.data.dataset import Dataset
from rbcray.data.provenance import provenance_record
from rbcray.errors import DataError
from rbcray.models.pix2pixhd.checkpoint import MODEL_FORMAT
from rbcray.models.pix2pixhd.inference import pick_device
from rbcray.models.pix2pixhd.inputs import generator_input
from rbcray.models.pix2pixhd.losses import VGGLoss, feature_matching_loss, gan_loss, resolve_vgg_weights
from rbcray.models.pix2pixhd.model import Pix2PixHD, build_discriminator
from rbcray.train.diffaug import diff_augment, parse_policy
from rbcray.train.pix2pixhd import Pix2PixHDTrainConfig, config_json
from rbcray.train.pix2pixhd_data import CropSpec, PairDataset, check_pairs, collate

LOSS_KEYS = ("G_GAN", "G_FM", "G_VGG", "G_PERC", "D_real", "D_fake", "D_r1", "L1")


def open_dataset(data: str | Path) -> Dataset:
    """Open a training dataset folder (images + instances + categories)."""
    ds = Dataset.open(data)
    if len(ds) == 0:
        raise DataError(f"{ds.root}: dataset has no samples")
    if not ds.has_images:
        raise DataError(f"{ds.root}: some samples have no image; pix2pixHD trains on image + mask pairs")
    check_pairs(ds)
    return ds


def dataset_summary(ds: Dataset, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dataset statistics saved with every checkpoint (rbcray.data.stats, else a minimal record)."""
    try:
        from rbcray.data.stats import dataset_stats

        st = dataset_stats(ds, provenance=provenance)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - statistics are provenance, never a reason to stop training
        st = {"error": f"statistics unavailable: {type(e).__name__}"}
    return {"dataset": str(ds.root), "name": ds.name, "n_samples": len(ds), "stats": st}


class Trainer:
    """pix2pixHD training state on one worker (rank ``rank`` of ``world_size``)."""

    def __init__(
        self, cfg: Pix2PixHDTrainConfig, ds: Dataset, device: str | torch.device | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.ds = ds
        #: the images this model learns from (rbcray.data.provenance), saved in checkpoints and model.json
        self.provenance = provenance or provenance_record(ds.name, ds.stems, root=str(ds.root.resolve()))
        self.device = pick_device(device if device is not None else cfg.device)
        self.distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.gpu = self.device.type == "cuda"
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts)
        self.model = Pix2PixHD(cfg.model).to(self.device)
        self.D = build_discriminator(cfg.model).to(self.device)
        self.vgg = None
        if cfg.vgg_loss and cfg.lambda_vgg > 0:
            self.vgg = VGGLoss(resolve_vgg_weights(cfg.vgg_weights), imagenet_norm=cfg.vgg_imagenet_norm).to(self.device)
        self.perceptual = None  # the real-image encoder's features (rbcray.train.perceptual), when configured
        if cfg.perceptual_encoder and cfg.lambda_perceptual > 0:
            from rbcray.train.perceptual import load_perceptual

            self.perceptual = load_perceptual(cfg.perceptual_encoder, self.provenance, self.device)
        self.epoch = 0  # completed epochs
        self.history: list[dict[str, Any]] = []
        self.resumes: list[int] = []  # epochs at which training was resumed from a checkpoint
        self.stats: dict[str, Any] | None = None
        self._trainable: tuple[int, bool] | None = None  # (stage, G1 frozen) the wrappers were built for
        self._cache: dict | None = {} if cfg.cache_images else None  # decoded samples, kept across epochs
        self.policy = parse_policy(cfg.diffaug)
        self.ema: Pix2PixHD | None = None
        self._reset_ema()
        self._new_optimizers()

    # ------------------------------------------------------------------ EMA
    def _reset_ema(self) -> None:
        """A fresh EMA copy of the current model (at the start and at the stage switch)."""
        if self.cfg.ema_decay > 0:
            self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        for pe, p in zip(self.ema.parameters(), self.model.parameters()):
            pe.lerp_(p, 1 - self.cfg.ema_decay)
        for be, b in zip(self.ema.buffers(), self.model.buffers()):  # norm statistics: copied, not averaged
            be.copy_(b)

    @property
    def inference_model(self) -> Pix2PixHD:
        """The model used for samples, style clusters and export: the EMA copy when there is one."""
        return self.ema if self.ema is not None else self.model

    # ------------------------------------------------------------------ set-up per epoch
    def _new_optimizers(self) -> None:
        c = self.cfg
        self.opt_G = torch.optim.Adam(self.model.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))

    def crop_spec(self, stage: int) -> CropSpec:
        c = self.cfg
        if stage == 2 or c.model.stages == 1:
            return CropSpec(c.load_size, c.crop_size, None, c.flip)
        size = c.stage1_size
        if size is None:
            full = c.crop_size or c.load_size
            if full is None:  # whole native images: half of the first sample's size
                r = self.ds.samples[0]
                full = (r["width"], r["height"])
            size = (max(8, full[0] // 2), max(8, full[1] // 2))
        return CropSpec(c.load_size, c.crop_size, tuple(size), c.flip)

    def prepare_epoch(self, epoch: int) -> None:
        """Stage switch, G1 freezing, DDP wrapping and learning rate for 0-based ``epoch``."""
        c = self.cfg
        stage = c.stage_of(epoch)
        if stage == 2 and self.model.stage == 1:
            self.model.to_stage2()
            self.model.to(self.device)
            self._new_optimizers()  # stage 2 starts its own Adam state and lr schedule (pix2pixHD)
            self._reset_ema()  # and its own average (G2 is new; G1's average would lag its frozen weights)
        # only the local enhancer's first epochs freeze G1; the global recipe trains G throughout
        frozen = stage == 2 and c.model.generator == "global+local" and epoch - c.stage1_epochs < c.freeze_global_epochs
        for p in self.model.global_generator.parameters():
            p.requires_grad_(not frozen)
        if self._trainable != (stage, frozen):
            self._wrap()
            self._trainable = (stage, frozen)
        for opt in (self.opt_G, self.opt_D):
            for g in opt.param_groups:
                g["lr"] = c.lr_at(epoch)
        if self.gpu and c.channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)

    def _wrap(self) -> None:
        if not self.distributed:
            self.G_run, self.D_run = self.model, self.D
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.gpu else None
        self.G_run = DDP(self.model, device_ids=ids)
        self.D_run = DDP(self.D, device_ids=ids)

    def loader(self, epoch: int) -> torch.utils.data.DataLoader:
        c = self.cfg
        spec = self.crop_spec(c.stage_of(epoch))
        n = c.samples_per_epoch or len(self.ds)
        data = PairDataset(self.ds, spec, c.model.num_classes, c.seed, n, self._cache)
        data.set_epoch(epoch)
        sampler = torch.utils.data.DistributedSampler(data, self.world_size, self.rank, shuffle=True, seed=c.seed)
        sampler.set_epoch(epoch)
        return torch.utils.data.DataLoader(
            data, batch_size=c.batch_size, sampler=sampler, num_workers=c.loader_workers, collate_fn=collate,
            pin_memory=self.gpu, drop_last=False,
        )

    # ------------------------------------------------------------------ phases
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.gpu and self.cfg.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _d_input(self, label: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        x = torch.cat([label, img.to(label.dtype)], dim=1)
        return x.contiguous(memory_format=torch.channels_last) if self.gpu and self.cfg.channels_last else x

    def phase_Gmain(self, inst: torch.Tensor, classes: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Generator (and encoder) update; returns the fake (for Dmain) and the losses."""
        c = self.cfg
        label = generator_input(inst, classes, None, c.model.num_classes)
        self.D.requires_grad_(False)  # D is a fixed critic in this phase; no D gradients
        with self._autocast():
            fake = self.G_run(inst, classes, real)
            lab2, pair = torch.cat([label, label]), torch.cat([fake, real])
            if self.policy:  # the same transform for fake i and real i: feature matching compares like with like
                lab2, pair = paired_augment(lab2, pair, self.policy)
            both = self.D(self._d_input(lab2, pair))
            pred_fake = [[t[: len(fake)] for t in s] for s in both]
            pred_real = [[t[len(fake) :] for t in s] for s in both]
            losses = {
                "G_GAN": gan_loss(pred_fake, True, c.gan_mode, for_d=False),
                "G_FM": feature_matching_loss(pred_fake, pred_real, c.model.n_layers_D) * c.lambda_fm,
            }
            if self.vgg is not None:
                losses["G_VGG"] = self.vgg(fake, real) * c.lambda_vgg
            if self.perceptual is not None:
                losses["G_PERC"] = self.perceptual(fake, real) * c.lambda_perceptual
        self.opt_G.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        self.opt_G.step()
        self._update_ema()
        self.D.requires_grad_(True)
        losses["L1"] = (fake.detach().float() - real).abs().mean()
        return fake.detach(), losses

    def phase_Dmain(self, inst: torch.Tensor, classes: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """Discriminator update on real vs the detached fake."""
        c = self.cfg
        label = generator_input(inst, classes, None, c.model.num_classes)
        lab2, pair = diff_augment(torch.cat([label, label]), torch.cat([fake, real]), self.policy)
        self.opt_D.zero_grad(set_to_none=True)
        if c.r1_gamma > 0:  # its own pass of the unwrapped D; the gradients add up before DDP's all-reduce
            r1 = r1_penalty(self.D, lab2[len(fake):], pair[len(fake):].float())
            (0.5 * c.r1_gamma * r1).backward()
        with self._autocast():
            both = self.D_run(self._d_input(lab2, pair))
            pred_fake = [[t[: len(fake)] for t in s] for s in both]
            pred_real = [[t[len(fake) :] for t in s] for s in both]
            losses = {"D_fake": gan_loss(pred_fake, False, c.gan_mode), "D_real": gan_loss(pred_real, True, c.gan_mode)}
        (0.5 * (losses["D_fake"] + losses["D_real"])).backward()
        self.opt_D.step()
        if c.r1_gamma > 0:
            losses["D_r1"] = r1.detach()
        return losses

    # ------------------------------------------------------------------ epoch
    def train_epoch(self) -> dict[str, Any]:
        """Train epoch ``self.epoch`` (0-based) and return its metrics (averaged over ranks)."""
        epoch = self.epoch
        self.prepare_epoch(epoch)
        self.model.train()
        self.D.train()
        sums = torch.zeros(len(LOSS_KEYS) + 1, dtype=torch.float64)
        t0 = time.perf_counter()
        for inst, classes, real in self.loader(epoch):
            inst, classes = inst.to(self.device, non_blocking=True), classes.to(self.device, non_blocking=True)
            real = real.to(self.device, non_blocking=True)
            fake, lg = self.phase_Gmain(inst, classes, real)
            ld = self.phase_Dmain(inst, classes, real, fake)
            allv = {**lg, **ld}
            n = len(inst)
            sums[-1] += n
            for k, key in enumerate(LOSS_KEYS):
                if key in allv:
                    sums[k] += float(allv[key].detach()) * n
        if self.gpu:
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        if self.distributed:
            t = sums.to(self.device)
            dist.all_reduce(t)
            sums = t.cpu()
            sec = torch.tensor([seconds], device=self.device)
            dist.all_reduce(sec, op=dist.ReduceOp.MAX)
            seconds = float(sec.item())
        count = max(float(sums[-1]), 1.0)
        absent = {"G_VGG": self.vgg is None, "G_PERC": self.perceptual is None, "D_r1": self.cfg.r1_gamma == 0}
        m: dict[str, Any] = {k: float(sums[i]) / count for i, k in enumerate(LOSS_KEYS) if not absent.get(k)}
        m.update(epoch=epoch + 1, stage=self.cfg.stage_of(epoch), lr=self.cfg.lr_at(epoch), images=int(count),
                 seconds=seconds, img_s=count / max(seconds, 1e-9), time=time.time())
        self.epoch += 1
        self.history.append(m)
        return m

    # ------------------------------------------------------------------ samples
    @torch.no_grad()
    def preview_batch(self, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A fixed batch of (unflipped) crops of the first samples, at the current stage's size."""
        k = k or self.cfg.grid_samples
        stage = self.cfg.stage_of(max(self.epoch - 1, 0))
        spec = self.crop_spec(stage)
        data = PairDataset(self.ds, CropSpec(spec.load_size, spec.crop_size, spec.out_size, False),
                           self.cfg.model.num_classes, seed=self.cfg.seed + 1, cache=self._cache)
        return collate([data[i] for i in range(min(k, len(self.ds)))])

    @torch.no_grad()
    def sample_grid(self) -> bytes:
        """PNG of one row per preview sample: colour mask | real | generated (reconstruction)."""
        from rbcray.train.pix2pixhd_export import grid_png

        inst, classes, real = self.preview_batch()
        fake = self.inference_model(inst.to(self.device), classes.to(self.device), real.to(self.device)).float().cpu()
        return grid_png(inst.numpy(), real, fake)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs; only tensors, numbers and strings (loads with weights_only)."""
        if self.stats is None:
            self.stats = dataset_summary(self.ds, self.provenance)
        return {
            "format": MODEL_FORMAT + "-state",
            "epoch": self.epoch,
            "stage": self.model.stage,
            "G": self.model.G.state_dict(),
            "E": self.model.E.state_dict() if self.model.E is not None else None,
            "D": self.D.state_dict(),
            "G_ema": self.ema.G.state_dict() if self.ema is not None else None,
            "E_ema": self.ema.E.state_dict() if self.ema is not None and self.ema.E is not None else None,
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "config": config_json(self.cfg),
            "stats": json.dumps(self.stats),
            "history": json.dumps(self.history),
            "resumes": json.dumps(self.resumes),
            "provenance": json.dumps(self.provenance),
        }

    def load_state_dict(self, state: dict[str, Any], name: str = "checkpoint") -> None:
        """Restore a :meth:`state_dict` (the config's architecture must match)."""
        saved = from_dict(Pix2PixHDTrainConfig, json.loads(state["config"]), where=f"{name} config")
        if saved.model != self.cfg.model:
            raise DataError(f"{name}: saved model architecture differs from this run's config ({saved.model} vs {self.cfg.model})")
        if state.get("provenance"):
            before = json.loads(state["provenance"])
            if sorted(before.get("stems", [])) != self.provenance["stems"]:
                raise DataError(
                    f"{name}: was trained on other images (split {before.get('split')!r}, {before.get('n_images')} images) "
                    f"than this run selects (split {self.provenance['split']!r}, {self.provenance['n_images']}); "
                    "use another --out or the same --splits/--split"
                )
        if int(state["stage"]) == 2 and self.model.stage == 1:
            self.model.to_stage2()
            self.model.to(self.device)
            self._new_optimizers()
        try:
            self.model.G.load_state_dict(state["G"])
            if self.model.E is not None:
                self.model.E.load_state_dict(state["E"])
            self._reset_ema()
            if self.ema is not None:  # a checkpoint without an average (EMA newly on) starts it from the weights
                self.ema.G.load_state_dict(state.get("G_ema") or state["G"])
                if self.ema.E is not None:
                    self.ema.E.load_state_dict(state.get("E_ema") or state["E"])
            self.D.load_state_dict(state["D"])
            self.opt_G.load_state_dict(state["opt_G"])
            self.opt_D.load_state_dict(state["opt_D"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{name}: weights do not fit the model ({str(e).splitlines()[0][:160]})") from None
        self.epoch = int(state["epoch"])
        self.history = json.loads(state.get("history", "[]"))
        self.resumes = json.loads(state.get("resumes", "[]"))
        self.stats = json.loads(state["stats"]) if state.get("stats") else None
        self._trainable = None


def paired_augment(label: torch.Tensor, pair: torch.Tensor, policy: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """DiffAugment a batch whose two halves are (fake, real) of the same labels, with one draw of
    the transform parameters per pair: the RNG state is replayed for the second half."""
    n = len(pair) // 2
    dev = pair.device
    state = torch.cuda.get_rng_state(dev) if dev.type == "cuda" else torch.get_rng_state()
    la, a = diff_augment(label[:n], pair[:n], policy)
    if dev.type == "cuda":
        torch.cuda.set_rng_state(state, dev)
    else:
        torch.set_rng_state(state)
    lb, b = diff_augment(label[n:], pair[n:], policy)
    return torch.cat([la, lb]), torch.cat([a, b])


def r1_penalty(D: torch.nn.Module, label: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mescheder et al. 2018 for the multiscale D: mean over samples of ||grad_x sum_scales D(label, x)||^2
    at the real images (each scale's patch outputs summed)."""
    x = real.detach().requires_grad_(True)
    out = D(torch.cat([label, x.to(label.dtype)], dim=1))
    (grad,) = torch.autograd.grad(sum(s[-1].sum() for s in out), x, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()
