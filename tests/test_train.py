import json

import numpy as np
import pytest
import torch
from conftest import AVX2_ONLY, FAST_BF16, SLOW_BF16
from safetensors.torch import load_file

from gankit import runs as checkpoint
from gankit.data.batches import ImageBatches, fixed_noise
from gankit.errors import CheckpointError, ConfigError, NonFiniteLoss
from gankit.models import NetSpec, build
from gankit.training.engine import d_step
from gankit.training.finetune import class_tables, mean_rows
from gankit.training.losses import LOSSES, GANLoss, d_logistic
from gankit.training.session import train
from gankit.training.state import Game, Precision


def weights(run_dir):
    return load_file(str(checkpoint.latest(run_dir)))


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def records(run_dir):
    """The training log lines (evaluation and toy-metric lines left out)."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if "loss_d" in r]


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_trains_a_toy_gan(tmp_path, tiny_toy, loss):
    run = train(out=str(tmp_path / loss), loss=loss, steps=30, show_progress=False, **tiny_toy)
    logged = records(run)
    assert [r["step"] for r in logged] == [10, 20, 30]
    assert all(torch.isfinite(torch.tensor([r["loss_d"], r["loss_g"], r["grad_norm_g"]])).all() for r in logged)
    assert (run / "samples" / "step_0000030.png").exists()
    saved = json.loads((run / "config.json").read_text())
    assert saved["loss"] == loss and None not in (saved["latent_dim"], saved["beta1"], saved["batch_size"])
    assert saved["n_critic"] == (5 if loss in ("wgan", "wgan-gp") else 1)  # the WGAN papers' critic steps


def test_d_step_lowers_d_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    G, D = build(
        "mlp",
        NetSpec(
            channels=2,
            resolution=0,
            latent_dim=4,
            width_g=16,
            width_d=16,
            depth=2,
            batchnorm_g=False,
            batchnorm_d=False,
        ),
    )
    opt = torch.optim.Adam(D.parameters(), lr=1e-2)
    game = Game(LOSSES["ns"], 1.0, 0.0, None, 1)
    precision = Precision(torch.device("cpu"), dtype=None, channels_last=False)
    x = torch.randn(64, 2) + 3
    with torch.no_grad():
        fake = G(torch.randn(64, 4), None)
    losses = [d_step(D, opt, game, precision, x, None, fake)["loss_d"].item() for _ in range(50)]
    assert losses[-1] < 0.5 * losses[0]


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, tiny_dcgan):
    common = dict(steps=20, precision="fp32", show_progress=False, **tiny_dcgan)
    a = weights(train(out=str(tmp_path / "a"), seed=1, **common))
    b = weights(train(out=str(tmp_path / "b"), seed=1, **common))
    c = weights(train(out=str(tmp_path / "c"), seed=2, **common))
    assert_same_weights(a, b)
    assert not torch.equal(a["G.net.0.weight"], c["G.net.0.weight"])


@pytest.mark.parametrize(
    "kind, extra",
    [
        ("toy", dict(dropout=0.2, loss="wgan-gp")),  # dropout and the penalty's random mix exercise every RNG
        ("toy", dict(r1=1.0, lecam=0.3)),  # the lazy R1 term's schedule, LeCam's anchors
        ("toy", dict(pack=2, unroll=1)),  # packed D; G's look-ahead from Adam's saved moments
        # batch norm (per class in G), EMA, Adam, channels_last
        ("dcgan", dict(precision="fp32", conditional=True, minibatch_std=True, class_batchnorm=True, mirror=True)),
        # spectral norm's power-iteration buffers; the augmentations' random stream
        ("dcgan-bf16", dict(precision="bf16", spectral_norm=True, augment="translation,cutout,color")),
        ("dcgan-fp16", dict(precision="fp16")),  # the loss scalers' state
        # adaptive augmentation's p and r_t sums; R1 and LeCam on images; the residual networks (conditional)
        ("dcgan", dict(precision="fp32", augment="ada", ada_kimg=1, r1=1.0, lecam=0.1)),
        ("dcgan", dict(model="resnet", resolution=32, conditional=True, precision="fp32")),
    ],
)
def test_resume_is_exact(tmp_path, tiny_toy, tiny_dcgan, kind, extra):
    base = dict(tiny_toy if kind == "toy" else tiny_dcgan, **extra, show_progress=False)
    n = 200 if kind == "toy" else 60
    straight = train(out=str(tmp_path / "straight"), steps=n, **base)
    split = train(out=str(tmp_path / "split"), steps=n // 2, **base)
    train(out=str(split), steps=n, resume=True, **base)
    assert_same_weights(weights(straight), weights(split))
    assert [r["loss_d"] for r in records(straight)] == [r["loss_d"] for r in records(split)]


def test_image_networks_train_channels_last_and_toy_networks_as_they_are(tmp_path, tiny_toy, tiny_dcgan, monkeypatch):
    from gankit.training import session, setup

    built = []

    def build_state(*args):
        built.append(setup.build_state(*args))
        return built[-1]

    monkeypatch.setattr(session, "build_state", build_state)
    for name, kw in (
        ("dcgan", tiny_dcgan),
        ("resnet", dict(tiny_dcgan, model="resnet", resolution=32)),
        ("toy", tiny_toy),
    ):
        train(out=str(tmp_path / name), steps=1, show_progress=False, **kw)
    conv = [next(p for p in state.G.parameters() if p.dim() == 4) for state in built[:2]]
    assert [state.precision.channels_last for state in built] == [True, True, False]
    assert all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in conv)


def test_existing_run_is_not_overwritten(tmp_path, tiny_toy):
    run = train(out=str(tmp_path / "r"), steps=10, show_progress=False, **tiny_toy)
    with pytest.raises(ConfigError, match="--resume"):
        train(out=str(run), steps=10, show_progress=False, **tiny_toy)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_toy, monkeypatch):
    calls = {"n": 0}

    def poisoned(**kw):  # normal for 60 D steps, then NaN
        calls["n"] += 1
        loss = d_logistic(**kw)
        return loss if calls["n"] <= 60 else loss * float("nan")

    monkeypatch.setitem(LOSSES, "ns", GANLoss(poisoned, LOSSES["ns"].g))
    with pytest.raises(NonFiniteLoss, match="step_0000050") as info:
        train(out=str(tmp_path / "nan"), steps=200, show_progress=False, **tiny_toy)
    assert "between steps 60 and 70" in str(info.value)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path / "nan")] == [50]
    assert all(torch.isfinite(t).all() for t in weights(tmp_path / "nan").values())


def test_a_failed_checkpoint_write_leaves_the_previous_one_intact(tmp_path, tiny_toy, monkeypatch):
    run = train(out=str(tmp_path / "r"), steps=50, show_progress=False, **tiny_toy)
    before = weights(run)

    def crash(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", crash)
    with pytest.raises(OSError):
        train(out=str(run), steps=100, resume=True, show_progress=False, **tiny_toy)
    assert [s for s, _ in checkpoint.list_checkpoints(run)] == [50]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert_same_weights(before, weights(run))


def test_resume_skips_an_unreadable_newest_checkpoint_and_says_so(tmp_path, tiny_toy, capsys):
    from gankit.runs import load_networks

    common = dict(show_progress=False, **tiny_toy)
    straight = train(out=str(tmp_path / "straight"), steps=150, **common)
    run = train(out=str(tmp_path / "r"), steps=100, **common)  # checkpoints at 50 and 100
    newest = checkpoint.latest(run)
    newest.write_bytes(newest.read_bytes()[:100])  # a disk fault cut it short
    assert load_networks(run)[3] == 50  # sampling and evaluation fall back too
    capsys.readouterr()
    train(out=str(run), steps=150, resume=True, **common)
    err = capsys.readouterr().err
    assert "skipped step_0000100.safetensors, checkpoint" in err and "is unreadable" in err
    assert "resuming from step_0000050.safetensors, the newest readable checkpoint" in err
    assert (run / "checkpoints" / "step_0000100.safetensors.unreadable").is_file()  # kept aside, not deleted
    assert [s for s, _ in checkpoint.list_checkpoints(run)] == [50, 100, 150]  # 100 written again from 50
    assert_same_weights(weights(straight), weights(run))  # and it is still the same run


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, tiny_toy):
    run = train(out=str(tmp_path / "r"), steps=10, show_progress=False, **tiny_toy)
    checkpoint.latest(run).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable"):
        train(out=str(run), steps=20, resume=True, show_progress=False, **tiny_toy)


def test_image_batches_cover_each_image_once_per_epoch_and_shard():
    x = torch.arange(40).view(40, 1, 1, 1)
    full = ImageBatches(x, None, batch_size=8, seed=0)
    seen = torch.cat([full(b)[0].flatten() for b in range(5)])
    assert sorted(seen.tolist()) == list(range(40))
    assert not torch.equal(full(0)[0], full(5)[0])  # a new permutation each epoch
    ranks = [ImageBatches(x, None, batch_size=8, seed=0, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat([r(3)[0] for r in ranks]), full(3)[0])


def test_max_minutes_stops_a_run_with_a_checkpoint(tmp_path, tiny_toy):
    run = train(out=str(tmp_path / "timed"), steps=10**6, max_minutes=0.05, show_progress=False, **tiny_toy)
    step, _ = checkpoint.list_checkpoints(run)[-1]
    assert 0 < step < 10**6
    assert records(run)[-1]["step"] == step


def test_tensorboard_events_hold_the_scalars_images_and_weight_histograms(tmp_path, tiny_dcgan):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(
        out=str(tmp_path / "tb"), steps=20, show_progress=False, **dict(tiny_dcgan, log_every=5, sample_every=10)
    )
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0, "images": 0, "histograms": 0}).Reload()
    tags = events.Tags()
    assert {"train/loss_d", "train/loss_g", "train/d_real", "train/d_fake", "train/grad_norm_g"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/loss_d")] == [5, 10, 15, 20]
    logged = [r["loss_d"] for r in records(run)]
    assert [e.value for e in events.Scalars("train/loss_d")] == pytest.approx(logged, rel=1e-5)
    assert "samples" in tags["images"] and [e.step for e in events.Images("samples")] == [10, 20]
    assert any(t.startswith("G/") for t in tags["histograms"]) and any(t.startswith("D/") for t in tags["histograms"])


def record_lr_scales(monkeypatch, lr_g: float, lr_d: float) -> list[tuple[float, float]]:
    """(G's, D's) learning rate over its configured value, seen at the start of every training step."""
    from gankit.training import loop

    seen, real_step = [], loop.train_step

    def recording(state, step, stats):
        seen.append((state.opt_g.param_groups[0]["lr"] / lr_g, state.opt_d.param_groups[0]["lr"] / lr_d))
        real_step(state, step, stats)

    monkeypatch.setattr(loop, "train_step", recording)
    return seen


def test_linear_lr_decay_holds_then_falls_to_zero_at_the_end(tmp_path, tiny_toy, monkeypatch):
    seen = record_lr_scales(monkeypatch, lr_g=2e-4, lr_d=1e-3)  # mlp's default lr_g
    train(out=str(tmp_path / "decay"), steps=20, lr_decay="linear", lr_d=1e-3, show_progress=False, **tiny_toy)
    g, d = zip(*seen)
    assert g == pytest.approx(d) and g[:11] == pytest.approx([1.0] * 11)  # the first half at the full rate
    assert g[10:] == pytest.approx([2 * (1 - s / 20) for s in range(10, 20)])  # then linearly towards 0


def test_linear_lr_decay_follows_the_time_budget_when_it_ends_the_run_first(tmp_path, tiny_toy, monkeypatch):
    from gankit.training import session as session_mod

    seen = record_lr_scales(monkeypatch, lr_g=2e-4, lr_d=2e-4)
    monkeypatch.setattr(session_mod.Session, "elapsed", lambda self: 45.0)  # 3/4 of a one-minute budget, always
    train(out=str(tmp_path / "decay"), steps=20, max_minutes=1.0, lr_decay="linear", show_progress=False, **tiny_toy)
    g = [scale for scale, _ in seen]
    assert g[0] == pytest.approx(0.5)  # 2·(1 − 0.75): the budget is further along than the 0 steps
    assert g[-1] == pytest.approx(2 * (1 - 19 / 20))  # later the step count is further along


def test_augmentation_reaches_every_d_input_of_both_updates(tmp_path, tiny_dcgan, monkeypatch):
    from gankit.training import engine
    from gankit.training.augment import augment

    seen = []

    def recording(images, policy, draw, p=None):
        seen.append((images.requires_grad, policy))
        return augment(images, policy, draw, p)

    monkeypatch.setattr(engine, "diff_augment", recording)
    train(out=str(tmp_path / "aug"), steps=3, augment="translation,cutout", show_progress=False, **tiny_dcgan)
    # per step: D's real and fake batches (no graph to G), then G's fakes (with it)
    assert (
        seen
        == [(False, ("translation", "cutout")), (False, ("translation", "cutout")), (True, ("translation", "cutout"))]
        * 3
    )
    seen.clear()
    train(out=str(tmp_path / "plain"), steps=3, show_progress=False, **tiny_dcgan)
    assert seen == []


@pytest.mark.parametrize("machine, widths", [(FAST_BF16, (96, 64)), (SLOW_BF16, (96, 64)), (AVX2_ONLY, (48, 32))])
def test_image_defaults_follow_the_measurements(machine, widths, pin_host):
    from gankit.config import TrainConfig
    from gankit.training.defaults import resolve

    pin_host(**machine)
    shape = dict(channels=1, resolution=28, num_classes=10)
    cfg = resolve(TrainConfig(), shape)
    # where a step is ~3.5× slower (fp32 on AVX2), narrower networks' extra steps won
    assert (cfg.width_g, cfg.width_d, cfg.batch_size, cfg.lr_g, cfg.conditional) == (*widths, 32, 4e-4, True)
    assert cfg.precision == ("bf16" if machine is FAST_BF16 else "fp32")
    fp32 = resolve(TrainConfig(precision="fp32"), shape)
    assert (fp32.width_g, fp32.width_d) == widths  # the machine decides, not --precision
    for minutes, budget_widths in ((10, (48, 32)), (15, (48, 32)), (30, widths)):
        timed = resolve(TrainConfig(max_minutes=minutes), shape)  # a short budget buys too few wide updates on a CPU
        assert (timed.width_g, timed.width_d) == budget_widths
    other = resolve(TrainConfig(), dict(shape, resolution=32))
    assert (other.width_g, other.width_d) == (64, 64)  # not measured there: DCGAN's
    assert resolve(TrainConfig(width_g=40), shape).width_g == 40
    assert resolve(TrainConfig(model="mlp"), dict(shape, resolution=0, num_classes=0)).width_d == 256


def test_wgan_gp_defaults_are_its_papers_for_images_and_its_authors_toy_script_for_2d_data():
    from gankit.config import TrainConfig
    from gankit.training.defaults import resolve

    def settings(shape, **kw):
        cfg = resolve(TrainConfig(loss="wgan-gp", **kw), shape)
        return cfg.gp_weight, cfg.beta1, cfg.beta2, cfg.lr_g, cfg.n_critic

    images, toy = dict(channels=1, resolution=28, num_classes=0), dict(channels=2, resolution=0, num_classes=0)
    assert settings(images) == (10.0, 0.0, 0.9, 1e-4, 5)  # algorithm 1
    assert settings(toy) == (0.1, 0.5, 0.9, 1e-4, 5)  # gan_toy.py
    assert settings(toy, gp_weight=10.0, beta1=0.0) == (10.0, 0.0, 0.9, 1e-4, 5)  # the user's word wins
    assert resolve(TrainConfig(loss="ns"), toy).gp_weight == 0.0


def test_auto_precision_is_bf16_only_where_it_is_faster_and_asking_for_it_elsewhere_gets_a_note(
    tmp_path, tiny_dcgan, tiny_toy, pin_host, capsys
):
    for machine in (FAST_BF16, SLOW_BF16, AVX2_ONLY):
        pin_host(**machine)
        run = train(out=str(tmp_path / f"auto-{machine['bf16_speedup']}"), steps=2, show_progress=False, **tiny_dcgan)
        assert json.loads((run / "config.json").read_text())["precision"] == (
            "bf16" if machine is FAST_BF16 else "fp32"
        )
    pin_host(**FAST_BF16)
    run = train(out=str(tmp_path / "toy"), steps=2, show_progress=False, **tiny_toy)
    assert json.loads((run / "config.json").read_text())["precision"] == "fp32"  # toy points stay fp32 everywhere
    for machine, note in ((AVX2_ONLY, "no native bf16 arithmetic"), (SLOW_BF16, "bf16 ran at 0.55× the speed of fp32")):
        pin_host(**machine)
        capsys.readouterr()
        run = train(
            out=str(tmp_path / f"asked-{machine['bf16_speedup']}"),
            steps=2,
            precision="bf16",
            show_progress=False,
            **tiny_dcgan,
        )
        assert note in capsys.readouterr().err
        assert json.loads((run / "config.json").read_text())["precision"] == "bf16"  # asked for: kept


def test_r1_and_lecam_are_logged_where_they_act(tmp_path, tiny_toy):
    settings = dict(tiny_toy, steps=64, r1=1.0, lecam=0.3, log_every=8, show_progress=False)
    run = train(out=str(tmp_path / "r"), **settings)
    logged = [(r["step"], "r1_penalty" in r, r.get("lecam_penalty", -1) >= 0) for r in records(run)]
    ends = [s for s, _, _ in logged]  # a record at step s holds the steps after the previous record's, up to s
    windows = [range(start, end) for start, end in zip([0, *ends], ends)]
    # R1 on every 16th step (0, 16, 32, 48): in the windows that hold one; LeCam in every window.
    assert [s for s, has_r1, _ in logged if has_r1] == [w.stop for w in windows if any(t % 16 == 0 for t in w)]
    assert len(logged) >= 8 and all(has_lecam for _, _, has_lecam in logged)


def test_adaptive_augmentation_moves_p_by_adas_step_and_logs_it(tmp_path, tiny_dcgan):
    from gankit.runs import list_checkpoints, state_path

    settings = dict(tiny_dcgan, steps=60, augment="ada", ada_kimg=1, precision="fp32", show_progress=False)
    run = train(out=str(tmp_path / "r"), **settings)
    logged = records(run)
    assert all(0 <= r["ada_p"] <= 1 and -1 <= r["r_t"] <= 1 for r in logged)
    p = torch.load(state_path(list_checkpoints(run)[-1][1]), weights_only=True)["ada"][0].item()
    step = 32 * 4 / 1000  # batch 32, every 4 steps, over 1,000 images
    assert p == 1 or abs(p / step - round(p / step)) < 1e-4  # whole steps of the rule (or clamped at 1)
    assert any(r["ada_p"] > 0 for r in logged)  # this tiny D memorises its 243 images: p rose


def test_init_from_another_run_with_d_s_first_stages_frozen(tmp_path, tiny_dcgan, capsys):
    settings = dict(tiny_dcgan, steps=20, precision="fp32", show_progress=False)
    source = train(out=str(tmp_path / "source"), **settings)
    tuned = train(out=str(tmp_path / "tuned"), init_from=str(source), freeze_d=1, seed=3, **settings)
    assert f"starting from {source}/checkpoints/step_0000020.safetensors, D's first 1 stages frozen" in (
        capsys.readouterr().err
    )
    before, after = weights(source), weights(tuned)
    first = [k for k in before if k.startswith("D.body.0.")]  # D's first stage: its strided convolution
    assert first and all(torch.equal(before[k], after[k]) for k in first)
    assert not torch.equal(before["D.out.weight"], after["D.out.weight"])  # the rest of D trained on
    assert not torch.equal(before["G.net.0.weight"], after["G.net.0.weight"])
    with pytest.raises(
        ConfigError, match=r"differ from these \(G\.net\.0\.weight: \(16, 16, 4, 4\) there, \(16, 32, 4, 4\) here\)"
    ):
        train(out=str(tmp_path / "wider"), init_from=str(source), **dict(settings, width_g=16))
    with pytest.raises(ConfigError, match="needs --init-from"):
        train(out=str(tmp_path / "x"), freeze_d=1, **settings)
    with pytest.raises(ConfigError, match="this D has 2 stages"):
        train(out=str(tmp_path / "y"), init_from=str(source), freeze_d=2, **settings)


def test_init_from_a_conditional_run_onto_another_number_of_classes(tmp_path, tiny_dcgan, capsys):
    """Each class table (G's label embedding, per-class batch norm, D's projection) starts as the mean of the
    pretrained rows; every other tensor is taken as it was trained."""
    settings = dict(tiny_dcgan, class_batchnorm=True, precision="fp32", show_progress=False)
    source = train(out=str(tmp_path / "source"), steps=20, **settings)
    three = tmp_path / "three.npz"
    np.savez(three, x=np.load(tiny_dcgan["data"])["x"], y=np.arange(256) % 3)
    # a learning rate of 1e-12 keeps one step's Adam update far below the tolerances
    tuned = train(
        out=str(tmp_path / "tuned"),
        init_from=str(source),
        steps=1,
        lr_g=1e-12,
        lr_d=1e-12,
        **dict(settings, data=str(three), log_every=1, checkpoint_every=1),
    )
    assert "its 2 classes' tables averaged into each of the 3 classes here" in capsys.readouterr().err
    before, after = weights(source), weights(tuned)
    tables = [k for k in before if before[k].shape != after[k].shape]
    assert {"G.label_embedding.weight", "D.label_projection.weight"} <= set(tables)
    assert any(".scale.weight" in k for k in tables) and any(".shift.weight" in k for k in tables)
    for k in tables:
        assert after[k].shape == (3, before[k].shape[1]) and torch.equal(after[k], after[k][:1].expand(3, -1))
    # G and D, not G_ema: the EMA's first update (β ramped up from 0.1) blends it with G
    trained = [k for k in before if not k.startswith("G_ema.") and "running_" not in k and "num_batches" not in k]
    for k in trained:  # (nor batch norm's running statistics, which one step moves)
        expected = before[k].mean(0).expand(3, -1) if k in tables else before[k]
        assert torch.allclose(after[k], expected, atol=1e-6), k
    plain = dict(settings, conditional=False, class_batchnorm=False)
    unconditional = train(out=str(tmp_path / "plain"), steps=2, **plain)
    with pytest.raises(ConfigError, match=r"G\.label_embedding\.weight: missing there"):
        train(out=str(tmp_path / "x"), init_from=str(unconditional), steps=1, **settings)


def test_a_conditional_run_on_a_subset_of_classes_draws_only_those(tmp_path, tiny_dcgan, capsys):
    """A subset that kept its labels (classes 1 and 3 of 0..3): grids, samples and --label stay on the classes G
    was trained on; the others' embeddings never saw an image."""
    subset = tmp_path / "subset.npz"
    np.savez(subset, x=np.load(tiny_dcgan["data"])["x"], y=1 + 2 * (np.arange(256) % 2))
    run = checkpoint.load(train(out=str(tmp_path / "run"), steps=2, **dict(tiny_dcgan, data=str(subset))))
    assert run.spec.num_classes == 4 and run.spec.classes == (1, 3)
    assert "images 1×16×16, classes 1, 3 of 4," in capsys.readouterr().err
    assert checkpoint.labels_for(run.spec, 5, None).tolist() == [1, 3, 1, 3, 1]
    assert fixed_noise(0, 4, 8, run.spec.drawn_classes)[1].tolist() == [1, 3, 1, 3]
    assert checkpoint.labels_for(run.spec, 2, 3).tolist() == [3, 3]
    with pytest.raises(ConfigError, match=r"class 0 was not in this run's training data \(it had 1, 3\)"):
        run.generate(2, labels=0)
    everything = NetSpec(num_classes=4)
    assert everything.classes == () and checkpoint.labels_for(everything, 5, None).tolist() == [0, 1, 2, 3, 0]


def test_class_tables_include_spectral_norm_vectors_which_keep_their_fresh_value():
    G, D = build(
        "resnet", NetSpec(channels=1, resolution=32, num_classes=4, width_g=8, width_d=8, spectral_norm_d=True)
    )
    tables = class_tables({"G": G, "D": D})
    u = [k for k in tables if k.endswith("._u")]
    assert u and all(k.startswith("D.") for k in u)
    assert any(k.startswith("G.") and k.endswith("scale.weight") for k in tables)
    fresh = torch.randn(4)
    assert torch.equal(mean_rows(torch.randn(7), fresh), fresh)
    assert torch.equal(
        mean_rows(torch.tensor([[1.0, 2.0], [3.0, 6.0]]), torch.zeros(3, 2)), torch.tensor([[2.0, 4.0]] * 3)
    )
