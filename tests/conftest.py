import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Tests never read the user's cache or download: the cache points into tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GANKIT_DATA", raising=False)
    torch.set_num_threads(2)


def write_shapes(path, n, side, seed=0):
    """A two-class grey npz: a filled square (class 0) or a vertical bar (class 1), at random places."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, side, side), dtype=np.uint8)
    y = np.arange(n) % 2
    size = side // 3
    for i in range(n):
        r, c = rng.integers(1, side - size, size=2)
        if y[i] == 0:
            x[i, r:r + size, c:c + size] = 255
        else:
            x[i, 1:side - 1, c:c + 3] = 210
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture
def tiny_images(tmp_path):
    return write_shapes(tmp_path / "tiny.npz", 256, 16)


@pytest.fixture
def tiny28(tmp_path):
    return write_shapes(tmp_path / "tiny28.npz", 200, 28, seed=1)


TINY_TOY = dict(data="ring8", width_g=32, width_d=32, depth=2, batch_size=64, latent_dim=4, log_every=10,
                sample_every=50, checkpoint_every=50)


@pytest.fixture
def tiny_toy():
    return dict(TINY_TOY)


@pytest.fixture
def tiny_dcgan(tiny_images):
    return dict(data=str(tiny_images), width_g=8, width_d=8, latent_dim=8, batch_size=32, log_every=10,
                sample_every=50, checkpoint_every=50, grid_size=16)

