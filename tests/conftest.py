import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from gankit import host
from gankit.data import sources
from gankit.metrics.inception import Extractor

# The machine every test sees unless it pins another: an AVX2-only CPU (bf16 emulated), no GPU. Every choice gankit
# makes from the host follows `host.current()`, so the suite takes the same branches on any CPU or GPU.
PINNED_HOST = host.Host(cuda=False, cuda_bf16=False, vectors="AVX2", bf16_speedup=None)


def _no_network(url, out):
    raise OSError(f"tests never reach the network (asked for {url})")


def _pin(monkeypatch, pinned: host.Host) -> host.Host:
    """This process asks `host.current()`; child processes (torchrun, the CLI, the bench's) read $GANKIT_HOST."""
    monkeypatch.setattr(host, "current", lambda: pinned)
    monkeypatch.setenv("GANKIT_HOST", host.pinned_json(pinned))
    return pinned


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Tests never read the user's cache, never download, and see the pinned host, not the real one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GANKIT_DATA", raising=False)
    monkeypatch.setattr(sources, "_fetch", _no_network)
    _pin(monkeypatch, PINNED_HOST)
    torch.set_num_threads(2)


@pytest.fixture
def pin_host(monkeypatch):
    """pin_host(vectors="AVX512", bf16_speedup=2.3) makes `host.current()` that machine for the rest of the test."""

    def pin(**facts) -> host.Host:
        return _pin(monkeypatch, dataclasses.replace(PINNED_HOST, **facts))

    return pin


# The three CPU kinds the project has met, and a GPU.
AVX2_ONLY = dict(vectors="AVX2", bf16_speedup=None)
SLOW_BF16 = dict(vectors="AVX512", bf16_speedup=0.55)  # a Xeon VM with AVX-512 BF16 but hidden AMX
FAST_BF16 = dict(vectors="AVX512", bf16_speedup=2.3)  # Zen 4
GPU = dict(cuda=True, cuda_bf16=True)


def idx_bytes(array: np.ndarray) -> bytes:
    header = (0x800 + array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_split(folder: Path, prefix: str, n: int = 5, gz: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        data = idx_bytes(array)
        name = f"{prefix}-{kind}-ubyte"
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return images, labels


class Pool(torch.nn.Module):
    """A stand-in extractor: 4×4 average pooling of the preprocessed image, 48 features."""

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


def tiny_extractor(resize="bilinear"):
    return Extractor(torch.jit.script(Pool()), name="pool4", weights_hash="none", dim=48, resize=resize)


def write_shapes(path, n, side, seed=0):
    """A two-class grey npz: a filled square (class 0) or a vertical bar (class 1), at random places."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, side, side), dtype=np.uint8)
    y = np.arange(n) % 2
    size = side // 3
    for i in range(n):
        r, c = rng.integers(1, side - size, size=2)
        if y[i] == 0:
            x[i, r : r + size, c : c + size] = 255
        else:
            x[i, 1 : side - 1, c : c + 3] = 210
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture
def tiny_images(tmp_path):
    return write_shapes(tmp_path / "tiny.npz", 256, 16)


@pytest.fixture
def tiny28(tmp_path):
    return write_shapes(tmp_path / "tiny28.npz", 200, 28, seed=1)


TINY_TOY = dict(
    data="ring8",
    width_g=32,
    width_d=32,
    depth=2,
    batch_size=64,
    latent_dim=4,
    log_every=10,
    sample_every=50,
    checkpoint_every=50,
)


@pytest.fixture
def tiny_toy():
    return dict(TINY_TOY)


@pytest.fixture
def tiny_dcgan(tiny_images):
    return dict(
        data=str(tiny_images),
        width_g=8,
        width_d=8,
        latent_dim=8,
        batch_size=32,
        log_every=10,
        sample_every=50,
        checkpoint_every=50,
        grid_size=16,
    )
