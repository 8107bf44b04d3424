"""DCGAN exactly as Radford et al. 2015, and its conditional variant: strided (transposed) convolutions, no pooling,
no fully connected hidden layers, batch norm except on G's output and D's input, ReLU/tanh in G, LeakyReLU(0.2) in D,
weights from N(0, 0.02)."""

from __future__ import annotations

import torch
from torch import nn

from gankit.models.layers import (
    ClassBatchNorm2d,
    Projection,
    d_layer,
    grad_in_format,
    head_terms,
    label_projection,
    label_sum,
    network_format,
    pack,
    stages,
    std_weight,
)
from gankit.models.spec import NetSpec
from gankit.models.strided_conv import StridedConv2d, StridedConvTranspose2d


def dcgan_plan(resolution: int) -> tuple[int, int]:
    """(base side, number of stride-2 layers): 28 = 7·2², and 4·2^k for k = 2..5 (16…128)."""
    if resolution == 28:
        return 7, 2
    for k in range(2, 6):
        if resolution == 4 * 2**k:
            return 4, k
    raise ValueError(f"DCGAN resolution must be 28 or one of 16, 32, 64, 128, got {resolution}")


def init_dcgan_weights(module: nn.Module) -> None:
    """Radford et al.: all weights from N(0, 0.02); batch-norm scales from N(1, 0.02), shifts 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    for m in module.modules():  # after the loop above, which would draw the class embeddings from N(0, 0.02)
        if isinstance(m, ClassBatchNorm2d):
            nn.init.normal_(m.scale.weight, 1.0, 0.02)
            nn.init.zeros_(m.shift.weight)


class DCGANGenerator(nn.Module):
    """z (+ label embedding) → transposed convolutions doubling the side → tanh image; no fully connected layers."""

    def __init__(self, spec: NetSpec):
        super().__init__()
        base, k = dcgan_plan(spec.resolution)
        self.label_embedding = nn.Embedding(spec.num_classes, spec.latent_dim) if spec.num_classes else None
        in_dim = spec.latent_dim * (2 if spec.num_classes else 1)
        width = spec.width_g * 2 ** (k - 1)
        layers: list[nn.Module] = [Projection(in_dim, width, base, 1, 0, bias=not spec.batchnorm_g)]
        for _ in range(k - 1):  # each block: (N, width, s, s) → (N, width/2, 2s, 2s)
            layers += _g_norm_act(width, spec)
            layers.append(StridedConvTranspose2d(width, width // 2, bias=not spec.batchnorm_g))
            width //= 2
        layers += _g_norm_act(width, spec)
        layers += [StridedConvTranspose2d(width, spec.channels), nn.Tanh()]  # no batch norm on G's output
        self.net = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.label_embedding is not None:
            z = torch.cat([z, self.label_embedding(y)], dim=1)
        first, *rest = self.net
        h = first(z[:, :, None, None])
        for layer in rest:
            h = layer(h, y) if isinstance(layer, ClassBatchNorm2d) else layer(h)
        return h  # (N, C, R, R)


def _g_norm_act(width: int, spec: NetSpec) -> list[nn.Module]:
    if not spec.batchnorm_g:
        norm = []
    elif spec.class_batchnorm_g:
        if not spec.num_classes:
            raise ValueError("per-class batch norm in G needs class labels (num_classes > 0)")
        norm = [ClassBatchNorm2d(width, spec.num_classes)]
    else:
        norm = [nn.BatchNorm2d(width)]
    return norm + [nn.ReLU(inplace=True)]


class DCGANDiscriminator(nn.Module):
    """Strided convolutions halving the side, LeakyReLU(0.2); the output layer is a base×base convolution to 1 logit."""

    def __init__(self, spec: NetSpec):
        super().__init__()
        base, k = dcgan_plan(spec.resolution)
        # Concatenation conditioning: one-hot label planes as extra input channels.
        self.concat_classes = spec.num_classes if spec.conditioning_d == "concat" else 0
        self.pack = spec.pack
        in_channels = spec.channels * spec.pack + self.concat_classes
        layers: list[nn.Module] = []
        width = spec.width_d
        for i in range(k):  # each block: (N, c, s, s) → (N, width, s/2, s/2)
            first = i == 0
            layers.append(
                d_layer(
                    StridedConv2d(in_channels if first else width // 2, width, bias=first or not spec.batchnorm_d), spec
                )
            )
            if spec.batchnorm_d and not first:  # no batch norm on D's input layer
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            if spec.dropout_d:
                layers.append(nn.Dropout(spec.dropout_d))
            width *= 2
        self.body = nn.Sequential(*layers)
        self.out = d_layer(nn.Conv2d(width // 2, 1, base, 1, 0), spec)  # ≡ a linear map of the flat features
        self.label_projection = label_projection(spec, (width // 2) * base * base)
        self.std_weight = std_weight(spec)
        init_dcgan_weights(self)

    def stages(self) -> list[list[nn.Module]]:
        """D's layers by resolution, highest first: each strided convolution with the layers that follow it."""
        return stages(self.body, StridedConv2d)

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x, y = pack(x, y, self.pack)
        if self.concat_classes:  # a pack's planes count its labels of each class
            onehot = label_sum(nn.functional.one_hot(y, self.concat_classes)).to(x.dtype)
            x = torch.cat([x, onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)
        # (N, F) with F = ndf·2^(k-1)·base², in (C, H, W) order
        return grad_in_format(self.body(x), network_format(self)).flatten(1)

    def head(self, f: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        # self.out is a base×base convolution over the base×base features: one dot product per image.
        logits = nn.functional.linear(f, self.out.weight.reshape(1, -1), self.out.bias).flatten()  # (N,)
        return logits + head_terms(self, f, y)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, y), y)
