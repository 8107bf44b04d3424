"""What one training step reads and updates — networks, optimisers, the game's rules, the arithmetic, the data —
and nothing about files, logging or the command line."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gankit.training.losses import GANLoss


@dataclass
class Game:
    """The resolved rules of one run's game: the loss pair and the regularisers' actual weights."""

    loss: GANLoss
    real_target: float  # 1 - one-sided label smoothing
    gp_weight: float
    weight_clip: float | None
    n_critic: int
    augment: tuple[str, ...] = ()  # DiffAugment operations applied to everything D sees
    r1_gamma: float = 0.0  # R1 penalty γ (0 = off), applied lazily every R1_EVERY steps
    lecam_weight: float = 0.0  # LeCam regularisation weight (0 = off)
    ada_target: float | None = None  # adaptive augmentation: the r_t its p is steered toward; None = p fixed at 1
    ada_kimg: float = 500.0  # ...and the thousands of images over which p may go from 0 to 1
    pack: int = 1  # D judges packs of this many samples (PacGAN); D packs its input itself
    unroll: int = 0  # G's update looks this many D steps ahead (Unrolled GAN); 0 = against D as it is


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


@dataclass
class TrainState:
    """The networks are the bare modules (checkpoints, EMA, samples); `G_train` and `D_train` are what the steps
    train: the same modules, inside DistributedDataParallel in a torchrun job (rank `rank` of `world_size`)."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    game: Game
    precision: Precision
    batches: object  # ImageBatches or ToyBatches: batch index → (x, y)
    latent_dim: int
    batch_size: int  # the global batch
    seed: int
    ema: float | None  # the EMA's decay
    G_train: nn.Module | None = None  # None: G itself
    D_train: nn.Module | None = None
    rank: int = 0
    world_size: int = 1
    mirror: bool = False  # flip half the real images left-right, drawn per batch (--mirror)
    lecam_anchors: torch.Tensor | None = None  # LeCam's moving averages of D's mean logit on real and fake images
    ada: torch.Tensor | None = None  # adaptive augmentation: (p, Σ sign(D(real)) and its count since p last moved)

    def __post_init__(self):
        self.G_train = self.G_train if self.G_train is not None else self.G
        self.D_train = self.D_train if self.D_train is not None else self.D

    def modules(self) -> dict[str, nn.Module]:
        """The networks a checkpoint's weights file holds, by name."""
        return {"G": self.G, "D": self.D, **({"G_ema": self.G_ema} if self.G_ema is not None else {})}

    def state_dict(self) -> dict:
        """What else a checkpoint holds so that resuming is exact: optimisers, random states, loss scalers."""
        device = self.precision.device
        state = {"opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "rng_cpu": torch.get_rng_state()}
        if device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(device)
        if self.lecam_anchors is not None:
            state["lecam_anchors"] = self.lecam_anchors
        if self.ada is not None:
            state["ada"] = self.ada
        if self.precision.scaler_d.is_enabled():
            state["scaler_d"] = self.precision.scaler_d.state_dict()
            state["scaler_g"] = self.precision.scaler_g.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and self.precision.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.precision.device)
        if "lecam_anchors" in state:
            self.lecam_anchors = state["lecam_anchors"].to(self.precision.device)
        if "ada" in state:
            self.ada = state["ada"].to(self.precision.device)
        if "scaler_d" in state and self.precision.scaler_d.is_enabled():
            self.precision.scaler_d.load_state_dict(state["scaler_d"])
            self.precision.scaler_g.load_state_dict(state["scaler_g"])
