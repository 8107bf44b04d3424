"""Every named random stream of gankit, in one place.

A stream is a CPU generator determined by (seed, stream, *keys). The numbers are part of reproducibility: a run's
weights depend on DATA, NOISE, FIXED and AUGMENT, so never renumber a stream; a new one takes a new number.
"""

from __future__ import annotations

import enum

import torch


class Stream(enum.IntEnum):
    SAMPLES = 0  # `gankit sample` / generate(): z of generated images
    DATA = 1  # training: the permutation of each epoch (images), the points of each batch (toy data)
    NOISE = 2  # training: every z and gradient-penalty mix of a step
    FIXED = 3  # training: the fixed z of every sample grid
    AUGMENT = 4  # training: DiffAugment's draws of a step
    DIAGNOSTIC_REAL = 5  # the real images (or toy points) the diagnostics compare samples with
    BAYES_FIT = 6  # the G(z) the Bayes lab fits p_g to
    REFERENCE_SUBSET = 7  # which reference images an evaluation uses
    TOY_EVAL = 9  # the data points a toy evaluation compares with
    CLASSIFIER = 11  # training the domain classifier
    ARITHMETIC_JITTER = 12  # latent arithmetic's small perturbations
    PROBE = 13  # the linear probe's label subsets
    WALK = 14  # latent walks' end points
    BAYES_REAL = 15  # the data points of the Bayes lab's plots
    CONCEPTS = 16  # the pool of z latent arithmetic picks a concept's samples from
    MIRROR = 17  # training: which real images of a D update are flipped left-right (--mirror)
    HOLDOUT = 18  # which images of a folder or .npz are held out (seed 0 always: one split per data, any run seed)
    STACKED = 19  # which three images make each stacked one (seed 0 always: one stacked dataset for everyone)


def seeded(seed: int, stream: Stream, *keys: int) -> torch.Generator:
    """A CPU generator determined by (seed, stream, *keys); tuple-of-int hashes do not depend on PYTHONHASHSEED."""
    return torch.Generator().manual_seed(hash((seed, int(stream), *keys)) & (2**63 - 1))
