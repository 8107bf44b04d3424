"""MLP G and D for 2-D toy data."""

from __future__ import annotations

import torch
from torch import nn

from gankit.models.layers import d_layer, head_terms, label_projection, label_sum, pack, std_weight
from gankit.models.spec import NetSpec


class Maxout(nn.Module):
    """max over `pieces` linear maps (Goodfellow et al. 2013): the unit of the 2-D discriminators of ALI, VEEGAN and
    PacGAN."""

    def __init__(self, pieces: int):
        super().__init__()
        self.pieces = pieces

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.unflatten(1, (-1, self.pieces)).amax(dim=2)


class MLPGenerator(nn.Module):
    """z (+ label embedding) → `depth_g` ReLU layers → a point in R^channels (no squashing: toy data is unbounded)."""

    def __init__(self, spec: NetSpec):
        super().__init__()
        self.label_embedding = nn.Embedding(spec.num_classes, spec.latent_dim) if spec.num_classes else None
        in_dim = spec.latent_dim * (2 if spec.num_classes else 1)
        layers: list[nn.Module] = []
        for i in range(spec.depth if spec.depth_g is None else spec.depth_g):
            layers.append(nn.Linear(in_dim if i == 0 else spec.width_g, spec.width_g))
            if spec.batchnorm_g:
                layers.append(nn.BatchNorm1d(spec.width_g))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Linear(spec.width_g, spec.channels))
        self.net = nn.Sequential(*layers)
        init_normal(self, spec.init_std)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.label_embedding is not None:
            z = torch.cat([z, self.label_embedding(y)], dim=1)
        return self.net(z)  # (N, channels)


class MLPDiscriminator(nn.Module):
    """Point (or pack of points) → `depth` hidden layers, LeakyReLU(0.2) or maxout (features) → linear logit, with
    optional label projection."""

    def __init__(self, spec: NetSpec):
        super().__init__()
        self.pack = spec.pack
        self.label_embedding = None
        if spec.num_classes and spec.conditioning_d == "concat":
            self.label_embedding = nn.Embedding(spec.num_classes, spec.width_d)
        in_dim = spec.channels * spec.pack + (spec.width_d if self.label_embedding is not None else 0)
        layers: list[nn.Module] = []
        for i in range(spec.depth):
            units = spec.width_d * spec.maxout_d
            layers.append(d_layer(nn.Linear(in_dim if i == 0 else spec.width_d, units), spec))
            if spec.batchnorm_d and i > 0:
                layers.append(nn.BatchNorm1d(units))
            layers.append(Maxout(spec.maxout_d) if spec.maxout_d > 1 else nn.LeakyReLU(0.2, inplace=True))
            if spec.dropout_d:
                layers.append(nn.Dropout(spec.dropout_d))
        self.body = nn.Sequential(*layers)
        self.out = d_layer(nn.Linear(spec.width_d, 1), spec)
        self.label_projection = label_projection(spec, spec.width_d)
        self.std_weight = std_weight(spec)
        init_normal(self, spec.init_std)

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x, y = pack(x, y, self.pack)
        if self.label_embedding is not None:
            x = torch.cat([x, label_sum(self.label_embedding(y))], dim=1)
        return self.body(x)  # (N, width_d)

    def head(self, f: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(f).flatten() + head_terms(self, f, y)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, y), y)


@torch.no_grad()
def init_normal(net: nn.Module, std: float | None) -> None:
    """Every linear weight from N(0, std²) and its bias 0 (PacGAN's 2-D networks use 0.02); None keeps PyTorch's."""
    if std is None:
        return
    for m in net.modules():
        if isinstance(m, nn.Linear):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            weight.normal_(0.0, std)
            if m.bias is not None:
                m.bias.zero_()
