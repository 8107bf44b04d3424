"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with the cubic kernel k(x, y) = (x·y/d + 1)³,
averaged over random subsets — unbiased at any n, which makes it the metric to trust for small sample sizes."""

from __future__ import annotations

import torch


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    d = x.shape[1]
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    m, n = x.shape[0], y.shape[0]
    return (
        (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
        + (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
        - 2 * k_xy.mean()
    )


def kid(
    real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD² over `subsets` random subsets of min(subset_size, n/2) samples each.

    At most half of the smaller set, so subsets differ and the std means something even for small n (at n = 2,000
    this is the usual 1,000).
    """
    m = min(subset_size, real.shape[0] // 2, fake.shape[0] // 2)
    if m < 2:
        raise ValueError("KID needs at least 4 samples in each set")
    gen = torch.Generator().manual_seed(seed)
    real, fake = real.double(), fake.double()
    values = torch.stack(
        [
            mmd2_unbiased(
                real[torch.randperm(real.shape[0], generator=gen)[:m]],
                fake[torch.randperm(fake.shape[0], generator=gen)[:m]],
            )
            for _ in range(subsets)
        ]
    )
    return float(values.mean()), float(values.std())
