import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from gankit import runs as checkpoint
from gankit.cli import main

TOY_FLAGS = [
    "--data",
    "ring8",
    "--width-g",
    "32",
    "--width-d",
    "32",
    "--depth",
    "2",
    "--batch-size",
    "64",
    "--latent-dim",
    "4",
    "--log-every",
    "10",
    "--sample-every",
    "20",
    "--checkpoint-every",
    "20",
    "--quiet",
]


def gankit(*args, env=None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "gankit", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        **kw,
    )


def test_end_to_end_toy_run_sample_resume_and_reproduce(tmp_path):
    run = tmp_path / "ring"
    done = gankit("train", *TOY_FLAGS, "--loss", "minimax", "--steps", 40, "--out", run)
    assert done.returncode == 0, done.stderr
    assert (run / "tb").is_dir() and any((run / "tb").iterdir())
    assert Image.open(run / "samples" / "step_0000040.png").size == (2 * 384 + 4, 384)  # σ(D) beside D*

    grid = gankit("sample", run, "--n", 100, "--out", tmp_path / "points.png", "--seed", 3)
    assert grid.returncode == 0, grid.stderr
    assert Image.open(tmp_path / "points.png").size == (512, 512)

    resumed = gankit("train", "--resume", run, "--steps", 60, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 60

    again = gankit("train", "--config", run / "config.json", "--out", tmp_path / "again", "--steps", 60, "--quiet")
    assert again.returncode == 0, again.stderr
    a, b = (load_file(str(checkpoint.latest(r))) for r in (run, tmp_path / "again"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_conditional_image_run_and_label_sampling(tmp_path, tiny_images):
    run = tmp_path / "cond"
    code = main(
        [
            "train",
            "--data",
            str(tiny_images),
            "--conditional",
            "--conditioning",
            "concat",
            "--steps",
            "20",
            "--width-g",
            "8",
            "--width-d",
            "8",
            "--batch-size",
            "32",
            "--out",
            str(run),
            "--quiet",
            "--grid-size",
            "16",
        ]
    )
    assert code == 0
    assert Image.open(run / "samples" / "step_0000020.png").size == (2 * 18 + 2, 8 * 18 + 2)  # a column per class
    assert (
        main(["sample", str(run), "--label", "1", "--n", "8", "--nrow", "4", "--out", str(tmp_path / "s.png"), "--ema"])
        == 0
    )
    assert Image.open(tmp_path / "s.png").size == (4 * 18 + 2, 2 * 18 + 2)  # 8 images of 16 px, 2 px borders


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])  # SIGTERM: what torchrun and schedulers send
def test_ctrl_c_writes_a_checkpoint_and_exits_cleanly(tmp_path, sig):
    run = tmp_path / "stopped"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gankit",
            "train",
            *TOY_FLAGS,
            "--steps",
            "100000",
            "--checkpoint-every",
            "100000",
            "--out",
            str(run),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    step, weights = checkpoint.list_checkpoints(run)[-1]
    assert step >= 10
    assert checkpoint.load_state(weights)["step"] == step
    assert all(torch.isfinite(t).all() for t in load_file(str(weights)).values())


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "no-such-data", "--steps", "1"], "no-such-data"),
        (["train", "--config", "{cfg}"], "unknown config key(s): colour"),
        (["train", "--data", "ring8", "--model", "dcgan"], "use --model mlp"),
        (["train", "--data", "ring8", "--conditional"], "needs class labels"),
        (["train", "--data", "ring8", "--loss", "hinge", "--label-smoothing", "0.1"], "no meaning"),
        (["train", "--data", "ring8", "--class-batchnorm"], "is for a conditional dcgan"),
        (["train", "--data", "ring8", "--augment", "translation"], "2-D toy data has none"),
        (["train", "--augment", "translation,blur"], "unknown augmentation blur"),
        (["train", "--resume", "{tmp}/nothing"], "not a run folder"),
        (["sample", "{tmp}/nothing"], "does not exist"),
        (["train", "--data", "ring8", "--lr-g", "nan"], "lr_g must be a number in (0, ∞) or null, got nan"),
        (["train", "--data", "ring8", "--ema", "inf"], "ema must be a number in (0, 1) or null, got inf"),
        (["train", "--data", "ring8", "--beta2", "1"], "beta2 must be a number in [0, 1) or null, got 1.0"),
        (["train", "--data", "ring8", "--out", "{cfg}"], "is a file, not a folder"),
        (["train", "--data", "{tmp}/far.npz", "--steps", "1"], "expected [0, 1], [-1, 1] or [0, 255]"),
        (["train", "--data", "ring8", "--keep-best", "fid"], "add --eval-every N"),
        (["train", "--data", "ring8", "--freeze-d", "1"], "it needs --init-from RUN"),
        (["train", "--data", "ring8", "--init-from", "{tmp}/nothing"], "--init-from {tmp}/nothing: run folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"data": "ring8", "colour": "blue"}))
    np.savez(tmp_path / "far.npz", x=np.linspace(-2, 2, 4 * 8 * 8).reshape(4, 8, 8))  # floats on no known scale
    args = [a.format(cfg=cfg, tmp=tmp_path) for a in args]
    result = gankit(*args, "--quiet" if args[0] == "train" else "--n=1")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("gankit: error: ")
    assert message.format(tmp=tmp_path) in result.stderr
    assert cfg.read_text() == json.dumps({"data": "ring8", "colour": "blue"})  # nothing written over


def test_resume_refuses_to_change_the_game(tmp_path):
    run = tmp_path / "r"
    assert main(["train", *TOY_FLAGS, "--steps", "10", "--out", str(run)]) == 0
    result = gankit("train", "--resume", run, "--loss", "hinge")
    assert result.returncode == 2 and "cannot change loss when resuming" in result.stderr
    result = gankit("train", "--resume", run, "--out", tmp_path / "elsewhere")
    assert result.returncode == 2 and "a resumed run stays in its folder" in result.stderr


def test_the_python_api_resumes_exactly_what_the_cli_resumes(tmp_path):
    """A hinge run continues as hinge through both doors, to the same weights; a change of game is refused alike."""
    import shutil

    import gankit

    cli_run, api_run = tmp_path / "cli", tmp_path / "api"
    assert main(["train", *TOY_FLAGS, "--loss", "hinge", "--steps", "20", "--out", str(cli_run)]) == 0
    shutil.copytree(cli_run, api_run)
    assert main(["train", "--resume", str(cli_run), "--steps", "40", "--quiet"]) == 0
    assert gankit.resume(api_run, steps=40, show_progress=False) == api_run
    configs = [json.loads((r / "config.json").read_text()) for r in (cli_run, api_run)]
    assert configs[0]["loss"] == configs[1]["loss"] == "hinge"
    assert {**configs[0], "out": None} == {**configs[1], "out": None}
    a, b = (load_file(str(checkpoint.latest(r))) for r in (cli_run, api_run))
    assert checkpoint.list_checkpoints(api_run)[-1][0] == 40 and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(gankit.ConfigError, match="cannot change loss when resuming"):
        gankit.train(out=str(api_run), resume=True, loss="ns", steps=60)
    with pytest.raises(gankit.ConfigError, match="cannot change loss when resuming"):
        gankit.resume(api_run, loss="ns")
    with pytest.raises(gankit.ConfigError, match="keeps its own config"):
        gankit.train(gankit.TrainConfig(data="ring8"), resume=api_run)


def test_help_shows_examples():
    for args in (["--help"], ["train", "--help"], ["sample", "--help"]):
        out = gankit(*args)
        assert out.returncode == 0 and "examples:" in out.stdout


def test_toml_config_file_and_flag_override(tmp_path):
    cfg = tmp_path / "ring.toml"
    cfg.write_text('data = "ring8"\nloss = "hinge"\nsteps = 10\nwidth_g = 16\nwidth_d = 16\nbatch_size = 32\n')
    run = tmp_path / "toml"
    assert main(["train", "--config", str(cfg), "--steps", "20", "--out", str(run), "--quiet"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert (saved["loss"], saved["steps"], saved["width_g"]) == ("hinge", 20, 16)
    cfg.write_text('data = "ring8"\nsteps = "many"\n')
    result = gankit("train", "--config", cfg, "--quiet")
    assert result.returncode == 2 and "'steps' must be int" in result.stderr


def test_print_model_shows_the_networks_any_settings_build_and_stops(tmp_path, tiny_images):
    out = gankit("train", "--data", str(tiny_images), "--model", "resnet", "--resolution", "32", "--print-model",
                 "--out", str(tmp_path / "r"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("resnet on ") and "2 classes" in lines[0]
    assert any(line.startswith("G: ") and "MFLOPs a sample, output (1, 32, 32)" in line for line in lines)
    assert "ResNetDiscriminator(" in out.stdout and "UpBlock(" in out.stdout
    assert not (tmp_path / "r").exists()  # nothing trained, nothing written
