"""Each failure the diagnostics name is provoked on purpose and must be reported; a healthy run reports nothing."""

import math

import pytest
import torch

from gankit.errors import NonFiniteLoss
from gankit.files import read_jsonl
from gankit.training import setup as setup_mod
from gankit.training.diagnostics import COLLAPSE_PATIENCE, PERSIST, WARMUP, Watcher, mean_pairwise_distance
from gankit.training.session import train

HEALTHY = {"loss_d": 1.2, "loss_g": 0.9, "d_real": 0.6, "d_fake": 0.4, "grad_norm_g": 2.0}


def persisting(watcher: Watcher, step: int, values: dict, **kw) -> list:
    """Findings once a condition has held for PERSIST intervals (none may come earlier)."""
    for i in range(PERSIST - 1):
        assert watcher.check(step + i, values, **kw) == []
    return watcher.check(step + PERSIST - 1, values, **kw)


def warmed_up(watcher: Watcher) -> Watcher:
    for step in range(WARMUP):
        assert watcher.check(step, HEALTHY) == []
    return watcher


def test_saturation_starts_and_clears_on_its_two_conditions():
    watcher = warmed_up(Watcher())
    assert persisting(watcher, 10, dict(HEALTHY, d_fake=0.01)) == []  # D wins, but G still gets gradient
    saturated = dict(HEALTHY, d_fake=0.01, d_real=0.99, grad_norm_g=0.05)
    (start,) = persisting(watcher, 20, saturated)
    assert (start.kind, start.status) == ("saturation", "started")
    assert start.evidence["grad_ratio"] == pytest.approx(0.025) and "--loss ns" in start.record()["remedy"]
    assert persisting(watcher, 30, saturated) == []  # reported once, not every interval
    assert watcher.check(40, HEALTHY) == [] and watcher.check(41, saturated) == []  # a flicker clears nothing
    (end,) = persisting(watcher, 50, HEALTHY)
    assert (end.kind, end.status) == ("saturation", "cleared")


def test_under_the_minimax_loss_a_low_d_fake_alone_is_saturation():
    # the minimax loss's slope in D's logit is D(G(z)): the gradient vanishes even if D's input gradients grow
    watcher = warmed_up(Watcher(saturating_loss=True))
    (start,) = persisting(watcher, 10, dict(HEALTHY, d_fake=0.01))
    assert start.kind == "saturation" and start.evidence["minimax_slope_ratio"] == pytest.approx(0.01 / 0.99)
    assert "1% of the non-saturating loss's gradient" in start.message


def test_collapse_by_sample_diversity_and_by_toy_modes():
    real = torch.randn(64, 1, 8, 8)
    alike = torch.zeros(64, 1, 8, 8) + torch.randn(1, 1, 8, 8)
    watcher = warmed_up(Watcher(real_diversity=mean_pairwise_distance(real)))
    assert watcher.check(10, HEALTHY, fake=torch.randn(64, 1, 8, 8)) == []
    (finding,) = persisting(watcher, 11, HEALTHY, fake=alike)  # had diversity, lost it
    assert finding.kind == "collapse" and finding.evidence["diversity_ratio"] < 0.01

    never = warmed_up(Watcher(real_diversity=mean_pairwise_distance(real)))  # alike from the start: patience first
    assert all(never.check(10 + i, HEALTHY, fake=alike) == [] for i in range(COLLAPSE_PATIENCE + PERSIST - 2))
    assert [f.kind for f in never.check(99, HEALTHY, fake=alike)] == ["collapse"]

    toy = Watcher()
    for step in range(WARMUP):
        toy.check(step, HEALTHY, modes_covered=step + 5)  # best so far: 8
    assert persisting(toy, 10, HEALTHY, modes_covered=7) == []
    (finding,) = persisting(toy, 20, HEALTHY, modes_covered=3)
    assert finding.evidence == {"modes_covered": 3, "best_modes_covered": 8}


def test_overfitting_when_d_scores_nearly_every_real_image_real():
    watcher = warmed_up(Watcher(overfit_r_t=0.9))
    assert persisting(watcher, 10, dict(HEALTHY, r_t=0.85)) == []  # ADA steers toward 0.6; 0.85 is not yet alarming
    (start,) = persisting(watcher, 20, dict(HEALTHY, r_t=0.98))
    assert (start.kind, start.evidence["r_t"]) == ("overfitting", 0.98)
    assert "99.0% of the training images real" in start.message and "--augment ada" in start.record()["remedy"]
    (end,) = persisting(watcher, 30, dict(HEALTHY, r_t=0.6))
    assert (end.kind, end.status) == ("overfitting", "cleared")

    toy = warmed_up(Watcher())  # no threshold: 2-D data is drawn afresh every step and cannot be memorised
    assert persisting(toy, 10, dict(HEALTHY, r_t=1.0)) == []


def test_instability_when_a_loss_explodes():
    watcher = warmed_up(Watcher(divergence_factor=20))
    assert persisting(watcher, 10, dict(HEALTHY, loss_d=10.0)) == []
    (finding,) = persisting(watcher, 20, dict(HEALTHY, loss_g=500.0))
    assert finding.kind == "instability" and finding.evidence["loss_g"] == 500.0
    assert "--spectral-norm" in finding.record()["remedy"]


def test_mean_pairwise_distance():
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert mean_pairwise_distance(points) == pytest.approx(5.0)
    assert mean_pairwise_distance(points[:1]) == 0.0


# --- provoked in real (tiny) training runs --------------------------------------------------------------------------


def kinds(run) -> list[tuple[str, str]]:
    return [(r["kind"], r["status"]) for r in read_jsonl(run / "diagnostics.jsonl")]


def test_a_healthy_toy_run_reports_nothing(tmp_path, tiny_toy):
    run = train(out=str(tmp_path / "ok"), steps=400, loss="ns", show_progress=False, **tiny_toy)
    assert kinds(run) == []


def test_minimax_against_a_much_stronger_d_saturates(tmp_path, tiny_toy, capsys):
    settings = dict(tiny_toy, width_d=128, lr_d=2e-3, lr_g=1e-4, n_critic=5)
    run = train(out=str(tmp_path / "sat"), steps=300, loss="minimax", show_progress=False, **settings)
    assert ("saturation", "started") in kinds(run)
    assert "warning at step" in capsys.readouterr().err


def test_a_generator_fed_constant_noise_collapses(tmp_path, tiny_dcgan, monkeypatch):
    real_build = setup_mod.build

    def build_with_constant_z(model, spec):
        G, D = real_build(model, spec)
        forward = G.forward
        G.forward = lambda z, y=None: forward(torch.zeros_like(z), y)
        return G, D

    monkeypatch.setattr(setup_mod, "build", build_with_constant_z)
    # log every 5 steps: warm-up (4 intervals) plus COLLAPSE_PATIENCE intervals of identical samples
    # unconditional: a conditional G would still vary its samples with the label
    run = train(
        out=str(tmp_path / "collapsed"),
        steps=5 * (4 + COLLAPSE_PATIENCE + PERSIST + 2),
        show_progress=False,
        **dict(tiny_dcgan, log_every=5, conditional=False),
    )
    (record,) = [r for r in read_jsonl(run / "diagnostics.jsonl") if r["kind"] == "collapse"]
    assert record["evidence"]["diversity_ratio"] < 0.05 and "feature-matching" in record["remedy"]
    assert "--pack 2" in record["remedy"] and "--unroll 5" in record["remedy"]


def test_a_d_facing_a_frozen_generator_is_reported_as_memorising(tmp_path, tiny_dcgan, tiny_toy):
    # G barely moves (lr_d follows lr_g unless set), so D soon scores every real image real: r_t reaches the
    # threshold set on the command line
    run = train(
        out=str(tmp_path / "rt"), steps=150, lr_g=1e-9, lr_d=1e-3, overfit_r_t=0.8, show_progress=False, **tiny_dcgan
    )
    (record,) = [r for r in read_jsonl(run / "diagnostics.jsonl") if r["kind"] == "overfitting"]
    assert record["evidence"]["r_t"] >= 0.8 and "--mirror" in record["remedy"]
    toy = train(
        out=str(tmp_path / "toy"), steps=250, lr_g=1e-9, lr_d=1e-3, overfit_r_t=0.8, show_progress=False, **tiny_toy
    )
    assert min([r["r_t"] for r in read_jsonl(toy / "metrics.jsonl") if "r_t" in r][-5:]) >= 0.8  # would have fired
    assert "overfitting" not in [kind for kind, _ in kinds(toy)]


def test_divergence_is_reported_when_it_starts_and_recorded_when_the_run_stops(tmp_path, tiny_toy, monkeypatch):
    """D's loss reads 1,000× its level from step 101 (Adam's steps do not change: it is scale-free) and NaN from
    step 151: instability starts after PERSIST intervals of 10 steps, then the NaN stops the run at its log line."""
    from gankit.training.losses import LOSSES, GANLoss

    calls = {"n": 0}
    normal = LOSSES["ns"]

    def exploding(**kw):
        calls["n"] += 1
        loss = normal.d(**kw)
        return loss * (1.0 if calls["n"] <= 100 else 1e3 if calls["n"] <= 150 else math.nan)

    monkeypatch.setitem(LOSSES, "ns", GANLoss(exploding, normal.g))
    with pytest.raises(NonFiniteLoss, match="between steps 150 and 160"):
        train(out=str(tmp_path / "nan"), steps=400, loss="ns", show_progress=False, **tiny_toy)
    records = read_jsonl(tmp_path / "nan" / "diagnostics.jsonl")
    assert [(r["kind"], r["status"], r["step"]) for r in records] == [
        ("instability", "started", 100 + 10 * PERSIST),
        ("non_finite", "stopped", 160),
    ]
    assert records[0]["evidence"]["loss_d"] > 20 * records[0]["evidence"]["loss_d_early"]
