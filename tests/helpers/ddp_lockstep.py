"""Run under torchrun by test_distributed: trains with gankit's own session and loop, and after every step
all-gathers G's and D's weights and fails unless every rank holds bit-identical ones.

usage: torchrun --nproc_per_node 2 ddp_lockstep.py CONFIG.json
"""

import json
import sys

import torch
import torch.distributed as torch_dist

from gankit import config as config_mod
from gankit import distributed
from gankit.training.defaults import device_for
from gankit.training.loop import StopRequested, train_loop
from gankit.training.session import Session


def flat_weights(session) -> torch.Tensor:
    return torch.cat(
        [p.detach().float().flatten() for net in (session.state.G, session.state.D) for p in net.parameters()]
    )


def check_identical(session) -> None:
    mine = flat_weights(session)
    everyone = [torch.empty_like(mine) for _ in range(session.dist.world_size)]
    torch_dist.all_gather(everyone, mine)
    for rank, theirs in enumerate(everyone):
        if not torch.equal(theirs, mine):
            raise SystemExit(
                f"step {session.step}: rank {rank}'s weights differ from rank {session.dist.rank}'s "
                f"by up to {(theirs - mine).abs().max().item():.3g}"
            )
    session.checked = getattr(session, "checked", 0) + 1


def main() -> None:
    cfg = config_mod.from_dict(json.loads(open(sys.argv[1]).read()))
    dist, device = distributed.start(device_for(cfg.device))
    session = Session(cfg, show_progress=False, dist=dist, device=device)
    assert dist.active and session.dist.world_size == 2
    assert train_loop(session, StopRequested(), after_step=check_identical) == "done"
    if dist.main:
        print(json.dumps({"checked_steps": session.checked, "step": session.step}))
    session.close()
    distributed.stop(dist, together=True)  # a rank tearing gloo down under its peer can abort it
    distributed.end_process(0)  # as `gankit train` under torchrun does


if __name__ == "__main__":
    main()
