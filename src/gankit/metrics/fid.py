"""Fréchet Inception Distance on any feature set: ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½), in float64."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GaussianStats:
    """Mean and covariance of a feature set (float64), and how many samples made them."""

    mu: torch.Tensor  # (F,)
    sigma: torch.Tensor  # (F, F)
    n: int


def feature_stats(features: torch.Tensor) -> GaussianStats:
    """Unbiased (n − 1) covariance, as pytorch-fid, clean-fid and torch-fidelity compute it."""
    f = features.double()
    if f.shape[0] < 2:
        raise ValueError("FID needs at least 2 samples")
    mu = f.mean(0)
    centred = f - mu
    return GaussianStats(mu, centred.T @ centred / (f.shape[0] - 1), f.shape[0])


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(m)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Tr((Σ₁Σ₂)^½) = Σ √λ(Σ₁^½ Σ₂ Σ₁^½): a symmetric PSD eigenproblem, stable where scipy's sqrtm goes complex."""
    root_a = _sqrt_psd(a.sigma)
    cross = torch.linalg.eigvalsh(root_a @ b.sigma @ root_a).clamp(min=0).sqrt().sum()
    diff = a.mu - b.mu
    return float(diff @ diff + a.sigma.trace() + b.sigma.trace() - 2 * cross)
