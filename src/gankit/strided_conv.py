"""DCGAN's stride-2, 4×4, padding-1 convolutions, with a faster weight gradient where oneDNN's is slow.

On CPUs oneDNN computes the weight gradient of the small-map layers (D's last strided convolution, G's first
transposed one) in bf16 at 35–60% of its forward speed. The same gradient is one matrix product of the layer's
output gradient with the 4×4 patches of its input (im2col), which runs near the matmul peak (`gankit bench` shows
the effect; docs/performance.md has the per-layer timings). Forward passes and input gradients stay oneDNN's; the
arithmetic is the same sums in another order. This module imports only torch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# Where the matrix product measured faster (bf16, batch 128, channels_last): layers whose smaller map has a side of
# at most 7 (1.2–2.1× oneDNN's weight gradient); at 8 and above it is not reliably faster, and in fp32 never.
GEMM_MAX_SIDE = 7


def patch_weight_grad(rows: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Σ over images and positions of rows[n, a, i, j] · source_padded[n, b, 2i + u, 2j + v] → (A, B, 4, 4).

    For a convolution, rows = output gradient and source = input (→ the (out, in, 4, 4) weight gradient); for a
    transposed one, rows = input and source = output gradient (→ its (in, out, 4, 4) weight gradient).
    """
    n, b = source.shape[:2]
    h, w = rows.shape[2:]
    padded = F.pad(source.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # (N, 2h + 2, 2w + 2, B), a copy
    s = padded.stride()
    patches = padded.as_strided((n, h, w, 4, 4, b), (s[0], 2 * s[1], 2 * s[2], s[1], s[2], s[3]))
    grad = rows.permute(0, 2, 3, 1).reshape(n * h * w, -1).t() @ patches.reshape(n * h * w, 16 * b)
    return grad.view(-1, 4, 4, b).permute(0, 3, 1, 2)


class _StridedConv(torch.autograd.Function):
    """y = conv(x, weight, bias) with stride 2, padding 1 (transposed: conv_transpose); oneDNN for y and dL/dx,
    `patch_weight_grad` for dL/dweight. Its backward is differentiable (the gradient penalty needs that)."""

    @staticmethod
    def forward(ctx, x, weight, bias, transposed: bool):
        ctx.save_for_backward(x, weight)
        ctx.transposed, ctx.has_bias = transposed, bias is not None
        conv = F.conv_transpose2d if transposed else F.conv2d
        return conv(x, weight, bias, stride=2, padding=1)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [2, 2], [1, 1], [1, 1], ctx.transposed, [0, 0], 1, [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_w = patch_weight_grad(x, grad) if ctx.transposed else patch_weight_grad(grad, x)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None


def _gemm_pays(x: torch.Tensor, small_side: int, weight: torch.Tensor) -> bool:
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    return (x.device.type == "cpu" and dtype == torch.bfloat16 and small_side <= GEMM_MAX_SIDE
            and torch.is_grad_enabled() and weight.requires_grad)


def _strided_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, transposed: bool) -> torch.Tensor:
    if torch.is_autocast_enabled("cpu"):  # autocast does not reach into a custom Function: cast as it would
        dtype = torch.get_autocast_dtype("cpu")
        x, weight = x.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
    with torch.autocast("cpu", enabled=False):
        return _StridedConv.apply(x, weight, bias, transposed)


class StridedConv2d(nn.Conv2d):
    """nn.Conv2d(in, out, 4, 2, 1) whose weight gradient on small maps is one matrix product."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 4, 2, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight  # once: under spectral norm every access runs a power iteration
        if not _gemm_pays(x, x.shape[-1] // 2, weight):
            return self._conv_forward(x, weight, self.bias)
        return _strided_conv(x, weight, self.bias, transposed=False)


class StridedConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d(in, out, 4, 2, 1) whose weight gradient on small maps is one matrix product."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 4, 2, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _gemm_pays(x, x.shape[-1], self.weight):
            return super().forward(x)
        return _strided_conv(x, self.weight, self.bias, transposed=True)  # (G's layers have no spectral norm)
