"""Using a trained G: sample grids (images) and point plots (2-D toy runs)."""

from __future__ import annotations

from pathlib import Path

import torch

from .batches import seeded
from .errors import ConfigError
from .images import grid, save_png, scatter, to_uint8
from .session import load_generator


@torch.no_grad()
def generate(G: torch.nn.Module, latent_dim: int, n: int, seed: int = 0, labels: torch.Tensor | None = None,
             batch_size: int = 256) -> torch.Tensor:
    """n samples of G (float, model range) from z ~ N(0, I) seeded by `seed`, in batches to bound memory."""
    z = torch.randn(n, latent_dim, generator=seeded(seed, 0))
    device = next(G.parameters()).device
    out = []
    for start in range(0, n, batch_size):
        y = labels[start:start + batch_size].to(device) if labels is not None else None
        out.append(G(z[start:start + batch_size].to(device), y).float().cpu())
    return torch.cat(out)


def labels_for(num_classes: int, n: int, label: int | None) -> torch.Tensor | None:
    """The labels a conditional G is asked for: all `label`, or cycling through the classes; None if unconditional."""
    if not num_classes:
        if label is not None:
            raise ConfigError("--label needs a conditional run (trained with --conditional)")
        return None
    if label is None:
        return torch.arange(n) % num_classes
    if not 0 <= label < num_classes:
        raise ConfigError(f"--label must be in 0..{num_classes - 1}, got {label}")
    return torch.full((n,), label, dtype=torch.long)


def sample_to_file(run_dir: str | Path, out: str | Path, n: int = 64, seed: int = 0, label: int | None = None,
                   ema: bool = False, nrow: int | None = None) -> Path:
    """Write a PNG of n samples from a run's latest checkpoint: an image grid, or a scatter plot for 2-D runs."""
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    G, spec, _ = load_generator(run_dir, ema=ema)
    samples = generate(G, spec.latent_dim, n, seed, labels_for(spec.num_classes, n, label))
    if spec.num_classes and label is None and nrow is None:
        nrow = spec.num_classes  # labels cycle through the classes: one column per class
    image = scatter({"G(z)": (samples, (214, 39, 40))}) if spec.resolution == 0 else grid(to_uint8(samples), nrow)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_png(image, out)
    return out
