"""Remedies for mode collapse: packing (PacGAN), unrolling (Unrolled GAN), and the PacGAN 2-D preset."""

import copy

import pytest
import torch
from torch import nn

from gankit import train
from gankit.config import PRESETS, from_dict
from gankit.errors import ConfigError
from gankit.models import NetSpec, build, each_alone
from gankit.models.layers import pack
from gankit.training.defaults import resolve
from gankit.training.losses import d_logistic, gradient_penalty, r1_penalty
from gankit.training.unroll import unrolled_critic

TOY_SHAPE = {"resolution": 0, "num_classes": 0, "channels": 2}
IMAGE_SHAPE = {"resolution": 16, "num_classes": 3, "channels": 1}


@pytest.mark.parametrize(
    "model, spec",
    [
        ("mlp", NetSpec(channels=2, resolution=0, latent_dim=2, width_g=8, width_d=8, depth=2)),
        ("mlp", NetSpec(channels=2, resolution=0, num_classes=3, conditioning_d="concat", width_d=8, maxout_d=3)),
        ("dcgan", NetSpec(channels=1, resolution=16, num_classes=3, width_g=8, width_d=8, minibatch_std_d=True)),
        ("dcgan", NetSpec(channels=3, resolution=16, num_classes=3, width_g=8, width_d=8, conditioning_d="concat")),
        ("resnet", NetSpec(channels=3, resolution=32, num_classes=3, width_g=8, width_d=8)),
    ],
)
def test_a_packed_d_gives_one_logit_per_pack_and_sees_every_sample_of_it(model, spec):
    m, n = 4, 8
    torch.manual_seed(0)
    _, D = build(model, NetSpec(**{**spec.__dict__, "pack": m}))
    D.eval()
    shape = (n, spec.channels) + ((spec.resolution, spec.resolution) if spec.resolution else ())
    x, y = torch.randn(shape), torch.randint(0, 3, (n,)) if spec.num_classes else None
    logits = D(x, y)
    assert logits.shape == (n // m,)
    # Pack j is samples jm … jm + m − 1: changing one sample of pack 1 (or its label) moves pack 1's logit only
    x2 = x.clone()
    x2[m + 2] += 1.0
    moved = D(x2, y)
    assert moved[0] == logits[0] and moved[1] != logits[1]
    if y is not None:
        y2 = y.clone()
        y2[m + 1] = (y[m + 1] + 1) % 3
        assert D(x, y2)[1] != logits[1] and D(x, y2)[0] == logits[0]
    # Scored alone, every sample gets its own logit: the pack of m copies of itself
    alone = D(*each_alone(D, x, y))
    assert alone.shape == (n,)
    copies = x[2:3].repeat_interleave(m, dim=0)
    torch.testing.assert_close(alone[2], D(copies, None if y is None else y[2:3].repeat(m))[0])
    with pytest.raises(ValueError, match="packs of 4"):
        D(x[:6], None if y is None else y[:6])


def test_packing_stacks_consecutive_samples_along_channels():
    x = torch.arange(4 * 2 * 3 * 3, dtype=torch.float32).reshape(4, 2, 3, 3)
    packed, labels = pack(x, torch.tensor([5, 6, 7, 8]), 2)
    assert packed.shape == (2, 4, 3, 3)
    torch.testing.assert_close(packed[1], torch.cat([x[2], x[3]]))
    assert labels.tolist() == [[5, 6], [7, 8]]


def test_a_pack_s_labels_project_as_the_sum_of_their_embeddings():
    spec = NetSpec(channels=2, resolution=0, num_classes=3, width_d=8, depth=1, pack=2)
    _, D = build("mlp", spec)
    x, y = torch.randn(4, 2), torch.tensor([0, 2, 1, 1])
    f = D.features(x, y)
    embed = D.label_projection.weight
    expected = D.out(f).flatten() + (f * (embed[y[0::2]] + embed[y[1::2]])).sum(1)
    torch.testing.assert_close(D(x, y), expected)


def test_gradient_penalty_and_r1_take_one_norm_per_pack():
    """A linear critic of packs, D(pack) = w · pack, has gradient w with respect to each pack: the penalties are
    (‖w‖ − 1)² and ‖w‖², where per-sample norms would give (‖w_i‖ − 1)² and ‖w_i‖² averaged over the halves."""
    w = torch.tensor([3.0, 0.0, 0.0, 4.0])  # ‖w‖ = 5; each half has norm 3 or 4

    def critic(x):
        return pack(x, None, 2)[0] @ w

    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(16.0)
    assert r1_penalty(critic, real).item() == pytest.approx(25.0)


def test_pack_is_checked_against_the_batch():
    with pytest.raises(ConfigError, match="packs of 3"):
        resolve(from_dict({"data": "ring8", "pack": 3, "batch_size": 64}), TOY_SHAPE)
    with pytest.raises(ConfigError, match="pack must be at least 1"):
        from_dict({"pack": 0})


def tiny_game(optimizer: str):
    torch.manual_seed(1)
    spec = NetSpec(channels=2, resolution=0, latent_dim=2, width_g=6, width_d=5, depth=1, batchnorm_g=False)
    G, D = build("mlp", spec)
    G, D = G.double(), D.double()
    if optimizer == "adam":
        opt = torch.optim.Adam(D.parameters(), lr=0.05, betas=(0.5, 0.9))
    else:
        opt = torch.optim.RMSprop(D.parameters(), lr=0.01)
    x, z = torch.randn(16, 2, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    # Two real steps first, so that the look-ahead starts from non-zero moments and a step count of 2
    for _ in range(2):
        loss = d_logistic(real_logits=D(x), fake_logits=D(G(z).detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return G, D, opt, x, z


def d_loss(real_logits, fake_logits):
    return d_logistic(real_logits=real_logits, fake_logits=fake_logits)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_the_look_ahead_is_the_optimiser_s_own_steps(optimizer):
    """K unrolled steps leave D's logits exactly where K real steps of its optimiser on the same batch would."""
    G, D, opt, x, z = tiny_game(optimizer)
    fake = G(z)
    ahead = unrolled_critic(D, opt, d_loss, x, None, fake, steps=3)
    D_real = copy.deepcopy(D)
    opt_real = type(opt)(D_real.parameters(), **opt.defaults)
    opt_real.load_state_dict(opt.state_dict())
    for _ in range(3):
        loss = d_loss(D_real(x), D_real(fake.detach()))
        opt_real.zero_grad()
        loss.backward()
        opt_real.step()
    probe = torch.randn(10, 2, dtype=torch.float64)
    torch.testing.assert_close(ahead(probe), D_real(probe))
    # D itself has not moved
    torch.testing.assert_close(D(probe), unrolled_critic(D, opt, d_loss, x, None, fake, steps=0)(probe))


def test_unrolled_gradient_matches_a_hand_computed_one_step_case():
    """K = 1 with Adam, written out by hand: θ_D' = θ_D − lr·m̂/(√v̂ + ε) from the saved moments, and G's gradient
    taken through θ_D'(θ_G); checked against the look-ahead's, and both against central differences."""
    G, D, opt, x, z = tiny_game("adam")
    (beta1, beta2), lr, eps = opt.param_groups[0]["betas"], opt.param_groups[0]["lr"], opt.param_groups[0]["eps"]
    names = [name for name, _ in D.named_parameters()]

    def g_loss_by_hand():
        fake = G(z)
        theta = {name: p.detach().requires_grad_(True) for name, p in D.named_parameters()}

        def d_of(params, points):
            return torch.func.functional_call(D, params, (points,))

        grads = torch.autograd.grad(d_loss(d_of(theta, x), d_of(theta, fake)), list(theta.values()), create_graph=True)
        stepped = {}
        for name, p, g in zip(names, D.parameters(), grads):
            state = opt.state[p]
            t = float(state["step"]) + 1
            m = beta1 * state["exp_avg"] + (1 - beta1) * g
            v = beta2 * state["exp_avg_sq"] + (1 - beta2) * g * g
            stepped[name] = theta[name] - lr * (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + eps)
        return nn.functional.softplus(-d_of(stepped, fake)).mean()  # ns: G maximises log D(G(z))

    def g_loss_unrolled():
        fake = G(z)
        return nn.functional.softplus(-unrolled_critic(D, opt, d_loss, x, None, fake, steps=1)(fake)).mean()

    by_hand = torch.autograd.grad(g_loss_by_hand(), list(G.parameters()))
    unrolled = torch.autograd.grad(g_loss_unrolled(), list(G.parameters()))
    for a, b in zip(by_hand, unrolled):
        torch.testing.assert_close(a, b)
    # Central differences in one weight of G's output layer
    weight = G.net[-1].weight

    def loss_at(shift):
        with torch.no_grad():
            weight[0, 0] += shift
        value = g_loss_unrolled().item()  # the look-ahead itself differentiates D's loss: not under no_grad
        with torch.no_grad():
            weight[0, 0] -= shift
        return value

    up, down = loss_at(1e-5), loss_at(-1e-5)
    assert unrolled[-2][0, 0].item() == pytest.approx((up - down) / 2e-5, rel=1e-4, abs=1e-9)
    # And the look-ahead matters: against D as it is, G's gradient differs
    plain = torch.autograd.grad(nn.functional.softplus(-D(G(z))).mean(), list(G.parameters()))
    assert not torch.allclose(plain[-2], unrolled[-2])


def test_unroll_refuses_feature_matching():
    with pytest.raises(ConfigError, match="--unroll"):
        resolve(from_dict({"data": "ring8", "unroll": 2, "loss": "feature-matching"}), TOY_SHAPE)


def test_the_pacgan_preset_lays_their_settings_under_the_ones_given(tmp_path):
    cfg = resolve(from_dict({"preset": "pacgan", "data": "grid25", "pack": 4}), TOY_SHAPE)
    for key, value in PRESETS["pacgan"].items():
        assert getattr(cfg, key) == value, key
    assert cfg.batch_size == 400  # 100 packs of 4, as their code batches
    assert resolve(from_dict({"preset": "pacgan", "data": "grid25"}), TOY_SHAPE).batch_size == 100
    mine = resolve(from_dict({"preset": "pacgan", "data": "ring8", "lr_g": 3e-4, "batch_size": 64}), TOY_SHAPE)
    assert (mine.lr_g, mine.batch_size, mine.width_g) == (3e-4, 64, 400)
    with pytest.raises(ConfigError, match="preset must be one of"):
        from_dict({"preset": "bigGAN"})


def test_the_pacgan_networks_are_theirs():
    cfg = resolve(from_dict({"preset": "pacgan", "data": "grid25", "pack": 2}), TOY_SHAPE)
    from gankit.training.defaults import net_spec

    G, D = build("mlp", net_spec(cfg, TOY_SHAPE))
    linears_g = [m for m in G.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears_g] == [(2, 400)] + [(400, 400)] * 3 + [(400, 2)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in G.modules()) == 4
    linears_d = [m for m in D.modules() if isinstance(m, nn.Linear)]
    # maxout units of 5 pieces: each hidden layer is a linear map to 200 × 5, maxed over the pieces
    assert [(m.in_features, m.out_features) for m in linears_d] == [(4, 1000), (200, 1000), (200, 1000), (200, 1)]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in D.modules())
    weights = torch.cat([m.weight.flatten() for m in linears_g + linears_d])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert all((m.bias == 0).all() for m in linears_g + linears_d)
    h = torch.tensor([[1.0, 5.0, 2.0, 0.0, -1.0, -3.0, -2.0, -4.0, -5.0, -0.5]])
    assert D.body[1](h).tolist() == [[5.0, -0.5]]  # 2 units of 5 pieces each


def test_packed_and_unrolled_training_runs_end_to_end_and_is_recorded(tmp_path, tiny_toy):
    run = train(
        out=str(tmp_path / "run"), steps=40, preset="pacgan", pack=2, unroll=1, show_progress=False,
        **{**tiny_toy, "width_g": 16, "width_d": 8, "batch_size": None},
    )  # fmt: skip
    from gankit.config import load_file
    from gankit.metrics.evaluate import evaluate_toy

    assert evaluate_toy(run, n=200)["metrics"]["modes_total"] == 8  # D's map beside D* scores each point alone
    saved = load_file(run / "config.json")
    assert (saved["preset"], saved["pack"], saved["unroll"], saved["batch_size"], saved["maxout"]) == (
        "pacgan", 2, 1, 200, 5,
    )  # fmt: skip


# --- Stacked Fashion-MNIST: 1,000 modes ------------------------------------------------------------------------------


def test_stacked_images_are_three_grey_images_and_their_mode_is_the_three_classes(tmp_path):
    import numpy as np
    from conftest import write_idx_split

    from gankit.data import load_images
    from gankit.data.sources import _load_named
    from gankit.data.stacked import SIZES, stack

    images, labels = write_idx_split(tmp_path, "t10k", n=7)
    labels = labels.astype(int)
    grey = _load_named("fashion-mnist", "test", str(tmp_path), download=False)
    stacked, modes = stack(grey, "stacked-fashion-mnist", "test")
    assert stacked.x.shape == (SIZES["test"], 3, 28, 28) and stacked.y is None and stacked.num_classes == 0
    for i in (0, 1234, SIZES["test"] - 1):
        picks = [int(np.flatnonzero((images == stacked.x[i, c].numpy()).all(axis=(1, 2)))[0]) for c in range(3)]
        assert modes[i] == 100 * labels[picks[0]] + 10 * labels[picks[1]] + labels[picks[2]]
    again = load_images("stacked-fashion-mnist", "test", data_dir=str(tmp_path), download=False)
    assert torch.equal(again.x, stacked.x)  # the same draw for everyone
    assert again.name == "stacked-fashion-mnist" and "stacked as R, G, B" in again.source


def test_stacked_mode_counting_on_hand_made_images():
    from gankit.metrics.modes import histogram_kl, stacked_modes

    # A stand-in classifier: an image's class is its brightness / 10; image i has channels of classes (a, b, c)
    def classify(grey):
        return grey.float().mean(dim=(1, 2, 3)).div(10).round().long()

    triples = [(1, 2, 3)] * 6 + [(9, 9, 9)] * 2 + [(0, 0, 7)] * 2
    images = torch.tensor(triples, dtype=torch.uint8)[:, :, None, None].mul(10).expand(-1, -1, 28, 28)
    metrics, proto = stacked_modes(classify, {"test_accuracy": 0.9}, images)
    assert metrics["modes_covered"] == 3 and metrics["modes_total"] == 1000
    share = torch.tensor([0.6, 0.2, 0.2], dtype=torch.float64)
    assert metrics["modes_kl"] == pytest.approx(float((share * (share * 1000).log()).sum()))
    assert proto["modes_read_right"] == pytest.approx(0.729) and proto["n"] == 10
    assert histogram_kl(torch.ones(1000)) == pytest.approx(0.0)
    assert histogram_kl(torch.tensor([5.0, 0, 0, 0])) == pytest.approx(torch.log(torch.tensor(4.0)).item())


def test_eval_counts_the_modes_of_a_stacked_run_and_refuses_them_elsewhere(tmp_path, monkeypatch, tiny_toy):
    from conftest import write_idx_split

    from gankit.data import stacked
    from gankit.metrics import evaluate

    monkeypatch.setattr(evaluate, "STACKED_SAMPLES", 300)
    monkeypatch.setattr(stacked, "SIZES", {"train": 600, "test": 200})  # 60,000 and 26,000 in earnest
    write_idx_split(tmp_path / "fm", "train", n=20)
    write_idx_split(tmp_path / "fm", "t10k", n=20)
    run = train(
        data="stacked-fashion-mnist", data_dir=str(tmp_path / "fm"), steps=3, width_g=8, width_d=8, batch_size=16,
        out=str(tmp_path / "r"), show_progress=False,
    )  # fmt: skip
    assert evaluate.parse_metrics(None, "stacked-fashion-mnist")[-1] == "modes"
    result = evaluate.evaluate_run(run, None, metrics=["modes"], n=32)
    assert 1 <= result["metrics"]["modes_covered"] <= 300 and result["metrics"]["modes_total"] == 1000
    assert result["protocol"]["modes"]["n"] == 300 and result["protocol"]["modes"]["classifier_test_accuracy"] > 0.8
    floor = evaluate.real_vs_real("stacked-fashion-mnist", None, ["modes"], data_dir=str(tmp_path / "fm"))
    assert floor["protocol"]["modes"]["n"] == 200  # the whole stacked test split
    plain = train(out=str(tmp_path / "toy"), steps=3, show_progress=False, **tiny_toy)
    with pytest.raises(ConfigError, match="2-D toy run"):
        evaluate.evaluate_run(plain, None, metrics=["modes"])
