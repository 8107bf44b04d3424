"""Fine-tuning: a new run starts from another run's G, D and EMA weights (`--init-from RUN`).

The networks must match tensor for tensor, with one exception: the tables indexed by class label (G's label
embedding, the per-class batch-norm scales and shifts, D's projection — every `nn.Embedding` in gankit's networks),
whose rows are the classes. A conditional run may so move to data with another set of classes (Fashion-MNIST's
classes 0–7 to 8–9): every row of a new table starts as the mean of the pretrained rows — the average class, which
each new class then trains away from — and the rest of both networks is taken as it was trained.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from gankit import runs
from gankit.errors import CheckpointError, ConfigError
from gankit.training.state import TrainState


def initialise_from(state: TrainState, run_dir: str) -> str:
    """Load another run's newest readable G, D and EMA weights into `state`; a source without EMA gives its G to the
    EMA too. Returns what to say: which checkpoint, and the class tables refitted where the class count changed."""
    modules = state.modules()
    tables = class_tables(modules)
    note = ""

    def load(weights: Path) -> None:
        nonlocal note
        available = runs.read_metadata(weights)
        names = {name: m for name, m in modules.items() if name != "G_ema" or available.get("has_ema", True)}
        theirs = runs.tensor_shapes(weights)
        ours = {f"{name}.{key}": t for name, m in names.items() for key, t in m.state_dict().items()}
        refit = {}
        for key, tensor in ours.items():
            there, here = theirs.get(key), tuple(tensor.shape)
            if there == here:
                continue
            if key in tables and there is not None and there[1:] == here[1:]:  # another number of classes
                refit[key] = tensor
                continue
            shape = "missing" if there is None else f"{there}"
            raise ConfigError(
                f"--init-from {run_dir}: its networks differ from these ({key}: {shape} there, {here} here); "
                f"build the same ones (--model, --width-g, --width-d, --resolution, --conditional, --latent-dim)"
            )
        runs.load_weights(weights, names, adapt=lambda key, t: mean_rows(t, refit[key]) if key in refit else t)
        if "G_ema" in modules and "G_ema" not in names:
            modules["G_ema"].load_state_dict(modules["G"].state_dict())
        counts = {(theirs[key][0], tensor.shape[0]) for key, tensor in refit.items() if tensor.ndim == 2}
        note = "".join(f"; its {a} classes' tables averaged into each of the {b} classes here" for a, b in counts)

    try:
        used, _ = runs.newest_readable(Path(run_dir), load)
    except CheckpointError as e:
        raise ConfigError(f"--init-from {run_dir}: {e}") from None
    return f"{used}{note}"


def class_tables(modules: dict[str, nn.Module]) -> set[str]:
    """The checkpoint keys of every tensor held by an embedding indexed by class label."""
    return {
        f"{name}.{path}.{key}" if path else f"{name}.{key}"
        for name, module in modules.items()
        for path, m in module.named_modules()
        if isinstance(m, nn.Embedding)
        for key in m.state_dict()
    }


def mean_rows(pretrained: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """A class table of `fresh`'s shape whose every row is the mean of the pretrained rows. A 1-D tensor of a table
    (spectral norm's power-iteration vector over the classes) keeps its fresh value: it is an estimate, re-converged
    within a few steps, not a learned weight."""
    if pretrained.ndim != 2:
        return fresh.detach().clone()
    return pretrained.float().mean(0, keepdim=True).expand_as(fresh).to(fresh.dtype).clone()
