"""The Python API a notebook user types: train, resume, load, evaluate, and callbacks — equal to the CLI."""

import json

import pytest
import torch
from conftest import tiny_extractor
from PIL import Image

import gankit
from gankit.cli import main
from gankit.metrics import inception


@pytest.fixture
def image_run(tmp_path, tiny_images):
    return gankit.train(
        data=str(tiny_images),
        steps=20,
        width_g=8,
        width_d=8,
        latent_dim=8,
        batch_size=32,
        grid_size=16,
        checkpoint_every=10,
        log_every=5,
        out=str(tmp_path / "img"),
        show_progress=False,
    )


def test_load_gives_networks_and_draws_like_the_cli(image_run, tmp_path):
    run = gankit.load(image_run)
    assert run.ema and run.step == 20 and run.spec.num_classes == 2 and not run.G.training
    x = run.generate(6, seed=3)
    assert x.shape == (6, 1, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, run.generate(6, seed=3)) and not torch.equal(x, run.generate(6, seed=4))
    ones = run.generate(4, labels=1)
    assert torch.equal(ones, run.generate(4, labels=torch.ones(4, dtype=torch.long)))
    with pytest.raises(gankit.ConfigError, match=r"labels must have shape \(4,\)"):
        run.generate(4, labels=torch.zeros(3, dtype=torch.long))
    api_png = run.save_samples(tmp_path / "api.png", n=8, seed=1)
    assert main(["sample", str(image_run), "--n", "8", "--seed", "1", "--ema", "--out", str(tmp_path / "cli.png")]) == 0
    assert Image.open(api_png).tobytes() == Image.open(tmp_path / "cli.png").tobytes()
    assert Image.open(api_png).size == (2 * 18 + 2, 4 * 18 + 2)  # one column per class
    assert not gankit.load(image_run, ema=False).ema


def test_evaluate_a_run_or_any_images_on_one_protocol(image_run, tiny_images, monkeypatch, capsys):
    monkeypatch.setattr(inception, "load_inception", lambda path=None, fast=False, resize="bilinear": tiny_extractor())
    result = gankit.evaluate(image_run, metrics=["fid", "kid"], n=40)
    assert main(["eval", str(image_run), "--metrics", "fid,kid", "--n", "40", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == pytest.approx(result["metrics"])
    images = gankit.load(image_run).generate(40)
    own = gankit.evaluate(images, ref=str(tiny_images), metrics=["fid"])
    assert own["metrics"]["fid"] > 0 and own["protocol"]["reference"] == {"data": "tiny", "split": "all", "n_real": 40}
    same = gankit.evaluate(
        (images.clamp(-1, 1) * 127.5 + 127.5).round().to(torch.uint8), ref=str(tiny_images) + ":test", metrics=["fid"]
    )
    assert same["metrics"]["fid"] == pytest.approx(own["metrics"]["fid"])  # floats are quantised like saved PNGs
    with pytest.raises(gankit.ConfigError, match="needs ref="):
        gankit.evaluate(images)
    with pytest.raises(gankit.ConfigError, match="N ≥ 10"):
        gankit.evaluate(images[:3], ref=str(tiny_images))


def test_callbacks_see_every_step_log_checkpoint(tmp_path, tiny_toy):
    class Recorder:
        def __init__(self):
            self.steps, self.logs, self.checkpoints = [], [], []

        def on_step(self, step, state):
            self.steps.append((step, state.G.training))

        def on_log(self, step, values):
            self.logs.append((step, sorted(values)))

        def on_checkpoint(self, step, path):
            self.checkpoints.append((step, path.name))

    seen = Recorder()
    gankit.train(out=str(tmp_path / "cb"), steps=100, callbacks=[seen], show_progress=False, **tiny_toy)
    assert [s for s, _ in seen.steps] == list(range(1, 101)) and all(training for _, training in seen.steps)
    assert [s for s, _ in seen.logs] == list(range(10, 101, 10)) and "loss_d" in seen.logs[0][1]
    assert seen.checkpoints == [(50, "step_0000050.safetensors"), (100, "step_0000100.safetensors")]


def test_sample_sets_export_as_pngs_or_one_npz_with_their_provenance(image_run, tmp_path):
    import numpy as np

    folder = tmp_path / "set"
    assert main(["sample", str(image_run), "--n", "12", "--format", "png", "--out", str(folder), "--seed", "2"]) == 0
    files = sorted(p.name for p in folder.glob("*.png"))
    assert files[0] == "000000.png" and len(files) == 12 and Image.open(folder / files[0]).size == (16, 16)
    assert (folder / "labels.csv").read_text().splitlines()[:3] == ["file,label", "000000.png,0", "000001.png,1"]
    record = json.loads((folder / "samples.json").read_text())
    assert (record["n"], record["seed"], record["weights"], record["truncation"]) == (12, 2, "G", None)
    npz = tmp_path / "set.npz"
    assert main(["sample", str(image_run), "--n", "12", "--format", "npz", "--out", str(npz), "--seed", "2"]) == 0
    with np.load(npz) as arrays:
        assert arrays["x"].shape == (12, 16, 16, 1) and arrays["y"].tolist() == [0, 1] * 6
        assert np.array_equal(arrays["x"][3, :, :, 0], np.asarray(Image.open(folder / "000003.png")))  # the same set
    # the truncation trick: z within ±0.5 only, a narrower set of samples
    narrow = gankit.load(image_run, ema=False).generate(64, seed=2, truncation=0.5)
    wide = gankit.load(image_run, ema=False).generate(64, seed=2)
    assert narrow.std(0).mean() < wide.std(0).mean()
    assert main(["sample", str(image_run), "--truncation", "0.5", "--out", str(tmp_path / "g.png")]) == 2
    assert main(["sample", str(image_run), "--format", "png", "--out", str(npz)]) == 2  # a file, not a folder
