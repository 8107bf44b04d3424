"""One D update, one G update, and the loop that alternates them. The loop never names a loss or an architecture."""

from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import dataclass

import torch
from torch import nn

from .batches import noise_generator
from .config import TrainConfig
from .errors import NonFiniteLoss
from .losses import GANLoss, gradient_penalty
from .stats import Stats, non_finite


@dataclass
class Game:
    """The resolved rules of one run's game: the loss pair and the regularisers' actual weights."""

    loss: GANLoss
    real_target: float  # 1 - one-sided label smoothing
    gp_weight: float
    weight_clip: float | None
    n_critic: int


@dataclass
class Precision:
    device: torch.device
    bf16: bool
    channels_last: bool

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


def d_step(G: nn.Module, D: nn.Module, opt_d: torch.optim.Optimizer, game: Game, precision: Precision,
           x: torch.Tensor, y: torch.Tensor | None, z: torch.Tensor, generator: torch.Generator) -> dict:
    """Update D: maximise log D(x) + log(1 - D(G(z))) (or the game's critic objective) for one batch."""
    with torch.no_grad(), precision.autocast():
        fake = G(z, y)
    with precision.autocast():
        real_logits = D(x, y).float()
        fake_logits = D(fake, y).float()
    loss = game.loss.d(real_logits=real_logits, fake_logits=fake_logits, real_target=game.real_target)
    stats = {"loss_d": loss.detach()}
    if game.gp_weight:
        # In fp32: the penalty differentiates through D twice, where bf16 rounding would dominate the norm.
        penalty = gradient_penalty(lambda t: D(t, y), x, fake.float(), generator)
        loss = loss + game.gp_weight * penalty
        stats["gradient_penalty"] = penalty.detach()
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    if game.weight_clip is not None:
        with torch.no_grad():
            for p in D.parameters():
                p.clamp_(-game.weight_clip, game.weight_clip)
    stats.update(d_real=torch.sigmoid(real_logits).mean().detach(), d_fake=torch.sigmoid(fake_logits).mean().detach(),
                 logit_real=real_logits.mean().detach(), logit_fake=fake_logits.mean().detach())
    return stats


def g_step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, game: Game, precision: Precision,
           x: torch.Tensor, y: torch.Tensor | None, z: torch.Tensor) -> dict:
    """Update G against the current D (the game's G objective, e.g. maximise log D(G(z)) for ns)."""
    D.requires_grad_(False)  # D's weight gradients would be thrown away; skipping them saves a third of D's backward
    try:
        with precision.autocast():
            fake = G(z, y)
            fake_features = D.features(fake, y)
            fake_logits = D.head(fake_features, y).float()
            real_features = None
            if game.loss.uses_features:
                with torch.no_grad():
                    real_features = D.features(x, y)
        loss = game.loss.g(fake_logits=fake_logits, fake_features=fake_features, real_features=real_features)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in G.parameters() if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        opt_g.step()
    finally:
        D.requires_grad_(True)
    return {"loss_g": loss.detach(), "grad_norm_g": grad_norm.detach()}


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """G_ema ← β·G_ema + (1-β)·G with β ramped up as min(decay, (1+t)/(10+t)), so early averages forget the init."""
    beta = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


class StopRequested:
    """Turns the first Ctrl-C into a flag the loop checks between steps; a second one interrupts immediately."""

    def __init__(self) -> None:
        self.requested = False

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self):
        try:
            previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not in the main thread: leave Ctrl-C alone
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def train_loop(session, stop: StopRequested) -> str:
    """Alternate D and G updates from session.step to cfg.steps (or until cfg.max_minutes of training); returns why
    it ended: "done" or "interrupted".

    `session` (see `gankit.session`) owns the networks, optimisers, data, and the run folder's writers.
    """
    cfg: TrainConfig = session.cfg
    G, D, precision, game = session.G, session.D, session.precision, session.game
    stats = Stats()
    tick_start, tick_images, flushed_at = time.perf_counter(), 0, session.step
    while session.step < cfg.steps:
        if stop.requested:
            return "interrupted"
        step = session.step
        generator = noise_generator(cfg.seed, step, session.rank)
        for k in range(game.n_critic):
            x, y = session.batches(step * game.n_critic + k)
            x, y = precision.to_device(x), (y.to(precision.device) if y is not None else None)
            z = torch.randn(x.shape[0], session.spec.latent_dim, generator=generator).to(precision.device)
            stats.report(d_step(G, D, session.opt_d, game, precision, x, y, z, generator))
        z = torch.randn(x.shape[0], session.spec.latent_dim, generator=generator).to(precision.device)
        stats.report(g_step(G, D, session.opt_g, game, precision, x, y, z))
        if session.G_ema is not None:
            update_ema(session.G_ema, G, cfg.ema, step)
        session.step = step = step + 1
        tick_images += x.shape[0] * game.n_critic * session.world_size
        session.progress.update(1)

        out_of_time = cfg.max_minutes is not None and session.elapsed() >= 60 * cfg.max_minutes
        last = step == cfg.steps or out_of_time
        if step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0 or last:
            values = stats.flush()
            bad = non_finite(values)
            if bad:
                raise NonFiniteLoss(
                    f"non-finite {', '.join(bad)} between steps {flushed_at} and {step}; "
                    f"{session.last_checkpoint_note()}. Try a lower learning rate, the ns or wgan-gp loss, "
                    f"or spectral norm in D.")
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
    return "done"
