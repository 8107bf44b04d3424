"""Residual G and D as in SNGAN (Miyato et al. 2018, appendix B; the layout BigGAN builds on): G's blocks upsample
with batch norm (per class for a conditional G, as in Miyato & Koyama 2018), D's blocks downsample, spectral norm
on every D layer, global sum pooling, and a projection head for labels.

    G: z → linear to base × base → k up-blocks → BN, ReLU, 3×3 conv → tanh
    D: an optimised first down-block → k − 1 down-blocks → one block that keeps the side → ReLU → Σ over H, W → linear

At 32×32 the widths stay constant (the paper's CIFAR networks: 3 up-blocks from 4×4; D 2 down-blocks and 2 that
keep 8×8); at 64 and 128 G halves its width at each up-block after the first and D doubles it at each down-block,
as the paper's ImageNet networks do; 28×28 grows from 7×7 in 2 up-blocks. Weights are Xavier-uniform, gain √2 in
the residual branches and 1 in the shortcuts and linear layers (the paper's Chainer code; Mimicry's SNGAN).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from gankit.models.layers import (
    ClassBatchNorm2d,
    grad_in_format,
    head_terms,
    label_projection,
    network_format,
    pack,
    stages,
    std_weight,
)
from gankit.models.spec import NetSpec


def resnet_plan(resolution: int) -> tuple[int, int, bool]:
    """(base side, number of up-sampling blocks, constant widths): 28 = 7·2², 32 = 4·2³, 64 = 4·2⁴, 128 = 4·2⁵."""
    plans = {28: (7, 2, True), 32: (4, 3, True), 64: (4, 4, False), 128: (4, 5, False)}
    if resolution not in plans:
        raise ValueError(f"resnet resolution must be one of 28, 32, 64, 128, got {resolution}")
    return plans[resolution]


def _xavier(module: nn.Module, gain: float) -> nn.Module:
    nn.init.xavier_uniform_(module.weight, gain)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def _sn(module: nn.Module) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(module)


class _Norm(nn.Module):
    """Batch norm, per class when G is conditional."""

    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.norm = ClassBatchNorm2d(width, num_classes) if num_classes else nn.BatchNorm2d(width)

    def forward(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.norm(h, y) if isinstance(self.norm, ClassBatchNorm2d) else self.norm(h)


class UpBlock(nn.Module):
    """BN, ReLU, ×2 nearest upsampling, 3×3 conv, BN, ReLU, 3×3 conv; shortcut: upsampling and a 1×1 conv."""

    def __init__(self, c_in: int, c_out: int, num_classes: int):
        super().__init__()
        self.norm1, self.norm2 = _Norm(c_in, num_classes), _Norm(c_out, num_classes)
        self.conv1 = _xavier(nn.Conv2d(c_in, c_out, 3, padding=1), math.sqrt(2))
        self.conv2 = _xavier(nn.Conv2d(c_out, c_out, 3, padding=1), math.sqrt(2))
        self.shortcut = _xavier(nn.Conv2d(c_in, c_out, 1), 1.0)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.norm1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.norm2(self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DownBlock(nn.Module):
    """ReLU, 3×3 conv, ReLU, 3×3 conv, 2×2 average pooling (when `down`); shortcut: a 1×1 conv (where the width or
    side changes) and pooling. The first block of D (`first`) starts with its convolution, not a ReLU of the image,
    and pools before its shortcut's convolution: the paper's "optimized block"."""

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = _sn(_xavier(nn.Conv2d(c_in, c_out, 3, padding=1), math.sqrt(2)))
        self.conv2 = _sn(_xavier(nn.Conv2d(c_out, c_out, 3, padding=1), math.sqrt(2)))
        learnable = c_in != c_out or down
        self.shortcut = _sn(_xavier(nn.Conv2d(c_in, c_out, 1), 1.0)) if learnable else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x if self.first else F.relu(x))
        h = self.conv2(F.relu(h))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.shortcut is None:
            return h + x
        if self.first:
            return h + self.shortcut(F.avg_pool2d(x, 2))
        s = self.shortcut(x)
        return h + (F.avg_pool2d(s, 2) if self.down else s)


class ResNetGenerator(nn.Module):
    def __init__(self, spec: NetSpec):
        super().__init__()
        self.base, k, constant = resnet_plan(spec.resolution)
        # ImageNet layout: the first block keeps the linear map's width, each later one halves it (16ch, 16ch, 8ch, …)
        top = spec.width_g * 2 ** (k - 1)
        widths = [spec.width_g] * (k + 1) if constant else [top] + [top >> i for i in range(k)]
        self.linear = _xavier(nn.Linear(spec.latent_dim, widths[0] * self.base**2), 1.0)
        num_classes = spec.num_classes
        self.blocks = nn.ModuleList(UpBlock(widths[i], widths[i + 1], num_classes) for i in range(k))
        self.norm = nn.BatchNorm2d(widths[-1])  # not per class: the paper's last BN is plain
        self.out = _xavier(nn.Conv2d(widths[-1], spec.channels, 3, padding=1), 1.0)
        for m in self.modules():  # a class's batch norm starts as the plain one: scale 1, shift 0
            if isinstance(m, ClassBatchNorm2d):
                nn.init.ones_(m.scale.weight)
                nn.init.zeros_(m.shift.weight)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        layout = network_format(self.out)  # channels_last on the fast path: the linear map's output laid out so too
        h = self.linear(z).view(z.shape[0], -1, self.base, self.base).contiguous(memory_format=layout)
        for block in self.blocks:
            h = block(h, y)
        # a convolution to 1–3 channels hands back its input's gradient contiguous: restore the layout there
        return torch.tanh(self.out(grad_in_format(F.relu(self.norm(h)), layout)))


class ResNetDiscriminator(nn.Module):
    def __init__(self, spec: NetSpec):
        super().__init__()
        if spec.num_classes and spec.conditioning_d != "projection":
            raise ValueError("the resnet D sees labels by projection (Miyato & Koyama 2018), not by concatenation")
        _, k, constant = resnet_plan(spec.resolution)
        downs = 2 if constant else k  # the CIFAR network pools twice, then keeps 8×8 for two blocks
        widths = [spec.width_d] * (k + 1) if constant else [spec.width_d * 2**i for i in range(downs)]
        self.pack = spec.pack
        layers = [DownBlock(spec.channels * spec.pack, widths[0], down=True, first=True)]
        layers += [DownBlock(widths[i - 1], widths[i], down=True) for i in range(1, downs)]
        layers += [DownBlock(widths[downs - 1], widths[downs - 1], down=False) for _ in range(2 if constant else 1)]
        if spec.dropout_d:
            layers = [m for block in layers for m in (block, nn.Dropout(spec.dropout_d))]
        self.blocks = nn.Sequential(*layers)
        feature_dim = widths[downs - 1]
        self.out = _sn(_xavier(nn.Linear(feature_dim, 1), 1.0))
        # Spectral norm on every layer of this D, the label embedding included, whatever --spectral-norm says.
        self.label_projection = label_projection(dataclasses.replace(spec, spectral_norm_d=True), feature_dim)
        self.std_weight = std_weight(spec)

    def stages(self) -> list[list[nn.Module]]:
        """D's layers by resolution, highest first: each residual block (with its dropout)."""
        return stages(self.blocks, DownBlock)

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x, _ = pack(x, y, self.pack)
        return F.relu(self.blocks(x)).sum(dim=(2, 3))  # (N, F): global sum pooling

    def head(self, f: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(f).flatten() + head_terms(self, f, y)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, y), y)
