"""Generators and discriminators: DCGAN (Radford et al. 2015), its conditional variant, and MLPs for 2-D data.

Conventions: `G(z, y)` maps noise (N, latent_dim) and optional labels (N,) to samples; `D.features(x, y)` gives
(N, F) features, `D.head(f, y)` (N,) logits with higher = more real, and `D(x, y) = D.head(D.features(x, y), y)`.
This module imports only torch (and gankit.strided_conv).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from .strided_conv import StridedConv2d, StridedConvTranspose2d


@dataclass(frozen=True)
class NetSpec:
    """Everything needed to build G and D; shape fields come from the data, capacity fields from the config."""

    channels: int = 1  # image channels (1 or 3); 2 for toy points
    resolution: int = 28  # image side; 0 for toy points
    num_classes: int = 0  # > 0 makes G and D conditional
    latent_dim: int = 100  # size of z
    width_g: int = 64  # DCGAN: ngf; MLP: hidden units of G
    width_d: int = 64  # DCGAN: ndf; MLP: hidden units of D
    depth: int = 3  # MLP only: hidden layers per network
    batchnorm_g: bool = True  # batch norm in G's hidden layers
    batchnorm_d: bool = True  # batch norm in D's hidden layers (never on D's input)
    spectral_norm_d: bool = False  # spectral normalisation of every D weight (Miyato et al. 2018)
    dropout_d: float = 0.0  # dropout probability after each D hidden layer
    minibatch_std_d: bool = False  # D's head also sees its features' spread over groups of samples (Karras et al. 2018)
    conditioning_d: str = "projection"  # how D sees labels: "projection" (Miyato & Koyama 2018) or "concat"
    class_batchnorm_g: bool = False  # conditional G: its batch norms' scale and shift are per class (Dumoulin et al. 2017)


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


def _d_layer(layer: nn.Module, spec: NetSpec) -> nn.Module:
    return _spectral_norm(layer) if spec.spectral_norm_d else layer


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
            h = (x.flatten(1) @ w.permute(0, 2, 3, 1).reshape(self.in_channels, -1))
            h = h.view(n, side, side, self.out_channels).permute(0, 3, 1, 2)
        return h if self.bias is None else h + self.bias.to(h.dtype).view(1, -1, 1, 1)


# Memory formats. After `model.to(memory_format=torch.channels_last)` (gankit's fast path) every activation should be
# channels_last, and so should every gradient: an element-wise backward (LeakyReLU, ReLU, batch norm) whose gradient
# and saved tensor differ in format runs ~15× slower. G's first layer, a matmul, makes its map in its weight's format
# (`Projection`); the flattening of D's features loses it (their gradient comes back contiguous): `_grad_in_format`
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


def _grad_in_format(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """x itself, whose gradient is laid out in `memory_format` (not to be modified in place)."""
    return _GradInFormat.apply(x, memory_format) if memory_format != torch.contiguous_format else x


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
        in_channels = spec.channels + self.concat_classes
        layers: list[nn.Module] = []
        width = spec.width_d
        for i in range(k):  # each block: (N, c, s, s) → (N, width, s/2, s/2)
            first = i == 0
            layers.append(_d_layer(StridedConv2d(in_channels if first else width // 2, width,
                                                 bias=first or not spec.batchnorm_d), spec))
            if spec.batchnorm_d and not first:  # no batch norm on D's input layer
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            if spec.dropout_d:
                layers.append(nn.Dropout(spec.dropout_d))
            width *= 2
        self.body = nn.Sequential(*layers)
        self.out = _d_layer(nn.Conv2d(width // 2, 1, base, 1, 0), spec)  # ≡ a linear map of the flat features
        self.label_projection = _label_projection(spec, (width // 2) * base * base)
        self.std_weight = _std_weight(spec)
        init_dcgan_weights(self)

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.concat_classes:
            onehot = nn.functional.one_hot(y, self.concat_classes).to(x.dtype)
            x = torch.cat([x, onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)
        # (N, F) with F = ndf·2^(k-1)·base², in (C, H, W) order
        return _grad_in_format(self.body(x), network_format(self)).flatten(1)

    def head(self, f: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        # self.out is a base×base convolution over the base×base features: one dot product per image.
        logits = nn.functional.linear(f, self.out.weight.reshape(1, -1), self.out.bias).flatten()  # (N,)
        return logits + _head_terms(self, f, y)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, y), y)


def _head_terms(d: nn.Module, f: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor | float:
    """What D's head adds to its linear logit, where D has them: the label projection <embed(y), φ(x)> (Miyato &
    Koyama 2018) and the weighted minibatch spread."""
    terms = 0.0
    if d.label_projection is not None:
        terms = terms + (d.label_projection(y) * f).sum(dim=1)
    if d.std_weight is not None:
        terms = terms + d.std_weight * minibatch_std(f)
    return terms


def _std_weight(spec: NetSpec) -> nn.Parameter | None:
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


def _label_projection(spec: NetSpec, feature_dim: int) -> nn.Module | None:
    if not spec.num_classes or spec.conditioning_d != "projection":
        return None
    return _d_layer(nn.Embedding(spec.num_classes, feature_dim), spec)


class MLPGenerator(nn.Module):
    """z (+ label embedding) → `depth` ReLU layers → a point in R^channels (no output squashing: toy data is unbounded)."""

    def __init__(self, spec: NetSpec):
        super().__init__()
        self.label_embedding = nn.Embedding(spec.num_classes, spec.latent_dim) if spec.num_classes else None
        in_dim = spec.latent_dim * (2 if spec.num_classes else 1)
        layers: list[nn.Module] = []
        for i in range(spec.depth):
            layers.append(nn.Linear(in_dim if i == 0 else spec.width_g, spec.width_g))
            if spec.batchnorm_g:
                layers.append(nn.BatchNorm1d(spec.width_g))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Linear(spec.width_g, spec.channels))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.label_embedding is not None:
            z = torch.cat([z, self.label_embedding(y)], dim=1)
        return self.net(z)  # (N, channels)


class MLPDiscriminator(nn.Module):
    """Point → `depth` LeakyReLU(0.2) layers (features) → linear logit, with optional label projection."""

    def __init__(self, spec: NetSpec):
        super().__init__()
        self.label_embedding = None
        if spec.num_classes and spec.conditioning_d == "concat":
            self.label_embedding = nn.Embedding(spec.num_classes, spec.width_d)
        in_dim = spec.channels + (spec.width_d if self.label_embedding is not None else 0)
        layers: list[nn.Module] = []
        for i in range(spec.depth):
            layers.append(_d_layer(nn.Linear(in_dim if i == 0 else spec.width_d, spec.width_d), spec))
            if spec.batchnorm_d and i > 0:
                layers.append(nn.BatchNorm1d(spec.width_d))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            if spec.dropout_d:
                layers.append(nn.Dropout(spec.dropout_d))
        self.body = nn.Sequential(*layers)
        self.out = _d_layer(nn.Linear(spec.width_d, 1), spec)
        self.label_projection = _label_projection(spec, spec.width_d)
        self.std_weight = _std_weight(spec)

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.label_embedding is not None:
            x = torch.cat([x, self.label_embedding(y)], dim=1)
        return self.body(x)  # (N, width_d)

    def head(self, f: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(f).flatten() + _head_terms(self, f, y)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, y), y)


ARCHITECTURES = {
    "dcgan": (DCGANGenerator, DCGANDiscriminator),
    "mlp": (MLPGenerator, MLPDiscriminator),
}


def build(model: str, spec: NetSpec) -> tuple[nn.Module, nn.Module]:
    """(G, D) for an architecture name in ARCHITECTURES."""
    make_g, make_d = ARCHITECTURES[model]
    return make_g(spec), make_d(spec)
