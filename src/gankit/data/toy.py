"""2-D toy distributions with exact densities, for watching mode collapse and comparing D with the Bayes-optimal D*.

Every distribution is an equally weighted mixture of isotropic Gaussians, so `log_prob` is exact, not estimated.
"""

import inspect
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from gankit.errors import DataError


@dataclass
class ToyDistribution:
    """Equal-weight mixture of K isotropic 2-D Gaussians N(means[k], std² I)."""

    name: str
    means: torch.Tensor  # (K, 2) float32
    std: float

    def __post_init__(self):
        if self.means.ndim != 2 or self.means.shape[1] != 2 or self.means.shape[0] < 1:
            raise DataError(f"Toy distribution {self.name} needs means of shape (K, 2), got {tuple(self.means.shape)}.")
        if not self.std > 0:
            raise DataError(f"Toy distribution {self.name} needs std > 0, got {self.std}.")
        self.means = self.means.to(torch.float32).contiguous()

    @property
    def num_modes(self) -> int:
        """Number of mixture components K."""
        return self.means.shape[0]

    def sample_with_modes(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw n points (n, 2) float32 and the index (n,) int64 of the component each came from."""
        modes = torch.randint(self.num_modes, (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator)
        return self.means[modes] + self.std * noise, modes

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n points (n, 2) float32; the same generator state gives the same points as `sample_with_modes`."""
        return self.sample_with_modes(n, generator)[0]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log density at x (n, 2), shape (n,), in x's dtype and on x's device."""
        d2 = self._squared_distances(x)  # (n, K)
        # log p(x) = logsumexp_k[-|x - m_k|² / 2s² - log(2π s²)] - log K
        log_components = -d2 / (2 * self.std**2) - math.log(2 * math.pi * self.std**2)
        return torch.logsumexp(log_components, dim=1) - math.log(self.num_modes)

    def nearest_mode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Index (n,) int64 of the closest mean to each point of x (n, 2), and the Euclidean distance to it (n,)."""
        d2, index = self._squared_distances(x).min(dim=1)
        return index, d2.sqrt()

    def _squared_distances(self, x: torch.Tensor) -> torch.Tensor:
        # Explicit differences, not torch.cdist: its matmul shortcut loses precision near the modes when std is tiny.
        means = self.means.to(device=x.device, dtype=x.dtype)
        return (x[:, None, :] - means[None, :, :]).square().sum(dim=2)  # (n, K)


def ring8(scale: float = 1.0, std: float = 0.01) -> ToyDistribution:
    """8 Gaussians equally spaced on a circle of radius `scale` (the Unrolled-GAN / PacGAN benchmark)."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = scale * torch.stack([angles.cos(), angles.sin()], dim=1)
    return ToyDistribution("ring8", means, std)


def grid25(scale: float = 2.0, std: float = 0.05) -> ToyDistribution:
    """25 Gaussians on the grid ({-2, -1, 0, 1, 2} * scale)², i.e. {-4, -2, 0, 2, 4}² by default (PacGAN, VEEGAN)."""
    ticks = torch.arange(-2, 3, dtype=torch.float64) * scale
    means = torch.cartesian_prod(ticks, ticks)
    return ToyDistribution("grid25", means, std)


def spiral(scale: float = 2.0, std: float = 0.05, turns: float = 1.5, components: int = 100) -> ToyDistribution:
    """An Archimedean spiral r = scale * θ / θ_max, θ in [0, 2π turns], as a mixture of `components` Gaussians.

    The means sit at equal arc length along the curve (both ends included), so the mixture spreads its mass evenly
    along the spiral and its density stays exact. With the defaults neighbouring means are about 0.1 (2 std) apart,
    so the density is a nearly even ridge along the curve rather than a string of beads.
    """
    if components < 1 or not turns > 0 or not scale > 0:
        raise DataError(f"spiral needs scale > 0, turns > 0 and components >= 1, got {scale}, {turns}, {components}.")
    theta_max = 2 * math.pi * turns
    # Arc length by summing chords on a fine grid, then invert it by interpolation.
    theta = np.linspace(0.0, theta_max, 20_001)
    r = scale * theta / theta_max
    curve = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))])
    theta_k = np.interp(np.linspace(0.0, arc[-1], components), arc, theta)
    r_k = scale * theta_k / theta_max
    means = torch.from_numpy(np.stack([r_k * np.cos(theta_k), r_k * np.sin(theta_k)], axis=1))
    return ToyDistribution("spiral", means, std)


TOY: dict[str, Callable[..., ToyDistribution]] = {
    "ring8": ring8,
    "grid25": grid25,
    "spiral": spiral,
}


def is_toy(name: str) -> bool:
    """True when `name` names a toy distribution in `TOY`."""
    return name in TOY


def make_toy(name: str, **kwargs) -> ToyDistribution:
    """Build the toy distribution `name` with its keyword arguments (e.g. ``make_toy("ring8", std=0.1)``)."""
    if name not in TOY:
        raise DataError(f"Unknown toy distribution {name!r}; known ones are {', '.join(TOY)}.")
    build = TOY[name]
    signature = inspect.signature(build)
    try:
        signature.bind(**kwargs)
    except TypeError:
        raise DataError(
            f"Toy distribution {name} takes {', '.join(signature.parameters)}, got {', '.join(kwargs)}."
        ) from None
    return build(**kwargs)
