"""Looking inside a trained G, as the DCGAN paper did: vector arithmetic on averaged latents, and the nearest
training images of generated samples (to check for memorisation)."""

from __future__ import annotations

import torch

from gankit.data import load_images, to_model_range
from gankit.data.folders import FolderOptions
from gankit.data.streams import Stream, seeded
from gankit.errors import ConfigError
from gankit.images import to_uint8
from gankit.models import each_alone
from gankit.runs import generate, labels_for, load_networks, run_config

EXEMPLARS = 3  # latents averaged per concept: the paper averaged three exemplars


def parse_concept(text: str, num_classes: int) -> int:
    """'label=K' → K."""
    key, _, value = text.partition("=")
    if key.strip() != "label" or not value.strip().isdigit():
        raise ConfigError(f"a concept is written label=K, got {text!r}")
    label = int(value)
    if num_classes and not 0 <= label < num_classes:
        raise ConfigError(f"label must be in 0..{num_classes - 1}, got {label}")
    return label


@torch.no_grad()
def concept_latents(G, spec, label: int, data: str, pool: int = 2000, seed: int = 0) -> torch.Tensor:
    """The EXEMPLARS latents whose samples the domain classifier calls `label` most confidently (conditional runs:
    drawn with y = label)."""
    from gankit.metrics.classifier import classify, load_classifier

    model, _ = load_classifier(data)
    z = torch.randn(pool, spec.latent_dim, generator=seeded(seed, Stream.CONCEPTS, label))
    labels = torch.full((pool,), label) if spec.num_classes else None
    images = G(z, labels).float() if labels is not None else G(z)
    _, probs = classify(model, to_uint8(images))
    if probs.shape[1] <= label:
        raise ConfigError(f"the domain classifier of {data} has {probs.shape[1]} classes; label {label} is not one")
    return z[probs[:, label].topk(EXEMPLARS).indices]


@torch.no_grad()
def arithmetic(
    run_dir, a: str, b: str, c: str, variations: int = 8, noise: float = 0.25, seed: int = 0, ema: bool = False
) -> torch.Tensor:
    """Rows of [mean z_a, mean z_b, mean z_c, z_a − z_b + z_c] images, each row with the same small perturbation of
    the latents (as in the paper); conditional runs draw each column with its concept's label, the result with c's.
    Returns (variations × 4, C, H, W) floats."""

    G, _, spec, _ = load_networks(run_dir, ema=ema)
    if spec.resolution == 0:
        raise ConfigError(f"{run_dir} is a 2-D toy run; latent arithmetic is for image runs")
    data = run_config(run_dir)["data"]
    labels = [parse_concept(t, spec.num_classes) for t in (a, b, c)]
    means = [concept_latents(G, spec, label, data, seed=seed).mean(0) for label in labels]
    columns = means + [means[0] - means[1] + means[2]]
    column_labels = labels + [labels[2]]
    jitter = noise * torch.randn(variations, spec.latent_dim, generator=seeded(seed, Stream.ARITHMETIC_JITTER))
    z = torch.stack([m + jitter for m in columns], dim=1).reshape(-1, spec.latent_dim)
    y = torch.tensor(column_labels).repeat(variations) if spec.num_classes else None
    return G(z, y).float() if y is not None else G(z).float()


@torch.no_grad()
def neighbours(run_dir, n: int = 8, k: int = 5, seed: int = 0, ema: bool = False) -> torch.Tensor:
    """Rows of [generated sample | its k nearest training images in pixels | its k nearest in D's features].

    Near-copies in the pixel columns would mean memorisation; neighbours that share only the garment type, not the
    pixels, mean G generalises. A concat-conditioned D's features depend on the label, so that run gets pixel
    neighbours in both halves. Returns (n × (1 + 2k), C, H, W) floats in [−1, 1].
    """

    cfg = run_config(run_dir)
    G, D, spec, _ = load_networks(run_dir, ema=ema)
    if spec.resolution == 0:
        raise ConfigError(f"{run_dir} is a 2-D toy run; nearest neighbours are for image runs")
    train = to_model_range(
        load_images(cfg["data"], "train", data_dir=cfg.get("data_dir"), folder=FolderOptions.from_config(cfg)).x,
        spec.resolution,
    )
    fake = generate(G, spec.latent_dim, n, seed=seed + 1, labels=labels_for(spec, n, None))
    fake = to_uint8(fake).float() / 127.5 - 1  # compare what a saved sample shows
    by_pixels = _nearest(fake.flatten(1), train.flatten(1), k)

    if D.concat_classes:  # a concat-conditioned D sees the label in its input: its features are not comparable
        by_features = by_pixels
    else:
        by_features = _nearest(_features(D, fake), _features(D, train), k)
    rows = [torch.cat([fake[i : i + 1], train[by_pixels[i]], train[by_features[i]]]) for i in range(n)]
    return torch.cat(rows)


def _features(D, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([D.features(*each_alone(D, x[i : i + 1000])).float() for i in range(0, x.shape[0], 1000)])


def _nearest(queries: torch.Tensor, keys: torch.Tensor, k: int) -> torch.Tensor:
    """(Q, k) indices of the k nearest rows of keys (Euclidean), in chunks to bound memory."""
    out = []
    for i in range(0, keys.shape[0], 10000):
        d = torch.cdist(queries, keys[i : i + 10000])
        out.append((d, torch.arange(i, i + d.shape[1]).expand_as(d)))
    distances = torch.cat([d for d, _ in out], dim=1)
    indices = torch.cat([j for _, j in out], dim=1)
    return indices.gather(1, distances.topk(k, largest=False).indices)
