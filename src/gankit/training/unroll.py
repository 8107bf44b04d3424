"""Unrolled GAN (Metz et al. 2017): G's update is taken against D as it will be K optimiser steps later, with the
gradient flowing through those steps. A G that collapses onto a few modes is then judged by the D that has already
answered the collapse, so collapsing stops paying. The unrolled steps are a functional copy: D itself is not touched.

As the paper's reference code (Poole et al.'s notebook, which replays D's own Adam update), each unrolled step is D's
optimiser rule — Adam or RMSprop, from its current moments — on the game's D loss for the same real batch and the same
samples of G, whose graph the steps keep; penalties (gradient penalty, R1, LeCam) are left out of the look-ahead.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

from gankit import distributed

# A floor under Adam's and RMSprop's second moments before their square root: a parameter whose gradient has been
# exactly 0 so far (an embedding row no batch used) has v = 0, where the derivative of √v is infinite and the
# look-ahead's gradient would turn to NaN. Far below the optimisers' ε (1e-8), so the step itself is unchanged.
SQRT_FLOOR = 1e-30


def optimizer_rule(opt: torch.optim.Optimizer, p: nn.Parameter):
    """(moments, rule) for parameter p: its optimiser's current state, and rule(θ, g, moments) → (θ, moments) after one
    step of `opt`'s update, differentiable in θ and g (Adam with bias correction; RMSprop without momentum, as gankit
    builds them). Moments of a parameter not yet stepped start at 0, as the optimisers' own do."""
    group = next(g for g in opt.param_groups if any(q is p for q in g["params"]))
    state = opt.state.get(p, {})
    lr, eps = group["lr"], group["eps"]
    zeros = torch.zeros_like(p)
    if isinstance(opt, torch.optim.Adam):
        beta1, beta2 = group["betas"]
        moments = (
            float(state["step"]) if "step" in state else 0.0,
            state.get("exp_avg", zeros),
            state.get("exp_avg_sq", zeros),
        )

        def adam(theta: torch.Tensor, g: torch.Tensor, moments: tuple) -> tuple[torch.Tensor, tuple]:
            step, m, v = moments
            step, m, v = step + 1, beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g * g
            m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
            return theta - lr * m_hat / ((v_hat + SQRT_FLOOR).sqrt() + eps), (step, m, v)

        return moments, adam
    if isinstance(opt, torch.optim.RMSprop) and not group["momentum"] and not group["centered"]:
        alpha = group["alpha"]

        def rmsprop(theta: torch.Tensor, g: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            v = alpha * v + (1 - alpha) * g * g
            return theta - lr * g / ((v + SQRT_FLOOR).sqrt() + eps), v

        return state.get("square_avg", zeros), rmsprop
    raise ValueError(f"--unroll knows Adam's and plain RMSprop's rules, not this {type(opt).__name__}'s")


def unrolled_critic(
    D: nn.Module,
    opt_d: torch.optim.Optimizer,
    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor | None,
    fake: torch.Tensor,
    steps: int,
    augment=lambda images: images,
    weight_clip: float | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """images → logits of D after `steps` functional steps of its optimiser on d_loss(real_logits, fake_logits) for
    the real batch (x, y) and `fake`, G's samples with their graph: the returned function is differentiable in G's
    parameters through those steps. D's parameters and buffers (batch-norm statistics, spectral norm's vectors) stay
    as they are. In a torchrun job the look-ahead's gradients are averaged over ranks, as D's own are."""
    dist = distributed.current()
    trainable = {name: p for name, p in D.named_parameters() if p.requires_grad}
    params = {name: p.detach().requires_grad_(True) for name, p in trainable.items()}
    frozen = {name: p.detach() for name, p in D.named_parameters() if not p.requires_grad}
    buffers = {name: b.clone() for name, b in D.named_buffers()}  # batch norm updates its statistics in place
    rules = {name: optimizer_rule(opt_d, p) for name, p in trainable.items()}
    moments = {name: rule[0] for name, rule in rules.items()}

    def logits(params: dict, images: torch.Tensor) -> torch.Tensor:
        out = functional_call(D, {**params, **frozen, **buffers}, (images, y))
        return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out  # the losses run in fp32 or more

    for _ in range(steps):
        loss = d_loss(logits(params, augment(x)), logits(params, augment(fake)))
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        grads = [distributed.mean_with_grad(g, dist) for g in grads]
        stepped = {name: rules[name][1](params[name], g, moments[name]) for name, g in zip(params, grads)}
        params = {name: new for name, (new, _) in stepped.items()}
        moments = {name: state for name, (_, state) in stepped.items()}
        if weight_clip is not None:
            params = {name: p.clamp(-weight_clip, weight_clip) for name, p in params.items()}
    return lambda images: logits(params, images)
