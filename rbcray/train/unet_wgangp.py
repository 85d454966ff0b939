"""Training the unet-wgangp family: the Trainer (run by the plain loop and Ray Train alike) and export.

One iteration takes one batch of crops and runs explicit phases (stylegan3's naming):

- **Dmain** (every batch): the critic scores real pairs and pairs with a detached generated image;
  loss = mean D(fake) - mean D(real) + lambda_gp * gradient penalty (image interpolated per sample,
  label fixed) [+ r1_gamma / 2 * R1 on the real pairs]. Step D.
- **Gmain** (after every ``n_critic``-th Dmain): G generates from labels + noise; the critic, with
  frozen parameters, scores the pair; loss = -mean D(fake) [+ lambda_l1 * |fake - real|]. Step G,
  then update the EMA copy of G.

With DiffAugment on, every pair the critic sees (real and fake, in both phases) is augmented.
Under ``torch.distributed`` (Ray Train's process group) gradients are all-reduced by hand after
each backward -- the gradient penalty's double backward does not go through DDP's hooks -- and
batch-renormalisation statistics are broadcast from rank 0 after every epoch so every rank holds
the same model. The checkpoint layout and final ``OUT/model/`` folder are the pix2pixHD ones
(:mod:`rbcray.models.pix2pixhd.checkpoint`) with this family's format and files.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from rbcray.config import from_dict, to_dict
from rbcray.data.dataset import Dataset, utc_now
from rbcray.errors import DataError
from rbcray.models.pix2pixhd.checkpoint import torch_bytes, write_model
from rbcray.models.pix2pixhd.inference import pick_device
from rbcray.models.pix2pixhd.inputs import generator_input
from rbcray.models.registry import create_model
from rbcray.models.unet_wgangp.config import MODEL_FORMAT, UNetWGANGPTrainConfig
from rbcray.models.unet_wgangp.losses import gradient_penalty, r1_penalty
from rbcray.train.diffaug import diff_augment, parse_policy
from rbcray.train.pix2pixhd_data import CropSpec, PairDataset, collate

LOSS_KEYS = ("D_loss", "D_wdist", "D_gp", "D_r1", "G_adv", "G_L1", "G_perc")
MODEL_FILES = ("generator.pt", "config.json", "stats.json")


def config_json(cfg: UNetWGANGPTrainConfig) -> str:
    return json.dumps(to_dict(cfg), sort_keys=True)


class Trainer:
    """unet-wgangp training state on one worker (rank ``rank`` of ``world_size``)."""

    def __init__(self, cfg: UNetWGANGPTrainConfig, ds: Dataset, device: str | torch.device | None = None,
                 provenance: dict[str, Any] | None = None) -> None:
        from rbcray.data.provenance import provenance_record

        self.cfg, self.ds = cfg, ds
        #: the images this model learns from (rbcray.data.provenance), saved in checkpoints and model.json
        self.provenance = provenance or provenance_record(ds.name, ds.stems, root=str(ds.root.resolve()))
        self.device = pick_device(device if device is not None else cfg.device)
        self.distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.G = create_model("unet_wgangp_generator", cfg=cfg.model).to(self.device)
        self.D = create_model("unet_wgangp_critic", cfg=cfg.model).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.policy = parse_policy(cfg.diffaug)
        self.perceptual = None
        if cfg.perceptual_encoder and cfg.lambda_perceptual > 0:
            from rbcray.train.perceptual import load_perceptual

            self.perceptual = load_perceptual(cfg.perceptual_encoder, self.provenance, self.device)
        self.epoch = 0  # completed epochs
        self.step = 0  # critic steps so far (a G step follows every n_critic-th)
        self.history: list[dict[str, Any]] = []
        self.resumes: list[int] = []
        self.stats: dict[str, Any] | None = None
        self._cache: dict | None = {} if cfg.cache_images else None

    # ------------------------------------------------------------------ data
    def crop_spec(self) -> CropSpec:
        return CropSpec(self.cfg.load_size, self.cfg.crop_size, None, self.cfg.flip)

    def loader(self, epoch: int) -> torch.utils.data.DataLoader:
        c = self.cfg
        data = PairDataset(self.ds, self.crop_spec(), c.model.num_classes, c.seed, c.samples_per_epoch or len(self.ds), self._cache)
        data.set_epoch(epoch)
        sampler = torch.utils.data.DistributedSampler(data, self.world_size, self.rank, shuffle=True, seed=c.seed)
        sampler.set_epoch(epoch)
        return torch.utils.data.DataLoader(data, batch_size=c.batch_size, sampler=sampler, num_workers=c.loader_workers,
                                           collate_fn=collate, pin_memory=self.device.type == "cuda")

    def _inputs(self, inst: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(label map for the critic, generator input = label + fresh noise)."""
        label = generator_input(inst, classes, None, self.cfg.model.num_classes)
        if not self.cfg.model.z_nc:
            return label, label
        z = torch.randn(label.shape[0], self.cfg.model.z_nc, *label.shape[2:], device=label.device)
        return label, torch.cat([label, z], dim=1)

    def _sync(self, module: torch.nn.Module) -> None:
        """Average the gradients of ``module`` over ranks (one flat all-reduce)."""
        if not self.distributed:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= self.world_size
        for g, s in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
            g.copy_(s)

    # ------------------------------------------------------------------ phases
    def phase_Dmain(self, label: torch.Tensor, g_in: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """Critic update: Wasserstein estimate, gradient penalty, optional R1."""
        c = self.cfg
        with torch.no_grad():
            fake = self.G(g_in)
        lr_, real_a = diff_augment(label, real, self.policy)
        lf_, fake_a = diff_augment(label, fake, self.policy)
        d_real, d_fake = self.D(lr_, real_a), self.D(lf_, fake_a)
        wdist = d_real.mean() - d_fake.mean()
        losses = {"D_wdist": wdist.detach(), "D_gp": gradient_penalty(self.D, label, real, fake)}
        total = -wdist + c.lambda_gp * losses["D_gp"]
        if c.r1_gamma > 0:
            losses["D_r1"] = r1_penalty(self.D, lr_, real_a)
            total = total + 0.5 * c.r1_gamma * losses["D_r1"]
        self.opt_D.zero_grad(set_to_none=True)
        total.backward()
        self._sync(self.D)
        self.opt_D.step()
        losses["D_loss"] = total.detach()
        return losses

    def phase_Gmain(self, label: torch.Tensor, g_in: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """Generator update against the frozen critic (+ optional L1), then the EMA."""
        c = self.cfg
        self.D.requires_grad_(False)
        fake = self.G(g_in)
        la, fa = diff_augment(label, fake, self.policy)
        losses = {"G_adv": -self.D(la, fa).mean()}
        l1 = (fake - real).abs().mean()
        total = losses["G_adv"] + (c.lambda_l1 * l1 if c.lambda_l1 > 0 else 0.0)
        if self.perceptual is not None:
            losses["G_perc"] = self.perceptual(fake, real) * c.lambda_perceptual
            total = total + losses["G_perc"]
        self.opt_G.zero_grad(set_to_none=True)
        total.backward()
        self._sync(self.G)
        self.opt_G.step()
        self.D.requires_grad_(True)
        self._update_ema()
        losses["G_L1"] = l1.detach()
        return losses

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.G_ema is None:
            return
        for pe, p in zip(self.G_ema.parameters(), self.G.parameters()):
            pe.lerp_(p, 1 - self.cfg.ema_decay)
        for be, b in zip(self.G_ema.buffers(), self.G.buffers()):  # renorm statistics: copied, not averaged
            be.copy_(b)

    # ------------------------------------------------------------------ epoch
    def train_epoch(self) -> dict[str, Any]:
        """Train epoch ``self.epoch`` (0-based); returns its metrics averaged over ranks and steps."""
        c = self.cfg
        self.G.train()
        self.D.train()
        sums = torch.zeros(2 * len(LOSS_KEYS) + 1, dtype=torch.float64)  # per key: sum, count; then images
        t0 = time.perf_counter()
        for inst, classes, real in self.loader(self.epoch):
            inst, classes, real = inst.to(self.device), classes.to(self.device), real.to(self.device)
            label, g_in = self._inputs(inst, classes)
            logs = self.phase_Dmain(label, g_in, real)
            self.step += 1
            if self.step % c.n_critic == 0:
                logs.update(self.phase_Gmain(label, g_in, real))
            for k, key in enumerate(LOSS_KEYS):
                if key in logs:
                    sums[2 * k] += float(logs[key].detach())
                    sums[2 * k + 1] += 1
            sums[-1] += len(inst)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        if self.distributed:
            t = sums.to(self.device)
            dist.all_reduce(t)
            sums = t.cpu()
            for b in self.G.buffers():
                dist.broadcast(b, 0)
            if self.G_ema is not None:
                for b in self.G_ema.buffers():
                    dist.broadcast(b, 0)
            sec = torch.tensor([seconds], device=self.device)
            dist.all_reduce(sec, op=dist.ReduceOp.MAX)
            seconds = float(sec.item())
        images = float(sums[-1])
        m: dict[str, Any] = {key: float(sums[2 * k]) / float(sums[2 * k + 1]) for k, key in enumerate(LOSS_KEYS) if sums[2 * k + 1] > 0}
        m.update(epoch=self.epoch + 1, stage=1, lr=c.lr, images=int(images), steps=self.step, seconds=seconds,
                 img_s=images / max(seconds, 1e-9), time=time.time())
        self.epoch += 1
        self.history.append(m)
        return m

    # ------------------------------------------------------------------ samples
    @property
    def inference_G(self) -> torch.nn.Module:
        """The generator used for samples and export: the EMA copy when there is one."""
        return self.G_ema if self.G_ema is not None else self.G

    @torch.no_grad()
    def sample_grid(self) -> bytes:
        """PNG of one row per preview crop: colour mask | real | generated (fixed noise, eval mode)."""
        from rbcray.train.pix2pixhd_export import grid_png

        spec = self.crop_spec()
        data = PairDataset(self.ds, CropSpec(spec.load_size, spec.crop_size, None, False), self.cfg.model.num_classes,
                           seed=self.cfg.seed + 1, cache=self._cache)
        inst, classes, real = collate([data[i] for i in range(min(self.cfg.grid_samples, len(self.ds)))])
        x = generator_input(inst, classes, None, self.cfg.model.num_classes)
        if self.cfg.model.z_nc:
            z = np.random.default_rng(self.cfg.seed + 1).standard_normal((len(inst), self.cfg.model.z_nc, *inst.shape[1:]), dtype=np.float32)
            x = torch.cat([x, torch.from_numpy(z)], dim=1)
        G = self.inference_G
        was = G.training
        G.eval()
        fake = G(x.to(self.device)).float().cpu()
        G.train(was)
        return grid_png(inst.numpy(), real, fake)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs; only tensors, numbers and strings (loads with weights_only)."""
        if self.stats is None:
            from rbcray.train.pix2pixhd_loop import dataset_summary

            self.stats = dataset_summary(self.ds, self.provenance)
        return {
            "format": MODEL_FORMAT + "-state",
            "epoch": self.epoch,
            "step": self.step,
            "G": self.G.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "D": self.D.state_dict(),
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
        if state.get("format") != MODEL_FORMAT + "-state":
            raise DataError(f"{name}: holds a {state.get('format')!r} run, not unet-wgangp; use another --out")
        saved = from_dict(UNetWGANGPTrainConfig, json.loads(state["config"]), where=f"{name} config")
        if saved.model != self.cfg.model:
            raise DataError(f"{name}: saved model architecture differs from this run's config ({saved.model} vs {self.cfg.model})")
        before = json.loads(state.get("provenance") or "{}")
        if before and sorted(before.get("stems", [])) != self.provenance["stems"]:
            raise DataError(
                f"{name}: was trained on other images (split {before.get('split')!r}, {before.get('n_images')} images) "
                f"than this run selects (split {self.provenance['split']!r}, {self.provenance['n_images']}); "
                "use another --out or the same --splits/--split"
            )
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            if self.G_ema is not None:
                self.G_ema.load_state_dict(state["G_ema"] if state.get("G_ema") is not None else state["G"])
            self.opt_G.load_state_dict(state["opt_G"])
            self.opt_D.load_state_dict(state["opt_D"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{name}: weights do not fit the model ({str(e).splitlines()[0][:160]})") from None
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = json.loads(state.get("history", "[]"))
        self.resumes = json.loads(state.get("resumes", "[]"))
        self.stats = json.loads(state["stats"]) if state.get("stats") else None


def format_metrics(epoch: int, total: int, m: dict[str, Any]) -> str:
    """One log line per epoch: the critic's Wasserstein estimate, penalties, G losses, images/s."""
    losses = " ".join(f"{k}={m[k]:.4f}" for k in LOSS_KEYS if k in m)
    return f"epoch {epoch}/{total} steps={m['steps']} {losses} img/s={m['img_s']:.2f} ({m['seconds']:.1f} s)"


def export_model(trainer: Trainer, out: str, log: Callable[[str], None] = print, force: bool = False) -> str:
    """Write ``out/model/`` (the EMA generator when there is one; manifest last); returns its URI."""
    from rbcray import storage
    from rbcray.models.pix2pixhd.checkpoint import MODEL_DIR
    from rbcray.train.pix2pixhd_export import exported_epoch

    if not force and exported_epoch(out) == trainer.epoch:
        log(f"model of epoch {trainer.epoch} already at {storage.join(out, MODEL_DIR)}")
        return storage.join(out, MODEL_DIR)
    if trainer.stats is None:
        from rbcray.train.pix2pixhd_loop import dataset_summary

        trainer.stats = dataset_summary(trainer.ds, trainer.provenance)
    ema = trainer.G_ema is not None
    files = {
        "generator.pt": torch_bytes({"G": trainer.inference_G.state_dict(), "epoch": trainer.epoch, "ema": ema}),
        "config.json": (json.dumps(json.loads(config_json(trainer.cfg)), indent=2) + "\n").encode(),
        "stats.json": (json.dumps(trainer.stats, indent=2) + "\n").encode(),
    }
    meta = {"created": utc_now(), "family": "unet-wgangp", "epoch": trainer.epoch, "steps": trainer.step,
            "weights": "ema" if ema else "raw", "resumed_at_epochs": trainer.resumes, "provenance": trainer.provenance, "history": trainer.history}
    uri = write_model(out, files, meta, fmt=MODEL_FORMAT, names=MODEL_FILES)
    log(f"model written to {uri}")
    return uri
