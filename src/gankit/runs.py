"""The run folder: what everything after training imports (sampling, evaluation, reports), never the trainer.

Checkpoints are atomic: weights in safetensors (self-describing via metadata), training state beside them.

`checkpoints/step_0002000.safetensors` holds G, D and G_ema tensors plus the NetSpec and model name as metadata, so a
checkpoint rebuilds the networks with nothing else. `step_0002000.state.pt` holds optimiser states, the step and RNG
states (plain tensors and numbers, loaded with weights_only=True). Both are written to temporary names and renamed,
state first: a weights file only exists once its state is complete, so an interrupted write is never mistaken for a
checkpoint.
"""

from __future__ import annotations

import json
import pickle
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from gankit.config import load_file as load_config_file
from gankit.data.batches import cycling_labels
from gankit.data.streams import Stream, seeded
from gankit.errors import CheckpointError, ConfigError
from gankit.files import atomic_write
from gankit.images import grid, save_png, scatter, to_uint8
from gankit.models import NetSpec, build

_NAME = re.compile(r"^step_(\d{7,})\.safetensors$")


def run_config(run_dir: str | Path) -> dict:
    """A run folder's config.json as key/value pairs."""
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run folder {run_dir} does not exist")
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a run folder (no config.json)")
    return load_config_file(path)


def has_ema(cfg: dict) -> bool:
    return cfg.get("ema") is not None


def is_toy_run(run_dir: str | Path) -> bool:
    return run_config(run_dir).get("model") == "mlp"


def path_for(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.safetensors"


def state_path(weights: Path) -> Path:
    return weights.with_name(weights.name.replace(".safetensors", ".state.pt"))


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, weights path) of every complete checkpoint, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted((s, p) for s, p in found if state_path(p).exists())


def latest(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder {run_dir} does not exist")
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"run folder {run_dir} has no checkpoint (checkpoints/step_*.safetensors)")
    return found[-1][1]


def newest_readable(run_dir: Path, load) -> tuple[Path, list[tuple[Path, str]]]:
    """Call `load(weights)` on the newest checkpoint, then on older ones while it raises CheckpointError (a disk
    fault, a file damaged outside gankit); (the one loaded, [(skipped, why), ...]). Raises the newest's error when
    none loads."""
    latest(run_dir)  # its errors: no such folder, no checkpoint
    skipped = []
    for _, weights in reversed(list_checkpoints(run_dir)):
        try:
            load(weights)
            return weights, skipped
        except CheckpointError as e:
            skipped.append((weights, str(e)))
    raise CheckpointError(
        skipped[0][1] + (f" (and the {len(skipped) - 1} older checkpoint(s) too)" if len(skipped) > 1 else "")
    )


def set_aside(weights: Path) -> Path:
    """Rename an unreadable checkpoint's files to *.unreadable, out of the way of resuming and pruning, not deleted."""
    for path in (weights, state_path(weights)):
        if path.exists():
            path.replace(path.with_name(path.name + ".unreadable"))
    return weights.with_name(weights.name + ".unreadable")


def save(
    run_dir: Path,
    step: int,
    modules: dict[str, torch.nn.Module],
    metadata: dict[str, Any],
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write one checkpoint atomically and delete all but the newest `keep`."""
    weights = path_for(run_dir, step)
    weights.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(state_path(weights), lambda p: torch.save(state, p))
    write_weights(weights, step, modules, metadata)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink()
        state_path(old).unlink(missing_ok=True)
    return weights


def read_metadata(weights: Path) -> dict[str, Any]:
    try:
        with safe_open(str(weights), "pt") as f:
            return {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {weights} is unreadable: {_first_line(e)}") from None


def load_weights(
    weights: Path,
    modules: dict[str, torch.nn.Module],
    adapt: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Load each named module's tensors from a checkpoint (strict: every key must match); `adapt(key, tensor)`, where
    given, may reshape a tensor first (fine-tuning onto another number of classes)."""
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"checkpoint {weights} is unreadable: {_first_line(e)}") from None
    if adapt is not None:
        tensors = {k: adapt(k, v) for k, v in tensors.items()}
    for name, module in modules.items():
        prefix = f"{name}."
        part = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(part)
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise CheckpointError(f"checkpoint {weights} does not match the model ({name}): {first}") from None


def tensor_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a checkpoint, read from its header (no tensor is loaded)."""
    try:
        with safe_open(str(weights), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"checkpoint {weights} is unreadable: {_first_line(e)}") from None


def best_path(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "best.safetensors"


def save_best(run_dir: Path, step: int, modules: dict[str, torch.nn.Module], metadata: dict[str, Any]) -> Path:
    """The weights with the best --keep-best value so far (no training state: they are sampled, not resumed)."""
    return write_weights(best_path(run_dir), step, modules, metadata)


def write_weights(path: Path, step: int, modules: dict[str, torch.nn.Module], metadata: dict[str, Any]) -> Path:
    """Every module's tensors, prefixed by its name, and the metadata (JSON values) in one safetensors file."""
    tensors = {
        f"{name}.{k}": v.detach().cpu().contiguous() for name, m in modules.items() for k, v in m.state_dict().items()
    }
    meta = {k: json.dumps(v) for k, v in {**metadata, "step": step}.items()}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))
    return path


def load_state(weights: Path) -> dict[str, Any]:
    try:
        return torch.load(state_path(weights), weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise CheckpointError(f"training state {state_path(weights)} is unreadable: {_first_line(e)}") from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def load_networks(run_dir: str | Path, ema: bool = False, device: str = "cpu", best: bool = False):
    """(G, D, NetSpec, step) in eval mode from a run folder's newest readable checkpoint; needs no data.

    With `ema`, G holds the exponential moving average of the generator's weights; with `best`, the weights
    `--keep-best` kept.
    """
    loaded = {}

    def load(weights: Path) -> None:
        meta = read_metadata(weights)
        try:
            spec = NetSpec(**{**meta["spec"], "classes": tuple(meta["spec"].get("classes", ()))})
            G, D = build(meta["model"], spec)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {weights} does not describe its model: {e}") from None
        if ema and meta.get("has_ema") is False:
            raise ConfigError(f"{run_dir} was trained without EMA (ema: null); drop --ema")
        load_weights(weights, {"G_ema" if ema else "G": G, "D": D})
        loaded.update(G=G, D=D, spec=spec, step=int(meta["step"]))

    if best:
        if not best_path(run_dir).is_file():
            raise ConfigError(f"{run_dir} has no best checkpoint: train with --keep-best METRIC and --eval-every N")
        load(best_path(run_dir))
    else:
        used, skipped = newest_readable(Path(run_dir), load)
        for weights, why in skipped:
            print(f"gankit: warning: skipped {weights.name}, {why}; using {used.name}", file=sys.stderr)
    return loaded["G"].to(device).eval(), loaded["D"].to(device).eval(), loaded["spec"], loaded["step"]


def load_generator(run_dir: str | Path, ema: bool = False, device: str = "cpu"):
    """(G in eval mode, NetSpec, step) from a run folder's latest checkpoint; needs no data."""
    G, _, spec, step = load_networks(run_dir, ema, device)
    return G, spec, step


@torch.no_grad()
def generate(
    G: torch.nn.Module,
    latent_dim: int,
    n: int,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    batch_size: int = 256,
    truncation: float | None = None,
) -> torch.Tensor:
    """n samples of G (float, model range) from z ~ N(0, I) seeded by `seed`, in batches to bound memory.
    `truncation` ψ: every coordinate of z beyond ±ψ is drawn again until it is within (the truncation trick, Brock et
    al. 2019): fewer odd samples, less variety."""
    generator = seeded(seed, Stream.SAMPLES)
    z = torch.randn(n, latent_dim, generator=generator)
    if truncation is not None:
        if truncation <= 0:
            raise ConfigError(f"truncation must be positive, got {truncation}")
        while (outside := z.abs() > truncation).any():
            z[outside] = torch.randn(int(outside.sum()), generator=generator)
    device = next(G.parameters()).device
    out = []
    for start in range(0, n, batch_size):
        y = labels[start : start + batch_size].to(device) if labels is not None else None
        out.append(G(z[start : start + batch_size].to(device), y).float().cpu())
    return torch.cat(out)


def labels_for(spec: NetSpec, n: int, label: int | None) -> torch.Tensor | None:
    """The labels a conditional G is asked for: all `label`, or cycling through the classes it was trained on; None
    if unconditional."""
    if not spec.num_classes:
        if label is not None:
            raise ConfigError("--label needs a conditional run (trained with --conditional)")
        return None
    classes = spec.drawn_classes
    if label is None:
        return cycling_labels(classes, n)
    if not 0 <= label < spec.num_classes:
        raise ConfigError(f"--label must be in 0..{spec.num_classes - 1}, got {label}")
    if label not in classes:
        raise ConfigError(f"class {label} was not in this run's training data (it had {', '.join(map(str, classes))})")
    return torch.full((n,), label, dtype=torch.long)


@dataclass
class Run:
    """A trained run, loaded for use: `G` and `D` in eval mode, what they were built from, and the run's config."""

    path: Path
    G: torch.nn.Module
    D: torch.nn.Module
    spec: NetSpec
    step: int
    config: dict
    ema: bool  # G holds the exponential moving average of the generator's weights

    def generate(
        self, n: int, labels: torch.Tensor | int | None = None, seed: int = 0, truncation: float | None = None
    ) -> torch.Tensor:
        """n samples (float, CPU): images (N, C, H, W) in [-1, 1], or (N, 2) points for a 2-D run. A conditional G
        draws `labels` ((N,) class indices, or one class for all), cycling through its trained classes when None."""
        if isinstance(labels, int) or labels is None:
            labels = labels_for(self.spec, n, labels)
        elif labels.shape != (n,):
            raise ConfigError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
        return generate(self.G, self.spec.latent_dim, n, seed, labels, truncation=truncation)

    def save_samples(
        self, out: str | Path, n: int = 64, seed: int = 0, label: int | None = None, nrow: int | None = None
    ) -> Path:
        """A PNG of n samples: an image grid (one column per class for a conditional G drawing every class), or a
        scatter plot for a 2-D run."""
        if n < 1:
            raise ConfigError(f"n must be at least 1, got {n}")
        samples = self.generate(n, label, seed)
        if self.spec.num_classes and label is None and nrow is None:
            nrow = len(self.spec.drawn_classes)  # labels cycle through the classes: one column per class
        if self.spec.resolution == 0:
            image = scatter({"G(z)": (samples, (214, 39, 40))})
        else:
            image = grid(to_uint8(samples), nrow)
        save_png(image, out)
        return Path(out)


def load(run_dir: str | Path, ema: bool | None = None, device: str = "cpu", best: bool = False) -> Run:
    """The run in `run_dir` from its newest readable checkpoint (`best`: the one --keep-best kept); `ema` None = the
    EMA weights where the run has them."""
    config = run_config(run_dir)
    ema = has_ema(config) if ema is None else ema
    G, D, spec, step = load_networks(run_dir, ema=ema, device=device, best=best)
    return Run(Path(run_dir), G, D, spec, step, config, ema)
