"""Layers the architectures share: conditional batch norm, G's projection, D's head terms (label projection,
minibatch spread), spectral norm in D, and the memory-format helpers of the channels_last fast path."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from gankit.models.spec import NetSpec


def d_layer(layer: nn.Module, spec: NetSpec) -> nn.Module:
    return _spectral_norm(layer) if spec.spectral_norm_d else layer


class ClassBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift are looked up by class: a label acts on every layer of G, not only its input
    (Dumoulin et al. 2017; de Vries et al. 2017; the generators of Miyato & Koyama 2018 and BigGAN).

    The normalisation is a child module, so that `--sync-batchnorm` (SyncBatchNorm.convert_sync_batchnorm) swaps it
    and keeps the per-class parameters."""

    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(width, affine=False)
        self.scale = nn.Embedding(num_classes, width)
        self.shift = nn.Embedding(num_classes, width)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.norm(h)
        return h * self.scale(y).to(h.dtype)[:, :, None, None] + self.shift(y).to(h.dtype)[:, :, None, None]


class Projection(nn.ConvTranspose2d):
    """G's first layer, z as a 1×1 image with in_dim channels → base×base: a transposed convolution that is "just a
    matrix multiplication" (Radford et al.), computed as one — oneDNN's convolution runs this shape ~5× slower.

    The map comes out in the weight's memory format. A channels_last weight is multiplied as its (in, side, side, out)
    view: flattening it in (out, side, side) order would copy it, and the map, every call (the default G's weight
    holds 1.9M of its 2.2M parameters, and those copies took ~8% of a step)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, side, w = x.shape[0], self.kernel_size[0], self.weight
        if w.is_contiguous():
            h = (x.flatten(1) @ w.reshape(self.in_channels, -1)).view(n, self.out_channels, side, side)
        else:  # channels_last
            h = x.flatten(1) @ w.permute(0, 2, 3, 1).reshape(self.in_channels, -1)
            h = h.view(n, side, side, self.out_channels).permute(0, 3, 1, 2)
        return h if self.bias is None else h + self.bias.to(h.dtype).view(1, -1, 1, 1)


# Memory formats. After `model.to(memory_format=torch.channels_last)` (gankit's fast path) every activation should be
# channels_last, and so should every gradient: an element-wise backward (LeakyReLU, ReLU, batch norm) whose gradient
# and saved tensor differ in format runs ~15× slower. G's first layer, a matmul, makes its map in its weight's format
# (`Projection`); the flattening of D's features loses it (their gradient comes back contiguous): `grad_in_format`
# restores it in the backward pass.


def network_format(module: nn.Module) -> torch.memory_format:
    """channels_last if any 4-D weight of `module` is stored channels_last, else contiguous."""
    for p in module.parameters():
        if p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last):
            return torch.channels_last
    return torch.contiguous_format


class _GradInFormat(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
        ctx.memory_format = memory_format
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad.contiguous(memory_format=ctx.memory_format), None


def grad_in_format(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """x itself, whose gradient is laid out in `memory_format` (not to be modified in place)."""
    return _GradInFormat.apply(x, memory_format) if memory_format != torch.contiguous_format else x


# Packing (PacGAN, Lin et al. 2018): D judges M samples at once, all real or all fake, stacked along channels (image
# channels, or a point's coordinates). D packs its input itself, so that every caller hands it N samples and N labels
# and gets N / M logits; a pack's labels act through the sum of their embeddings (or one-hot planes).


def pack(x: torch.Tensor, y: torch.Tensor | None, m: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, C, ...) samples and (N,) labels → (N/m, m·C, ...) packs of consecutive samples and (N/m, m) labels."""
    if m == 1:
        return x, y
    n = x.shape[0]
    if n % m:
        raise ValueError(f"a batch of {n} samples does not split into packs of {m}")
    return x.reshape(n // m, m * x.shape[1], *x.shape[2:]), None if y is None else y.reshape(n // m, m)


def label_sum(table: torch.Tensor) -> torch.Tensor:
    """Per-label rows (N, F) or per-pack rows (N/m, m, F) → one row per sample or pack: the pack's rows summed."""
    return table.sum(dim=1) if table.dim() == 3 else table


def each_alone(d: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None):
    """(x, y) for D to score each sample on its own: a D that judges packs of M sees each sample as a pack of M copies
    of itself (for D's features reused, heat maps of σ(D) and the overfitting measure); unchanged for M = 1."""
    m = getattr(d, "pack", 1)
    if m == 1:
        return x, y
    return x.repeat_interleave(m, dim=0), None if y is None else y.repeat_interleave(m)


def head_terms(d: nn.Module, f: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor | float:
    """What D's head adds to its linear logit, where D has them: the label projection <embed(y), φ(x)> (Miyato &
    Koyama 2018; a pack's embeddings summed) and the weighted minibatch spread."""
    terms = 0.0
    if d.label_projection is not None:
        labels = y.reshape(f.shape[0], -1)  # (packs, m): the head gets the unpacked labels
        terms = terms + (label_sum(d.label_projection(labels)) * f).sum(dim=1)
    if d.std_weight is not None:
        terms = terms + d.std_weight * minibatch_std(f)
    return terms


def std_weight(spec: NetSpec) -> nn.Parameter | None:
    return nn.Parameter(torch.zeros(1)) if spec.minibatch_std_d else None


def minibatch_std(f: torch.Tensor, group: int = 4) -> torch.Tensor:
    """(N,) the standard deviation of each feature over a group of samples, averaged over the features; each sample
    gets its group's value (groups interleave: samples i, i + N/g, ...; g = gcd(N, group)).

    Karras et al. (2018), as one more input of D's linear head: a batch of near-copies — mode collapse — has a small
    spread where real batches do not, so D can tell them apart by it, and G's gradient then pushes its samples apart.
    """
    n = f.shape[0]
    g = math.gcd(n, group)
    groups = f.float().view(g, n // g, -1)
    centred = groups - groups.mean(dim=0)  # written out: torch.std over this leading dim ran ~50× slower here
    spread = (centred.square().mean(dim=0) + 1e-8).sqrt().mean(dim=1)  # (N/g,); ε keeps copies' gradient finite
    return spread.repeat(g)


def label_projection(spec: NetSpec, feature_dim: int) -> nn.Module | None:
    if not spec.num_classes or spec.conditioning_d != "projection":
        return None
    return d_layer(nn.Embedding(spec.num_classes, feature_dim), spec)


def stages(layers, first: type) -> list[list[nn.Module]]:
    """`layers` in groups, each starting at a layer of type `first` (D's stages by resolution, highest first)."""
    groups: list[list[nn.Module]] = []
    for layer in layers:
        if isinstance(layer, first) or not groups:
            groups.append([])
        groups[-1].append(layer)
    return groups
