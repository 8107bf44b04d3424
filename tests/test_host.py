"""The one seam through which gankit asks what the machine can do, and every choice that follows from it."""

import subprocess
import sys

import pytest
import torch
from conftest import AVX2_ONLY, FAST_BF16, GPU, SLOW_BF16

from gankit import host
from gankit.config import TrainConfig
from gankit.errors import ConfigError


def test_measure_reads_what_pytorch_reports_and_times_bf16_only_where_it_is_native(monkeypatch):
    from torch.backends.cpu import get_cpu_capability

    measured = host.measure()
    assert measured.vectors == get_cpu_capability()
    assert measured.cuda == torch.cuda.is_available()
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert measured.native_bf16 == native
    monkeypatch.setattr(host, "bf16_speedup", lambda: pytest.fail("an emulated bf16 matmul must never be timed"))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert host.measure().bf16_speedup is None


@pytest.mark.parametrize("speedup, fast", [(2.3, True), (1.3, True), (1.1, False), (0.52, False), (None, False)])
def test_bf16_is_the_fast_arithmetic_only_where_it_clearly_beats_fp32(speedup, fast):
    machine = host.Host(vectors="AVX512", bf16_speedup=speedup)
    assert machine.fast_bf16 is fast and machine.native_bf16 is (speedup is not None)
    assert ("no native bf16" in machine.bf16_note()) == (speedup is None)


def test_gankit_host_pins_the_facts_in_this_process_and_its_children(monkeypatch):
    pinned = host.Host(cuda=False, vectors="AVX512", bf16_speedup=2.3)
    text = host.pinned_json(pinned)
    assert host.parse(text) == pinned
    assert host.parse('{"vectors": "AVX512"}') == host.Host(vectors="AVX512")  # the rest: Host's defaults
    for bad in ('{"avx": 1}', "not json", "[1]"):
        with pytest.raises(ConfigError, match=r"\$GANKIT_HOST must be a JSON object"):
            host.parse(bad)
    monkeypatch.setenv("GANKIT_HOST", text)
    child = subprocess.run(
        [sys.executable, "-c", "from gankit import host; print(host.current())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == repr(pinned)


@pytest.mark.parametrize(
    "machine", [AVX2_ONLY, SLOW_BF16, FAST_BF16, GPU], ids=["avx2", "slow-bf16", "fast-bf16", "gpu"]
)
def test_every_choice_that_depends_on_the_host_follows_the_seam(machine, pin_host):
    """Flip the decision each way: widths, precision, --device auto, the bench's rows and eval --fast all follow."""
    from gankit.bench import speed as bench
    from gankit.training.defaults import device_for, resolve

    pinned = pin_host(**machine)
    shape = dict(channels=1, resolution=28, num_classes=10)
    cfg = resolve(TrainConfig(), shape)
    gpu, fast_cpu = machine is GPU, machine is FAST_BF16
    assert device_for("auto").type == ("cuda" if gpu else "cpu")
    assert cfg.precision == ("bf16" if gpu or fast_cpu else "fp32")
    assert (cfg.width_g, cfg.width_d) == ((48, 32) if machine is AVX2_ONLY else (96, 64))
    short = resolve(TrainConfig(max_minutes=10), shape)
    assert (short.width_g, short.width_d) == ((96, 64) if gpu else (48, 32))  # the budget rule is for CPUs only
    assert bench.training_modes()[-1] == (
        "gankit fast" if fast_cpu else "gankit bf16" if pinned.native_bf16 else "gankit fp32"
    )
    if not gpu:
        with pytest.raises(ConfigError, match="PyTorch sees no CUDA device"):
            device_for("cuda")


def test_the_pinned_host_is_a_plain_cpu_without_bf16():
    """The suite's default machine: the branch every CPU kind can run quickly (no emulated bf16, no GPU)."""
    assert host.current() == host.Host(cuda=False, cuda_bf16=False, vectors="AVX2", bf16_speedup=None)
