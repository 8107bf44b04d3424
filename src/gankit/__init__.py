"""gankit: train, evaluate and understand Generative Adversarial Networks, fast on a CPU.

Public API: `train`, `resume`, `load`, `evaluate`, `sample_to_file`, `load_generator`, `TrainConfig` (docs/api.md).
Importing gankit does no work.
"""

from gankit.config import TrainConfig
from gankit.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    GankitError,
    Interrupted,
    NonFiniteLoss,
)

__version__ = "0.1.0"


def train(cfg: TrainConfig | None = None, **overrides):
    """Train a GAN (see `gankit.training.session.train`); returns the run folder. `resume=True` with `out=RUN`
    continues a run exactly as `gankit train --resume RUN` does."""
    from gankit.training.session import train as _train

    return _train(cfg, **overrides)


def resume(run_dir, **settings):
    """Continue the run in `run_dir` from its newest checkpoint, with its own config; `settings` may change only
    what `gankit train --resume` lets change (steps, max_minutes, log/sample/checkpoint intervals, …)."""
    from gankit.training.session import train as _train

    return _train(None, resume=run_dir, **settings)


def load_generator(run_dir, ema: bool = False, device: str = "cpu"):
    """(G, NetSpec, step) from a run folder's latest checkpoint."""
    from gankit.runs import load_generator as _load

    return _load(run_dir, ema=ema, device=device)


def load(run_dir, ema: bool | None = None, device: str = "cpu"):
    """A trained run from its newest readable checkpoint: `.G`, `.D` (eval mode), `.spec`, `.step`, `.config`, and
    `.generate(n, labels=None, seed=0)` / `.save_samples(path, n=64, ...)`. `ema` None = the EMA weights where the
    run has them."""
    from gankit.runs import load as _load

    return _load(run_dir, ema=ema, device=device)


def evaluate(
    run_or_images,
    ref: str | None = None,
    metrics=None,
    n: int = 2000,
    seed: int = 0,
    ema: bool | None = None,
    resize: str = "bilinear",
    inception=None,
) -> dict:
    """Metrics with their protocol, as `gankit eval` computes them.

    A run folder: its G (EMA where it has one) against `ref` = "test" (default) or "train" of its own data, writes
    RUN/eval.json; a 2-D run gets the toy metrics. Images (a uint8 (N, C, H, W) tensor, or floats in [-1, 1]):
    against `ref` = "DATA" or "DATA:SPLIT" (a dataset name, folder or .npz; split test by default).
    """
    from pathlib import Path

    from gankit.metrics import evaluate as ev
    from gankit.metrics import inception as inc
    from gankit.runs import is_toy_run

    def extractor():
        return inc.load_inception(inception, resize=resize)

    names = ev.parse_metrics(",".join(metrics)) if metrics else None
    if isinstance(run_or_images, (str, Path)):
        if is_toy_run(run_or_images):
            return ev.evaluate_toy(run_or_images, n, seed, ema)
        return ev.evaluate_run(run_or_images, extractor, names, n, ref or "test", seed, ema)
    if not ref:
        raise ConfigError('evaluating images needs ref="DATA" or "DATA:SPLIT", e.g. "fashion-mnist:test"')
    data, _, split = ref.rpartition(":") if ref.rsplit(":", 1)[-1] in ("train", "test") else (ref, "", "test")
    return ev.evaluate_images(run_or_images, data, split, extractor, names, seed=seed)


def sample_to_file(run_dir, out, **kwargs):
    """Write a PNG grid of samples from a run (see `gankit.tools.sample.sample_to_file`)."""
    from gankit.tools.sample import sample_to_file as _sample

    return _sample(run_dir, out, **kwargs)


__all__ = [
    "train",
    "resume",
    "load_generator",
    "sample_to_file",
    "TrainConfig",
    "GankitError",
    "DataError",
    "ConfigError",
    "CheckpointError",
    "NonFiniteLoss",
    "Interrupted",
]
