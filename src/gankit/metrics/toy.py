"""Metrics for 2-D toy runs, where p_data is known exactly: the mode counts of the Unrolled-GAN / VEEGAN / PacGAN
papers, and the Bayes view — the optimal discriminator D*(x) = p_data(x) / (p_data(x) + p_g(x)) and the JSD."""

from __future__ import annotations

import math

import torch

from gankit.metrics.modes import histogram_kl


def mode_metrics(dist, samples: torch.Tensor, sigmas: float = 3.0) -> dict:
    """Modes covered, % high-quality samples, and KL(p̂ ‖ uniform) of the high-quality mode histogram.

    A sample is high-quality if it lies within `sigmas` standard deviations of its nearest mode. A mode counts as
    covered when at least 20 of every 2,500 samples (PacGAN's threshold, scaled to n) are high-quality ones in it.
    """
    index, distance = dist.nearest_mode(samples)
    good = distance <= sigmas * dist.std
    counts = torch.bincount(index[good], minlength=dist.num_modes).double()
    threshold = max(1, round(20 * samples.shape[0] / 2500))
    return {
        "modes_covered": int((counts >= threshold).sum()),
        "modes_total": dist.num_modes,
        "high_quality_pct": 100.0 * float(good.double().mean()),
        "mode_kl": histogram_kl(counts),
    }


def kde_log_prob(samples: torch.Tensor, points: torch.Tensor, bandwidth: float | None = None) -> torch.Tensor:
    """log p̂(points) of a Gaussian KDE of 2-D samples; bandwidth by Scott's rule, h = σ̂·n^(−1/6), if not given."""
    samples, points = samples.double(), points.double()
    n, d = samples.shape
    if bandwidth is None:
        bandwidth = float(samples.std(0).mean()) * n ** (-1 / (d + 4))
    bandwidth = max(bandwidth, 1e-6)
    sq = torch.cdist(points, samples).pow(2)
    log_kernel = -sq / (2 * bandwidth**2) - d * math.log(bandwidth * math.sqrt(2 * math.pi))
    return torch.logsumexp(log_kernel, dim=1) - math.log(n)


def select_bandwidth(fit: torch.Tensor, held_out: torch.Tensor) -> float:
    """The KDE bandwidth maximising the held-out log likelihood: rule-of-thumb bandwidths smear a ring of std-0.01
    modes over its whole radius, which wrecks D* exactly where the modes are."""
    scale = float(fit.std(0).mean().clamp(min=1e-6))
    candidates = [scale * 10**e for e in torch.linspace(-4, 0, 25).tolist()]
    scores = [float(kde_log_prob(fit, held_out, h).mean()) for h in candidates]
    return candidates[max(range(len(scores)), key=scores.__getitem__)]


def optimal_discriminator(log_p_data: torch.Tensor, log_p_g: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data / (p_data + p_g) = σ(log p_data − log p_g), stable where both densities underflow."""
    return torch.sigmoid(log_p_data - log_p_g)


def jsd_estimate(
    dist, fake_fit: torch.Tensor, fake_eval: torch.Tensor, real_eval: torch.Tensor, bandwidth: float | None = None
) -> float:
    """JSD(p_data ‖ p_g) in nats from V(D*, G) = E_data log D* + E_g log(1 − D*) = 2·JSD − log 4.

    p_g is a KDE fitted on `fake_fit`; the expectations use separate samples, so the KDE never scores its own points.
    Pass the bandwidth from `select_bandwidth`; None falls back to Scott's rule.
    """

    def log_d_star(x, sign):
        logit = dist.log_prob(x).double() - kde_log_prob(fake_fit, x, bandwidth)
        return torch.nn.functional.logsigmoid(sign * logit)  # log D* (sign +1) or log(1 − D*) (sign −1)

    value = log_d_star(real_eval, 1).mean() + log_d_star(fake_eval, -1).mean()
    return float((value + math.log(4)) / 2)


def discriminator_gap(
    dist, d_logits: torch.Tensor, points: torch.Tensor, fake_fit: torch.Tensor, bandwidth: float | None = None
) -> float:
    """Mean |σ(D(x)) − D*(x)| over `points` (e.g. samples of p_data): how far the trained D is from Bayes-optimal."""
    d_star = optimal_discriminator(dist.log_prob(points).double(), kde_log_prob(fake_fit, points, bandwidth))
    return float((torch.sigmoid(d_logits.double()) - d_star).abs().mean())


def density_grid(extent: float, size: int = 128) -> torch.Tensor:
    """(size², 2) points of a square grid over [−extent, extent]², row-major from the top-left (for heat maps)."""
    axis = torch.linspace(-extent, extent, size)
    ys, xs = torch.meshgrid(axis.flip(0), axis, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=1)


def bayes_snapshot(
    dist, fake_fit: torch.Tensor, fake_eval: torch.Tensor, real: torch.Tensor, d_logit, extent: float, size: int = 128
) -> dict:
    """Everything the 2-D Bayes lab shows at one moment of training.

    `d_logit` maps (N, 2) points to D's logits. Returns the metrics (modes covered, % high quality, mode KL, JSD,
    |σ(D) − D*|) and two (size, size) fields over [−extent, extent]²: σ(D(x)) and D*(x) with p_g a KDE of fake_fit.
    """
    held_out, fit = fake_fit.chunk(2)
    bandwidth = select_bandwidth(fit, held_out)
    metrics = mode_metrics(dist, fake_eval)
    metrics["jsd"] = jsd_estimate(dist, fit, fake_eval, real, bandwidth)
    metrics["d_gap"] = discriminator_gap(dist, d_logit(real), real, fit, bandwidth)
    points = density_grid(extent, size)
    d_field = torch.sigmoid(d_logit(points).double()).reshape(size, size)
    d_star = optimal_discriminator(dist.log_prob(points).double(), kde_log_prob(fit, points, bandwidth))
    return {"metrics": metrics, "d_field": d_field, "d_star": d_star.reshape(size, size)}
