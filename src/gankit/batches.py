"""Batches and noise as pure functions of (seed, step): resuming needs no data-loader state, and ranks can shard.

Images: every epoch is a seeded permutation of the whole (pre-scaled) tensor; batch b of the run takes slice b of it,
and rank r of W takes the r-th of W equal parts of that slice. Toy data: fresh samples from a generator seeded by the
batch index.
"""

from __future__ import annotations

import torch


def seeded(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator determined by (seed, *keys); tuple-of-int hashes do not depend on PYTHONHASHSEED."""
    return torch.Generator().manual_seed(hash((seed, *keys)) & (2**63 - 1))


_DATA, _NOISE, _FIXED = 1, 2, 3  # independent random streams


class ImageBatches:
    """Batches drawn by index from one (N, C, H, W) tensor; labels alongside when present."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
        if batch_size > x.shape[0]:
            raise ValueError(f"batch size {batch_size} is larger than the dataset ({x.shape[0]} images)")
        self.x, self.y = x, y
        self.batch_size, self.seed = batch_size, seed
        self.per_rank = batch_size // world_size
        self.rank = rank
        self.batches_per_epoch = x.shape[0] // batch_size  # the last partial batch of an epoch is dropped
        self._epoch, self._perm = -1, None

    def indices(self, batch: int) -> torch.Tensor:
        epoch, j = divmod(batch, self.batches_per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = torch.randperm(self.x.shape[0], generator=seeded(self.seed, _DATA, epoch))
        start = j * self.batch_size + self.rank * self.per_rank
        return self._perm[start:start + self.per_rank]

    def __call__(self, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = self.indices(batch)
        return self.x[idx], (self.y[idx] if self.y is not None else None)


class ToyBatches:
    """Fresh samples of a 2-D toy distribution for every batch."""

    def __init__(self, distribution, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
        self.distribution, self.seed, self.rank = distribution, seed, rank
        self.per_rank = batch_size // world_size

    def __call__(self, batch: int) -> tuple[torch.Tensor, None]:
        return self.distribution.sample(self.per_rank, generator=seeded(self.seed, _DATA, batch, self.rank)), None


def noise_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The generator for every z (and gradient-penalty mix) of one training step."""
    return seeded(seed, _NOISE, step, rank)


def fixed_noise(seed: int, n: int, latent_dim: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The z (and cycling labels) every sample grid of a run is drawn from, so grids show progress, not luck."""
    z = torch.randn(n, latent_dim, generator=seeded(seed, _FIXED))
    y = torch.arange(n) % num_classes if num_classes else None
    return z, y
