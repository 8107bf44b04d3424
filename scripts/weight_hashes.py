"""SHA-256 (first 16 hex digits) of the weights three fixed-seed runs end with: a toy WGAN-GP with dropout, a
conditional DCGAN with minibatch std, per-class batch norm and DiffAugment, and a spectral-norm hinge DCGAN in bf16.

A change that should not change training (a refactor) must leave all three unchanged. Compare two trees with
    PYTHONPATH=OLD/src python scripts/weight_hashes.py > before.txt
    PYTHONPATH=src python scripts/weight_hashes.py > after.txt && diff before.txt after.txt
The host is pinned (a plain AVX2 CPU: fp32 defaults) so both sides take the same branches.
"""

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("GANKIT_HOST", '{"vectors": "AVX2"}')
from safetensors.torch import load_file  # noqa: E402

import gankit  # noqa: E402 (after the host is pinned)


def digest(run):
    ckpts = sorted((Path(run) / "checkpoints").glob("step_*.safetensors"))
    t = load_file(str(ckpts[-1]))
    h = hashlib.sha256()
    for k in sorted(t):
        h.update(k.encode())
        h.update(t[k].numpy().tobytes())
    return h.hexdigest()[:16]


torch.set_num_threads(2)
tmp = Path(tempfile.mkdtemp())
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (256, 16, 16), dtype=np.uint8)
y = np.arange(256) % 2
np.savez(tmp / "d.npz", x=x, y=y)
runs = {
    "toy-wgan-gp": dict(
        data="ring8",
        loss="wgan-gp",
        dropout=0.2,
        width_g=32,
        width_d=32,
        depth=2,
        batch_size=64,
        latent_dim=4,
        steps=120,
    ),
    "dcgan-cond": dict(
        data=str(tmp / "d.npz"),
        width_g=8,
        width_d=8,
        latent_dim=8,
        batch_size=32,
        steps=60,
        minibatch_std=True,
        class_batchnorm=True,
        augment="translation,cutout,color",
    ),
    "dcgan-sn-bf16": dict(
        data=str(tmp / "d.npz"),
        width_g=8,
        width_d=8,
        latent_dim=8,
        batch_size=32,
        steps=40,
        spectral_norm=True,
        precision="bf16",
        loss="hinge",
        conditional=False,
    ),
}
for name, kw in runs.items():
    run = gankit.train(
        out=str(tmp / name), show_progress=False, log_every=10, sample_every=20, checkpoint_every=20, grid_size=16, **kw
    )
    print(name, digest(run))
