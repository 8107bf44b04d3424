"""One funnel for everything worth plotting: per-step values stay tensors, summed on the device, read once per tick."""

from __future__ import annotations

import math

import torch


class Stats:
    """Accumulates detached scalar tensors by name; `flush` returns their means as floats (the only host sync)."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def report(self, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            value = value.detach().float()
            self._sums[name] = self._sums[name] + value if name in self._sums else value.clone()
            self._counts[name] = self._counts.get(name, 0) + 1

    def flush(self, reduce=None) -> dict[str, float]:
        """The means since the last flush; `reduce` maps the stacked means first (e.g. averages them over ranks)."""
        if not self._sums:
            return {}
        names = list(self._sums)
        means = torch.stack([self._sums[n] / self._counts[n] for n in names])
        means = (reduce(means) if reduce else means).tolist()
        self._sums.clear()
        self._counts.clear()
        return dict(zip(names, means))


def non_finite(values: dict[str, float]) -> list[str]:
    return [name for name, v in values.items() if not math.isfinite(v)]
