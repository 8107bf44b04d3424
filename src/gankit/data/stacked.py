"""Stacked datasets: three grey images as the R, G and B channels of one colour image, each drawn at random, so that
the 10 classes make 1,000 modes, equally likely — the Stacked MNIST benchmark of mode collapse (Metz et al. 2017;
Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN), here also built from Fashion-MNIST."""

from __future__ import annotations

import dataclasses

import torch

from gankit.data.readers import ImageData
from gankit.data.streams import Stream, seeded

STACKED = {"stacked-fashion-mnist": "fashion-mnist", "stacked-mnist": "mnist"}  # name → the grey dataset stacked
# Images per split: PacGAN's and VEEGAN's 60,000 for training; 26,000 for the test split, the number of samples the
# mode count is taken over, so that the real-data floor is counted like a generator.
SIZES = {"train": 60_000, "test": 26_000}
DIGITS = torch.tensor([100, 10, 1])  # mode = 100·class(R) + 10·class(G) + class(B)


def stack(grey: ImageData, name: str, split: str) -> tuple[ImageData, torch.Tensor]:
    """(the stacked split, unlabelled as its benchmark trains, and each image's mode in 0..999). The triples are a
    seeded draw with replacement from the grey split, the same for every run and machine."""
    n = SIZES[split]
    picks = torch.randint(grey.x.shape[0], (n, 3), generator=seeded(0, Stream.STACKED, SIZES[split]))
    x = grey.x[picks.flatten(), 0].view(n, 3, *grey.x.shape[2:])
    modes = (grey.y[picks] * DIGITS).sum(dim=1)
    stacked = dataclasses.replace(
        grey,
        x=x,
        y=None,
        num_classes=0,
        class_names=None,
        name=name,
        source=f"{grey.source} (3 images stacked as R, G, B)",
        split=split,
    )
    return stacked, modes


def mode_of_channels(classes: torch.Tensor) -> torch.Tensor:
    """(N, 3) class indices of the R, G, B channels → (N,) modes in 0..999."""
    return (classes * DIGITS).sum(dim=1)
