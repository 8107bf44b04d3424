"""Generators and discriminators: DCGAN (Radford et al. 2015), its conditional variant, residual networks (SNGAN,
Miyato et al. 2018), and MLPs for 2-D data.

Conventions: `G(z, y)` maps noise (N, latent_dim) and optional labels (N,) to samples; `D.features(x, y)` gives
(N, F) features, `D.head(f, y)` (N,) logits with higher = more real, and `D(x, y) = D.head(D.features(x, y), y)`.
This package imports only torch.
"""

from __future__ import annotations

import contextlib

from torch import nn

from gankit.models.dcgan import (
    DCGANDiscriminator,
    DCGANGenerator,
    dcgan_plan,
    init_dcgan_weights,
)
from gankit.models.layers import each_alone
from gankit.models.mlp import MLPDiscriminator, MLPGenerator
from gankit.models.resnet import ResNetDiscriminator, ResNetGenerator, resnet_plan
from gankit.models.spec import NetSpec

ARCHITECTURES = {
    "dcgan": (DCGANGenerator, DCGANDiscriminator),
    "mlp": (MLPGenerator, MLPDiscriminator),
    "resnet": (ResNetGenerator, ResNetDiscriminator),
}
PLANS = {"dcgan": dcgan_plan, "resnet": resnet_plan}  # resolution → layout; raises ValueError for a side it lacks


def build(model: str, spec: NetSpec) -> tuple[nn.Module, nn.Module]:
    """(G, D) for an architecture name in ARCHITECTURES."""
    make_g, make_d = ARCHITECTURES[model]
    return make_g(spec), make_d(spec)


@contextlib.contextmanager
def eval_mode(*modules: nn.Module):
    """Run the block with `modules` in eval mode (batch norm's running statistics untouched, dropout off), then give
    each back the mode it had: sampling in the middle of training must not change what resuming reproduces."""
    was_training = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, was_training):
            m.train(mode)


__all__ = ["ARCHITECTURES", "PLANS", "NetSpec", "build", "dcgan_plan", "each_alone", "eval_mode", "init_dcgan_weights"]
