"""GAN generators and discriminators (D2L chapter 20), and a small judge classifier.

    Generator2D / Discriminator2D   D2L 20.1: an affine map of 2-D noise; an MLP 2-5-3-1 with tanh
    DCGenerator / DCDiscriminator   D2L 20.2's DCGAN, sized for 28x28 single-channel images
    Judge                           a small CNN classifier, used only to score generated digits
    update_D / update_G             D2L's alternating step, shared by both GAN practicals

DCGAN shapes (ngf = ndf = width): the generator maps z (B, nz, 1, 1) through transposed
convolutions to 7x7 -> 14x14 -> 28x28 and tanh; the discriminator mirrors it with strided
convolutions and LeakyReLU(0.2), no pooling, batch norm everywhere except its first layer and
the generator's last (as the DCGAN paper and D2L).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor, nn


class Generator2D(nn.Module):
    """D2L's generator: one linear layer, so G(z) = W z + c is Gaussian when z is."""

    def __init__(self, latent_dim: int = 2):
        super().__init__()
        self.net = nn.Linear(latent_dim, 2)

    def forward(self, z: Tensor) -> Tensor:  # (B, latent) -> (B, 2)
        return self.net(z)


class Discriminator2D(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 1))

    def forward(self, x: Tensor) -> Tensor:  # (B, 2) -> (B,) logits
        return self.net(x)[:, 0]


class DCGenerator(nn.Module):
    def __init__(self, latent_dim: int = 100, width: int = 64, channels: int = 1):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, width * 2, 7, 1, 0, bias=False),  # (B, 2w, 7, 7)
            nn.BatchNorm2d(width * 2), nn.ReLU(),
            nn.ConvTranspose2d(width * 2, width, 4, 2, 1, bias=False),  # (B, w, 14, 14)
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1),  # (B, c, 28, 28)
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:  # (B, latent) -> (B, c, 28, 28) in [-1, 1]
        return self.net(z[:, :, None, None])


class DCDiscriminator(nn.Module):
    def __init__(self, width: int = 64, channels: int = 1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2),  # (B, w, 14, 14)
            nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),  # (B, 2w, 7, 7)
            nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2),
            nn.Conv2d(width * 2, 1, 7, 1, 0),  # (B, 1, 1, 1)
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, c, 28, 28) -> (B,) logits
        return self.net(x).flatten()


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: conv weights N(0, 0.02), batch-norm scales N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Judge(nn.Module):
    """A small CNN classifier for 28x28 images (conv 5x5 x2, pooling, two linear layers)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 14, 14)
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 7, 7)
            nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, 1, 28, 28) in [-1, 1] -> (B, classes) logits
        return self.net(x)


# -- one training step: the discriminator, then the generator (d2l.update_D / d2l.update_G) ----------
#
#     fake = net_G(Z)                                      # one generated batch serves both steps
#     loss_D = update_D(X, fake, net_D, loss, opt_D)       # real -> 1, fake (detached) -> 0
#     loss_G = update_G(fake, net_D, loss, opt_G)          # fake -> 1 through the updated D
#
# D2L recomputes net_G(Z) inside update_G; G has not changed since, so the batch generated once is
# the same one (and a BatchNorm generator's running statistics move once per batch, not twice).
# ``amp`` makes the forward passes' context, e.g. ``lambda: autocast(device, torch.bfloat16)``;
# ``grad_clip`` bounds each network's global gradient norm before its optimizer steps.


def update_D(X: Tensor, fake: Tensor, net_D: nn.Module, loss, opt_D: torch.optim.Optimizer,
             amp=nullcontext, grad_clip: float | None = None) -> Tensor:
    """One discriminator step: real ``X`` -> 1, generated ``fake`` -> 0 (detached: no gradient
    reaches the generator). Returns the detached loss."""
    ones = torch.ones(len(X), device=X.device)
    zeros = torch.zeros(len(fake), device=X.device)
    opt_D.zero_grad(set_to_none=True)
    with amp():
        loss_D = (loss(net_D(X), ones) + loss(net_D(fake.detach()), zeros)) / 2
    loss_D.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(net_D.parameters(), grad_clip)
    opt_D.step()
    return loss_D.detach()


def update_G(fake: Tensor, net_D: nn.Module, loss, opt_G: torch.optim.Optimizer, amp=nullcontext,
             grad_clip: float | None = None) -> Tensor:
    """One generator step: make the (just updated) discriminator call ``fake`` real, the
    non-saturating loss. Returns the detached loss."""
    ones = torch.ones(len(fake), device=fake.device)
    opt_G.zero_grad(set_to_none=True)
    with amp():
        loss_G = loss(net_D(fake), ones)
    loss_G.backward()
    if grad_clip:  # the generator's parameters: those its optimizer holds
        nn.utils.clip_grad_norm_([p for group in opt_G.param_groups for p in group["params"]], grad_clip)
    opt_G.step()
    return loss_G.detach()
