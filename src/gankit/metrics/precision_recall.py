"""Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls reaching
each sample's k-th nearest neighbour; precision = share of fakes inside the real manifold, recall = share of reals
inside the fake manifold."""

from __future__ import annotations

import torch


def _kth_neighbour_radius(x: torch.Tensor, k: int, batch: int) -> torch.Tensor:
    radii = []
    for start in range(0, x.shape[0], batch):
        d = torch.cdist(x[start : start + batch], x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # k+1: the nearest "neighbour" is the sample itself
    return torch.cat(radii)


def _inside(manifold: torch.Tensor, radii: torch.Tensor, queries: torch.Tensor, batch: int) -> torch.Tensor:
    hits = []
    for start in range(0, queries.shape[0], batch):
        d = torch.cdist(queries[start : start + batch], manifold)
        hits.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(hits)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3, batch: int = 1024) -> tuple[float, float]:
    real, fake = real.double(), fake.double()
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples in each set")
    precision = _inside(real, _kth_neighbour_radius(real, k, batch), fake, batch).double().mean()
    recall = _inside(fake, _kth_neighbour_radius(fake, k, batch), real, batch).double().mean()
    return float(precision), float(recall)
