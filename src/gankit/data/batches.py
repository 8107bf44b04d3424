"""Batches and noise as pure functions of (seed, step): resuming needs no data-loader state, and ranks can shard.

Images: every epoch is a seeded permutation of the whole (pre-scaled) tensor; batch b of the run takes slice b of it,
and rank r of W takes the r-th of W equal parts of that slice. Toy data: fresh samples from a generator seeded by the
batch index. Noise likewise: the whole global batch's z is drawn on every rank and each keeps its part, so a run of
W processes sees exactly the data and noise of a one-process run with the same global batch.
"""

from __future__ import annotations

import torch

from gankit.data.streams import Stream, seeded


class ImageBatches:
    """Batches drawn by index from one (N, C, H, W) tensor; labels alongside when present."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor | None, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
        if batch_size > x.shape[0]:
            raise ValueError(f"batch size {batch_size} is larger than the dataset ({x.shape[0]} images)")
        self.x, self.y = x, y
        self.batch_size, self.seed = batch_size, seed
        self.part = rank_part(batch_size, rank, world_size)
        self.batches_per_epoch = x.shape[0] // batch_size  # the last partial batch of an epoch is dropped
        self._epoch, self._perm = -1, None

    def indices(self, batch: int) -> torch.Tensor:
        epoch, j = divmod(batch, self.batches_per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = torch.randperm(self.x.shape[0], generator=seeded(self.seed, Stream.DATA, epoch))
        return self._perm[j * self.batch_size : (j + 1) * self.batch_size][self.part]

    def __call__(self, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = self.indices(batch)
        return self.x[idx], (self.y[idx] if self.y is not None else None)


class ToyBatches:
    """Fresh samples of a 2-D toy distribution for every batch."""

    def __init__(self, distribution, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
        self.distribution, self.seed, self.batch_size = distribution, seed, batch_size
        self.part = rank_part(batch_size, rank, world_size)

    def __call__(self, batch: int) -> tuple[torch.Tensor, None]:
        points = self.distribution.sample(self.batch_size, generator=seeded(self.seed, Stream.DATA, batch, 0))
        return points[self.part], None


def rank_part(batch_size: int, rank: int, world_size: int) -> slice:
    """Rank r's rows of a global batch."""
    per_rank = batch_size // world_size
    return slice(rank * per_rank, (rank + 1) * per_rank)


def noise_generator(seed: int, step: int) -> torch.Generator:
    """The generator for every z (and gradient-penalty mix) of one training step, the same on every rank."""
    return seeded(seed, Stream.NOISE, step, 0)


def augment_stream(seed: int, step: int) -> torch.Generator:
    """The generator for every augmentation of D's inputs in one training step, the same on every rank."""
    return seeded(seed, Stream.AUGMENT, step)


def cycling_labels(classes: tuple[int, ...], n: int) -> torch.Tensor:
    """n labels going round `classes` in order: every class equally often, in a grid one column per class."""
    return torch.tensor(classes)[torch.arange(n) % len(classes)]


def fixed_noise(
    seed: int, n: int, latent_dim: int, classes: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The z (and labels cycling through `classes`) every sample grid of a run is drawn from, so grids show progress,
    not luck."""
    z = torch.randn(n, latent_dim, generator=seeded(seed, Stream.FIXED))
    y = cycling_labels(classes, n) if classes else None
    return z, y
