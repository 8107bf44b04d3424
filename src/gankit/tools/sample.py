"""Using a trained G: sample grids (images) and point plots (2-D toy runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gankit.data.streams import Stream, seeded
from gankit.errors import ConfigError
from gankit.files import atomic_write, write_json, write_text
from gankit.images import grid, save_png, to_uint8
from gankit.runs import labels_for, load


def sample_to_file(
    run_dir: str | Path,
    out: str | Path,
    n: int = 64,
    seed: int = 0,
    label: int | None = None,
    ema: bool = False,
    nrow: int | None = None,
    per_class: bool = False,
    best: bool = False,
) -> Path:
    """Write a PNG of n samples from a run's latest checkpoint: an image grid, or a scatter plot for 2-D runs.

    `per_class` (conditional runs): one row of n samples per class. `best`: the weights --keep-best kept.
    """
    run = load(run_dir, ema=ema, best=best)
    if not per_class:
        return run.save_samples(out, n, seed, label, nrow)
    if not run.spec.num_classes or label is not None:
        raise ConfigError("--per-class needs a conditional run and no --label")
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    labels = torch.tensor(run.spec.drawn_classes).repeat_interleave(n)  # one row of n per class
    save_png(grid(to_uint8(run.generate(len(labels), labels, seed)), nrow=n), out)
    return Path(out)


def export(
    run_dir: str | Path,
    out: str | Path,
    n: int,
    fmt: str = "png",
    seed: int = 0,
    label: int | None = None,
    ema: bool | None = None,
    truncation: float | None = None,
    best: bool = False,
) -> Path:
    """n samples as files to use elsewhere (another FID tool, a dataset): `png` writes OUT/000000.png … (and
    labels.csv for a conditional G), `npz` one array x (N, H, W, C) uint8 (and y); either with samples.json, which
    records the run, step, weights, seed and truncation the samples came from."""
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    run = load(run_dir, ema=ema, best=best)
    if run.spec.resolution == 0:
        raise ConfigError(f"{run_dir} is a 2-D toy run: export its points with gankit.load(run).generate(n)")
    labels = labels_for(run.spec, n, label)
    images = to_uint8(run.generate(n, labels, seed, truncation)).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    out = Path(out)
    weights = ("G_ema" if run.ema else "G") + (" (best.safetensors)" if best else "")
    record = {"run": str(run_dir), "step": run.step, "weights": weights, "n": n, "seed": seed,
              "truncation": truncation, "format": fmt}  # fmt: skip
    if fmt == "npz":
        arrays = {"x": images} | ({"y": labels.numpy()} if labels is not None else {})

        def write_npz(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: given a name, np.savez would append ".npz" to it
                np.savez(f, **arrays)

        atomic_write(out, write_npz)
        write_json(out.with_suffix(".json"), record)
        return out
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; --format png writes a folder of images")
    out.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(n - 1)))
    for i, image in enumerate(images):
        save_png(torch.from_numpy(image).permute(2, 0, 1), out / f"{i:0{width}d}.png")
    if labels is not None:
        rows = "".join(f"{i:0{width}d}.png,{int(y)}\n" for i, y in enumerate(labels))
        write_text(out / "labels.csv", "file,label\n" + rows)
    write_json(out / "samples.json", record)
    return out


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of a and b at fractions t: it keeps ‖z‖ where Gaussian latents live,
    which the straight line between two of them does not (its midpoint is ~√2 times too short)."""
    cos = (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7)
    omega = torch.acos(cos)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def latent_walk(
    G: torch.nn.Module,
    spec,
    rows: int = 8,
    steps: int = 10,
    seed: int = 0,
    spherical: bool = False,
    label: int | None = None,
) -> torch.Tensor:
    """rows × steps samples: each row walks from one random z to another (linearly, or by slerp); conditional
    runs keep one label per row (cycling through the classes, or `label`)."""
    if rows < 1 or steps < 2:
        raise ConfigError("a latent walk needs at least 1 row and 2 steps")
    generator = seeded(seed, Stream.WALK)
    start, end = (torch.randn(rows, 1, spec.latent_dim, generator=generator) for _ in range(2))
    t = torch.linspace(0, 1, steps).view(1, steps, 1)
    z = slerp(start, end, t) if spherical else start + t * (end - start)
    labels = labels_for(spec, rows, label)
    labels = labels.repeat_interleave(steps) if labels is not None else None
    device = next(G.parameters()).device
    with torch.no_grad():
        return (
            G(z.reshape(rows * steps, -1).to(device), labels.to(device) if labels is not None else None).float().cpu()
        )
