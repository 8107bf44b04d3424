"""The training loop: steps from the engine until the budget is spent, the session's writers called between them."""

from __future__ import annotations

import contextlib
import signal
import time

import torch

from gankit.config import TrainConfig
from gankit.distributed import any_rank, mean
from gankit.errors import NonFiniteLoss
from gankit.training.engine import train_step
from gankit.training.state import TrainState
from gankit.training.stats import Stats, non_finite


class StopRequested:
    """Turns the first Ctrl-C (or SIGTERM, as torchrun and batch schedulers send) into a flag the loop checks between
    steps; a second one interrupts immediately."""

    def __init__(self) -> None:
        self.requested = False

    def _handler(self, signum, frame):
        if self.requested and signum == signal.SIGINT:  # a repeated SIGTERM (scheduler + torchrun) is still one stop
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self):
        try:
            previous = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not in the main thread: leave the signals alone
            yield self
            return
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


AGREE_EVERY = 10  # steps between the ranks of a torchrun job agreeing on whether to stop (Ctrl-C, time budget)


def lr_scale(progress: float) -> float:
    """`--lr-decay linear`, as pix2pix and CycleGAN train: the full rate for the first half, then linearly to 0."""
    return min(1.0, 2.0 * (1.0 - progress))


def set_lr_scale(state: TrainState, cfg: TrainConfig, scale: float) -> None:
    for opt, lr in ((state.opt_g, cfg.lr_g), (state.opt_d, cfg.lr_d)):
        for group in opt.param_groups:
            group["lr"] = lr * scale


def train_loop(session, stop: StopRequested, after_step=None) -> str:
    """Alternate D and G updates from session.step to cfg.steps (or until cfg.max_minutes of training); returns why
    it ended: "done" or "interrupted". `after_step(session)`, if given, runs after every step.

    `session` (see `gankit.training.session`) holds the TrainState the steps update (`session.state`) and the run
    folder's writers the loop calls between steps.
    """
    cfg: TrainConfig = session.cfg
    state, dist = session.state, session.dist
    precision, game = state.precision, state.game
    stats = Stats()
    tick_start, tick_images, flushed_at = time.perf_counter(), 0, session.step
    time_used = (
        0.0  # fraction of --max-minutes spent; in a torchrun job the ranks' mean, agreed every AGREE_EVERY steps
    )
    first_step = session.step
    while session.step < cfg.steps:
        if cfg.lr_decay == "linear":
            agree = not dist.active or session.step % AGREE_EVERY == 0 or session.step == first_step
            if cfg.max_minutes is not None and agree:
                time_used = session.elapsed() / (60 * cfg.max_minutes)
                if dist.active:  # one host sync per AGREE_EVERY steps, as for stopping
                    time_used = float(mean(torch.tensor(time_used, device=precision.device), dist))
            set_lr_scale(state, cfg, lr_scale(max(session.step / cfg.steps, time_used)))
        train_step(state, session.step, stats)
        session.step = step = session.step + 1
        tick_images += cfg.batch_size * game.n_critic
        session.progress.update(1)
        if after_step is not None:
            after_step(session)

        stopping = stop.requested
        out_of_time = cfg.max_minutes is not None and session.elapsed() >= 60 * cfg.max_minutes
        if dist.active:  # every rank must leave the loop at the same step, or the others wait for it forever
            stopping, out_of_time = (
                any_rank([stopping, out_of_time], dist, precision.device) if step % AGREE_EVERY == 0 else (False, False)
            )
        last = step == cfg.steps or out_of_time
        if step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0 or last:
            values = stats.flush(reduce=lambda t: mean(t, dist))
            bad = non_finite(values)
            if bad:
                session.diagnose_non_finite(bad)
                raise NonFiniteLoss(
                    f"non-finite {', '.join(bad)} between steps {flushed_at} and {step}; "
                    f"{session.last_checkpoint_note()}. Try a lower learning rate, the ns or wgan-gp loss, "
                    f"or spectral norm in D."
                )
            session.log(values, images_per_s=tick_images / max(time.perf_counter() - tick_start, 1e-9))
            tick_images, flushed_at = 0, step
        if step % cfg.sample_every == 0 or last:
            session.save_samples()
        if cfg.eval_every and (step % cfg.eval_every == 0 or last):
            session.evaluate()
        if step % cfg.checkpoint_every == 0 or last:
            session.save_checkpoint()
        if tick_images == 0:  # the tick's clock starts after its files are written: img/s measures training only
            tick_start = time.perf_counter()
        if out_of_time:
            session.say(f"--max-minutes {cfg.max_minutes} reached at step {step}")
            break
        if stopping:
            return "interrupted"
    return "done"
