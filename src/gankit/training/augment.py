"""Differentiable augmentation of everything D sees (DiffAugment, Zhao et al. 2020), against a D that memorises the
training images.

Real and generated images go through the same random transformations before D, in D's update and in G's, and
every operation is differentiable, so G's gradient passes through them: G still learns the un-augmented data,
while D can no longer tell real from fake by remembering exact training images. Images are in [-1, 1]; filled
areas get 0, as in the paper.
"""

from __future__ import annotations

import torch


def augment(x: torch.Tensor, policy: tuple[str, ...], draw, p: torch.Tensor | None = None) -> torch.Tensor:
    """x (N, C, H, W) transformed by each operation of `policy`, independently per image.

    `draw(k)` returns (N, k) uniform numbers in [0, 1) on x's device: the caller owns the random stream, so that a
    resumed or sharded run draws the same transformations. `p` (a 0-d tensor): each operation is applied to each
    image with this probability, else to all of them (adaptive augmentation, ADA: Karras et al. 2020)."""
    for name in policy:
        if p is None:
            x = _OPS[name](x, draw)
        else:
            applied = (draw(1) < p)[:, :, None, None]  # drawn first, for every image, whatever p is
            x = torch.where(applied, _OPS[name](x, draw), x)
    return x


ADA_INTERVAL = 4  # steps between adjustments of p (ADA's)


def adjust_ada(p: torch.Tensor, r_t: torch.Tensor, target: float, images: int, kimg: float) -> torch.Tensor:
    """ADA's rule: p moves by sign(r_t − target) · images / (kimg · 1000), kept in [0, 1]. r_t = E[sign(D(x))] over
    the real images of the last `images`: near 1, D scores every training image as real — it has memorised them."""
    return (p + torch.sign(r_t - target) * images / (kimg * 1000)).clamp(0, 1)


def translation(x: torch.Tensor, draw, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ratio·side pixels along each axis (integers), zero-filled."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    u = draw(2)
    dy = (u[:, 0] * (2 * sy + 1)).long()  # 0 … 2·sy: the padded image's row offset
    dx = (u[:, 1] * (2 * sx + 1)).long()
    padded = torch.nn.functional.pad(x, (sx, sx, sy, sy))
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, :, None]  # (N, H, 1)
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, :]  # (N, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (N, H, W, C) gathered → NCHW view


def cutout(x: torch.Tensor, draw, ratio: float = 0.5) -> torch.Tensor:
    """Zero a square of side ratio·side in each image, centred anywhere in it (so it may be cut by the border)."""
    _, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    u = draw(2)
    top = (u[:, 0] * (h + 1 - size_y % 2)).long() - size_y // 2
    left = (u[:, 1] * (w + 1 - size_x % 2)).long() - size_x // 2
    rows = torch.arange(h, device=x.device)[None, :] - top[:, None]  # (N, H): position inside the square
    cols = torch.arange(w, device=x.device)[None, :] - left[:, None]
    keep = ~(((rows >= 0) & (rows < size_y))[:, :, None] & ((cols >= 0) & (cols < size_x))[:, None, :])
    return x * keep[:, None].to(x.dtype)


def color(x: torch.Tensor, draw) -> torch.Tensor:
    """Random brightness (± 0.5), saturation (× 0–2, colour images only) and contrast (× 0.5–1.5)."""
    u = draw(3).to(x.dtype)[:, :, None, None, None].unbind(1)  # three (N, 1, 1, 1)
    x = x + (u[0] - 0.5)
    if x.shape[1] > 1:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (u[1] * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (u[2] + 0.5) + mean


_OPS = {"translation": translation, "cutout": cutout, "color": color}  # the names config.AUGMENTATIONS lists
