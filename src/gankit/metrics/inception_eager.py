"""An eager rebuild of the TorchScript Inception graph, for speed at the same numbers.

The shipped TorchScript module runs each convolution, then a separate batch norm, and forces every branch back to
NCHW (`contiguous`) before concatenating. Rebuilt eagerly from its own weights, each convolution absorbs its batch
norm (w·s, β − μ·s with s = 1/√(σ² + ε)) and the whole network stays channels_last, which oneDNN runs much faster
on a CPU. The structure is read off the TorchScript modules' `original_name`s; anything unexpected is an error,
never a silent approximation.
"""

from __future__ import annotations

import torch
from torch import nn

BN_EPS = 1e-3  # the TF graph's batch-norm epsilon


class FoldedConv(nn.Module):
    """conv → batch norm (no scale) → ReLU, as one convolution with bias."""

    def __init__(self, scripted: torch.jit.ScriptModule):
        super().__init__()
        weight = scripted.weight.detach().double()
        scale = (scripted.var.detach().double() + BN_EPS).rsqrt()
        padding = scripted.padding
        padding = tuple(padding) if isinstance(padding, (list, tuple)) else (padding, padding)
        self.conv = nn.Conv2d(
            weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), stride=scripted.stride, padding=padding
        )
        with torch.no_grad():
            self.conv.weight.copy_(weight * scale[:, None, None, None])
            self.conv.bias.copy_(scripted.beta.detach().double() - scripted.mean.detach().double() * scale)

    def forward(self, x):
        return self.conv(x).relu_()  # in place: one activation buffer fewer to allocate and fill per layer


class Concat(nn.Module):
    """Inception blocks A–D: every branch sees the input, outputs concatenated along channels."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], dim=1)


class InceptionE(nn.Module):
    """The last two blocks: two branches split into 1×3 and 3×1 convolutions."""

    def __init__(self, s: torch.jit.ScriptModule):
        super().__init__()
        names = (
            "conv",
            "tower_conv",
            "tower_mixed_conv",
            "tower_mixed_conv_1",
            "tower_1_conv",
            "tower_1_conv_1",
            "tower_1_mixed_conv",
            "tower_1_mixed_conv_1",
            "tower_2_conv",
        )
        self.convs = nn.ModuleDict({n: FoldedConv(getattr(s, n)) for n in names})
        self.pool = convert(s.tower_2_pool)

    def forward(self, x):
        c = self.convs
        a = c["tower_conv"](x)
        b = c["tower_1_conv_1"](c["tower_1_conv"](x))
        return torch.cat(
            [
                c["conv"](x),
                c["tower_mixed_conv"](a),
                c["tower_mixed_conv_1"](a),
                c["tower_1_mixed_conv"](b),
                c["tower_1_mixed_conv_1"](b),
                c["tower_2_conv"](self.pool(x)),
            ],
            dim=1,
        )


def _pool(scripted: torch.jit.ScriptModule) -> nn.Module:
    """Pooling parameters are constants in the TorchScript code; the graph uses exactly these four kinds."""
    code = scripted.code.replace(" ", "")
    kind = "max" if "max_pool2d" in code else "avg"
    if kind == "max" and "(input,[3,3],[2,2],[0,0],[1,1],False,False," in code:
        return nn.MaxPool2d(3, 2)
    if kind == "max" and "(input,[3,3],[1,1],[1,1],[1,1],False,False," in code:
        return nn.MaxPool2d(3, 1, 1)
    if kind == "avg" and "(input,[3,3],[1,1],[1,1],False,False)" in code:
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    if kind == "avg" and "(input,[8,8],[8,8],[0,0])" in code:
        return nn.AvgPool2d(8, 8)
    raise ValueError(f"unexpected pooling layer in the Inception graph:\n{scripted.code}")


def convert(scripted: torch.jit.ScriptModule) -> nn.Module:
    kind = scripted.original_name
    children = [convert(c) for _, c in scripted.named_children()]
    if kind == "Conv2dLayer":
        return FoldedConv(scripted)
    if kind in ("MaxPool2d", "AvgPool2d"):
        return _pool(scripted)
    if kind == "Sequential":
        return nn.Sequential(*children)
    if kind in ("InceptionA", "InceptionB", "InceptionC", "InceptionD"):
        return Concat(children)
    if kind == "InceptionE":
        return InceptionE(scripted)
    raise ValueError(f"unexpected module {kind} in the Inception graph")


class EagerInception(nn.Module):
    """(N, 3, 299, 299) in [-1, 1) → (N, 2048) pool3 features, channels_last throughout."""

    def __init__(self, scripted: torch.jit.ScriptModule):
        super().__init__()
        self.layers = convert(scripted.net.layers)

    def forward(self, x):
        return self.layers(x.contiguous(memory_format=torch.channels_last)).reshape(-1, 2048)


def rebuild(scripted: torch.jit.ScriptModule) -> nn.Module:
    model = EagerInception(scripted).eval().requires_grad_(False)
    return model.to(memory_format=torch.channels_last)
