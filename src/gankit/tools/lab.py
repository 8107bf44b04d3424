"""`gankit lab`: the 2-D Bayes lab. Several losses train on the same toy data with the same seed and budget; one
page compares them, and each run's own report shows σ(D) beside the Bayes-optimal D* over training."""

from __future__ import annotations

import sys
from pathlib import Path

from gankit.errors import ConfigError, NonFiniteLoss
from gankit.tools.report import write_report
from gankit.training.losses import LOSSES
from gankit.training.session import train


def run_lab(
    losses: list[str],
    data: str = "ring8",
    steps: int = 2000,
    out: str | Path = "runs/lab",
    seed: int = 0,
    show_progress: bool = True,
) -> Path:
    unknown = [loss for loss in losses if loss not in LOSSES]
    if unknown or not losses:
        raise ConfigError(f"unknown loss(es) {', '.join(unknown) or '(none)'}; choose from {', '.join(LOSSES)}")
    out = Path(out)
    runs = []
    for loss in losses:
        run = out / loss
        try:
            train(
                data=data,
                loss=loss,
                steps=steps,
                seed=seed,
                out=str(run),
                sample_every=max(steps // 20, 1),
                log_every=max(steps // 100, 1),
                show_progress=show_progress,
            )
        except NonFiniteLoss as e:  # a loss that diverges is a result of the lab, not a reason to stop it
            print(f"gankit lab: {loss} stopped: {e}", file=sys.stderr)
        write_report([run])
        runs.append(run)
    return write_report(runs, out / "index.html")
