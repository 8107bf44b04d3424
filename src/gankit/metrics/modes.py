"""Counting modes: how evenly a histogram of samples over known modes spreads, and the 1,000 modes of stacked
datasets, read by the domain classifier one channel at a time (Metz et al. 2017; VEEGAN; PacGAN's table 2)."""

from __future__ import annotations

import math

import torch

from gankit.data.stacked import mode_of_channels

STACKED_SAMPLES = 26_000  # samples the stacked benchmark counts modes over (VEEGAN's and PacGAN's protocol)
STACKED_MODES = 1000


def histogram_kl(counts: torch.Tensor) -> float:
    """KL(p̂ ‖ uniform) in nats of the histogram `counts` over its bins: 0 when every bin is hit equally often, log K
    when one bin takes everything; infinite for an empty histogram."""
    total = float(counts.sum())
    if total == 0:
        return math.inf
    share = counts.double() / total
    share = share[share > 0]
    return float((share * (share * counts.numel()).log()).sum())


def stacked_modes(classify, meta: dict, images_uint8: torch.Tensor) -> tuple[dict, dict]:
    """(metrics, protocol) of stacked images (N, 3, H, W): each channel's class by `classify` (grey uint8 images →
    classes; the grey dataset's domain classifier, whose metadata `meta` holds its test accuracy), the three classes
    read as one of 1,000 modes; a mode is covered when at least one image falls in it (the benchmark's rule), and the
    KL is that of the mode histogram to the uniform one."""
    channels = [classify(images_uint8[:, c : c + 1]) for c in range(3)]
    modes = mode_of_channels(torch.stack(channels, dim=1))
    counts = torch.bincount(modes, minlength=STACKED_MODES)
    metrics = {
        "modes_covered": int((counts > 0).sum()),
        "modes_total": STACKED_MODES,
        "modes_kl": histogram_kl(counts),
    }
    accuracy = meta.get("test_accuracy")
    proto = {
        "n": images_uint8.shape[0],
        "classifier": meta.get("path"),
        "classifier_test_accuracy": accuracy,
        # A perfect generator's image is read as its own mode only if all three channels are classified right
        "modes_read_right": None if accuracy is None else accuracy**3,
        "covered": "at least 1 of the samples in the mode",
    }
    return metrics, proto
