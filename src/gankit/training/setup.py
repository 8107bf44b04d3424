"""Everything a run trains with, made from its resolved config and its data: the networks, their optimisers, the
game's rules, the arithmetic and the batches — one TrainState."""

from __future__ import annotations

import copy
import dataclasses

import torch

from gankit.config import TrainConfig, is_adaptive, parse_policy
from gankit.data import is_toy, load_images, make_toy, to_model_range
from gankit.data.batches import ImageBatches, ToyBatches
from gankit.data.folders import FolderOptions
from gankit.distributed import Dist
from gankit.errors import ConfigError
from gankit.models import NetSpec, build
from gankit.training.defaults import holdout_for, make_optimizer, net_spec, resolve
from gankit.training.losses import LOSSES
from gankit.training.state import Game, Precision, TrainState

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def load_data(cfg: TrainConfig):
    """(data, NetSpec shape fields, description): a ToyDistribution or an ImageData."""
    if is_toy(cfg.data):
        kwargs = {k: v for k, v in (("scale", cfg.toy_scale), ("std", cfg.toy_std)) if v is not None}
        dist = make_toy(cfg.data, **kwargs)
        return dist, dict(channels=2, resolution=0, num_classes=0, classes=()), f"{cfg.data} ({dist.num_modes} modes)"
    folder = dataclasses.replace(FolderOptions.from_config(cfg), holdout=holdout_for(cfg))
    images = load_images(cfg.data, "train", data_dir=cfg.data_dir, folder=folder)
    n, c, h, w = images.x.shape
    present = tuple(images.y.unique().tolist()) if images.y is not None else ()
    classes = present if len(present) < images.num_classes else ()  # a subset that kept its labels: which ones
    shape = dict(channels=c, resolution=h, num_classes=images.num_classes, classes=classes)
    notes = ([] if images.scale.startswith("uint8") else [images.scale]) + list(images.notes)
    extra = "".join(f", {note}" for note in notes)
    held = (
        f"classes {', '.join(map(str, classes))} of {images.num_classes}"
        if classes
        else f"{images.num_classes or 'no'} classes"
    )
    return images, shape, f"{images.name} ({n} images {c}×{h}×{w}, {held}{extra})"


AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def build_state(cfg: TrainConfig, spec: NetSpec, data, dist: Dist, device: torch.device) -> TrainState:
    """G and D (initialised from torch's global RNG: seed it first), their optimisers and EMA, the game, the
    arithmetic, and this rank's batches of `data` (a ToyDistribution or an ImageData)."""
    # channels_last for every image model: oneDNN's convolutions, pooling and upsampling run faster so laid out
    # (docs/performance.md).
    precision = Precision(device, AUTOCAST.get(cfg.precision), channels_last=cfg.model != "mlp")
    G, D = build(cfg.model, spec)
    memory_format = torch.channels_last if precision.channels_last else torch.preserve_format
    G, D = G.to(device, memory_format=memory_format), D.to(device, memory_format=memory_format)
    if cfg.freeze_d:
        freeze_first_stages(D, cfg.freeze_d)
    game = Game(
        LOSSES[cfg.loss], 1.0 - cfg.label_smoothing, cfg.gp_weight, cfg.weight_clip, cfg.n_critic,
        parse_policy(cfg.augment), r1_gamma=cfg.r1, lecam_weight=cfg.lecam,
        ada_target=cfg.ada_target if is_adaptive(cfg.augment) else None, ada_kimg=cfg.ada_kimg,
        pack=cfg.pack, unroll=cfg.unroll,
    )  # fmt: skip
    if (cfg.batch_size // dist.world_size) % cfg.pack:
        raise ConfigError(
            f"--pack {cfg.pack}: each of the {dist.world_size} processes' {cfg.batch_size // dist.world_size} samples "
            "must split into packs"
        )
    try:
        if spec.resolution == 0:
            batches = ToyBatches(data, cfg.batch_size, cfg.seed, dist.rank, dist.world_size)
        else:
            x, y = to_model_range(data.x, cfg.resolution), data.y
            if device.type == "cuda":  # the whole (small) dataset lives on the GPU: no copy per batch
                x, y = x.to(device), (y.to(device) if y is not None else None)
            batches = ImageBatches(x, y, cfg.batch_size, cfg.seed, dist.rank, dist.world_size)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return TrainState(
        G=G,
        D=D,
        G_ema=copy.deepcopy(G).eval().requires_grad_(False) if cfg.ema else None,
        opt_g=make_optimizer(cfg, G.parameters(), cfg.lr_g),
        opt_d=make_optimizer(cfg, [p for p in D.parameters() if p.requires_grad], cfg.lr_d),
        game=game,
        precision=precision,
        batches=batches,
        latent_dim=cfg.latent_dim,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        ema=cfg.ema,
        rank=dist.rank,
        world_size=dist.world_size,
        mirror=cfg.mirror,
        lecam_anchors=torch.full((2,), float("nan"), device=device) if cfg.lecam else None,
        ada=torch.zeros(3, device=device) if is_adaptive(cfg.augment) else None,  # p starts at 0, as in ADA
    )


def freeze_first_stages(D: torch.nn.Module, k: int) -> None:
    """FreezeD (Mo et al. 2020): D's first k stages — the layers that see the highest resolutions, which a D trained
    on other images has turned into general edge and texture detectors — are kept as they are; the rest is trained.
    """
    stages = D.stages() if hasattr(D, "stages") else []
    if k >= len(stages):
        raise ConfigError(f"--freeze-d {k}: this D has {len(stages)} stages; freeze fewer, so that some are trained")
    for module in (m for stage in stages[:k] for m in stage):
        module.requires_grad_(False)


def describe_networks(cfg: TrainConfig) -> str:
    """What `gankit train --print-model` prints: the resolved networks, layer by layer, with their parameter counts,
    each network's output shape and its forward FLOPs per sample (counted by torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    _, shape, description = load_data(cfg)
    cfg = resolve(cfg, shape)
    spec = net_spec(cfg, shape)
    torch.manual_seed(cfg.seed)
    G, D = build(cfg.model, spec)
    G.eval(), D.eval()
    n = 2
    z = torch.randn(n, spec.latent_dim)
    y = torch.zeros(n, dtype=torch.int64) if spec.num_classes else None
    lines = [f"{cfg.model} on {description}"]

    def describe(name: str, net: torch.nn.Module, *inputs) -> torch.Tensor:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = net(*inputs)
        params = sum(p.numel() for p in net.parameters())
        flops = counter.get_total_flops() / n
        lines.append(
            f"{name}: {params:,} parameters, {flops / 1e6:,.1f} MFLOPs a sample, output {tuple(out.shape[1:])}"
        )
        lines.append(repr(net))
        return out

    describe("D", D, describe("G", G, z, y), y)
    return "\n".join(lines)
