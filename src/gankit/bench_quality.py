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

from .bench_reference import ReferenceLoop
from .data import load_images
from .errors import ConfigError
from .images import to_uint8
from .metrics import evaluate as ev
from .metrics.inception import load_inception
from .sample import generate
from .session import load_generator, train
from .stats import read_jsonl


def _say(message: str) -> None:
    print(f"gankit bench: {message}", file=sys.stderr, flush=True)


@torch.no_grad()
def reference_samples(loop: ReferenceLoop, n: int, seed: int) -> torch.Tensor:
    """n images drawn as the example draws its sample grids: G in training mode (batch statistics), batches of 128."""
    loop.G.train()
    generator = torch.Generator().manual_seed(seed)
    out = [loop.G(torch.randn(min(128, n - start), loop.spec.latent_dim, 1, 1, generator=generator))
           for start in range(0, n, 128)]
    return torch.cat(out).float()


def quality_bench(minutes: float, n: int = 2000, out_dir: str | Path = "bench-quality", seed: int = 0,
                  inception: str | None = None) -> dict:
    out_dir = Path(out_dir)
    if (out_dir / "gankit").exists():  # found now, not after the classic loop's minutes of training
        raise ConfigError(f"{out_dir / 'gankit'} exists from an earlier run: remove it or choose another --out")
    images = load_images("fashion-mnist", "train").x  # real data: a quality benchmark on random pixels means nothing

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
    # Judged at 28×28 like the test images (downsampled with antialiasing); also straight from 64×64, for reference.
    fake_28 = to_uint8(F.interpolate(fake_64, size=28, mode="bilinear", antialias=True))
    fakes = {"reference": (fake_28, fake_28)}
    runs = {"reference": {"config": "pytorch/examples dcgan defaults: 64×64, batch 128, Adam 2e-4 β1 0.5, fp32, "
                                    "samples from G in training mode",
                          "steps": steps, "train_seconds": round(reference_time, 1)}}

    _say(f"gankit's default configuration for {minutes} minutes")
    run = train(data="fashion-mnist", steps=10**9, max_minutes=minutes, out=str(out_dir / "gankit"), seed=seed,
                checkpoint_every=10**9, sample_every=10**9, show_progress=False)
    G, spec, step = load_generator(run, ema=True)
    fake = to_uint8(generate(G, spec.latent_dim, n, seed=seed + 1))
    fakes["gankit"] = (fake, fake)
    elapsed = read_jsonl(run / "metrics.jsonl")[-1]["time"]
    runs["gankit"] = {"config": "gankit train defaults (28×28, batch 32, lr 4e-4, bf16 where supported, EMA G)",
                      "steps": step, "run": str(run), "train_seconds": elapsed}

    _say(f"evaluating both on {n} samples vs {n} Fashion-MNIST test images")
    extractor = load_inception(inception)
    real, reference = ev.reference_features("fashion-mnist", "test", n, extractor, seed=seed)
    for name, (for_inception, for_classifier) in fakes.items():
        values = ev.image_metrics(real, extractor(for_inception), list(ev.INCEPTION_METRICS), seed)
        domain, _ = ev.domain_metrics("fashion-mnist", for_classifier, ["coverage", "dfid"], n, seed=seed)
        runs[name]["metrics"] = {**values, **domain}
    runs["reference"]["metrics_at_64"] = ev.image_metrics(real, extractor(to_uint8(fake_64)), ["fid", "kid"], seed)
    return {"minutes": minutes, "runs": runs, "protocol": ev.protocol(extractor, n, reference, seed)}


def format_quality(result: dict) -> str:
    lines = [f"Quality after {result['minutes']} minutes of training each (Inception protocol: "
             f"n_fake {result['protocol']['n_fake']} vs {result['protocol']['reference']})",
             f"{'':<12}{'steps':>8}{'FID':>9}{'KID':>9}{'precision':>11}{'recall':>8}{'domain FID':>12}"
             f"{'classes':>9}"]
    for name, r in result["runs"].items():
        m = r["metrics"]
        lines.append(f"{name:<12}{r['steps']:>8}{m['fid']:>9.2f}{m['kid']:>9.4f}{m['precision']:>11.3f}"
                     f"{m['recall']:>8.3f}{m['domain_fid']:>12.1f}{m['classes_hit']:>9}")
    return "\n".join(lines)
