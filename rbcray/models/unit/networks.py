"""UNIT (Liu et al. 2017) as Gupta et al. use it: coupled VAE-GANs with a shared latent space.

Two domains — A (normal red cells) and B (one rare morphology class c) — each get an encoder,
a decoder (generator) and a discriminator. The **last encoder block and the first decoder block
are shared** between the domains, which ties both to one latent space: a normal cell encoded by
E_A and decoded by G_B becomes a cell of class c. The latent is Gaussian with unit variance;
its KL term to N(0, I) reduces to mean(mu^2) (the variance term is constant). One model per
target class (not one conditioned on the class): each rare class has its own, small, model, so a
class can be added or retrained without touching the others.

Losses (Liu et al. Eq. 2-5, Gupta et al.'s best weights): GAN lambda0 = 10, KL lambda1 = lambda3
= 0.1, reconstruction and cycle (L1) lambda2 = lambda4 = 100; least-squares GAN objectives; Adam
lr 1e-4, betas (0.5, 0.999). Training alternates two explicit phases per batch:
:meth:`UNIT.dis_step` (discriminators only) then :meth:`UNIT.gen_step` (encoders + decoders).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rbcray.config import check, from_dict
from rbcray.models.registry import register_model

#: called with an optimiser after backward, before its step (gradient averaging across workers)
GradSync = Callable[[torch.optim.Optimizer], None]


@dataclass(frozen=True)
class UNITConfig:
    """Architecture, loss weights and optimiser of :class:`UNIT`."""

    channels: int = 3
    #: width of the first encoder conv; doubles at each downsampling
    dim: int = 16
    n_down: int = 2
    #: residual blocks per encoder / decoder, the last (first) of which is shared
    n_res: int = 2
    dis_dim: int = 16
    dis_layers: int = 3
    gan_w: float = 10.0  # lambda0
    kl_w: float = 0.1  # lambda1
    recon_w: float = 100.0  # lambda2
    cycle_kl_w: float = 0.1  # lambda3
    cycle_w: float = 100.0  # lambda4
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999

    def __post_init__(self) -> None:
        check(self.channels in (1, 3), f"unit channels = {self.channels}: must be 1 or 3")
        check(4 <= self.dim <= 256, f"unit dim = {self.dim}: must be within 4..256")
        check(1 <= self.n_down <= 4, f"unit n_down = {self.n_down}: must be within 1..4")
        check(1 <= self.n_res <= 8, f"unit n_res = {self.n_res}: must be within 1..8 (the last one is shared)")
        check(1 <= self.dis_layers <= 5, f"unit dis_layers = {self.dis_layers}: must be within 1..5")
        for k in ("gan_w", "kl_w", "recon_w", "cycle_kl_w", "cycle_w"):
            check(getattr(self, k) >= 0, f"unit {k} = {getattr(self, k)}: must be >= 0")
        check(self.lr > 0, f"unit lr = {self.lr}: must be > 0")
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, f"unit betas ({self.beta1}, {self.beta2}): must be within [0, 1)")


class ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, padding_mode="reflect"), nn.InstanceNorm2d(c), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1, padding_mode="reflect"), nn.InstanceNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """Domain-specific front: conv7, n_down stride-2 convs, n_res - 1 residual blocks."""

    def __init__(self, cfg: UNITConfig) -> None:
        super().__init__()
        c = cfg.dim
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, c, 7, padding=3, padding_mode="reflect"), nn.InstanceNorm2d(c), nn.ReLU(inplace=True)]
        for _ in range(cfg.n_down):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, padding_mode="reflect"), nn.InstanceNorm2d(2 * c), nn.ReLU(inplace=True)]
            c *= 2
        layers += [ResBlock(c) for _ in range(cfg.n_res - 1)]
        self.net = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """Domain-specific back: n_res - 1 residual blocks, n_down upsamplings, conv7 + tanh."""

    def __init__(self, cfg: UNITConfig, c: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [ResBlock(c) for _ in range(cfg.n_res - 1)]
        for _ in range(cfg.n_down):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c // 2, 5, padding=2, padding_mode="reflect"),
                       nn.InstanceNorm2d(c // 2), nn.ReLU(inplace=True)]
            c //= 2
        layers += [nn.Conv2d(c, cfg.channels, 7, padding=3, padding_mode="reflect"), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    """PatchGAN: stride-2 convs with leaky ReLU, one real/fake score per patch (LSGAN)."""

    def __init__(self, cfg: UNITConfig) -> None:
        super().__init__()
        c, layers = cfg.dis_dim, []
        c_in = cfg.channels
        for _ in range(cfg.dis_layers):
            layers += [nn.Conv2d(c_in, c, 4, 2, 1, padding_mode="reflect"), nn.LeakyReLU(0.2, inplace=True)]
            c_in, c = c, c * 2
        layers.append(nn.Conv2d(c_in, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class UNIT(nn.Module):
    """Both domains' encoders, decoders, discriminators, the shared blocks and the two optimisers."""

    def __init__(self, cfg: UNITConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.enc_a, self.enc_b = Encoder(cfg), Encoder(cfg)
        c = self.enc_a.out_channels
        self.enc_shared = ResBlock(c)  # last encoder block, shared by A and B
        self.dec_shared = ResBlock(c)  # first decoder block, shared by A and B
        self.dec_a, self.dec_b = Decoder(cfg, c), Decoder(cfg, c)
        self.dis_a, self.dis_b = Discriminator(cfg), Discriminator(cfg)
        gen = [*self.enc_a.parameters(), *self.enc_b.parameters(), *self.enc_shared.parameters(),
               *self.dec_shared.parameters(), *self.dec_a.parameters(), *self.dec_b.parameters()]
        dis = [*self.dis_a.parameters(), *self.dis_b.parameters()]
        betas = (cfg.beta1, cfg.beta2)
        self.opt_gen = torch.optim.Adam(gen, lr=cfg.lr, betas=betas)
        self.opt_dis = torch.optim.Adam(dis, lr=cfg.lr, betas=betas)

    # ---- building blocks
    def encode(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        """Latent mean mu of images of ``domain`` ('a' or 'b')."""
        return self.enc_shared((self.enc_a if domain == "a" else self.enc_b)(x))

    def decode(self, z: torch.Tensor, domain: str) -> torch.Tensor:
        return (self.dec_a if domain == "a" else self.dec_b)(self.dec_shared(z))

    @staticmethod
    def sample(mu: torch.Tensor) -> torch.Tensor:
        """z = mu + N(0, I): the unit-variance Gaussian latent."""
        return mu + torch.randn_like(mu)

    @torch.no_grad()
    def translate(self, x: torch.Tensor, to: str = "b") -> torch.Tensor:
        """Translate images into domain ``to`` (deterministic: the latent mean, no noise)."""
        src = "a" if to == "b" else "b"
        return self.decode(self.encode(x, src), to)

    # ---- losses
    @staticmethod
    def kl(mu: torch.Tensor) -> torch.Tensor:
        return torch.mean(mu**2)

    @staticmethod
    def lsgan(score: torch.Tensor, real: bool) -> torch.Tensor:
        return torch.mean((score - (1.0 if real else 0.0)) ** 2)

    def gen_losses(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """All generator-side terms of one batch (weighted total under ``total``)."""
        c = self.cfg
        mu_a, mu_b = self.encode(x_a, "a"), self.encode(x_b, "b")
        z_a, z_b = self.sample(mu_a), self.sample(mu_b)
        rec_a, rec_b = self.decode(z_a, "a"), self.decode(z_b, "b")
        ab, ba = self.decode(z_a, "b"), self.decode(z_b, "a")
        mu_ab, mu_ba = self.encode(ab, "b"), self.encode(ba, "a")
        cyc_a = self.decode(self.sample(mu_ab), "a")
        cyc_b = self.decode(self.sample(mu_ba), "b")
        out = {
            "gan": self.lsgan(self.dis_b(ab), True) + self.lsgan(self.dis_a(ba), True),
            "kl": self.kl(mu_a) + self.kl(mu_b),
            "recon": F.l1_loss(rec_a, x_a) + F.l1_loss(rec_b, x_b),
            "cycle_kl": self.kl(mu_ab) + self.kl(mu_ba),
            "cycle": F.l1_loss(cyc_a, x_a) + F.l1_loss(cyc_b, x_b),
        }
        out["total"] = (c.gan_w * out["gan"] + c.kl_w * out["kl"] + c.recon_w * out["recon"]
                        + c.cycle_kl_w * out["cycle_kl"] + c.cycle_w * out["cycle"])
        return out

    def dis_losses(self, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        """Weighted LSGAN loss of both discriminators on real images and (detached) translations."""
        with torch.no_grad():
            ab = self.decode(self.sample(self.encode(x_a, "a")), "b")
            ba = self.decode(self.sample(self.encode(x_b, "b")), "a")
        loss = (self.lsgan(self.dis_a(x_a), True) + self.lsgan(self.dis_a(ba), False)
                + self.lsgan(self.dis_b(x_b), True) + self.lsgan(self.dis_b(ab), False))
        return self.cfg.gan_w * loss

    # ---- the two explicit GAN phases
    # ``sync(optimizer)`` runs between backward and step: data-parallel training averages the
    # optimiser's gradients over the workers there (rbcray.distributed.train_unit).
    def dis_step(self, x_a: torch.Tensor, x_b: torch.Tensor, sync: GradSync | None = None) -> float:
        """Phase 1: update the discriminators only."""
        self.opt_dis.zero_grad(set_to_none=True)
        loss = self.dis_losses(x_a, x_b)
        loss.backward()
        if sync is not None:
            sync(self.opt_dis)
        self.opt_dis.step()
        return float(loss.detach())

    def gen_step(self, x_a: torch.Tensor, x_b: torch.Tensor, sync: GradSync | None = None) -> dict[str, float]:
        """Phase 2: update encoders and decoders (discriminator gradients are discarded)."""
        self.opt_gen.zero_grad(set_to_none=True)
        losses = self.gen_losses(x_a, x_b)
        losses["total"].backward()
        if sync is not None:
            sync(self.opt_gen)
        self.opt_gen.step()
        self.opt_dis.zero_grad(set_to_none=True)
        return {k: float(v.detach()) for k, v in losses.items()}


@register_model("unit")
def build_unit(**kwargs: object) -> UNIT:
    """:class:`UNIT` from keyword arguments of :class:`UNITConfig` (validated)."""
    return UNIT(from_dict(UNITConfig, dict(kwargs), where="unit"))
