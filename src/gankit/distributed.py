"""Many processes, started by torchrun: the process group, this process's place in it, and the few collectives
training and evaluation need.

Without torchrun's environment every function here is a no-op on one process: no process group is created.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as torch_dist
from torch import nn

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a process on its own: the one that prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass(frozen=True)
class Dist:
    """This process's place in the job; `active` when a process group exists (torchrun), even of one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    active: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def start(device: torch.device) -> tuple[Dist, torch.device]:
    """Join torchrun's process group (gloo on CPU, NCCL on CUDA) and pick this rank's device; alone, change nothing.

    Under torchrun each process drives the GPU of its LOCAL_RANK.
    """
    if not launched_by_torchrun():
        return Dist(), device
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None
        )
    return Dist(rank, world_size, local_rank, active=True), device


def stop(dist: Dist, together: bool = False) -> None:
    """Leave the process group. `together` (every rank finished normally): wait for all first — a rank that exits
    while rank 0 still writes its checkpoint makes torchrun kill rank 0, and gloo can abort a rank whose peer tore
    the group down under it."""
    if dist.active and torch_dist.is_initialized():
        if together:
            torch_dist.barrier()
        torch_dist.destroy_process_group()


def end_process(code: int) -> NoReturn:
    """End a torchrun worker whose work is saved and whose process group is left, skipping the interpreter's
    teardown: gloo's threads can still be releasing tensors then and abort a finished rank (SIGABRT, "terminate
    called without an active exception", seen once on a CI machine after a job that had run to its end)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def current() -> Dist:
    """The Dist of an already started process group (e.g. inside `gankit eval` under torchrun)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return Dist()
    return Dist(torch_dist.get_rank(), torch_dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), True)


def wrap(module: nn.Module, dist: Dist, device: torch.device) -> nn.Module:
    """`module` inside DistributedDataParallel in a torchrun job (gradients averaged over ranks in backward), else
    itself. Buffers (batch-norm running statistics, spectral norm's u) are broadcast from rank 0 at every forward,
    so every rank holds rank 0's."""
    if not dist.active:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        module,
        device_ids=[device] if device.type == "cuda" else None,
        forward_sync_buffers=True,
        gradient_as_bucket_view=True,
    )


def mean(values: torch.Tensor, dist: Dist) -> torch.Tensor:
    """The mean of `values` over ranks (every rank gets it)."""
    if not dist.active:
        return values
    values = values.clone()
    torch_dist.all_reduce(values, op=torch_dist.ReduceOp.SUM)
    return values / dist.world_size


def mean_with_grad(values: torch.Tensor, dist: Dist) -> torch.Tensor:
    """`mean`, through which autograd differentiates (the all-reduce's backward is an all-reduce of the gradient)."""
    if not dist.active:
        return values
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(values, op=torch_dist.ReduceOp.SUM) / dist.world_size


def any_rank(flags: list[bool], dist: Dist, device: torch.device) -> list[bool]:
    """For each flag, whether it is set on any rank, so that all ranks act on it at the same step."""
    if not dist.active:
        return flags
    t = torch.tensor(flags, dtype=torch.int32, device=device)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def shard(n: int, dist: Dist) -> slice:
    """This rank's rows of n: every world_size-th, starting at the rank."""
    return slice(dist.rank, n, dist.world_size)


def gather_shards(part: torch.Tensor, n: int, dist: Dist) -> torch.Tensor:
    """Reassemble on every rank the (n, ...) tensor whose rows `shard(n, dist)` each rank computed."""
    if not dist.active:
        return part
    rows = -(-n // dist.world_size)
    padded = part.new_zeros((rows, *part.shape[1:]))
    padded[: part.shape[0]] = part
    parts = [torch.empty_like(padded) for _ in range(dist.world_size)]
    torch_dist.all_gather(parts, padded)
    out = part.new_empty((n, *part.shape[1:]))
    for rank, gathered in enumerate(parts):
        count = len(range(rank, n, dist.world_size))
        out[rank :: dist.world_size] = gathered[:count]
    return out


def failure_summary(error: BaseException) -> str:
    """The part of a gloo/NCCL error message that says what happened."""
    return str(error).splitlines()[0].split(" This is typically caused")[0]


def is_failure(error: BaseException) -> bool:
    """Whether `error` is the process group failing (a rank died, a connection closed), not a bug in this rank."""
    return isinstance(error, torch_dist.DistError) or (
        isinstance(error, RuntimeError) and any(s in str(error) for s in ("Gloo", "gloo", "NCCL", "Connection"))
    )
