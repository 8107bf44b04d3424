"""Watching a run for the GAN game's three classic failures, and D memorising its images, with the evidence and the
remedy gankit offers.

- **saturation**: D wins outright — mean D(G(z)) below `saturation_d_fake` while G's gradient vanishes. Under the
  minimax loss that follows from D(G(z)) itself: G's loss log(1 − σ(l)) has slope −σ(l) = −D(G(z)) in D's logit l
  (the non-saturating loss's slope is −(1 − σ(l))), so its signal has shrunk by D(G(z)) / (1 − D(G(z))) whatever
  the parameter gradients look like. Under other losses it is judged by G's gradient norm falling below 10%
  (SATURATION_GRAD_DROP) of its early level.
- **collapse**: G's samples lose diversity — the mean pairwise distance between samples from a fixed z falls below
  `collapse_ratio` of the same statistic on real data (pixels, or 2-D points) after having been above it, or stays
  below it for COLLAPSE_PATIENCE intervals; on toy data also when the modes covered fall to half of the best so far.
- **overfitting**: D scores nearly every training image real — r_t = E[sign D(x)] over the real batches (ADA's
  heuristic, Karras et al. 2020) at or above `overfit_r_t`. With few images that is D memorising them, and G, judged
  by a D that has learned the training set by heart, drifts or collapses (a 500-image folder did both with no other
  finding). Not judged on 2-D toy data, which is drawn afresh every step and cannot be memorised.
- **instability**: a loss's magnitude exceeds `divergence_factor` times its early level (oscillating or exploding);
  non-finite values stop the run (the engine keeps the last good checkpoint) and are recorded here first.

Checks run at every log interval after `WARMUP` intervals. A condition starts when it has held for PERSIST
intervals in a row and clears when it has been absent as long — GAN statistics are noisy, and a warning that
flickers on and off says nothing — and each start and clear is recorded once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

WARMUP = 4  # log intervals that set the early levels before anything is judged
SATURATION_GRAD_DROP = 0.1  # G's gradient norm below this fraction of its early level counts as collapsing
PERSIST = 3  # consecutive log intervals a condition must hold (or be absent) before it starts (or clears)
COLLAPSE_PATIENCE = 20  # log intervals a G may stay below collapse_ratio before never having exceeded it counts

REMEDIES = {
    "saturation": "D is winning outright and G's gradient vanishes. Try the non-saturating loss (--loss ns) or a "
    "Wasserstein loss (--loss wgan-gp), a lower D learning rate (--lr-d), one-sided label smoothing "
    "(--label-smoothing 0.1), or spectral norm in D (--spectral-norm).",
    "collapse": "G's samples are losing diversity (mode collapse). Try letting D judge packs of samples (--pack 2, "
    "PacGAN), G looking ahead at D's next steps (--unroll 5, Unrolled GAN), letting D see each batch's spread "
    "(--minibatch-std), feature matching (--loss feature-matching), WGAN-GP (--loss wgan-gp), a lower G learning "
    "rate (--lr-g), or dropout in D (--dropout 0.3).",
    "overfitting": "D is memorising the training images (or winning outright). Try adaptive augmentation "
    "(--augment ada), random flips (--mirror), the R1 or LeCam penalty (--r1, --lecam), or more images; "
    "gankit eval RUN --metrics overfit measures the memorising on held-out images.",
    "instability": "The losses are oscillating or exploding. Try lower learning rates, TTUR (--lr-d above --lr-g), "
    "spectral norm in D (--spectral-norm), more D steps for Wasserstein losses (--n-critic 5), or "
    "continue from the last good checkpoint with a lower rate.",
    "non_finite": "Training produced NaN or Inf. Continue from the last good checkpoint with a lower learning rate, "
    "the ns or wgan-gp loss, or spectral norm in D.",
}


@dataclass
class Finding:
    step: int
    kind: str  # saturation, collapse, overfitting, instability, non_finite
    status: str  # "started", "cleared" (non_finite: "stopped")
    evidence: dict
    message: str

    def record(self) -> dict:
        return {
            "step": self.step,
            "kind": self.kind,
            "status": self.status,
            "evidence": self.evidence,
            "message": self.message,
            "remedy": REMEDIES[self.kind] if self.status != "cleared" else "",
        }


def mean_pairwise_distance(x: torch.Tensor) -> float:
    """Mean Euclidean distance between distinct rows of a batch (flattened samples)."""
    flat = x.detach().float().flatten(1)
    n = flat.shape[0]
    if n < 2:
        return 0.0
    return float(torch.cdist(flat, flat).sum() / (n * (n - 1)))


class Watcher:
    """The state of one run's diagnostics: early levels, active conditions, best toy coverage."""

    def __init__(
        self,
        saturation_d_fake: float = 0.05,
        collapse_ratio: float = 0.4,
        divergence_factor: float = 20.0,
        real_diversity: float | None = None,
        saturating_loss: bool = False,
        overfit_r_t: float | None = None,
    ):
        self.saturation_d_fake, self.collapse_ratio = saturation_d_fake, collapse_ratio
        self.overfit_r_t = overfit_r_t  # None: not judged (toy data cannot be memorised)
        self.saturating_loss = saturating_loss  # the minimax loss: G's gradient scales with D(G(z))
        self.divergence_factor = divergence_factor
        self.real_diversity = real_diversity
        self.intervals = 0
        self.early: dict[str, list[float]] = {"grad_norm_g": [], "loss_d": [], "loss_g": []}
        self.active: set[str] = set()
        self.streak: dict[str, int] = {}  # consecutive intervals the condition has disagreed with its state
        self.best_modes = 0
        self.best_diversity, self.low_diversity_intervals = 0.0, 0

    def state_dict(self) -> dict:
        """What a resumed run needs to judge as the uninterrupted one would (saved in checkpoints)."""
        return {
            "intervals": self.intervals,
            "early": self.early,
            "active": sorted(self.active),
            "streak": self.streak,
            "best_modes": self.best_modes,
            "best_diversity": self.best_diversity,
            "low_diversity_intervals": self.low_diversity_intervals,
        }

    def load_state_dict(self, state: dict) -> None:
        self.intervals, self.early = state["intervals"], state["early"]
        self.active, self.best_modes, self.streak = set(state["active"]), state["best_modes"], state["streak"]
        self.best_diversity, self.low_diversity_intervals = state["best_diversity"], state["low_diversity_intervals"]

    def _level(self, name: str) -> float:
        values = sorted(abs(v) for v in self.early[name])
        return values[len(values) // 2] if values else math.nan

    def check(
        self, step: int, values: dict[str, float], fake: torch.Tensor | None = None, modes_covered: int | None = None
    ) -> list[Finding]:
        """Findings (starts and clears) of one log interval's mean values, a batch of samples from a fixed z, and,
        on toy data, the modes those samples cover."""
        self.intervals += 1
        if self.intervals <= WARMUP:
            for name in self.early:
                if name in values and math.isfinite(values[name]):
                    self.early[name].append(values[name])
            if modes_covered is not None:
                self.best_modes = max(self.best_modes, modes_covered)
            return []
        conditions: dict[str, dict | None] = {}

        grad_level = self._level("grad_norm_g")
        grad_ratio = values.get("grad_norm_g", math.nan) / grad_level if grad_level else math.nan
        d_fake = values.get("d_fake", 1.0)
        vanishing = self.saturating_loss or grad_ratio < SATURATION_GRAD_DROP
        saturated = d_fake < self.saturation_d_fake and vanishing
        conditions["saturation"] = (
            {
                "d_fake": d_fake,
                "d_real": values.get("d_real"),
                "grad_norm_g": values.get("grad_norm_g"),
                "grad_norm_g_early": grad_level,
                "grad_ratio": grad_ratio,
                "minimax_slope_ratio": d_fake / (1 - d_fake) if self.saturating_loss else None,
            }
            if saturated
            else None
        )

        collapse = {}
        if fake is not None and fake.shape[0] >= 2 and self.real_diversity:
            ratio = mean_pairwise_distance(fake) / self.real_diversity
            if ratio < self.collapse_ratio:
                self.low_diversity_intervals += 1
                # A G that had diversity and lost it, or one that never gains it: early samples are often all alike
                if self.best_diversity >= self.collapse_ratio or self.low_diversity_intervals >= COLLAPSE_PATIENCE:
                    collapse["diversity_ratio"] = ratio
            else:
                self.low_diversity_intervals = 0
            self.best_diversity = max(self.best_diversity, ratio)
        if modes_covered is not None:
            if self.best_modes >= 2 and modes_covered <= self.best_modes // 2:
                collapse.update(modes_covered=modes_covered, best_modes_covered=self.best_modes)
            self.best_modes = max(self.best_modes, modes_covered)
        conditions["collapse"] = collapse or None

        r_t = values.get("r_t", math.nan)
        memorising = self.overfit_r_t is not None and r_t >= self.overfit_r_t
        conditions["overfitting"] = {"r_t": r_t, "d_real": values.get("d_real")} if memorising else None

        exploding = {}
        for name in ("loss_d", "loss_g"):
            level = self._level(name)
            # the floor: a loss that starts near 0 (hinge, Wasserstein, feature matching) may grow to O(1) healthily
            if name in values and abs(values[name]) > self.divergence_factor * max(level, 1.0):
                exploding[name] = values[name]
                exploding[f"{name}_early"] = level
        conditions["instability"] = exploding or None

        findings = []
        for kind, evidence in conditions.items():
            changing = (evidence is not None) != (kind in self.active)
            self.streak[kind] = self.streak.get(kind, 0) + 1 if changing else 0
            if self.streak[kind] < PERSIST:
                continue
            self.streak[kind] = 0
            if evidence is not None:
                self.active.add(kind)
                findings.append(Finding(step, kind, "started", evidence, _describe(kind, evidence)))
            else:
                self.active.discard(kind)
                findings.append(Finding(step, kind, "cleared", {}, f"{kind} no longer detected"))
        return findings


def non_finite_finding(step: int, names: list[str]) -> Finding:
    return Finding(
        step, "non_finite", "stopped", {"non_finite": names}, f"non-finite {', '.join(names)}: training stopped"
    )


def _describe(kind: str, e: dict) -> str:
    if kind == "saturation":
        head = f"discriminator saturation: D(G(z)) = {e['d_fake']:.3f}, D(x) = {e['d_real']:.3f}, "
        if e.get("minimax_slope_ratio") is not None:
            return head + (
                f"the minimax loss gives G {100 * e['minimax_slope_ratio']:.2g}% of the non-saturating "
                f"loss's gradient through D's output"
            )
        return head + f"G's gradient norm {e['grad_norm_g']:.3g} is {100 * e['grad_ratio']:.1f}% of its early level"
    if kind == "collapse":
        parts = []
        if "diversity_ratio" in e:
            parts.append(f"sample diversity is {100 * e['diversity_ratio']:.0f}% of the data's")
        if "modes_covered" in e:
            parts.append(f"modes covered fell to {e['modes_covered']} from {e['best_modes_covered']}")
        return "mode collapse: " + ", ".join(parts)
    if kind == "overfitting":
        share = 100 * (1 + e["r_t"]) / 2  # r_t = share scored real − share scored fake
        return f"D memorising: r_t = E[sign D(x)] = {e['r_t']:.2f}, D scores {share:.1f}% of the training images real"
    names = [k for k in e if not k.endswith("_early")]
    return "instability: " + ", ".join(f"{k} = {e[k]:.3g} (early level {e[k + '_early']:.3g})" for k in names)
