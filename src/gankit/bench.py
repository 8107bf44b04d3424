"""`gankit bench`: speed measured side by side in one process, so a noisy shared machine affects all rows alike.

Section "inception": FID feature extraction, img/s of the TorchScript module as shipped vs gankit's eager rebuild
(fp32) and its bf16 mode, on the same 299×299 batch, with the largest feature difference from the shipped module.
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from pathlib import Path

import torch


def _rate(fn, x: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    """Images per second of fn on x (best of `repeats` timed runs after one warm-up run)."""
    with torch.inference_mode():
        out = fn(x)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x)
            best = min(best, time.perf_counter() - start)
    return x.shape[0] / best, out.float()


def inception_bench(batch: int = 32, repeats: int = 2, path: str | None = None) -> dict:
    from .metrics.inception import default_path, load_inception, resize_clean

    extractor = load_inception(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        shipped = torch.jit.load(str(path or default_path()), map_location="cpu").eval()
    images = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = resize_clean(images) / 128 - 1

    def bf16(t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return extractor.model(t)

    shipped_rate, reference = _rate(shipped, x, repeats)
    eager_rate, eager = _rate(extractor.model, x, repeats)
    bf16_rate, fast = _rate(bf16, x, repeats)
    rows = {"as shipped (TorchScript, fp32)": (shipped_rate, 0.0),
            "gankit eager rebuild (fp32)": (eager_rate, float((eager - reference).abs().max())),
            "gankit eager rebuild (bf16, --fast)": (bf16_rate, float((fast - reference).abs().max()))}
    return {name: {"img_per_s": round(rate, 2), "speedup": round(rate / shipped_rate, 2),
                   "max_abs_feature_diff": diff} for name, (rate, diff) in rows.items()}


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def run_bench(quick: bool = False, out: str | Path = "bench.json", inception: str | None = None) -> dict:
    result = {"machine": machine(),
              "inception": inception_bench(batch=16 if quick else 32, repeats=1 if quick else 3, path=inception)}
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_bench(result: dict) -> str:
    lines = [f"machine: {result['machine']}", "", "Inception feature extraction (299×299, batch as run)",
             f"{'':<40}{'img/s':>8}{'× shipped':>11}{'max |Δfeature|':>16}"]
    for name, row in result["inception"].items():
        lines.append(f"{name:<40}{row['img_per_s']:>8.2f}{row['speedup']:>11.2f}{row['max_abs_feature_diff']:>16.2e}")
    return "\n".join(lines)
