"""The few image utilities gankit needs, on Pillow: uint8 quantisation, grids, PNG files, 2-D point plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from gankit.files import atomic_write


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
        out[:, top : top + h, left : left + w] = images[i]
    return out


def save_png(image: torch.Tensor, path: str | Path) -> None:
    """(C, H, W) uint8 with C in {1, 3} → PNG, written to a temporary name and renamed."""
    array = image.permute(1, 2, 0).cpu().numpy()
    pil = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    atomic_write(path, lambda tmp: pil.save(tmp, format="PNG"))


def scatter(
    points: dict[str, tuple[torch.Tensor, tuple[int, int, int]]], size: int = 512, extent: float | None = None
) -> torch.Tensor:
    """Render 2-D point sets {label: ((N, 2) points, rgb)} on a white square; returns (3, size, size) uint8."""
    every = torch.cat([p for p, _ in points.values()]).float()
    extent = extent or float(every.abs().max().clamp(min=1e-3)) * 1.1
    canvas = Image.new("RGB", (size, size), "white")
    _draw_points(canvas, points, extent)
    return torch.from_numpy(np.array(canvas)).permute(2, 0, 1).contiguous()


def _draw_points(canvas: Image.Image, points: dict, extent: float) -> None:
    draw, size = ImageDraw.Draw(canvas), canvas.width
    for pts, rgb in points.values():
        for px, py in ((pts.float() / extent + 1) * 0.5 * (size - 1)).round().long().tolist():
            py = size - 1 - py  # y grows upwards in the plot, downwards in the image
            draw.rectangle((px - 1, py - 1, px + 1, py + 1), fill=rgb)


def probability_panel(
    field: torch.Tensor,
    points: dict[str, tuple[torch.Tensor, tuple[int, int, int]]],
    extent: float,
    title: str,
    size: int = 384,
) -> Image.Image:
    """A (H, W) field of probabilities in [0, 1] as a heat map (blue 0, white ½, red 1) under 2-D point sets,
    with a title; the field's rows run from the top (y = extent) down, as `metrics.toy.density_grid` makes them."""
    p = field.float().clamp(0, 1).cpu().numpy()
    fade = np.where(p < 0.5, 2 * p, 2 - 2 * p)  # 1 at ½ (white), 0 at the ends (pure blue or red)
    rgb = np.stack([np.where(p < 0.5, fade, 1), fade, np.where(p < 0.5, 1, fade)], -1) * 255
    canvas = Image.fromarray(rgb.astype(np.uint8)).resize((size, size), Image.NEAREST)
    _draw_points(canvas, points, extent)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, size - 1, 18), fill="white")
    draw.text((4, 3), title, fill="black")
    return canvas


def side_by_side(panels: list[Image.Image], gap: int = 4) -> torch.Tensor:
    """Panels of equal height next to each other on white; returns (3, H, W) uint8."""
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    canvas = Image.new("RGB", (width, panels[0].height), "white")
    left = 0
    for panel in panels:
        canvas.paste(panel, (left, 0))
        left += panel.width + gap
    return torch.from_numpy(np.array(canvas)).permute(2, 0, 1).contiguous()
