"""The DCGAN paper's representation claim, measured: a linear classifier on D's frozen features, trained with few
or all labels, against the same classifier on raw pixels."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from gankit.data import load_images, to_model_range
from gankit.data.streams import Stream, seeded
from gankit.errors import ConfigError
from gankit.metrics.evaluate import write_result
from gankit.models import each_alone
from gankit.runs import load_networks, run_config

BUDGETS = (100, 1000, None)  # labelled training images; None = all


@torch.no_grad()
def d_features(D: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None, batch: int = 500) -> torch.Tensor:
    D.eval()
    labels = [None if y is None else y[i : i + batch] for i in range(0, len(x), batch)]
    out = [D.features(*each_alone(D, x[i : i + batch], y_i)).float() for i, y_i in zip(range(0, len(x), batch), labels)]
    return torch.cat(out)


def balanced_subset(y: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """n indices with n / num_classes of each class (the usual few-label protocol), seeded."""
    per_class = max(1, n // num_classes)
    gen = seeded(seed, Stream.PROBE)
    picks = []
    for c in range(num_classes):
        members = (y == c).nonzero().flatten()
        picks.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    return torch.cat(picks)


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    weight_decay: float = 1e-3,
    iterations: int = 100,
) -> float:
    """Test accuracy of L2-regularised multinomial logistic regression on standardised features (full-batch L-BFGS)."""
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    a, b = (train_x - mean) / std, (test_x - mean) / std
    w = torch.zeros(a.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(a @ w + bias, train_y) + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((b @ w + bias).argmax(1) == test_y).double().mean())


def probe_run(run_dir: str | Path, budgets=BUDGETS, seed: int = 0) -> dict:
    """Probe accuracies of D's features and of raw pixels on the run's data (train → test); writes probe.json."""

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    _, D, spec, step = load_networks(run_dir)
    if spec.resolution == 0:
        raise ConfigError("the linear probe needs an image run with class labels")
    train, test = (load_images(cfg["data"], split, data_dir=cfg.get("data_dir")) for split in ("train", "test"))
    if train.y is None:
        raise ConfigError(f"the linear probe needs class labels, and {cfg['data']} has none")
    train_px, test_px = to_model_range(train.x, spec.resolution), to_model_range(test.x, spec.resolution)
    # A conditional D must not be shown the label the probe predicts: it gets class 0 for every image instead.
    labels = (torch.zeros_like(train.y), torch.zeros_like(test.y)) if spec.num_classes else (None, None)
    representations = {
        "D features": (d_features(D, train_px, labels[0]), d_features(D, test_px, labels[1])),
        "raw pixels": (train_px.flatten(1), test_px.flatten(1)),
    }
    rows = {}
    for budget in budgets:
        if budget and budget >= len(train.y):
            continue  # as many labels as the data has: the "all" row says it
        idx = balanced_subset(train.y, budget, train.num_classes, seed) if budget else torch.arange(len(train.y))
        name = f"{len(idx)} labels" if budget else f"all {len(idx)} labels"
        rows[name] = {
            rep: linear_probe(tr[idx], train.y[idx], te, test.y, train.num_classes)
            for rep, (tr, te) in representations.items()
        }
    result = {
        "run": str(run_dir),
        "step": step,
        "probe_test_accuracy": rows,
        "protocol": {
            "classifier": "multinomial logistic regression, L2 1e-3, standardised features, L-BFGS",
            "features": f"D.features: {representations['D features'][0].shape[1]}-d last hidden layer",
            "few-label subsets": "balanced per class, seeded",
            "seed": seed,
            "data": cfg["data"],
            "test images": len(test.y),
        },
    }
    write_result(run_dir / "probe.json", result)
    return result


def format_probe(result: dict) -> str:
    rows = result["probe_test_accuracy"]
    reps = list(next(iter(rows.values())))
    lines = [f"{'labels':<20}" + "".join(f"{r:>14}" for r in reps)]
    lines += [f"{name:<20}" + "".join(f"{row[r]:>14.4f}" for r in reps) for name, row in rows.items()]
    lines.append("protocol:")
    lines += [f"  {k}: {v}" for k, v in result["protocol"].items()]
    return "\n".join(lines)
