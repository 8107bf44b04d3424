import math

import pytest
import torch
from torch.testing import assert_close

from gankit.training.losses import (
    LOSSES,
    d_logistic,
    g_feature_matching,
    g_minimax,
    g_non_saturating,
    gradient_penalty,
    lecam_penalty,
    r1_penalty,
)

REAL = torch.tensor([2.0, -1.0, 0.5])
FAKE = torch.tensor([-3.0, 0.0, 1.0])


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def test_logistic_d_loss_matches_the_minimax_value_function():
    expected = (
        -sum(math.log(sigmoid(r)) for r in REAL.tolist()) / 3 - sum(math.log(1 - sigmoid(f)) for f in FAKE.tolist()) / 3
    )
    assert_close(d_logistic(real_logits=REAL, fake_logits=FAKE), torch.tensor(expected))


def test_one_sided_label_smoothing_targets_only_real():
    t = 0.9
    expected = (
        -sum(t * math.log(sigmoid(r)) + (1 - t) * math.log(1 - sigmoid(r)) for r in REAL.tolist()) / 3
        - sum(math.log(1 - sigmoid(f)) for f in FAKE.tolist()) / 3
    )
    assert_close(d_logistic(real_logits=REAL, fake_logits=FAKE, real_target=t), torch.tensor(expected))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("wgan", FAKE.mean() - REAL.mean()),
        ("hinge", torch.relu(1 - REAL).mean() + torch.relu(1 + FAKE).mean()),
        ("lsgan", 0.5 * ((REAL - 1) ** 2).mean() + 0.5 * (FAKE**2).mean()),
    ],
)
def test_d_losses_at_known_logits(name, expected):
    assert_close(LOSSES[name].d(real_logits=REAL, fake_logits=FAKE), expected)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("minimax", sum(math.log(1 - sigmoid(f)) for f in FAKE.tolist()) / 3),
        ("ns", -sum(math.log(sigmoid(f)) for f in FAKE.tolist()) / 3),
        ("wgan", -FAKE.mean().item()),
        ("hinge", -FAKE.mean().item()),
        ("lsgan", (0.5 * (FAKE - 1) ** 2).mean().item()),
    ],
)
def test_g_losses_at_known_logits(name, expected):
    assert_close(LOSSES[name].g(fake_logits=FAKE), torch.tensor(expected, dtype=torch.float32))


def test_higher_logit_means_more_real_for_every_loss():
    """The sign convention: between the real and fake targets (LSGAN's are 1 and 0), raising real logits or
    lowering fake ones lowers D's loss, and raising fake logits lowers G's."""
    mid = torch.full((3,), 0.5)
    for name, loss in LOSSES.items():
        base = loss.d(real_logits=mid, fake_logits=mid)
        assert loss.d(real_logits=mid + 0.25, fake_logits=mid) < base, name
        assert loss.d(real_logits=mid, fake_logits=mid - 0.25) < base, name
        if not loss.uses_features:
            assert loss.g(fake_logits=mid + 0.25) < loss.g(fake_logits=mid), name


def g_grad(fn, logit):
    fake = torch.tensor([logit], requires_grad=True)
    fn(fake_logits=fake).backward()
    return fake.grad.item()


def test_minimax_gradient_vanishes_when_d_rejects_fakes_and_ns_does_not():
    # D(G(z)) = σ(-10) ≈ 4.5e-5: the minimax gradient is σ(l) → 0, the non-saturating one 1 - σ(l) → 1.
    assert abs(g_grad(g_minimax, -10.0)) < 1e-4
    assert abs(g_grad(g_non_saturating, -10.0)) > 0.99
    # Where D is fooled the roles swap: the saturating loss has the strong gradient.
    assert abs(g_grad(g_minimax, 10.0)) > 0.99
    assert abs(g_grad(g_non_saturating, 10.0)) < 1e-4


def test_losses_are_stable_at_extreme_logits():
    big = torch.tensor([1e4, -1e4])
    for name, loss in LOSSES.items():
        if not loss.uses_features:
            assert torch.isfinite(loss.d(real_logits=big, fake_logits=-big)), name
            assert torch.isfinite(loss.g(fake_logits=big)), name


def test_feature_matching_is_zero_for_equal_statistics_and_positive_otherwise():
    f = torch.randn(16, 8)
    assert g_feature_matching(real_features=f, fake_features=f[torch.randperm(16)]).item() < 1e-10
    assert_close(g_feature_matching(real_features=f, fake_features=f + 1.0), torch.tensor(8.0))


@pytest.mark.parametrize("shape", [(8, 2), (8, 1, 5, 5), (8, 3, 4, 4)])
def test_gradient_penalty_is_zero_for_a_unit_gradient_critic(shape):
    # D(x) = <w, x> with ‖w‖ = 1 has ‖∇D‖ = 1 everywhere, for any channel count.
    w = torch.randn(shape[1:])
    w = w / w.norm()

    def critic(t):
        return (t * w).flatten(1).sum(1)

    real, fake = torch.randn(shape), torch.randn(shape)
    assert gradient_penalty(critic, real, fake).item() < 1e-10
    assert_close(gradient_penalty(lambda t: 3 * critic(t), real, fake), torch.tensor(4.0))


def d_grads(name, real, fake):
    r, f = torch.tensor(real, requires_grad=True), torch.tensor(fake, requires_grad=True)
    LOSSES[name].d(real_logits=r, fake_logits=f).backward()
    return r.grad, f.grad


@pytest.mark.parametrize(
    "name, real_grad, fake_grad",
    [
        # d/dl of the per-sample loss, divided by the batch size 2
        ("ns", lambda r: -(1 - torch.sigmoid(r)) / 2, lambda f: torch.sigmoid(f) / 2),
        ("wgan", lambda r: torch.full_like(r, -0.5), lambda f: torch.full_like(f, 0.5)),
        ("hinge", lambda r: -(r < 1).float() / 2, lambda f: (f > -1).float() / 2),
        ("lsgan", lambda r: (r - 1) / 2, lambda f: f / 2),
    ],
)
def test_d_loss_gradients_at_known_logits(name, real_grad, fake_grad):
    real, fake = [0.3, 2.0], [-0.4, -1.5]
    got_r, got_f = d_grads(name, real, fake)
    assert_close(got_r, real_grad(torch.tensor(real)))
    assert_close(got_f, fake_grad(torch.tensor(fake)))


@pytest.mark.parametrize(
    "name, grad",
    [
        ("minimax", lambda f: -torch.sigmoid(f) / 2),
        ("ns", lambda f: -(1 - torch.sigmoid(f)) / 2),
        ("wgan", lambda f: torch.full_like(f, -0.5)),
        ("lsgan", lambda f: (f - 1) / 2),
    ],
)
def test_g_loss_gradients_at_known_logits(name, grad):
    fake = torch.tensor([-0.4, 1.5], requires_grad=True)
    LOSSES[name].g(fake_logits=fake).backward()
    assert_close(fake.grad, grad(fake.detach()))


def test_r1_is_the_squared_input_gradient_norm_in_closed_form_and_by_finite_differences():
    # D(x) = <w, x>: ∇D = w everywhere, so R1 = ‖w‖².
    w = torch.randn(3, 4, 4, dtype=torch.float64)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    assert_close(r1_penalty(lambda t: (t * w).flatten(1).sum(1), x), (w * w).sum())
    # D(x) = Σ sin(x)·a: ∇D = a·cos(x), per sample; checked against central differences.
    a = torch.randn(2, dtype=torch.float64)

    def critic(t):
        return (torch.sin(t) * a).sum(1)

    points = torch.randn(6, 2, dtype=torch.float64)
    h = 1e-6
    numeric = torch.stack([(critic(points + h * e) - critic(points - h * e)) / (2 * h) for e in torch.eye(2)], 1)
    assert_close(r1_penalty(critic, points), numeric.square().sum(1).mean(), rtol=1e-6, atol=1e-9)
    # Its gradient reaches D's weights (double backward): d/da of mean Σ a²cos²(x) = 2a·mean cos²(x).
    a.requires_grad_(True)
    r1_penalty(critic, points).backward()
    assert_close(a.grad, 2 * a.detach() * torch.cos(points).square().mean(0))


def test_lecam_penalises_only_logits_past_the_other_sides_anchor():
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-3.0, 1.0])
    # relu(real − α_F)² with α_F = 0: 4, 0, 0.25 → mean 4.25/3; relu(α_R − fake)² with α_R = 0.5: 12.25, 0 → 6.125
    assert_close(lecam_penalty(real, fake, torch.tensor(0.5), torch.tensor(0.0)), torch.tensor(4.25 / 3 + 6.125))
    assert lecam_penalty(torch.tensor([-1.0]), torch.tensor([1.0]), torch.tensor(0.0), torch.tensor(0.0)) == 0
