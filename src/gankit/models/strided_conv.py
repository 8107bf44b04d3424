"""DCGAN's stride-2, 4×4, padding-1 convolutions, computed faster on CPUs where oneDNN is slow.

Two shapes run far below oneDNN's usual speed here (`gankit bench`; docs/performance.md has per-layer timings):
- weight gradients of the small-map layers (D's last strided convolution, G's first transposed one) in bf16, at
  35–60% of their forward speed: computed as one matrix product of the output gradient with the 4×4 patches of
  the input (im2col), near the matmul peak;
- 1-channel outputs of a transposed convolution (G's output layer, and the input gradient of D's first layer,
  which is the same operation): 3–4× faster as one matrix product and two additions of strided views.
Everything else stays oneDNN's; the arithmetic is the same sums in another order. This module imports only torch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# Where the matrix product measured faster (bf16, channels_last; docs/performance.md): layers whose smaller map has a
# side of at most 7 (1.2–2.1× oneDNN's weight gradient per layer), and at 8 within whole training steps (a 32×32 step:
# +2% from the transposed layer, +3–7% from the convolution; neutral at 64×64), though not always per layer in
# isolation; in fp32 every layer was slower.
GEMM_MAX_SIDE = 8


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


# conv_transpose2d(stride 2, padding 1, 4×4 kernel): output row 2i + a sums input rows i + a - t, t = 0, 1, through
# kernel row 2t - a + 1; the same holds for columns. KERNEL_ROWS lists those kernel rows in (a, t) order.
KERNEL_ROWS = [1, 3, 0, 2]


def transposed_to_one_channel(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """conv_transpose2d(x, weight, stride=2, padding=1) for weight (C, 1, 4, 4): (N, C, H, W) → (N, 1, 2H, 2W).

    One matrix product gives every input pixel's 16 contributions, ordered (a, t_row, b, t_col); each output pixel
    (2i + a, 2j + b) then sums four of them, from input pixels (i + a - t_row, j + b - t_col). Those sums are two
    additions of strided views (columns, then rows) over the zero-padded products: a view's phase dimension steps
    one pixel and one phase at once. oneDNN runs this shape (G's output layer; the input gradient of D's first layer)
    3–4× slower; summing 16 shifted slices one by one ran serially on maps of ≤ 32,768 values (2026-11-30).
    """
    n, c, h, w = x.shape
    taps = weight[:, 0][:, KERNEL_ROWS][:, :, KERNEL_ROWS]  # (C, (a, t_row), (b, t_col))
    products = (x.permute(0, 2, 3, 1).reshape(-1, c) @ taps.reshape(c, 16)).view(n, h, w, 16)
    padded = F.pad(products, (0, 0, 1, 1, 1, 1))  # (N, H + 2, W + 2, (a, t_row, b, t_col)), zeros around
    s = padded.stride()  # a new tensor: its storage starts at offset 0

    def columns(
        first: int, t_col: int
    ) -> torch.Tensor:  # [n, r, j, a, t_row, b] = padded[n, r, first + j + b, a, t_row, b, t_col]
        return padded.as_strided(
            (n, h + 2, w, 2, 2, 2), (s[0], s[1], s[2], 8 * s[3], 4 * s[3], s[2] + 2 * s[3]), first * s[2] + t_col * s[3]
        )

    by_row = columns(1, 0) + columns(0, 1)  # summed over t_col; a new tensor too
    r = by_row.stride()

    def rows(first: int, t_row: int) -> torch.Tensor:  # [n, i, a, j, b] = by_row[n, first + i + a, j, a, t_row, b]
        return by_row.as_strided((n, h, 2, w, 2), (r[0], r[1], r[1] + r[3], r[2], r[5]), first * r[1] + t_row * r[4])

    return (rows(1, 0) + rows(0, 1)).reshape(n, 1, 2 * h, 2 * w)


def _use_patch_gemm(rows: torch.Tensor) -> bool:
    return rows.dtype == torch.bfloat16 and rows.shape[-1] <= GEMM_MAX_SIDE


class _StridedConv(torch.autograd.Function):
    """y = conv(x, weight, bias) with stride 2, padding 1 (transposed: conv_transpose); oneDNN except where it is
    slow: `transposed_to_one_channel` for 1-channel outputs and 1-channel input gradients, `patch_weight_grad` for
    small-map weight gradients in bf16. Its backward is differentiable (the gradient penalty needs that)."""

    @staticmethod
    def forward(ctx, x, weight, bias, transposed: bool):
        ctx.save_for_backward(x, weight)
        ctx.transposed, ctx.has_bias = transposed, bias is not None
        if transposed and weight.shape[1] == 1:
            y = transposed_to_one_channel(x, weight)
            return y if bias is None else y + bias.view(1, -1, 1, 1)
        return (F.conv_transpose2d if transposed else F.conv2d)(x, weight, bias, stride=2, padding=1)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        rows, source = (x, grad) if ctx.transposed else (grad, x)  # the small map and the large one

        def onednn(mask):
            return torch.ops.aten.convolution_backward(
                grad, x, weight, None, [2, 2], [1, 1], [1, 1], ctx.transposed, [0, 0], 1, mask
            )

        if ctx.needs_input_grad[0]:
            if not ctx.transposed and weight.shape[1] == 1:  # the input gradient of a 1-channel input
                grad_x = transposed_to_one_channel(grad, weight)
            else:
                grad_x = onednn([True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_w = patch_weight_grad(rows, source) if _use_patch_gemm(rows) else onednn([False, True, False])[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None


def _worth_it(x: torch.Tensor, weight: torch.Tensor, transposed: bool) -> bool:
    """Whether `_StridedConv` beats plain oneDNN for this call (CPU only)."""
    if x.device.type != "cpu":
        return False
    if transposed and weight.shape[1] == 1:  # its forward pass
        return True
    if not torch.is_grad_enabled():
        return False
    if not transposed and weight.shape[1] == 1 and x.requires_grad:  # the input gradient (of an even-sided input)
        return x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    small_side = x.shape[-1] if transposed else x.shape[-1] // 2
    return weight.requires_grad and dtype == torch.bfloat16 and small_side <= GEMM_MAX_SIDE


def _strided_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, transposed: bool) -> torch.Tensor:
    if torch.is_autocast_enabled("cpu"):  # autocast does not reach into a custom Function: cast as it would
        dtype = torch.get_autocast_dtype("cpu")
        x, weight = x.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
    with torch.autocast("cpu", enabled=False):
        return _StridedConv.apply(x, weight, bias, transposed)


class StridedConv2d(nn.Conv2d):
    """nn.Conv2d(in, out, 4, 2, 1), computed by `_StridedConv` where that is faster."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 4, 2, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight  # once: under spectral norm every access runs a power iteration
        if not _worth_it(x, weight, transposed=False):
            return self._conv_forward(x, weight, self.bias)
        return _strided_conv(x, weight, self.bias, transposed=False)


class StridedConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d(in, out, 4, 2, 1), computed by `_StridedConv` where that is faster."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 4, 2, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _worth_it(x, self.weight, transposed=True):
            return super().forward(x)
        return _strided_conv(x, self.weight, self.bias, transposed=True)  # (G's layers have no spectral norm)
