"""What gankit decides when a setting is left to it: every None of a TrainConfig filled from the data, the model
and the host (`gankit.host`), with the measurements behind each choice; and the networks' and optimisers' builders."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from gankit import host
from gankit.config import TrainConfig, parse_policy
from gankit.data import is_named, is_toy
from gankit.errors import ConfigError
from gankit.metrics.evaluate import has_classifier
from gankit.models import PLANS, NetSpec
from gankit.training.losses import LOSSES

# WGAN-GP on 2-D toy data as its authors ran it (Gulrajani et al. 2017, gan_toy.py in their code): λ 0.1, "smaller
# lambda makes things faster for toy tasks", and Adam β (0.5, 0.9). Their algorithm 1's λ 10 and β (0, 0.9), meant for
# images, never reached ring8's modes in 10,000 steps; these cover all 8 within 2,000 (docs/diagnostics.md).
WGAN_GP_TOY = {"gp_weight": 0.1, "beta1": 0.5, "beta2": 0.9}


def resolve(cfg: TrainConfig, shape: dict) -> TrainConfig:
    """Fill every None of `cfg` from the data and the model, and check the combination makes sense."""
    toy = shape["resolution"] == 0
    model = cfg.model or ("mlp" if toy else "dcgan")
    if toy and model != "mlp":
        raise ConfigError(f"{cfg.data} is 2-D toy data: use --model mlp")
    if not toy and model == "mlp":
        raise ConfigError("the mlp model is for 2-D toy data; use --model dcgan or resnet for images")
    resolution = 0 if toy else (cfg.resolution or shape["resolution"])
    if not toy:
        try:
            PLANS[model](resolution)
        except ValueError as e:
            raise ConfigError(f"{e}; pass --resolution to resize the data once at load") from None
    if cfg.conditional and not shape["num_classes"]:
        raise ConfigError(f"--conditional needs class labels, and {cfg.data} has none")
    dcgan = model == "dcgan"
    # Labels, where the data has them, lowered Fashion-MNIST's Inception FID after 10 CPU-minutes from 38.5 to 28.4
    # (docs/experiments.md); a conditional G still draws the data's distribution when its labels follow the data's.
    conditional = cfg.conditional if cfg.conditional is not None else (not toy and bool(shape["num_classes"]))
    if cfg.class_batchnorm and not (dcgan and conditional and cfg.batchnorm_g is not False):
        raise ConfigError(
            "--class-batchnorm is for a conditional dcgan (images with class labels) with batch norm in G"
        )
    if model == "resnet" and (cfg.batchnorm_g is False or cfg.batchnorm_d or cfg.class_batchnorm):
        raise ConfigError(
            "the resnet networks have batch norm in G (per class when conditional) and none in D, as SNGAN's: "
            "--batchnorm-g, --batchnorm-d and --class-batchnorm are for dcgan"
        )
    if cfg.keep_best and not cfg.eval_every:
        raise ConfigError(f"--keep-best {cfg.keep_best} keeps the best --eval-every value: add --eval-every N")
    if cfg.keep_best == "fid" and not cfg.eval_inception:
        raise ConfigError("--keep-best fid needs Inception FID at each evaluation: add --eval-inception")
    if cfg.keep_best == "domain_fid" and not has_classifier(cfg.data):
        raise ConfigError(f"there is no domain classifier for {cfg.data}: use --keep-best fid with --eval-inception")
    if cfg.freeze_d and not cfg.init_from:
        raise ConfigError("--freeze-d keeps trained layers of D as they are: it needs --init-from RUN")
    if toy and cfg.mirror:
        raise ConfigError("--mirror flips images; 2-D toy data has none")
    if toy and parse_policy(cfg.augment):
        raise ConfigError("--augment transforms images; 2-D toy data has none")
    loss = LOSSES[cfg.loss]
    if cfg.label_smoothing and not loss.label_smoothing:
        raise ConfigError(f"label smoothing has no meaning for the {cfg.loss} loss")
    if cfg.unroll and loss.uses_features:
        raise ConfigError("--unroll looks ahead at D's logits; feature-matching's G objective is on D's features")
    if model != "mlp" and (cfg.maxout > 1 or cfg.depth_g or cfg.init_std):
        raise ConfigError("--maxout, --depth-g and --init-std shape the mlp networks of 2-D toy data")
    batch_size = cfg.batch_size or (100 * cfg.pack if cfg.preset == "pacgan" else 32 if not toy else 256)
    if batch_size % cfg.pack:
        raise ConfigError(f"--pack {cfg.pack}: the batch of {batch_size} does not split into packs of {cfg.pack}")
    gp_loss = cfg.loss == "wgan-gp"
    device = device_for(cfg.device)
    resnet = model == "resnet"
    # Toy points need fp32: bf16 rounds 1.0 to 2^-8.
    auto_bf16 = cfg.precision == "auto" and not toy and fast_bf16(device)
    if dcgan:
        width_g, width_d = dcgan_widths(resolution, device, cfg.max_minutes)
    else:
        width_g, width_d = resnet_widths(resolution) if resnet else (256, 256)
    # Learning rates and critic steps: the WGAN papers' own; SNGAN's Adam for its residual networks (Miyato et al.
    # 2018, table 3: 2e-4, β1 0, β2 0.9); for the rest, 4e-4 at batch 32 trained DCGAN on Fashion-MNIST to a clearly
    # lower FID per CPU-minute than the classic 2e-4 at batch 128 (docs/performance.md).
    lr = {"wgan": 5e-5, "wgan-gp": 1e-4}.get(cfg.loss, 4e-4 if dcgan else 2e-4)
    lr_g = cfg.lr_g or lr
    toy_gp = WGAN_GP_TOY if gp_loss and toy else {}
    zero_beta1 = gp_loss or resnet
    holdout = holdout_for(cfg)
    return dataclasses.replace(
        cfg,
        model=model,
        resolution=resolution,
        conditional=conditional,
        latent_dim=cfg.latent_dim or (100 if dcgan else 2),
        width_g=cfg.width_g or width_g,
        width_d=cfg.width_d or width_d,
        batchnorm_g=cfg.batchnorm_g if cfg.batchnorm_g is not None else not toy,
        spectral_norm=cfg.spectral_norm or resnet,  # every layer of the residual D, always (SNGAN)
        # A per-sample gradient penalty (WGAN-GP, R1) is wrong under batch norm (Gulrajani et al.); SN replaces it.
        batchnorm_d=cfg.batchnorm_d
        if cfg.batchnorm_d is not None
        else (dcgan and not cfg.spectral_norm and not gp_loss and not cfg.r1),
        gp_weight=cfg.gp_weight if cfg.gp_weight is not None else toy_gp.get("gp_weight", loss.gradient_penalty),
        weight_clip=cfg.weight_clip if cfg.weight_clip is not None else loss.weight_clip,
        beta1=cfg.beta1 if cfg.beta1 is not None else toy_gp.get("beta1", 0.0 if zero_beta1 else 0.5),
        beta2=cfg.beta2 if cfg.beta2 is not None else toy_gp.get("beta2", 0.9 if zero_beta1 else 0.999),
        batch_size=batch_size,
        n_critic=cfg.n_critic or (5 if cfg.loss in ("wgan", "wgan-gp") else 1),
        lr_g=lr_g,
        holdout=holdout,
        lr_d=cfg.lr_d or lr_g,
        precision={"auto": "bf16" if auto_bf16 else "fp32"}.get(cfg.precision, cfg.precision),
        out=cfg.out or f"runs/{Path(cfg.data).stem}-{cfg.loss}",
    )


# A wall-clock budget this short buys a CPU too few updates of G 96 / D 64 (docs/performance.md).
SHORT_CPU_BUDGET_MINUTES = 15


def dcgan_widths(resolution: int, device: torch.device, max_minutes: float | None = None) -> tuple[int, int]:
    """G's and D's default widths (DCGAN's ngf, ndf): DCGAN's 64, except at 28×28, where they were measured.

    The wider G 96 / D 64 wins where its steps are fast — a GPU, bf16 on a CPU that runs it faster than fp32, fp32 on
    an AVX-512 CPU: ~43–53 ms a step on 2 cores — and the budget long enough: on Fashion-MNIST after 30 CPU-minutes
    FID 18.7–19.1 (bf16) and 19.9–20.1 (AVX-512 fp32), against 20.7 for 64 / 64 and 21.1 for G 48 / D 32. Within
    `SHORT_CPU_BUDGET_MINUTES` on a CPU, G 48 / D 32's 2.3× more updates won or tied: after 10 minutes on the AVX-512
    CPU 21.0–22.8 against 21.8–24.6 over four pairs (won on the three slow hours, ~9,200–9,900 updates of 96 / 64),
    after 15 minutes 22.5 against 22.4. On an AVX2-only CPU every step is fp32 and a 96 / 64 step ~3.5× slower, so
    G 48 / D 32 is its default for any budget (10 minutes: 26.3 against 32.4; 30 minutes: 21.4). The rule reads CPU
    flags and the budget, never a timing, so that one command on one machine always builds the same networks (in both
    precisions).
    """
    if resolution != 28:
        return 64, 64
    if device.type != "cpu":
        return 96, 64
    short_budget = max_minutes is not None and max_minutes <= SHORT_CPU_BUDGET_MINUTES
    if not short_budget and (host.current().vectors == "AVX512" or fast_bf16(device)):
        return 96, 64
    return 48, 32


def resnet_widths(resolution: int) -> tuple[int, int]:
    """G's and D's base widths for the residual networks. The paper's CIFAR networks are 256 / 128 wide throughout;
    a CPU step of those takes seconds. These start where a residual step costs about what the DCGAN default's does
    (`gankit train --model resnet --print-model` counts the FLOPs): 32 at 28 and 32 px, 16 at 64 and 128, where the
    widths double per block (G 16·2³ = 128 wide at 4×4)."""
    return (32, 32) if resolution <= 32 else (16, 16)


def holdout_for(cfg: TrainConfig) -> float:
    """The share of a folder or .npz held out from training (0.05 unless set): gankit eval's reference, so that
    folders are judged on images their run never saw, as named datasets are on their test splits."""
    if is_toy(cfg.data) or is_named(cfg.data):
        return 0.0
    return cfg.holdout if cfg.holdout is not None else 0.05


def device_for(name: str) -> torch.device:
    """--device: cpu, cuda, or auto (CUDA where PyTorch sees a GPU)."""
    if name == "auto":
        return torch.device("cuda" if host.current().cuda else "cpu")
    if name == "cuda" and not host.current().cuda:
        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA device")
    return torch.device(name)


def fast_bf16(device: torch.device) -> bool:
    return host.current().cuda_bf16 if device.type == "cuda" else host.current().fast_bf16


def net_spec(cfg: TrainConfig, shape: dict) -> NetSpec:
    return NetSpec(
        channels=shape["channels"],
        resolution=cfg.resolution,
        num_classes=shape["num_classes"] if cfg.conditional else 0,
        classes=shape.get("classes", ()) if cfg.conditional else (),
        latent_dim=cfg.latent_dim,
        width_g=cfg.width_g,
        width_d=cfg.width_d,
        depth=cfg.depth,
        depth_g=cfg.depth_g,
        maxout_d=cfg.maxout,
        init_std=cfg.init_std,
        pack=cfg.pack,
        batchnorm_g=cfg.batchnorm_g,
        batchnorm_d=cfg.batchnorm_d,
        spectral_norm_d=cfg.spectral_norm,
        dropout_d=cfg.dropout,
        minibatch_std_d=cfg.minibatch_std,
        conditioning_d=cfg.conditioning,
        class_batchnorm_g=cfg.class_batchnorm,
    )


def make_optimizer(cfg: TrainConfig, params, lr: float) -> torch.optim.Optimizer:
    """`params` must already be on their device. Adam is fused: one kernel for all parameters (5× faster on a CPU)."""
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2), fused=True)
