"""The few image utilities gankit needs, on Pillow: uint8 quantisation, grids, PNG files, 2-D point plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats → uint8 [0, 255], rounding as a saved PNG does."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> torch.Tensor:
    """(N, C, H, W) uint8 → one (C, rows·(H+p)+p, nrow·(W+p)+p) uint8 image, row-major, on a black background."""
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    out = torch.zeros(c, rows * (h + padding) + padding, nrow * (w + padding) + padding, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        out[:, top:top + h, left:left + w] = images[i]
    return out


def save_png(image: torch.Tensor, path: str | Path) -> None:
    """(C, H, W) uint8 with C in {1, 3} → PNG, written to a temporary name and renamed."""
    array = image.permute(1, 2, 0).cpu().numpy()
    pil = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    pil.save(tmp, format="PNG")
    tmp.replace(path)


def scatter(points: dict[str, tuple[torch.Tensor, tuple[int, int, int]]], size: int = 512,
            extent: float | None = None) -> torch.Tensor:
    """Render 2-D point sets {label: ((N, 2) points, rgb)} on a white square; returns (3, size, size) uint8."""
    every = torch.cat([p for p, _ in points.values()]).float()
    extent = extent or float(every.abs().max().clamp(min=1e-3)) * 1.1
    canvas = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(canvas)
    for pts, rgb in points.values():
        pix = ((pts.float() / extent + 1) * 0.5 * (size - 1)).round().long().tolist()
        for px, py in pix:
            py = size - 1 - py  # y grows upwards in the plot, downwards in the image
            draw.rectangle((px - 1, py - 1, px + 1, py + 1), fill=rgb)
    return torch.from_numpy(np.array(canvas)).permute(2, 0, 1).contiguous()
