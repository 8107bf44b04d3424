import math

import pytest
import torch

from gankit.data import TOY, ToyDistribution, is_toy, make_toy
from gankit.errors import DataError


def _integral(dist: ToyDistribution, half_width: float, steps: int) -> float:
    """Midpoint-rule integral of exp(log_prob) over the square [-half_width, half_width]²."""
    h = 2 * half_width / steps
    ticks = torch.linspace(-half_width + h / 2, half_width - h / 2, steps, dtype=torch.float64)
    grid = torch.cartesian_prod(ticks, ticks)
    return dist.log_prob(grid).exp().sum().item() * h * h


@pytest.mark.parametrize(
    "dist, half_width, steps",
    [
        # The midpoint rule on a Gaussian errs by ~exp(-2π² std² / step²): one step per std is already plenty.
        (make_toy("ring8", std=0.1), 1.7, 200),
        (make_toy("grid25"), 4.5, 240),
        (make_toy("spiral", std=0.1), 2.7, 200),
    ],
    ids=["ring8", "grid25", "spiral"],
)
def test_density_integrates_to_one(dist, half_width, steps):
    assert _integral(dist, half_width, steps) == pytest.approx(1.0, abs=1e-4)


def test_log_prob_matches_brute_force_mixture():
    dist = make_toy("ring8", scale=1.5, std=0.3)
    points = torch.tensor([[0.0, 0.0], [1.5, 0.0], [0.3, -1.1], [4.0, 4.0]], dtype=torch.float64)
    for point, log_p in zip(points.tolist(), dist.log_prob(points).tolist()):
        density = 0.0
        for mx, my in dist.means.tolist():
            d2 = (point[0] - mx) ** 2 + (point[1] - my) ** 2
            density += math.exp(-d2 / (2 * 0.3**2)) / (2 * math.pi * 0.3**2) / 8
        assert log_p == pytest.approx(math.log(density), rel=1e-6)


def test_log_prob_is_finite_far_from_every_mode():
    # Far points underflow exp() in float32; logsumexp keeps them finite and ordered.
    dist = make_toy("ring8")
    log_p = dist.log_prob(torch.tensor([[50.0, 0.0], [100.0, 0.0]]))
    assert torch.isfinite(log_p).all() and log_p[0] > log_p[1]


def test_mode_positions():
    ring = make_toy("ring8", scale=2.0)
    assert ring.num_modes == 8
    torch.testing.assert_close(ring.means.norm(dim=1), torch.full((8,), 2.0))
    grid = make_toy("grid25")
    assert grid.num_modes == 25
    assert sorted(set(grid.means[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    spiral = make_toy("spiral", components=50)
    gaps = (spiral.means[1:] - spiral.means[:-1]).norm(dim=1)
    assert spiral.num_modes == 50
    # Equal arc length gives equal chords wherever the curve is flat, i.e. away from its tightly curved centre.
    assert gaps[3:].max() / gaps[3:].min() < 1.02
    assert spiral.means[0].norm() == 0 and spiral.means[-1].norm() == pytest.approx(2.0, abs=1e-5)


@pytest.mark.parametrize("name", list(TOY))
def test_samples_land_near_modes(name):
    dist = make_toy(name)
    x, modes = dist.sample_with_modes(20_000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (20_000, 2) and x.dtype == torch.float32
    assert modes.dtype == torch.int64
    _, distance = dist.nearest_mode(x)
    assert (distance < 4 * dist.std).float().mean() > 0.99
    # Every mode is used, about equally often.
    counts = torch.bincount(modes, minlength=dist.num_modes)
    assert counts.min() > 0.5 * len(x) / dist.num_modes


def test_nearest_mode_recovers_the_component_when_modes_are_separated():
    dist = make_toy("grid25")
    x, modes = dist.sample_with_modes(5_000, generator=torch.Generator().manual_seed(1))
    index, _ = dist.nearest_mode(x)
    assert torch.equal(index, modes)


def test_sample_mean_and_covariance():
    dist = make_toy("grid25")
    x = dist.sample(100_000, generator=torch.Generator().manual_seed(2)).double()
    # Mixture: mean 0, covariance = covariance of the means + std² I = (8 + 0.0025) I.
    torch.testing.assert_close(x.mean(0), torch.zeros(2, dtype=torch.float64), atol=0.05, rtol=0)
    expected = torch.eye(2, dtype=torch.float64) * (8 + 0.05**2)
    torch.testing.assert_close(torch.cov(x.T), expected, atol=0.15, rtol=0)


def test_sampling_is_determined_by_the_generator():
    dist = make_toy("spiral")
    a = dist.sample(1000, generator=torch.Generator().manual_seed(7))
    b = dist.sample(1000, generator=torch.Generator().manual_seed(7))
    c = dist.sample(1000, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    x, _ = dist.sample_with_modes(1000, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, x)


def test_registry_and_errors():
    assert is_toy("ring8") and not is_toy("mnist")
    with pytest.raises(DataError, match="ring8, grid25, spiral"):
        make_toy("ring9")
    with pytest.raises(DataError, match="sigma"):
        make_toy("ring8", sigma=0.1)
    with pytest.raises(DataError, match="std > 0"):
        make_toy("ring8", std=0.0)
