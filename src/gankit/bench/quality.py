"""`gankit bench --quality --minutes M`: quality per wall-clock budget. The classic PyTorch DCGAN loop with the
example's defaults (64×64, batch 128, lr 2e-4) and gankit's default Fashion-MNIST configuration each train for the
same M minutes; then both are judged on one protocol: Inception FID/KID and precision/recall of n generated images
against n test images, and the domain classifier's FID and class coverage.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gankit.bench.reference import ReferenceLoop
from gankit.config import from_dict, load_file
from gankit.data import load_images
from gankit.errors import ConfigError
from gankit.files import read_jsonl
from gankit.images import to_uint8
from gankit.metrics import evaluate as ev
from gankit.metrics.inception import load_inception
from gankit.training.session import train


def _say(message: str) -> None:
    print(f"gankit bench: {message}", file=sys.stderr, flush=True)


@torch.no_grad()
def reference_samples(loop: ReferenceLoop, n: int, seed: int) -> torch.Tensor:
    """n images drawn as the example draws its sample grids: G in training mode (batch statistics), batches of 128."""
    loop.G.train()
    generator = torch.Generator().manual_seed(seed)
    out = [
        loop.G(torch.randn(min(128, n - start), loop.spec.latent_dim, 1, 1, generator=generator))
        for start in range(0, n, 128)
    ]
    return torch.cat(out).float()


def quality_bench(
    minutes: float,
    n: int = 2000,
    out_dir: str | Path = "bench-quality",
    seed: int = 0,
    inception: str | None = None,
    data: str = "fashion-mnist",
) -> dict:
    """Both trainings, then both sets of samples on one protocol; gankit's side is `gankit eval` of its run (a
    conditional G gets the reference images' labels). `data`: Fashion-MNIST for the benchmark, other data in tests."""
    out_dir = Path(out_dir)
    if (out_dir / "gankit").exists():  # found now, not after the classic loop's minutes of training
        raise ConfigError(f"{out_dir / 'gankit'} exists from an earlier run: remove it or choose another --out")
    images = load_images(data, "train").x  # real data: a quality benchmark on random pixels means nothing

    _say(f"classic DCGAN loop (64×64, batch 128, lr 2e-4) for {minutes} minutes")
    loop = ReferenceLoop(images, 64, batch_size=128, seed=seed)
    steps, start, next_report = 0, time.perf_counter(), 60.0
    while time.perf_counter() - start < 60 * minutes:
        loop.step()
        steps += 1
        if time.perf_counter() - start >= next_report:
            _say(f"classic loop: step {steps} after {next_report / 60:.0f} min")
            next_report += 60
    reference_time = time.perf_counter() - start
    loop.close()
    fake_64 = reference_samples(loop, n, seed + 1)
    runs = {
        "reference": {
            "config": "pytorch/examples dcgan defaults: 64×64, batch 128, Adam 2e-4 β1 0.5, fp32, "
            "samples from G in training mode",
            "steps": steps,
            "train_seconds": round(reference_time, 1),
        }
    }

    _say(f"gankit's default configuration for {minutes} minutes")
    run = train(
        data=data,
        steps=10**9,
        max_minutes=minutes,
        out=str(out_dir / "gankit"),
        seed=seed,
        checkpoint_every=10**9,
        sample_every=10**9,
        show_progress=False,
    )
    cfg = from_dict(load_file(run / "config.json"))  # as resolved: the widths follow the CPU and the budget
    runs["gankit"] = {
        "config": f"gankit train defaults: {cfg.resolution}×{cfg.resolution}, G {cfg.width_g} / D "
        f"{cfg.width_d} wide, batch {cfg.batch_size}, lr {cfg.lr_g:g}, "
        f"{'conditional' if cfg.conditional else 'unconditional'}, {cfg.precision}, EMA G",
        "run": str(run),
        "train_seconds": read_jsonl(run / "metrics.jsonl")[-1]["time"],
    }

    _say(f"evaluating both on {n} samples vs {n} test images")
    extractor = load_inception(inception)
    metrics = ev.parse_metrics(None, data)
    result = ev.evaluate_run(run, lambda: extractor, metrics, n=n, seed=seed)
    runs["gankit"].update(steps=result["step"], metrics=result["metrics"])
    # The classic loop's samples are judged at the test images' side (28×28 for Fashion-MNIST; downsampled with
    # antialiasing), and also straight from 64×64, for reference.
    real, _ = ev.reference_features(data, "test", n, extractor, seed=seed)
    side = images.shape[-1]
    fake = to_uint8(F.interpolate(fake_64, size=side, mode="bilinear", antialias=True))
    values = ev.image_metrics(real, extractor(fake), [m for m in metrics if m in ev.INCEPTION_METRICS], seed)
    if any(m in ev.DOMAIN_METRICS for m in metrics):
        values.update(ev.domain_metrics(data, fake, metrics, n, seed=seed)[0])
    runs["reference"].update(
        metrics=values, metrics_at_64=ev.image_metrics(real, extractor(to_uint8(fake_64)), ["fid", "kid"], seed)
    )
    return {"minutes": minutes, "data": data, "runs": runs, "protocol": result["protocol"]}


def format_quality(result: dict) -> str:
    lines = [
        f"Quality after {result['minutes']} minutes of training each (Inception protocol: "
        f"n_fake {result['protocol']['n_fake']} vs {result['protocol']['reference']})",
        f"{'':<12}{'steps':>8}{'FID':>9}{'KID':>9}{'precision':>11}{'recall':>8}{'domain FID':>12}{'classes':>9}",
    ]
    for name, r in result["runs"].items():
        m = r["metrics"]
        domain = (
            f"{m['domain_fid']:>12.1f}{m['classes_hit']:>9}"
            if "domain_fid" in m and "classes_hit" in m
            else f"{'-':>12}{'-':>9}"
        )  # no domain classifier for this data
        lines.append(
            f"{name:<12}{r['steps']:>8}{m['fid']:>9.2f}{m['kid']:>9.4f}{m['precision']:>11.3f}"
            f"{m['recall']:>8.3f}{domain}"
        )
    return "\n".join(lines)
