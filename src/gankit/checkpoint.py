"""Atomic checkpoints: weights in safetensors (self-describing via metadata), training state beside them.

`checkpoints/step_0002000.safetensors` holds G, D and G_ema tensors plus the NetSpec and model name as metadata, so a
checkpoint rebuilds the networks with nothing else. `step_0002000.state.pt` holds optimiser states, the step and RNG
states (plain tensors and numbers, loaded with weights_only=True). Both are written to temporary names and renamed,
state first: a weights file only exists once its state is complete, so an interrupted write is never mistaken for a
checkpoint.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .errors import CheckpointError

_NAME = re.compile(r"^step_(\d{7,})\.safetensors$")


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
    raise CheckpointError(skipped[0][1] + (f" (and the {len(skipped) - 1} older checkpoint(s) too)"
                                           if len(skipped) > 1 else ""))


def set_aside(weights: Path) -> Path:
    """Rename an unreadable checkpoint's files to *.unreadable, out of the way of resuming and pruning, not deleted."""
    for path in (weights, state_path(weights)):
        if path.exists():
            path.replace(path.with_name(path.name + ".unreadable"))
    return weights.with_name(weights.name + ".unreadable")


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def save(run_dir: Path, step: int, modules: dict[str, torch.nn.Module], metadata: dict[str, Any],
         state: dict[str, Any], keep: int) -> Path:
    """Write one checkpoint atomically and delete all but the newest `keep`."""
    weights = path_for(run_dir, step)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"{name}.{k}": v.detach().cpu().contiguous()
               for name, m in modules.items() for k, v in m.state_dict().items()}
    meta = {k: json.dumps(v) for k, v in {**metadata, "step": step}.items()}
    _atomic(state_path(weights), lambda p: torch.save(state, p))
    _atomic(weights, lambda p: save_file(tensors, str(p), metadata=meta))
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


def load_weights(weights: Path, modules: dict[str, torch.nn.Module]) -> None:
    """Load each named module's tensors from a checkpoint (strict: every key must match)."""
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"checkpoint {weights} is unreadable: {_first_line(e)}") from None
    for name, module in modules.items():
        prefix = f"{name}."
        part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(part)
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise CheckpointError(f"checkpoint {weights} does not match the model ({name}): {first}") from None


def load_state(weights: Path) -> dict[str, Any]:
    try:
        return torch.load(state_path(weights), weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise CheckpointError(f"training state {state_path(weights)} is unreadable: {_first_line(e)}") from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
