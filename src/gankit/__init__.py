"""gankit: train, evaluate and understand Generative Adversarial Networks, fast on a CPU.

Public API: `train`, `resume`, `sample_to_file`, `load_generator`, `TrainConfig`. Importing gankit does no work.
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
