"""One D update, one G update, and the loop that alternates them. The loop never names a loss or an architecture."""

from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import dataclass

import torch
from torch import nn

from .augment import augment as diff_augment
from .batches import augment_stream, noise_generator, rank_part
from .config import TrainConfig
from .distributed import any_rank, mean
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
    augment: tuple[str, ...] = ()  # DiffAugment operations applied to everything D sees


class Precision:
    """Where and in what arithmetic the networks run: fp32, bf16 autocast, or fp16 autocast with loss scaling."""

    def __init__(self, device: torch.device, dtype: torch.dtype | None, channels_last: bool):
        self.device, self.dtype, self.channels_last = device, dtype, channels_last
        fp16 = dtype == torch.float16  # fp16's narrow exponent needs scaled losses; bf16's does not
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=fp16)
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=fp16)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def d_step(D: nn.Module, opt_d: torch.optim.Optimizer, game: Game, precision: Precision, x: torch.Tensor,
           y: torch.Tensor | None, fake: torch.Tensor, alpha: torch.Tensor | None = None, augment=_same) -> dict:
    """Update D: maximise log D(x) + log(1 - D(G(z))) (or the game's critic objective) for one batch.

    `fake`: G's images, made without gradients. In a torchrun job D is the DistributedDataParallel wrapper (its
    gradients are averaged over ranks). `alpha`: the gradient penalty's mixing weights, (N,). `augment`: what
    D's inputs go through (DiffAugment); the gradient penalty is taken on the un-augmented images.
    """
    with precision.autocast():
        real_logits = D(augment(x), y).float()
        fake_logits = D(augment(fake), y).float()
    loss = game.loss.d(real_logits=real_logits, fake_logits=fake_logits, real_target=game.real_target)
    stats = {"loss_d": loss.detach()}
    if game.gp_weight:
        # In fp32: the penalty differentiates through D twice, where bf16 rounding would dominate the norm.
        penalty = gradient_penalty(lambda t: D(t, y), x, fake.float(), alpha)
        loss = loss + game.gp_weight * penalty
        stats["gradient_penalty"] = penalty.detach()
    opt_d.zero_grad(set_to_none=True)
    scaler = precision.scaler_d
    scaler.scale(loss).backward()
    scaler.step(opt_d)
    scaler.update()
    if game.weight_clip is not None:
        with torch.no_grad():
            for p in D.parameters():
                p.clamp_(-game.weight_clip, game.weight_clip)
    stats.update(d_real=torch.sigmoid(real_logits).mean().detach(), d_fake=torch.sigmoid(fake_logits).mean().detach(),
                 logit_real=real_logits.mean().detach(), logit_fake=fake_logits.mean().detach())
    return stats


def g_step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, game: Game, precision: Precision,
           x: torch.Tensor, y: torch.Tensor | None, fake: torch.Tensor, augment=_same) -> dict:
    """Update G against the current D (the game's G objective, e.g. maximise log D(G(z)) for ns).

    `fake`: G(z, y) with its graph, from noise D has not been trained on. In a torchrun job G is the
    DistributedDataParallel wrapper and D the bare module: D's weights are frozen here, so no gradient of D may be
    synchronised.
    """
    D.requires_grad_(False)  # D's weight gradients would be thrown away; skipping them saves a third of D's backward
    try:
        with precision.autocast():
            fake_features = D.features(augment(fake), y)
            fake_logits = D.head(fake_features, y).float()
            real_features = None
            if game.loss.uses_features:
                with torch.no_grad():
                    real_features = D.features(augment(x), y)
        loss = game.loss.g(fake_logits=fake_logits, fake_features=fake_features, real_features=real_features)
        opt_g.zero_grad(set_to_none=True)
        scaler = precision.scaler_g
        scaler.scale(loss).backward()
        scaler.unscale_(opt_g)
        grads = [p.grad for p in G.parameters() if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).detach()
        scaler.step(opt_g)
        scaler.update()
    finally:
        D.requires_grad_(True)
    stats = {"loss_g": loss.detach(), "grad_norm_g": grad_norm}
    if scaler.is_enabled():  # fp16: an overflowing step is skipped by the scaler, not a divergence
        finite = grad_norm.isfinite()
        stats.update(grad_norm_g=torch.where(finite, grad_norm, 0.0), amp_skipped=(~finite).float())
    return stats


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """G_ema ← β·G_ema + (1-β)·G with β ramped up as min(decay, (1+t)/(10+t)), so early averages forget the init."""
    beta = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


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


def train_step(session, step: int, stats: Stats) -> None:
    """Training step `step`: n_critic D updates, one G update, the EMA update; values go to `stats` as tensors.

    Reads from `session`: cfg (seed, batch_size, ema), dist, spec.latent_dim, batches, game, precision, G, D, G_train,
    D_train, G_ema, opt_g, opt_d.
    """
    cfg, precision, game = session.cfg, session.precision, session.game
    part = rank_part(cfg.batch_size, session.dist.rank, session.dist.world_size)
    generator = noise_generator(cfg.seed, step)

    def noise():  # the global batch's z, of which this rank keeps its part
        return torch.randn(cfg.batch_size, session.spec.latent_dim, generator=generator)[part].to(precision.device)

    augment = _same
    if game.augment:
        augment_generator = augment_stream(cfg.seed, step)

        def draw(k: int) -> torch.Tensor:  # like z: drawn for the global batch, this rank's rows kept
            return torch.rand(cfg.batch_size, k, generator=augment_generator)[part].to(precision.device)

        def augment(images: torch.Tensor) -> torch.Tensor:
            return diff_augment(images, game.augment, draw)

    for k in range(game.n_critic):
        x, y = session.batches(step * game.n_critic + k)
        x, y = precision.to_device(x), (y.to(precision.device) if y is not None else None)
        z = noise()
        alpha = torch.rand(cfg.batch_size, generator=generator)[part] if game.gp_weight else None
        with torch.no_grad(), precision.autocast():
            fake = session.G(z, y)
        stats.report(d_step(session.D_train, session.opt_d, game, precision, x, y, fake, alpha, augment))
    # G's update draws its own z. Reusing the fakes D was just trained on, as the classic DCGAN loop does, saves a
    # forward pass of G (8% of the FLOPs) but measured here it wrecks 2-D training: ns on ring8, 2,000 steps,
    # covered 0 of 8 modes that way and 8 of 8 with fresh z (docs/performance.md).
    with precision.autocast():
        fake = session.G_train(noise(), y)
    stats.report(g_step(session.G_train, session.D, session.opt_g, game, precision, x, y, fake, augment))
    if session.G_ema is not None:
        update_ema(session.G_ema, session.G, cfg.ema, step)


AGREE_EVERY = 10  # steps between the ranks of a torchrun job agreeing on whether to stop (Ctrl-C, time budget)


def lr_scale(progress: float) -> float:
    """`--lr-decay linear`, as pix2pix and CycleGAN train: the full rate for the first half, then linearly to 0."""
    return min(1.0, 2.0 * (1.0 - progress))


def set_lr_scale(session, scale: float) -> None:
    for opt, lr in ((session.opt_g, session.cfg.lr_g), (session.opt_d, session.cfg.lr_d)):
        for group in opt.param_groups:
            group["lr"] = lr * scale


def train_loop(session, stop: StopRequested, after_step=None) -> str:
    """Alternate D and G updates from session.step to cfg.steps (or until cfg.max_minutes of training); returns why
    it ended: "done" or "interrupted". `after_step(session)`, if given, runs after every step.

    `session` (see `gankit.session`) owns the networks (bare, and as trained: DDP-wrapped in a torchrun job),
    optimisers, data, and the run folder's writers.
    """
    cfg: TrainConfig = session.cfg
    precision, game, dist = session.precision, session.game, session.dist
    stats = Stats()
    tick_start, tick_images, flushed_at = time.perf_counter(), 0, session.step
    time_used = 0.0  # fraction of --max-minutes spent; in a torchrun job the ranks' mean, agreed every AGREE_EVERY steps
    first_step = session.step
    while session.step < cfg.steps:
        if cfg.lr_decay == "linear":
            agree = not dist.active or session.step % AGREE_EVERY == 0 or session.step == first_step
            if cfg.max_minutes is not None and agree:
                time_used = session.elapsed() / (60 * cfg.max_minutes)
                if dist.active:  # one host sync per AGREE_EVERY steps, as for stopping
                    time_used = float(mean(torch.tensor(time_used, device=precision.device), dist))
            set_lr_scale(session, lr_scale(max(session.step / cfg.steps, time_used)))
        train_step(session, session.step, stats)
        session.step = step = session.step + 1
        tick_images += cfg.batch_size * game.n_critic
        session.progress.update(1)
        if after_step is not None:
            after_step(session)

        stopping = stop.requested
        out_of_time = cfg.max_minutes is not None and session.elapsed() >= 60 * cfg.max_minutes
        if dist.active:  # every rank must leave the loop at the same step, or the others wait for it forever
            stopping, out_of_time = any_rank([stopping, out_of_time], dist, precision.device) \
                if step % AGREE_EVERY == 0 else (False, False)
        last = step == cfg.steps or out_of_time
        if step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0 or last:
            values = stats.flush(reduce=lambda t: mean(t, dist))
            bad = non_finite(values)
            if bad:
                session.diagnose_non_finite(bad)
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
        if stopping:
            return "interrupted"
    return "done"
