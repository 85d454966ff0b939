"""WGAN-GP's gradient penalty and the R1 penalty, for a critic of (label, image) pairs."""

from __future__ import annotations

from collections.abc import Callable

import torch

Critic = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def gradient_penalty(critic: Critic, label: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                     eps: torch.Tensor | None = None) -> torch.Tensor:
    """Gulrajani et al. 2017: mean over samples of (||grad_x D(label, x)||_2 - 1)^2 at
    x = e * real + (1 - e) * fake, e ~ U(0, 1) per sample. Only the image is interpolated; the label
    map is the pair's own (real and fake share it)."""
    if eps is None:
        eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(label, x).sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def r1_penalty(critic: Critic, label: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mescheder et al. 2018: mean over samples of ||grad_x D(label, x)||^2 at the real images."""
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(label, x).sum(), x, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()
