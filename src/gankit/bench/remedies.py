"""What each mode-collapse remedy costs: milliseconds per training step of PacGAN's 2-D setting, plain and with each
remedy, measured side by side in one process, taking turns (`gankit bench --remedies`)."""

from __future__ import annotations

import torch

from gankit.bench.speed import machine, time_steps
from gankit.config import from_dict
from gankit.distributed import Dist
from gankit.training.defaults import net_spec, resolve
from gankit.training.engine import train_step
from gankit.training.setup import build_state, load_data
from gankit.training.stats import Stats

REMEDIES = {
    "plain": {},
    "--pack 2": {"pack": 2},
    "--pack 4": {"pack": 4},
    "--unroll 5": {"unroll": 5},
    "--minibatch-std": {"minibatch_std": True},
}


def remedy_loop(settings: dict, data: str = "grid25"):
    """(step function, real samples per step) of `gankit train --preset pacgan --data DATA` with `settings`, through
    the engine `gankit train` runs (batches of 100 packs, as PacGAN's)."""
    cfg = from_dict({"preset": "pacgan", "data": data, "seed": 0, **settings})
    dist, shape, _ = load_data(cfg)
    cfg = resolve(cfg, shape)
    torch.manual_seed(0)
    state = build_state(cfg, net_spec(cfg, shape), dist, Dist(), torch.device("cpu"))
    stats, counter = Stats(), iter(range(10**9))

    def step():
        i = next(counter)
        train_step(state, i, stats)
        if (i + 1) % cfg.log_every == 0:
            stats.flush()

    return step, cfg.batch_size


def remedies_bench(seconds: float = 6.0, rounds: int = 3, data: str = "grid25", common: dict | None = None) -> dict:
    """ms per step of each remedy, best of `rounds` turns of seconds/rounds each, and its ratio to the plain step.
    `common`: settings over the preset's for every row (e.g. smaller networks)."""
    loops = {name: remedy_loop({**(common or {}), **settings}, data) for name, settings in REMEDIES.items()}
    best = {name: float("inf") for name in loops}
    for _ in range(rounds):
        for name, (step, samples) in loops.items():
            best[name] = min(best[name], time_steps(step, samples, seconds / rounds)["step_s"])
    rows = {
        name: {
            "ms_per_step": round(1000 * best[name], 2),
            "x_plain": round(best[name] / best["plain"], 2),
            "samples_per_step": loops[name][1],
        }
        for name in loops
    }
    return {"machine": machine(), "data": data, "setting": "gankit train --preset pacgan", "rows": rows}


def format_remedies(result: dict) -> str:
    lines = [
        f"machine: {result['machine']}",
        f"{result['setting']} --data {result['data']}: one training step (D and G updates)",
        f"{'':<18}{'ms/step':>9}{'× plain':>9}{'samples/step':>14}",
    ]
    for name, r in result["rows"].items():
        lines.append(f"{name:<18}{r['ms_per_step']:>9.2f}{r['x_plain']:>9.2f}{r['samples_per_step']:>14}")
    return "\n".join(lines)
