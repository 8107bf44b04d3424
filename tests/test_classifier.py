import json
import math

import pytest
import torch

from gankit.cli import main
from gankit.metrics import classifier
from gankit.metrics.classifier import coverage
from gankit.training.session import train


def test_coverage_on_hand_made_predictions():
    k = 4
    certain_two = torch.eye(k)[torch.tensor([0, 1] * 50)]  # confident, only classes 0 and 1
    c = coverage(certain_two)
    assert c["classes_hit"] == 2 and c["class_kl"] == pytest.approx(math.log(2))
    assert c["domain_is"] == pytest.approx(2.0)  # IS = exp(H(marginal)) for confident predictions
    uniform_confident = torch.eye(k)[torch.arange(100) % k]
    assert coverage(uniform_confident) == {
        "classes_hit": 4,
        "classes_total": 4,
        "class_kl": 0.0,
        "domain_is": pytest.approx(4.0),
    }
    unsure = torch.full((100, k), 1 / k)
    assert coverage(unsure)["domain_is"] == pytest.approx(1.0)


def test_classifier_train_cli_learns_and_is_found_by_evaluation(tmp_path, tiny28, capsys):
    assert main(["classifier", "train", "--data", str(tiny28), "--epochs", "3", "--batch-size", "20"]) == 0
    path = classifier.user_path(str(tiny28))
    assert path.is_file()
    model, meta = classifier.load_classifier(str(tiny28))
    assert meta["test_accuracy"] > 0.9 and meta["command"].startswith("gankit classifier train")
    images = torch.from_numpy(__import__("numpy").load(tiny28)["x"])[:, None]
    features, probs = classifier.classify(model, images)
    assert features.shape == (200, classifier.FEATURES) and probs.shape == (200, 2)

    run = train(
        data=str(tiny28),
        steps=20,
        width_g=8,
        width_d=8,
        batch_size=32,
        out=str(tmp_path / "r"),
        eval_every=5,
        eval_samples=50,
        keep_best="domain_fid",
        show_progress=False,
    )
    evals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "domain_fid" in r]
    assert [r["step"] for r in evals] == [5, 10, 15, 20]
    assert all(r["classes_total"] == 2 and r["domain_fid"] > 0 for r in evals)
    # --keep-best: the weights of the evaluation with the lowest domain FID, beside the last checkpoints
    from gankit.runs import best_path, read_metadata

    best = min(evals, key=lambda r: r["domain_fid"])
    kept = read_metadata(best_path(run))
    assert kept["step"] == best["step"] and kept["domain_fid"] == pytest.approx(best["domain_fid"])
    assert main(["sample", str(run), "--best", "--n", "4", "--out", str(tmp_path / "best.png")]) == 0
    assert main(["sample", str(run), "--best", "--format", "npz", "--n", "4", "--out", str(tmp_path / "b.npz")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["step"] == best["step"]

    capsys.readouterr()
    assert main(["eval", str(run), "--metrics", "coverage,dfid", "--n", "60", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"classes_hit", "class_kl", "domain_is", "domain_fid"} <= set(result["metrics"])
    assert result["protocol"]["domain"]["test_accuracy"] == meta["test_accuracy"]


def test_eval_every_without_a_classifier_is_a_clear_error(tmp_path, tiny_images):
    from gankit.errors import ConfigError

    with pytest.raises(ConfigError, match="gankit classifier train"):
        train(
            data=str(tiny_images),
            steps=5,
            width_g=8,
            width_d=8,
            batch_size=32,
            out=str(tmp_path / "r"),
            eval_every=5,
            show_progress=False,
        )


@pytest.mark.skipif(not classifier.shipped_path("fashion-mnist").is_file(), reason="no shipped weights in this tree")
def test_shipped_fashion_mnist_classifier_records_how_it_was_made():
    model, meta = classifier.load_classifier("fashion-mnist")
    assert meta["test_accuracy"] >= 0.92 and meta["command"].startswith("gankit classifier train --data fashion-mnist")


def test_linear_probe_separates_easy_classes_and_cli_writes_probe_json(tmp_path, tiny28, capsys):
    from gankit.metrics.probe import linear_probe

    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(50, 5, generator=gen) - 2, torch.randn(50, 5, generator=gen) + 2])
    y = torch.arange(100) // 50
    assert linear_probe(x[::2], y[::2], x[1::2], y[1::2], 2) == 1.0
    assert linear_probe(x[::2], y[::2][torch.randperm(50, generator=gen)], x[1::2], y[1::2], 2) < 0.8

    run = train(
        data=str(tiny28), steps=10, width_g=8, width_d=8, batch_size=32, out=str(tmp_path / "r"), show_progress=False
    )
    assert main(["eval", str(run), "--probe"]) == 0
    table = capsys.readouterr().out
    assert "D features" in table and "raw pixels" in table and "all 200 labels" in table
    result = json.loads((run / "probe.json").read_text())
    assert set(result["probe_test_accuracy"]) == {"100 labels", "all 200 labels"}
    assert result["probe_test_accuracy"]["all 200 labels"]["raw pixels"] > 0.9
