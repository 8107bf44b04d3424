import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Tests never read the user's cache or download: the cache points into tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GANKIT_DATA", raising=False)
    torch.set_num_threads(2)


@pytest.fixture
def tiny_images(tmp_path):
    """A 16×16 two-class npz dataset: bright squares (class 0) and bright bars (class 1) on black."""
    rng = np.random.default_rng(0)
    x = np.zeros((256, 16, 16), dtype=np.uint8)
    y = np.arange(256) % 2
    for i in range(256):
        r, c = rng.integers(2, 10, size=2)
        if y[i] == 0:
            x[i, r:r + 5, c:c + 5] = 255
        else:
            x[i, :, c:c + 3] = 200
    path = tmp_path / "tiny.npz"
    np.savez(path, x=x, y=y)
    return path


TINY_TOY = dict(data="ring8", width_g=32, width_d=32, depth=2, batch_size=64, latent_dim=4, log_every=10,
                sample_every=50, checkpoint_every=50)


@pytest.fixture
def tiny_toy():
    return dict(TINY_TOY)


@pytest.fixture
def tiny_dcgan(tiny_images):
    return dict(data=str(tiny_images), width_g=8, width_d=8, latent_dim=8, batch_size=32, log_every=10,
                sample_every=50, checkpoint_every=50, grid_size=16)
