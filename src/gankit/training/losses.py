"""The GAN game's objectives as pure functions on D's logits (higher logit = more real; σ(logit) = D(x)).

Every loss is a pair: `d(real_logits=, fake_logits=, real_target=)` is minimised by D, `g(fake_logits=, ...)` by G.
The log-sigmoid forms are the numerically stable ones: log D = -softplus(-l), log(1 - D) = -softplus(l).
This module imports only torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

# --- D objectives ---------------------------------------------------------------------------------------------------


def d_logistic(*, real_logits, fake_logits, real_target: float = 1.0):
    """Maximise log D(x) + log(1 - D(G(z))); real_target < 1 is one-sided label smoothing (Salimans et al. 2016)."""
    real = real_target * F.softplus(-real_logits) + (1 - real_target) * F.softplus(real_logits)
    return real.mean() + F.softplus(fake_logits).mean()


def d_wasserstein(*, real_logits, fake_logits, real_target: float = 1.0):
    """Critic maximises E[D(x)] - E[D(G(z))], the Kantorovich–Rubinstein dual of W1 (needs a Lipschitz D)."""
    return fake_logits.mean() - real_logits.mean()


def d_hinge(*, real_logits, fake_logits, real_target: float = 1.0):
    """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))] (Lim & Ye 2017; Miyato et al. 2018)."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def d_least_squares(*, real_logits, fake_logits, real_target: float = 1.0):
    """LSGAN (Mao et al. 2017), a-b-c = 0-1-1: ½E[(D(x) - 1)²] + ½E[D(G(z))²]."""
    return 0.5 * ((real_logits - real_target) ** 2).mean() + 0.5 * (fake_logits**2).mean()


# --- G objectives ---------------------------------------------------------------------------------------------------


def g_minimax(*, fake_logits, **_):
    """The original saturating game: minimise E[log(1 - D(G(z)))]; its gradient vanishes as D(G(z)) → 0."""
    return -F.softplus(fake_logits).mean()


def g_non_saturating(*, fake_logits, **_):
    """Maximise E[log D(G(z))], i.e. minimise E[softplus(-l)]; strong gradients exactly where minimax has none."""
    return F.softplus(-fake_logits).mean()


def g_wasserstein(*, fake_logits, **_):
    """Maximise E[D(G(z))]; also used by hinge-loss GANs."""
    return -fake_logits.mean()


def g_least_squares(*, fake_logits, **_):
    """½E[(D(G(z)) - 1)²]."""
    return 0.5 * ((fake_logits - 1) ** 2).mean()


def g_feature_matching(*, real_features, fake_features, **_):
    """Statistics matching (Salimans et al. 2016): ‖E f(x) - E f(G(z))‖² on D's intermediate features."""
    return (real_features.float().mean(0) - fake_features.float().mean(0)).pow(2).sum()


# --- Penalties ------------------------------------------------------------------------------------------------------


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(‖∇D(x̂)‖₂ - 1)²] at x̂ = α·real + (1 − α)·fake, α ~ U(0, 1) per pair
    (drawn here unless given as an (N,) tensor).

    The norm is taken per output of the critic over everything that made it: one sample of any channel count or
    point dimension, or the M samples of a pack when D judges packs (PacGAN), whose rows then share their α.
    """
    if alpha is None:
        alpha = torch.rand(real.shape[0])
    alpha = alpha.to(real.device, real.dtype).view((real.shape[0],) + (1,) * (real.dim() - 1))
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out = critic(mixed)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return (grad.reshape(out.shape[0], -1).norm(dim=1) - 1).pow(2).mean()


def r1_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E[‖∇ₓD(x)‖²] on real images only, the squared norm per output of D over all that
    made it (a sample, or a pack of them). D's loss adds γ/2 times it: it keeps D flat on the data, where the game's
    equilibrium has D's gradient zero, without pulling it towards a norm of 1 as WGAN-GP does."""
    real = real.detach().requires_grad_(True)
    out = critic(real)
    (grad,) = torch.autograd.grad(out.sum(), real, create_graph=True)
    return grad.reshape(out.shape[0], -1).square().sum(dim=1).mean()


def lecam_penalty(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, anchor_real: torch.Tensor, anchor_fake: torch.Tensor
) -> torch.Tensor:
    """LeCam regularisation (Tseng et al. 2021, eq. 3 as their code computes it): E[relu(D(x) − α_F)²] +
    E[relu(α_R − D(G(z)))²], with α_R, α_F moving averages of D's mean logits on real and generated images. It keeps
    D's outputs on real and fake images near each other's history, so D cannot push them apart without bound on a
    small training set; it bounds the LeCam divergence the game then minimises."""
    return F.relu(real_logits - anchor_fake).square().mean() + F.relu(anchor_real - fake_logits).square().mean()


# --- The registry ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GANLoss:
    """One game: D's and G's objectives plus the regularisers that define it (the loop reads these, never the name)."""

    d: Callable[..., torch.Tensor]
    g: Callable[..., torch.Tensor]
    gradient_penalty: float = 0.0  # default weight of the WGAN-GP term in D's loss
    weight_clip: float | None = None  # default |w| bound applied to D after each step (original WGAN)
    label_smoothing: bool = True  # whether real_target < 1 means anything for this D objective
    uses_features: bool = False  # G's objective needs D.features of a real batch


LOSSES: dict[str, GANLoss] = {
    "minimax": GANLoss(d_logistic, g_minimax),
    "ns": GANLoss(d_logistic, g_non_saturating),
    "wgan": GANLoss(d_wasserstein, g_wasserstein, weight_clip=0.01, label_smoothing=False),
    "wgan-gp": GANLoss(d_wasserstein, g_wasserstein, gradient_penalty=10.0, label_smoothing=False),
    "hinge": GANLoss(d_hinge, g_wasserstein, label_smoothing=False),
    "lsgan": GANLoss(d_least_squares, g_least_squares),
    "feature-matching": GANLoss(d_logistic, g_feature_matching, uses_features=True),
}
