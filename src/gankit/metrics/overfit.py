"""Is D memorising its training images? Karras et al. (2020)'s overfitting heuristic, on held-out real images.

r_v = (E D(train) − E D(held out)) / (E D(train) − E D(generated)), with D's logits: 0 when D scores unseen real
images like the ones it trained on, 1 when it scores them like G's samples. A D that memorises gives G gradients
towards the training images' particulars instead of the data's distribution.
"""

from __future__ import annotations

import math

import torch

from gankit.models import each_alone


@torch.no_grad()
def mean_logit(D: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None, batch_size: int = 250) -> float:
    """D's mean logit over x (model range), in batches; D as it is (eval mode: running batch-norm statistics), each
    image judged on its own where D judges packs."""
    total = 0.0
    for start in range(0, x.shape[0], batch_size):
        labels = y[start : start + batch_size] if y is not None else None
        total += float(D(*each_alone(D, x[start : start + batch_size], labels)).double().sum())
    return total / x.shape[0]


def overfit_metrics(D: torch.nn.Module, train: tuple, held_out: tuple, fake: tuple) -> dict[str, float]:
    """Each argument is (images in model range, labels or None)."""
    train_logit, held_logit, fake_logit = (mean_logit(D, x, y) for x, y in (train, held_out, fake))
    separation = train_logit - fake_logit
    return {
        "d_logit_train": train_logit,
        "d_logit_held_out": held_logit,
        "d_logit_fake": fake_logit,
        # undefined (written as null) where D does not even tell training images from G's
        "d_overfit": (train_logit - held_logit) / separation if separation > 0 else math.inf,
    }
