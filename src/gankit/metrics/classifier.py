"""The domain classifier: a small CNN for 28×28 grey datasets (Fashion-MNIST, MNIST) whose predictions measure class
coverage and whose features give a fast "domain FID" — cheap enough to log during training.

Weights trained by this project ship in `gankit/weights/classifier-<data>.safetensors`, with the command that made
them and their test accuracy in the file's metadata. `gankit classifier train --data NAME` trains one anew into
`~/.cache/gankit/classifiers/`, which is looked up first.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from gankit.data import cache_dir, load_images, to_model_range
from gankit.data.streams import Stream, seeded
from gankit.errors import ConfigError
from gankit.files import atomic_write
from gankit.metrics.modes import histogram_kl

SIDE = 28
FEATURES = 128


class DomainClassifier(nn.Module):
    """Two conv-conv-pool stages (28 → 14 → 7), a 128-d feature layer, a linear class head."""

    def __init__(self, num_classes: int = 10):
        super().__init__()

        def stage(c_in, c_out):
            return [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]

        self.body = nn.Sequential(
            *stage(1, 32),
            *stage(32, 64),
            nn.Flatten(),  # (N, 64·7·7)
            nn.Linear(64 * 7 * 7, FEATURES),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(FEATURES, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def prepare(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1, H, W) of any side → the classifier's input, (N, 1, 28, 28) in [-1, 1]."""
    if images_uint8.shape[1] != 1:
        raise ConfigError("the domain classifier is for grey images (Fashion-MNIST, MNIST)")
    return to_model_range(images_uint8, SIDE)


def _shifted(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translations by up to ±max_shift pixels (pad with the background, crop), one per batch."""
    dx, dy = torch.randint(-max_shift, max_shift + 1, (2,), generator=gen).tolist()
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    return padded[:, :, max_shift + dy : max_shift + dy + SIDE, max_shift + dx : max_shift + dx + SIDE]


@torch.no_grad()
def accuracy(model: DomainClassifier, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    hits = sum((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item() for i in range(0, len(x), batch))
    return hits / len(x)


def train_classifier(
    data: str,
    epochs: int = 8,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    data_dir: str | None = None,
    log=print,
) -> tuple[DomainClassifier, float]:
    """Adam with a cosine schedule and small random shifts; returns the model and its test accuracy."""
    train_set, test_set = (load_images(data, split, data_dir=data_dir) for split in ("train", "test"))
    if train_set.y is None or train_set.x.shape[1] != 1:
        raise ConfigError(f"{data} needs class labels and grey images for a domain classifier")
    x, y = prepare(train_set.x), train_set.y
    x_test, y_test = prepare(test_set.x), test_set.y
    torch.manual_seed(seed)
    model = DomainClassifier(train_set.num_classes).to(memory_format=torch.channels_last)
    steps_per_epoch = x.shape[0] // batch_size
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    gen = seeded(seed, Stream.CLASSIFIER)
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        perm = torch.randperm(x.shape[0], generator=gen)
        for j in range(steps_per_epoch):
            idx = perm[j * batch_size : (j + 1) * batch_size]
            loss = F.cross_entropy(model(_shifted(x[idx], gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        log(
            f"epoch {epoch + 1}/{epochs}: test accuracy {accuracy(model, x_test, y_test):.4f} "
            f"({time.perf_counter() - start:.0f} s)"
        )
    return model.eval(), accuracy(model, x_test, y_test)


def save_classifier(model: DomainClassifier, path: Path, metadata: dict) -> None:
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write(
        path, lambda tmp: save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in metadata.items()})
    )


def _name(data: str) -> str:
    return Path(str(data)).name.lower().replace("_", "-")


def user_path(data: str) -> Path:
    return cache_dir("classifiers") / f"classifier-{_name(data)}.safetensors"


def shipped_path(data: str) -> Path:
    return Path(str(importlib.resources.files("gankit") / "weights" / f"classifier-{_name(data)}.safetensors"))


def load_classifier(data: str, path: str | Path | None = None) -> tuple[DomainClassifier, dict]:
    """(model in eval mode, metadata) — an explicit path, else one trained here, else the shipped weights."""
    candidates = [Path(path)] if path else [user_path(data), shipped_path(data)]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise ConfigError(f"no domain classifier for {data}: train one with `gankit classifier train --data {data}`")
    try:
        with safe_open(str(found), "pt") as f:
            metadata = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        state = load_file(str(found))
        model = DomainClassifier(state["head.1.weight"].shape[0])
        model.load_state_dict(state)
    except (SafetensorError, OSError, KeyError, RuntimeError, json.JSONDecodeError) as e:
        raise ConfigError(f"domain classifier {found} is unreadable: {str(e).splitlines()[0]}") from None
    return model.eval(), {**metadata, "path": str(found)}


@torch.no_grad()
def classify(model: DomainClassifier, images_uint8: torch.Tensor, batch: int = 1000):
    """(features (N, 128), class probabilities (N, K)) of uint8 images."""
    feats, probs = [], []
    for i in range(0, images_uint8.shape[0], batch):
        f = model.features(prepare(images_uint8[i : i + batch]))
        feats.append(f)
        probs.append(model.head(f).softmax(1))
    return torch.cat(feats), torch.cat(probs)


def coverage(probs: torch.Tensor) -> dict:
    """Class coverage of generated samples by predicted class: classes hit (≥ 10% of a fair share each),
    KL(p̂(y) ‖ uniform) (0 = every class equally often), and the domain Inception Score exp E KL(p(y|x) ‖ p(y))."""
    k = probs.shape[1]
    counts = torch.bincount(probs.argmax(1), minlength=k).double()
    share = counts / counts.sum()
    p = probs.double()
    marginal = p.mean(0)
    kl_each = (torch.special.xlogy(p, p) - p * marginal.clamp(min=1e-300).log()).sum(1)  # 0·log 0 = 0
    return {
        "classes_hit": int((share >= 0.1 / k).sum()),
        "classes_total": k,
        "class_kl": histogram_kl(counts),
        "domain_is": float(math.exp(kl_each.mean())),
    }
