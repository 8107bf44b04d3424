"""`gankit lab`: the 2-D Bayes lab. Several losses train on the same toy data with the same seed and budget; one
page compares them, and each run's own report shows σ(D) beside the Bayes-optimal D* over training."""

from __future__ import annotations

import sys
from pathlib import Path

from gankit.errors import ConfigError, NonFiniteLoss
from gankit.tools.report import write_report
from gankit.training.defaults import WGAN_GP_TOY
from gankit.training.losses import LOSSES
from gankit.training.session import train

DCGAN_ADAM = {"optimizer": "adam", "lr_g": 2e-4, "beta1": 0.5, "beta2": 0.999, "n_critic": 1}

# Each loss with the optimiser, learning rate and D steps its authors recommend, so that the lab compares the losses
# at their best rather than at one loss's settings; settings passed to the lab apply to every loss instead.
RECOMMENDED: dict[str, dict] = {
    "minimax": DCGAN_ADAM,  # Goodfellow et al. 2014 left the optimiser open; DCGAN's Adam (Radford et al. 2015)
    "ns": DCGAN_ADAM,
    "feature-matching": DCGAN_ADAM,  # Salimans et al. 2016 trained with DCGAN's Adam
    "lsgan": DCGAN_ADAM,  # Mao et al. 2017: Adam, lr 2e-4, β1 0.5
    # Arjovsky et al. 2017, algorithm 1: RMSprop, lr 5e-5, 5 critic steps, weights clipped to ±0.01
    "wgan": {"optimizer": "rmsprop", "lr_g": 5e-5, "n_critic": 5, "weight_clip": 0.01},
    # Gulrajani et al. 2017, their 2-D script: Adam, lr 1e-4, 5 critic steps; λ 0.1 and β (0.5, 0.9) for toy data
    "wgan-gp": {"optimizer": "adam", "lr_g": 1e-4, "n_critic": 5, **WGAN_GP_TOY},
    # Miyato et al. 2018 (SNGAN), the hinge loss with spectral norm in D: Adam, lr 2e-4, β (0, 0.9), 5 D steps
    "hinge": {"optimizer": "adam", "lr_g": 2e-4, "beta1": 0.0, "beta2": 0.9, "n_critic": 5, "spectral_norm": True},
}


def run_lab(
    losses: list[str],
    data: str = "ring8",
    steps: int = 2000,
    out: str | Path = "runs/lab",
    seed: int = 0,
    show_progress: bool = True,
    settings: dict | None = None,
) -> Path:
    """Train each loss on `data` for `steps` with the same seed, at its RECOMMENDED settings with `settings` (any
    TrainConfig keys, e.g. {"lr_g": 1e-4, "n_critic": 1}) over them, and write one comparison page."""
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
                **{**RECOMMENDED[loss], **(settings or {})},
            )
        except NonFiniteLoss as e:  # a loss that diverges is a result of the lab, not a reason to stop it
            print(f"gankit lab: {loss} stopped: {e}", file=sys.stderr)
        write_report([run])
        runs.append(run)
    return write_report(runs, out / "index.html")
