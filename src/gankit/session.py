"""A training session: resolves the config against the data, builds everything, owns the run folder's files.

`train(cfg)` is the public entry point; `load_generator(run)` rebuilds a trained G from a run folder alone.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from . import checkpoint
from . import config as config_mod
from . import distributed
from . import host
from .augment import parse_policy
from .batches import ImageBatches, ToyBatches, fixed_noise, seeded
from .config import TrainConfig
from .data import is_toy, load_images, make_toy, to_model_range
from .host import keep_freed_memory
from .errors import CheckpointError, ConfigError, DistributedFailure, Interrupted
from .images import grid, probability_panel, save_png, side_by_side, to_uint8
from .losses import LOSSES
from .nets import NetSpec, build, dcgan_plan
from .diagnostics import Watcher, mean_pairwise_distance, non_finite_finding
from .distributed import Dist
from .engine import Game, Precision, StopRequested, train_loop
from .stats import append_jsonl

TOY_POINTS = 1024  # points in a toy run's sample plot
DIAGNOSTIC_SAMPLES = 64  # images from the fixed z (and real ones) whose diversity the diagnostics compare


def load_data(cfg: TrainConfig):
    """(data, NetSpec shape fields, description): a ToyDistribution or an ImageData."""
    if is_toy(cfg.data):
        kwargs = {k: v for k, v in (("scale", cfg.toy_scale), ("std", cfg.toy_std)) if v is not None}
        dist = make_toy(cfg.data, **kwargs)
        return dist, dict(channels=2, resolution=0, num_classes=0), f"{cfg.data} ({dist.num_modes} modes)"
    images = load_images(cfg.data, "train", data_dir=cfg.data_dir)
    n, c, h, w = images.x.shape
    shape = dict(channels=c, resolution=h, num_classes=images.num_classes)
    scale = "" if images.scale.startswith("uint8") else f", {images.scale}"
    return images, shape, f"{images.name} ({n} images {c}×{h}×{w}, {images.num_classes or 'no'} classes{scale})"


def resolve(cfg: TrainConfig, shape: dict) -> TrainConfig:
    """Fill every None of `cfg` from the data and the model, and check the combination makes sense."""
    toy = shape["resolution"] == 0
    model = cfg.model or ("mlp" if toy else "dcgan")
    if toy and model != "mlp":
        raise ConfigError(f"{cfg.data} is 2-D toy data: use --model mlp")
    if not toy and model == "mlp":
        raise ConfigError("the mlp model is for 2-D toy data; use --model dcgan for images")
    resolution = 0 if toy else (cfg.resolution or shape["resolution"])
    if not toy:
        try:
            dcgan_plan(resolution)
        except ValueError as e:
            raise ConfigError(f"{e}; pass --resolution to resize the data once at load") from None
    if cfg.conditional and not shape["num_classes"]:
        raise ConfigError(f"--conditional needs class labels, and {cfg.data} has none")
    dcgan = model == "dcgan"
    # Labels, where the data has them, lowered Fashion-MNIST's Inception FID after 10 CPU-minutes from 38.5 to 28.4
    # (docs/performance.md); a conditional G still draws the data's distribution when its labels are drawn like the data's.
    conditional = cfg.conditional if cfg.conditional is not None else (not toy and bool(shape["num_classes"]))
    if cfg.class_batchnorm and not (dcgan and conditional and cfg.batchnorm_g is not False):
        raise ConfigError("--class-batchnorm is for a conditional dcgan (images with class labels) with batch norm in G")
    if toy and parse_policy(cfg.augment):
        raise ConfigError("--augment transforms images; 2-D toy data has none")
    loss = LOSSES[cfg.loss]
    if cfg.label_smoothing and not loss.label_smoothing:
        raise ConfigError(f"label smoothing has no meaning for the {cfg.loss} loss")
    gp_loss = cfg.loss == "wgan-gp"
    device = _device(cfg.device)
    auto_bf16 = cfg.precision == "auto" and dcgan and fast_bf16(device)  # toy points need fp32: bf16 rounds 1.0 to 2^-8
    width_g, width_d = dcgan_widths(resolution, device, cfg.max_minutes) if dcgan else (256, 256)
    # Learning rates and critic steps: the WGAN papers' own; for the rest, 4e-4 at batch 32 trained DCGAN on
    # Fashion-MNIST to a clearly lower FID per CPU-minute than the classic 2e-4 at batch 128 (docs/performance.md).
    lr = {"wgan": 5e-5, "wgan-gp": 1e-4}.get(cfg.loss, 4e-4 if dcgan else 2e-4)
    lr_g = cfg.lr_g or lr
    return dataclasses.replace(
        cfg,
        model=model,
        resolution=resolution,
        conditional=conditional,
        latent_dim=cfg.latent_dim or (100 if dcgan else 2),
        width_g=cfg.width_g or width_g,
        width_d=cfg.width_d or width_d,
        batchnorm_g=cfg.batchnorm_g if cfg.batchnorm_g is not None else dcgan,
        # A per-sample gradient penalty is wrong under batch norm (Gulrajani et al.), and SN replaces it.
        batchnorm_d=cfg.batchnorm_d if cfg.batchnorm_d is not None else (dcgan and not cfg.spectral_norm and not gp_loss),
        gp_weight=cfg.gp_weight if cfg.gp_weight is not None else loss.gradient_penalty,
        weight_clip=cfg.weight_clip if cfg.weight_clip is not None else loss.weight_clip,
        beta1=cfg.beta1 if cfg.beta1 is not None else (0.0 if gp_loss else 0.5),
        beta2=cfg.beta2 if cfg.beta2 is not None else (0.9 if gp_loss else 0.999),
        batch_size=cfg.batch_size or (32 if not toy else 256),
        n_critic=cfg.n_critic or (5 if cfg.loss in ("wgan", "wgan-gp") else 1),
        lr_g=lr_g,
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


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if host.current().cuda else "cpu")
    if name == "cuda" and not host.current().cuda:
        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA device")
    return torch.device(name)


def fast_bf16(device: torch.device) -> bool:
    return host.current().cuda_bf16 if device.type == "cuda" else host.current().fast_bf16


def net_spec(cfg: TrainConfig, shape: dict) -> NetSpec:
    return NetSpec(
        channels=shape["channels"], resolution=cfg.resolution,
        num_classes=shape["num_classes"] if cfg.conditional else 0,
        latent_dim=cfg.latent_dim, width_g=cfg.width_g, width_d=cfg.width_d, depth=cfg.depth,
        batchnorm_g=cfg.batchnorm_g, batchnorm_d=cfg.batchnorm_d, spectral_norm_d=cfg.spectral_norm,
        dropout_d=cfg.dropout, minibatch_std_d=cfg.minibatch_std, conditioning_d=cfg.conditioning,
        class_batchnorm_g=cfg.class_batchnorm)


def make_optimizer(cfg: TrainConfig, params, lr: float) -> torch.optim.Optimizer:
    """`params` must already be on their device. Adam is fused: one kernel for all parameters (5× faster on a CPU)."""
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2), fused=True)


AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Session:
    """Everything one training run holds; in a torchrun job, rank 0 alone writes files (`self.main`).

    `G` and `D` are the bare networks (checkpoints, EMA, samples); `G_train` and `D_train` are what the steps
    train: the same modules, inside DistributedDataParallel in a torchrun job.
    """

    def __init__(self, cfg: TrainConfig, resume: bool = False, show_progress: bool = True,
                 dist: Dist = Dist(), device: torch.device | None = None):
        data, shape, description = load_data(cfg)
        self.cfg = cfg = resolve(cfg, shape)
        self.dist, self.main = dist, dist.main
        self.run_dir = Path(cfg.out)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ConfigError(f"--out {self.run_dir} is a file, not a folder; choose another --out")
        existing = checkpoint.list_checkpoints(self.run_dir)
        if existing and not resume:
            raise ConfigError(f"{self.run_dir} already holds a run; continue it with --resume {self.run_dir} "
                              f"or choose another --out")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = device or _device(cfg.device)
        if device.type == "cpu":
            keep_freed_memory()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
        self.precision = Precision(device, AUTOCAST.get(cfg.precision), channels_last=cfg.model == "dcgan")

        torch.manual_seed(cfg.seed)
        self.spec = net_spec(cfg, shape)
        G, D = build(cfg.model, self.spec)
        memory_format = torch.channels_last if self.precision.channels_last else torch.preserve_format
        self.G = G.to(device, memory_format=memory_format)
        self.D = D.to(device, memory_format=memory_format)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if cfg.ema else None
        self.opt_g = make_optimizer(cfg, self.G.parameters(), cfg.lr_g)
        self.opt_d = make_optimizer(cfg, self.D.parameters(), cfg.lr_d)
        loss = LOSSES[cfg.loss]
        self.game = Game(loss, 1.0 - cfg.label_smoothing, cfg.gp_weight, cfg.weight_clip, cfg.n_critic,
                         parse_policy(cfg.augment))

        try:
            if shape["resolution"] == 0:
                self.toy = data
                self.batches = ToyBatches(data, cfg.batch_size, cfg.seed, dist.rank, dist.world_size)
            else:
                self.toy = None
                x = to_model_range(data.x, cfg.resolution)
                if device.type == "cuda":  # the whole (small) dataset lives on the GPU: no copy per batch
                    x, y = x.to(device), (data.y.to(device) if data.y is not None else None)
                else:
                    y = data.y
                self.batches = ImageBatches(x, y, cfg.batch_size, cfg.seed, dist.rank, dist.world_size)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        n_fixed = TOY_POINTS if self.toy is not None else cfg.grid_size
        self.fixed_z, self.fixed_y = fixed_noise(cfg.seed, n_fixed, cfg.latent_dim, self.spec.num_classes)

        self.evaluator = None
        if cfg.eval_every and self.main:
            from .metrics.evaluate import TrainingEvaluator  # metrics sit above training; loaded only when asked

            self.evaluator = TrainingEvaluator(cfg, self.spec)
        self.watcher = self._watcher() if cfg.diagnostics and self.main else None
        self.step = self.saved_step = 0
        self.elapsed_before = 0.0
        if resume:
            self._restore()
        self.G_train, self.D_train = self._distributed(self.G), self._distributed(self.D)
        self.started = time.perf_counter()
        self.progress = tqdm(total=cfg.steps, initial=self.step, unit="step", dynamic_ncols=True,
                             mininterval=0.2 if sys.stderr.isatty() else 30.0,  # logs, not a terminal: few lines
                             disable=not (show_progress and self.main), file=sys.stderr)
        self.tb = None
        if self.main:
            try:
                (self.run_dir / "samples").mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"cannot create the run folder {self.run_dir}: {e.strerror}") from None
            config_mod.save(cfg, self.run_dir / "config.json")
            where = f"{dist.world_size} processes" if dist.active else device.type
            self.say(f"training {cfg.model}/{cfg.loss} (G {cfg.width_g} / D {cfg.width_d} wide) on {description}, "
                     f"{cfg.precision} on {where}, step {self.step} → {cfg.steps}, run folder {self.run_dir}")
            if cfg.precision == "bf16" and device.type == "cpu" and not host.current().fast_bf16:
                self.say(f"note: {host.current().bf16_note()} (--precision auto picks fp32 here)")

    def _distributed(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.cfg.sync_batchnorm and self.dist.active:
            if self.precision.device.type != "cuda":
                raise ConfigError("--sync-batchnorm needs CUDA devices (PyTorch's SyncBatchNorm runs only on GPUs)")
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)  # same parameters, same state_dict keys
        return distributed.wrap(module, self.dist, self.precision.device)

    # --- the run folder ---------------------------------------------------------------------------------------------

    def say(self, message: str) -> None:
        if self.main:
            tqdm.write(f"gankit: {message}", file=sys.stderr)

    def _writer(self):
        if self.tb is None:
            from torch.utils.tensorboard import SummaryWriter  # slow import, only when there is something to write

            self.tb = SummaryWriter(log_dir=str(self.run_dir / "tb"))
        return self.tb

    def log(self, values: dict[str, float], images_per_s: float) -> None:
        if not self.main:
            return
        cfg = self.cfg
        record = {"step": self.step, "images": self.step * cfg.batch_size * cfg.n_critic,
                  "time": round(self.elapsed(), 3), "img_per_s": round(images_per_s, 1),
                  **{k: round(v, 6) for k, v in values.items()}}
        append_jsonl(self.run_dir / "metrics.jsonl", record)
        writer = self._writer()
        for name, value in values.items():
            writer.add_scalar(f"train/{name}", value, self.step)
        writer.add_scalar("train/img_per_s", images_per_s, self.step)
        self.diagnose(values)
        self.progress.set_postfix_str(
            f"D {values['loss_d']:.3f} G {values['loss_g']:.3f} D(x) {values['d_real']:.2f} "
            f"D(G(z)) {values['d_fake']:.2f} {images_per_s:.0f} img/s", refresh=False)

    def _watcher(self) -> Watcher:
        cfg = self.cfg
        if self.toy is not None:
            real = self.toy.sample(TOY_POINTS, generator=seeded(cfg.seed, 5))
        else:
            x = self.batches.x
            real = x[torch.randperm(x.shape[0], generator=seeded(cfg.seed, 5))[:DIAGNOSTIC_SAMPLES].to(x.device)]
        return Watcher(cfg.saturation_d_fake, cfg.collapse_ratio, cfg.divergence_factor,
                       real_diversity=mean_pairwise_distance(real), saturating_loss=cfg.loss == "minimax")

    @torch.no_grad()
    def diagnose(self, values: dict[str, float]) -> None:
        """Check this log interval for saturation, collapse and instability; warn and record what starts or ends."""
        if self.watcher is None:
            return
        was_training = self.G.training
        self.G.eval()  # eval mode: batch norm's running statistics stay untouched, so resuming remains exact
        n = TOY_POINTS if self.toy is not None else DIAGNOSTIC_SAMPLES  # toy: enough points to count modes
        z = self.fixed_z[:n].to(self.precision.device)
        y = self.fixed_y[:n].to(self.precision.device) if self.fixed_y is not None else None
        with self.precision.autocast():
            fake = self.G(z, y).float()
        self.G.train(was_training)
        modes = None
        if self.toy is not None:
            from .metrics.toy import mode_metrics

            modes = mode_metrics(self.toy, fake.cpu())["modes_covered"]
        for finding in self.watcher.check(self.step, values, fake, modes):
            self._report(finding)

    def diagnose_non_finite(self, names: list[str]) -> None:
        if self.main:
            self._report(non_finite_finding(self.step, names))

    def _report(self, finding) -> None:
        record = finding.record()
        append_jsonl(self.run_dir / "diagnostics.jsonl", record)
        if finding.status == "started":
            self.say(f"warning at step {finding.step}: {finding.message}. {record['remedy']}")
        elif finding.status == "cleared":
            self.say(f"step {finding.step}: {finding.message}")

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    @torch.no_grad()
    def save_samples(self) -> None:
        if not self.main:
            return
        G = self.G_ema if self.G_ema is not None else self.G
        was_training = G.training
        G.eval()
        z = self.fixed_z.to(self.precision.device)
        y = self.fixed_y.to(self.precision.device) if self.fixed_y is not None else None
        with self.precision.autocast():
            out = G(z, y).float().cpu()
        G.train(was_training)
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        if self.toy is not None:
            image = self._bayes_lab()
        else:
            image = grid(to_uint8(out), nrow=self.spec.num_classes or None)  # conditional: one column per class
        save_png(image, path)
        writer = self._writer()
        writer.add_image("samples", image, self.step)
        for net_name, net in (("G", self.G), ("D", self.D)):  # weight histograms at the samples' cadence
            for name, p in net.named_parameters():
                writer.add_histogram(f"{net_name}/{name}", p.detach().float().cpu(), self.step)

    @torch.no_grad()
    def _bayes_lab(self) -> torch.Tensor:
        """The 2-D Bayes view now: σ(D(x)) beside D*(x) = p_data / (p_data + p_g) under real and generated points,
        and the toy metrics (modes, JSD, |σ(D) − D*|) appended to metrics.jsonl. Uses G, the generator D is
        trained against (not its EMA), so that D* is the optimum for the D shown."""
        from .metrics.toy import bayes_snapshot

        G, D, cfg = self.G, self.D, self.cfg
        modes = (G.training, D.training)
        G.eval(), D.eval()
        device = self.precision.device
        fake = G(self.fixed_z.to(device)).float().cpu()
        fit = G(torch.randn(2 * TOY_POINTS, cfg.latent_dim, generator=seeded(cfg.seed, 6)).to(device)).float().cpu()
        real = self.toy.sample(TOY_POINTS, generator=seeded(cfg.seed, 4))
        extent = float(self.toy.means.abs().max()) * 1.25 + 4 * self.toy.std
        snap = bayes_snapshot(self.toy, fit, fake, real, lambda x: D(x.to(device)).float().cpu(), extent)
        G.train(modes[0]), D.train(modes[1])
        points = {"data": (real, (60, 60, 60)), "G(z)": (fake, (0, 150, 60))}
        m = snap["metrics"]
        image = side_by_side([
            probability_panel(snap["d_field"], points, extent, f"sigma(D(x)), step {self.step}"),
            probability_panel(snap["d_star"], points, extent,
                              f"D*(x) = p_data/(p_data+p_g); JSD {m['jsd']:.3f}, modes {m['modes_covered']}/{m['modes_total']}")])
        record = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in m.items()}
        append_jsonl(self.run_dir / "metrics.jsonl", {"step": self.step, "time": round(self.elapsed(), 3), **record})
        for name in ("modes_covered", "high_quality_pct", "jsd", "d_gap"):
            self._writer().add_scalar(f"toy/{name}", m[name], self.step)
        return image

    def evaluate(self) -> None:
        if self.evaluator is None:
            return
        G = self.G_ema if self.G_ema is not None else self.G
        values = self.evaluator(G)
        append_jsonl(self.run_dir / "metrics.jsonl", {"step": self.step, "time": round(self.elapsed(), 3), **values})
        for name, value in values.items():
            self._writer().add_scalar(f"eval/{name}", value, self.step)
        self.say(f"step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))

    def save_checkpoint(self) -> None:
        if self.main:
            modules = {"G": self.G, "D": self.D}
            if self.G_ema is not None:
                modules["G_ema"] = self.G_ema
            state = {"step": self.step, "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                     "rng_cpu": torch.get_rng_state(), "elapsed": self.elapsed()}
            if self.precision.device.type == "cuda":
                state["rng_cuda"] = torch.cuda.get_rng_state(self.precision.device)
            if self.precision.scaler_d.is_enabled():
                state["scaler_d"] = self.precision.scaler_d.state_dict()
                state["scaler_g"] = self.precision.scaler_g.state_dict()
            if self.watcher is not None:
                state["diagnostics"] = self.watcher.state_dict()
            meta = {"model": self.cfg.model, "spec": dataclasses.asdict(self.spec), "has_ema": self.G_ema is not None}
            checkpoint.save(self.run_dir, self.step, modules, meta, state, self.cfg.keep_checkpoints)
        self.saved_step = self.step

    def last_checkpoint_note(self) -> str:
        if self.saved_step == 0:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint is {checkpoint.path_for(self.run_dir, self.saved_step)}"

    def _restore(self) -> None:
        """Continue from the newest checkpoint that loads; an unreadable newer one is named, then set aside."""
        used, skipped = checkpoint.newest_readable(self.run_dir, self._load_checkpoint)
        for weights, why in skipped:
            renamed = checkpoint.set_aside(weights) if self.main else weights
            self.say(f"warning: skipped {weights.name}, {why}; it is now {renamed.name}")
        if skipped:
            self.say(f"resuming from {used.name}, the newest readable checkpoint")

    def _load_checkpoint(self, weights: Path) -> None:
        modules = {"G": self.G, "D": self.D}
        if self.G_ema is not None:
            modules["G_ema"] = self.G_ema
        checkpoint.load_weights(weights, modules)
        state = checkpoint.load_state(weights)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and self.precision.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.precision.device)
        if "scaler_d" in state and self.precision.scaler_d.is_enabled():
            self.precision.scaler_d.load_state_dict(state["scaler_d"])
            self.precision.scaler_g.load_state_dict(state["scaler_g"])
        if "diagnostics" in state and self.watcher is not None:
            self.watcher.load_state_dict(state["diagnostics"])
        self.step = self.saved_step = int(state["step"])
        self.elapsed_before = float(state["elapsed"])

    def close(self) -> None:
        self.progress.close()
        if self.tb is not None:
            self.tb.close()


def train(cfg: TrainConfig | None = None, resume: bool | str | Path = False, show_progress: bool = True,
          **overrides) -> Path:
    """Train a GAN as `cfg` (plus keyword overrides) says; returns the run folder.

    `resume=RUN` (or `resume=True` with `out=RUN`) continues that run from its newest readable checkpoint with its
    own config.json; the overrides may change only `config.RESUMABLE` settings (`config.for_resume`).

    Ctrl-C (or SIGTERM) stops between steps, writes a checkpoint and raises `Interrupted`; a non-finite loss raises
    `NonFiniteLoss` with the last good checkpoint kept; bad data or config raise `DataError` / `ConfigError`.
    Under torchrun every process runs this; they form one process group and train one model (DDP), rank 0 writes.
    """
    if resume:
        if cfg is not None:
            raise ConfigError("a resumed run keeps its own config: pass the settings to change (steps=…, "
                              "max_minutes=…), not a TrainConfig")
        run_dir = overrides.get("out") if resume is True else resume
        if run_dir is None:
            raise ConfigError("resume=True needs out=RUN, the run folder to continue (or resume=RUN)")
        cfg = config_mod.for_resume(run_dir, overrides)
    else:
        cfg = config_mod.from_dict(overrides, base=cfg) if overrides else (cfg or TrainConfig())
    dist, device = distributed.start(_device(cfg.device))
    session, together = None, False
    try:
        session = Session(cfg, resume=bool(resume), show_progress=show_progress, dist=dist,
                          device=device)
        stop = StopRequested()
        with stop.installed():
            reason = train_loop(session, stop)
            if reason == "interrupted" and session.step > session.saved_step:
                session.save_checkpoint()
            together = True  # every rank got here: they leave together (see distributed.stop)
            if reason == "interrupted":
                raise Interrupted(f"interrupted at step {session.step}; checkpoint saved in "
                                  f"{session.run_dir}/checkpoints. Continue with: gankit train --resume {session.run_dir}")
    except Exception as e:
        if dist.active and distributed.is_failure(e):
            where = f"at step {session.step}; {session.last_checkpoint_note()}" if session else "while starting"
            raise DistributedFailure(f"another process of this torchrun job failed or left {where} "
                                     f"({distributed.failure_summary(e)})") from None
        raise
    finally:
        if session is not None:
            session.close()
        distributed.stop(dist, together)
    return session.run_dir


def load_networks(run_dir: str | Path, ema: bool = False, device: str = "cpu"):
    """(G, D, NetSpec, step) in eval mode from a run folder's newest readable checkpoint; needs no data.

    With `ema`, G holds the exponential moving average of the generator's weights.
    """
    loaded = {}

    def load(weights: Path) -> None:
        meta = checkpoint.read_metadata(weights)
        try:
            spec = NetSpec(**meta["spec"])
            G, D = build(meta["model"], spec)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {weights} does not describe its model: {e}") from None
        if ema and meta.get("has_ema") is False:
            raise ConfigError(f"{run_dir} was trained without EMA (ema: null); drop --ema")
        checkpoint.load_weights(weights, {"G_ema" if ema else "G": G, "D": D})
        loaded.update(G=G, D=D, spec=spec, step=int(meta["step"]))

    used, skipped = checkpoint.newest_readable(Path(run_dir), load)
    for weights, why in skipped:
        print(f"gankit: warning: skipped {weights.name}, {why}; using {used.name}", file=sys.stderr)
    return loaded["G"].to(device).eval(), loaded["D"].to(device).eval(), loaded["spec"], loaded["step"]


def load_generator(run_dir: str | Path, ema: bool = False, device: str = "cpu"):
    """(G in eval mode, NetSpec, step) from a run folder's latest checkpoint; needs no data."""
    G, _, spec, step = load_networks(run_dir, ema, device)
    return G, spec, step
