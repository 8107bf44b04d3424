"""The CUDA path: skipped where PyTorch sees no GPU; scripts/gpu_check.sh runs it on one.

These tests pin the host to the real one (the rest of the suite pins a plain CPU), so they exercise `--device auto`,
bf16 autocast and fp16 with its loss scalers on the GPU itself.
"""

import json

import pytest
import torch

from gankit import host
from gankit import runs as checkpoint
from gankit.runs import load_networks
from gankit.training.session import train

REAL = host.measure()
pytestmark = pytest.mark.skipif(not REAL.cuda, reason="needs a CUDA GPU (scripts/gpu_check.sh runs these on one)")


@pytest.fixture
def on_the_gpu(pin_host):
    return pin_host(cuda=REAL.cuda, cuda_bf16=REAL.cuda_bf16)


@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_training_and_resuming_on_the_gpu(tmp_path, tiny_dcgan, on_the_gpu, precision):
    common = dict(tiny_dcgan, precision=precision, show_progress=False)
    run = train(out=str(tmp_path / "r"), steps=50, **common)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["precision"] == (
        "bf16" if precision == "auto" and on_the_gpu.cuda_bf16 else "fp32" if precision == "auto" else "fp16"
    )
    state = checkpoint.load_state(checkpoint.latest(run))
    assert "rng_cuda" in state and (("scaler_d" in state) == (precision == "fp16"))
    train(out=str(run), steps=100, resume=True, **common)
    assert checkpoint.list_checkpoints(run)[-1][0] == 100
    G, D, spec, step = load_networks(run, ema=True, device="cuda")
    with torch.no_grad():
        images = G(torch.randn(8, spec.latent_dim, device="cuda"), torch.zeros(8, dtype=torch.long, device="cuda"))
    assert step == 100 and images.is_cuda and torch.isfinite(images).all()
