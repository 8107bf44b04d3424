"""The pure steps of training: one D update, one G update, the EMA, and a whole training step. They take a
TrainState and return or report tensors; they never see files, loggers or the command line, nor name a loss or an
architecture."""

from __future__ import annotations

import torch
from torch import nn

from gankit import distributed
from gankit.data.batches import augment_stream, noise_generator, rank_part
from gankit.data.streams import Stream, seeded
from gankit.training.augment import ADA_INTERVAL, adjust_ada
from gankit.training.augment import augment as diff_augment
from gankit.training.losses import gradient_penalty, lecam_penalty, r1_penalty
from gankit.training.state import Game, Precision, TrainState
from gankit.training.stats import Stats
from gankit.training.unroll import unrolled_critic

R1_EVERY = 16  # steps between R1 terms, each weighted ×16: StyleGAN2's lazy regularisation (Karras et al. 2020b)
LECAM_DECAY = 0.99  # the LeCam anchors' moving-average decay (Tseng et al. 2021)


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def d_step(
    D: nn.Module,
    opt_d: torch.optim.Optimizer,
    game: Game,
    precision: Precision,
    x: torch.Tensor,
    y: torch.Tensor | None,
    fake: torch.Tensor,
    alpha: torch.Tensor | None = None,
    augment=_same,
    r1: bool = False,
    lecam_anchors: torch.Tensor | None = None,
) -> dict:
    """Update D: maximise log D(x) + log(1 - D(G(z))) (or the game's critic objective) for one batch.

    `fake`: G's images, made without gradients. In a torchrun job D is the DistributedDataParallel wrapper (its
    gradients are averaged over ranks). `alpha`: the gradient penalty's mixing weights, (N,). `augment`: what
    D's inputs go through (DiffAugment); the gradient penalty is taken on the un-augmented images, R1 through the
    augmentation on the real ones (as StyleGAN2-ADA). `r1`: whether this update carries the lazy R1 term.
    `lecam_anchors`: LeCam's (real, fake) moving averages of D's mean logits (NaN before the first batch), updated
    here in place with this batch's (averaged over ranks) before the penalty uses them, as Tseng et al.'s code does.
    """
    with precision.autocast():
        real_logits = D(augment(x), y).float()
        fake_logits = D(augment(fake), y).float()
    loss = game.loss.d(real_logits=real_logits, fake_logits=fake_logits, real_target=game.real_target)
    stats = {"loss_d": loss.detach()}
    # The penalties on D's input gradients run in fp32: they differentiate through D twice, where bf16 rounding
    # would dominate the norm.
    if game.gp_weight:
        penalty = gradient_penalty(lambda t: D(t, y), x, fake.float(), alpha)
        loss = loss + game.gp_weight * penalty
        stats["gradient_penalty"] = penalty.detach()
    if r1:
        penalty = r1_penalty(lambda t: D(augment(t), y), x.float())
        loss = loss + game.r1_gamma / 2 * R1_EVERY * penalty
        stats["r1_penalty"] = penalty.detach()
    if lecam_anchors is not None:
        means = distributed.mean(torch.stack([real_logits.mean(), fake_logits.mean()]).detach(), distributed.current())
        moved = LECAM_DECAY * lecam_anchors + (1 - LECAM_DECAY) * means
        lecam_anchors.copy_(torch.where(lecam_anchors.isnan(), means, moved))
        penalty = lecam_penalty(real_logits, fake_logits, lecam_anchors[0], lecam_anchors[1])
        loss = loss + game.lecam_weight * penalty
        stats["lecam_penalty"] = penalty.detach()
    opt_d.zero_grad(set_to_none=True)
    scaler = precision.scaler_d
    scaler.scale(loss).backward()
    scaler.step(opt_d)
    scaler.update()
    if game.weight_clip is not None:
        with torch.no_grad():
            for p in D.parameters():
                if p.requires_grad:
                    p.clamp_(-game.weight_clip, game.weight_clip)
    stats.update(
        r_t=real_logits.detach().sign().mean(),  # ADA's overfitting heuristic: 1 = every real image scored real
        d_real=torch.sigmoid(real_logits).mean().detach(),
        d_fake=torch.sigmoid(fake_logits).mean().detach(),
        logit_real=real_logits.mean().detach(),
        logit_fake=fake_logits.mean().detach(),
    )
    return stats


def g_step(
    G: nn.Module,
    D: nn.Module,
    opt_g: torch.optim.Optimizer,
    game: Game,
    precision: Precision,
    x: torch.Tensor,
    y: torch.Tensor | None,
    fake: torch.Tensor,
    augment=_same,
    opt_d: torch.optim.Optimizer | None = None,
) -> dict:
    """Update G against the current D (the game's G objective, e.g. maximise log D(G(z)) for ns), or with
    `game.unroll` = K against D as K steps of `opt_d` will leave it (Unrolled GAN).

    `fake`: G(z, y) with its graph, from noise D has not been trained on. In a torchrun job G is the
    DistributedDataParallel wrapper and D the bare module: D's weights are frozen here, so no gradient of D may be
    synchronised.
    """
    real_features = fake_features = None
    if game.unroll:
        with precision.autocast():

            def d_loss(real_logits, fake_logits):
                return game.loss.d(real_logits=real_logits, fake_logits=fake_logits, real_target=game.real_target)

            ahead = unrolled_critic(D, opt_d, d_loss, x, y, fake, game.unroll, augment, game.weight_clip)
    trainable = [p for p in D.parameters() if p.requires_grad]  # all but the layers --freeze-d keeps as they are
    D.requires_grad_(False)  # D's weight gradients would be thrown away; skipping them saves a third of D's backward
    try:
        with precision.autocast():
            if game.unroll:
                fake_logits = ahead(augment(fake))
            else:
                fake_features = D.features(augment(fake), y)
                fake_logits = D.head(fake_features, y).float()
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
        for p in trainable:
            p.requires_grad_(True)
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


def train_step(state: TrainState, step: int, stats: Stats) -> None:
    """Training step `step`: n_critic D updates, one G update, the EMA update; values go to `stats` as tensors."""
    precision, game, batch_size = state.precision, state.game, state.batch_size
    part = rank_part(batch_size, state.rank, state.world_size)
    generator = noise_generator(state.seed, step)

    def noise():  # the global batch's z, of which this rank keeps its part
        return torch.randn(batch_size, state.latent_dim, generator=generator)[part].to(precision.device)

    augment = _same
    if game.augment:
        augment_generator = augment_stream(state.seed, step)

        def draw(k: int) -> torch.Tensor:  # like z: drawn for the global batch, this rank's rows kept
            return torch.rand(batch_size, k, generator=augment_generator)[part].to(precision.device)

        p = state.ada[0] if state.ada is not None else None

        def augment(images: torch.Tensor) -> torch.Tensor:
            return diff_augment(images, game.augment, draw, p)

    for k in range(game.n_critic):
        x, y = state.batches(step * game.n_critic + k)
        if state.mirror:  # like z: drawn for the global batch, this rank's rows kept
            flip = torch.rand(batch_size, generator=seeded(state.seed, Stream.MIRROR, step, k))[part] < 0.5
            x = torch.where(flip[:, None, None, None].to(x.device), x.flip(-1), x)
        x, y = precision.to_device(x), (y.to(precision.device) if y is not None else None)
        z = noise()
        alpha = torch.rand(batch_size, generator=generator)[part] if game.gp_weight else None
        if alpha is not None and game.pack > 1:  # a pack is one sample of D's: its rows mix with one α
            alpha = alpha[:: game.pack].repeat_interleave(game.pack)
        with torch.no_grad(), precision.autocast():
            fake = state.G(z, y)
        r1 = game.r1_gamma > 0 and k == 0 and step % R1_EVERY == 0
        anchors = state.lecam_anchors
        d_stats = d_step(state.D_train, state.opt_d, game, precision, x, y, fake, alpha, augment, r1, anchors)
        stats.report(d_stats)
        if state.ada is not None:
            state.ada[1:] += torch.stack([d_stats["r_t"], torch.ones_like(d_stats["r_t"])])
    # G's update draws its own z. Reusing the fakes D was just trained on, as the classic DCGAN loop does, saves a
    # forward pass of G (8% of the FLOPs) but measured here it wrecks 2-D training: ns on ring8, 2,000 steps,
    # covered 0 of 8 modes that way and 8 of 8 with fresh z (docs/performance.md).
    with precision.autocast():
        fake = state.G_train(noise(), y)
    stats.report(g_step(state.G_train, state.D, state.opt_g, game, precision, x, y, fake, augment, state.opt_d))
    if state.G_ema is not None:
        update_ema(state.G_ema, state.G, state.ema, step)
    if state.ada is not None:
        if step % ADA_INTERVAL == ADA_INTERVAL - 1:
            r_t = distributed.mean(state.ada[1] / state.ada[2], distributed.current())
            moved = adjust_ada(state.ada[0], r_t, game.ada_target, batch_size * ADA_INTERVAL, game.ada_kimg)
            state.ada.copy_(torch.stack([moved, torch.zeros_like(moved), torch.zeros_like(moved)]))
        stats.report({"ada_p": state.ada[0]})
