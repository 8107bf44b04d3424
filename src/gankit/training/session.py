"""A training session: resolves the config against the data, builds everything, owns the run folder's files.

`train(cfg)` is the public entry point; `load_generator(run)` rebuilds a trained G from a run folder alone.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from gankit import config as config_mod
from gankit import distributed, host, runs
from gankit.config import TrainConfig, parse_policy
from gankit.data import is_toy, load_images, make_toy, to_model_range
from gankit.data.batches import ImageBatches, ToyBatches, fixed_noise
from gankit.data.streams import Stream, seeded
from gankit.distributed import Dist
from gankit.errors import ConfigError, DistributedFailure, Interrupted
from gankit.files import append_jsonl
from gankit.host import keep_freed_memory
from gankit.images import grid, probability_panel, save_png, side_by_side, to_uint8
from gankit.metrics.evaluate import TrainingEvaluator
from gankit.metrics.toy import bayes_snapshot, mode_metrics
from gankit.models import build, eval_mode
from gankit.training.defaults import device_for, make_optimizer, net_spec, resolve
from gankit.training.diagnostics import (
    Watcher,
    mean_pairwise_distance,
    non_finite_finding,
)
from gankit.training.loop import StopRequested, train_loop
from gankit.training.losses import LOSSES
from gankit.training.state import Game, Precision, TrainState

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


AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Session:
    """Everything one training run holds; in a torchrun job, rank 0 alone writes files (`self.main`).

    `G` and `D` are the bare networks (checkpoints, EMA, samples); `G_train` and `D_train` are what the steps
    train: the same modules, inside DistributedDataParallel in a torchrun job.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        resume: bool = False,
        show_progress: bool = True,
        dist: Dist = Dist(),
        device: torch.device | None = None,
    ):
        data, shape, description = load_data(cfg)
        self.cfg = cfg = resolve(cfg, shape)
        self.dist, self.main = dist, dist.main
        self.run_dir = Path(cfg.out)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ConfigError(f"--out {self.run_dir} is a file, not a folder; choose another --out")
        existing = runs.list_checkpoints(self.run_dir)
        if existing and not resume:
            raise ConfigError(
                f"{self.run_dir} already holds a run; continue it with --resume {self.run_dir} or choose another --out"
            )
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = device or device_for(cfg.device)
        if device.type == "cpu":
            keep_freed_memory()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
        precision = Precision(device, AUTOCAST.get(cfg.precision), channels_last=cfg.model == "dcgan")

        torch.manual_seed(cfg.seed)
        self.spec = net_spec(cfg, shape)
        G, D = build(cfg.model, self.spec)
        memory_format = torch.channels_last if precision.channels_last else torch.preserve_format
        G, D = G.to(device, memory_format=memory_format), D.to(device, memory_format=memory_format)
        game = Game(
            LOSSES[cfg.loss],
            1.0 - cfg.label_smoothing,
            cfg.gp_weight,
            cfg.weight_clip,
            cfg.n_critic,
            parse_policy(cfg.augment),
        )
        try:
            if shape["resolution"] == 0:
                self.toy = data
                batches = ToyBatches(data, cfg.batch_size, cfg.seed, dist.rank, dist.world_size)
            else:
                self.toy = None
                x = to_model_range(data.x, cfg.resolution)
                if device.type == "cuda":  # the whole (small) dataset lives on the GPU: no copy per batch
                    x, y = x.to(device), (data.y.to(device) if data.y is not None else None)
                else:
                    y = data.y
                batches = ImageBatches(x, y, cfg.batch_size, cfg.seed, dist.rank, dist.world_size)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.state = TrainState(
            G=G,
            D=D,
            G_ema=copy.deepcopy(G).eval().requires_grad_(False) if cfg.ema else None,
            opt_g=make_optimizer(cfg, G.parameters(), cfg.lr_g),
            opt_d=make_optimizer(cfg, D.parameters(), cfg.lr_d),
            game=game,
            precision=precision,
            batches=batches,
            latent_dim=cfg.latent_dim,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            ema=cfg.ema,
            rank=dist.rank,
            world_size=dist.world_size,
        )
        n_fixed = TOY_POINTS if self.toy is not None else cfg.grid_size
        self.fixed_z, self.fixed_y = fixed_noise(cfg.seed, n_fixed, cfg.latent_dim, self.spec.num_classes)

        self.evaluator = None
        if cfg.eval_every and self.main:
            self.evaluator = TrainingEvaluator(cfg, self.spec)
        self.watcher = self._watcher() if cfg.diagnostics and self.main else None
        self.step = self.saved_step = 0
        self.callbacks: list = []  # see train()
        self.elapsed_before = 0.0
        if resume:
            self._restore()
        self.state.G_train, self.state.D_train = self._distributed(G), self._distributed(D)
        self.started = time.perf_counter()
        self.progress = tqdm(
            total=cfg.steps,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            mininterval=0.2 if sys.stderr.isatty() else 30.0,  # logs, not a terminal: few lines
            disable=not (show_progress and self.main),
            file=sys.stderr,
        )
        self.tb = None
        if self.main:
            try:
                (self.run_dir / "samples").mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"cannot create the run folder {self.run_dir}: {e.strerror}") from None
            config_mod.save(cfg, self.run_dir / "config.json")
            where = f"{dist.world_size} processes" if dist.active else device.type
            self.say(
                f"training {cfg.model}/{cfg.loss} (G {cfg.width_g} / D {cfg.width_d} wide) on {description}, "
                f"{cfg.precision} on {where}, step {self.step} → {cfg.steps}, run folder {self.run_dir}"
            )
            if cfg.precision == "bf16" and device.type == "cpu" and not host.current().fast_bf16:
                self.say(f"note: {host.current().bf16_note()} (--precision auto picks fp32 here)")

    def _distributed(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.cfg.sync_batchnorm and self.dist.active:
            if self.state.precision.device.type != "cuda":
                raise ConfigError("--sync-batchnorm needs CUDA devices (PyTorch's SyncBatchNorm runs only on GPUs)")
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)  # same parameters, same state_dict keys
        return distributed.wrap(module, self.dist, self.state.precision.device)

    # --- the run folder ---------------------------------------------------------------------------------------------

    def say(self, message: str) -> None:
        if self.main:
            tqdm.write(f"gankit: {message}", file=sys.stderr)

    def _writer(self):
        if self.tb is None:
            from torch.utils.tensorboard import (
                SummaryWriter,  # slow import, only when there is something to write
            )

            self.tb = SummaryWriter(log_dir=str(self.run_dir / "tb"))
        return self.tb

    def log(self, values: dict[str, float], images_per_s: float) -> None:
        if not self.main:
            return
        cfg = self.cfg
        record = {
            "step": self.step,
            "images": self.step * cfg.batch_size * cfg.n_critic,
            "time": round(self.elapsed(), 3),
            "img_per_s": round(images_per_s, 1),
            **{k: round(v, 6) for k, v in values.items()},
        }
        append_jsonl(self.run_dir / "metrics.jsonl", record)
        writer = self._writer()
        for name, value in values.items():
            writer.add_scalar(f"train/{name}", value, self.step)
        writer.add_scalar("train/img_per_s", images_per_s, self.step)
        self._notify("on_log", values)
        self.diagnose(values)
        self.progress.set_postfix_str(
            f"D {values['loss_d']:.3f} G {values['loss_g']:.3f} D(x) {values['d_real']:.2f} "
            f"D(G(z)) {values['d_fake']:.2f} {images_per_s:.0f} img/s",
            refresh=False,
        )

    def _watcher(self) -> Watcher:
        cfg = self.cfg
        if self.toy is not None:
            real = self.toy.sample(TOY_POINTS, generator=seeded(cfg.seed, Stream.DIAGNOSTIC_REAL))
        else:
            x = self.state.batches.x
            real = x[
                torch.randperm(x.shape[0], generator=seeded(cfg.seed, Stream.DIAGNOSTIC_REAL))[:DIAGNOSTIC_SAMPLES].to(
                    x.device
                )
            ]
        return Watcher(
            cfg.saturation_d_fake,
            cfg.collapse_ratio,
            cfg.divergence_factor,
            real_diversity=mean_pairwise_distance(real),
            saturating_loss=cfg.loss == "minimax",
        )

    @torch.no_grad()
    def diagnose(self, values: dict[str, float]) -> None:
        """Check this log interval for saturation, collapse and instability; warn and record what starts or ends."""
        if self.watcher is None:
            return
        n = TOY_POINTS if self.toy is not None else DIAGNOSTIC_SAMPLES  # toy: enough points to count modes
        z = self.fixed_z[:n].to(self.state.precision.device)
        y = self.fixed_y[:n].to(self.state.precision.device) if self.fixed_y is not None else None
        with eval_mode(self.state.G), self.state.precision.autocast():
            fake = self.state.G(z, y).float()
        modes = None
        if self.toy is not None:
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
        G = self.state.G_ema if self.state.G_ema is not None else self.state.G
        z = self.fixed_z.to(self.state.precision.device)
        y = self.fixed_y.to(self.state.precision.device) if self.fixed_y is not None else None
        with eval_mode(G), self.state.precision.autocast():
            out = G(z, y).float().cpu()
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        if self.toy is not None:
            image = self._bayes_lab()
        else:
            image = grid(to_uint8(out), nrow=self.spec.num_classes or None)  # conditional: one column per class
        save_png(image, path)
        writer = self._writer()
        writer.add_image("samples", image, self.step)
        for net_name, net in (("G", self.state.G), ("D", self.state.D)):  # weight histograms at the samples' cadence
            for name, p in net.named_parameters():
                writer.add_histogram(f"{net_name}/{name}", p.detach().float().cpu(), self.step)

    @torch.no_grad()
    def _bayes_lab(self) -> torch.Tensor:
        """The 2-D Bayes view now: σ(D(x)) beside D*(x) = p_data / (p_data + p_g) under real and generated points,
        and the toy metrics (modes, JSD, |σ(D) − D*|) appended to metrics.jsonl. Uses G, the generator D is
        trained against (not its EMA), so that D* is the optimum for the D shown."""
        G, D, cfg = self.state.G, self.state.D, self.cfg
        device = self.state.precision.device
        z_fit = torch.randn(2 * TOY_POINTS, cfg.latent_dim, generator=seeded(cfg.seed, Stream.BAYES_FIT))
        real = self.toy.sample(TOY_POINTS, generator=seeded(cfg.seed, Stream.BAYES_REAL))
        extent = float(self.toy.means.abs().max()) * 1.25 + 4 * self.toy.std
        with eval_mode(G, D):
            fake = G(self.fixed_z.to(device)).float().cpu()
            fit = G(z_fit.to(device)).float().cpu()
            snap = bayes_snapshot(self.toy, fit, fake, real, lambda x: D(x.to(device)).float().cpu(), extent)
        points = {"data": (real, (60, 60, 60)), "G(z)": (fake, (0, 150, 60))}
        m = snap["metrics"]
        image = side_by_side(
            [
                probability_panel(snap["d_field"], points, extent, f"sigma(D(x)), step {self.step}"),
                probability_panel(
                    snap["d_star"],
                    points,
                    extent,
                    f"D*(x) = p_data/(p_data+p_g); JSD {m['jsd']:.3f}, modes {m['modes_covered']}/{m['modes_total']}",
                ),
            ]
        )
        record = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in m.items()}
        append_jsonl(self.run_dir / "metrics.jsonl", {"step": self.step, "time": round(self.elapsed(), 3), **record})
        for name in ("modes_covered", "high_quality_pct", "jsd", "d_gap"):
            self._writer().add_scalar(f"toy/{name}", m[name], self.step)
        return image

    def evaluate(self) -> None:
        if self.evaluator is None:
            return
        G = self.state.G_ema if self.state.G_ema is not None else self.state.G
        values = self.evaluator(G)
        append_jsonl(self.run_dir / "metrics.jsonl", {"step": self.step, "time": round(self.elapsed(), 3), **values})
        for name, value in values.items():
            self._writer().add_scalar(f"eval/{name}", value, self.step)
        self.say(f"step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
        self._notify("on_eval", values)

    def _notify(self, hook: str, value) -> None:
        for callback in self.callbacks:
            if hasattr(callback, hook):
                getattr(callback, hook)(self.step, value)

    def save_checkpoint(self) -> None:
        if self.main:
            modules = {"G": self.state.G, "D": self.state.D}
            if self.state.G_ema is not None:
                modules["G_ema"] = self.state.G_ema
            state = {
                "step": self.step,
                "opt_g": self.state.opt_g.state_dict(),
                "opt_d": self.state.opt_d.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "elapsed": self.elapsed(),
            }
            if self.state.precision.device.type == "cuda":
                state["rng_cuda"] = torch.cuda.get_rng_state(self.state.precision.device)
            if self.state.precision.scaler_d.is_enabled():
                state["scaler_d"] = self.state.precision.scaler_d.state_dict()
                state["scaler_g"] = self.state.precision.scaler_g.state_dict()
            if self.watcher is not None:
                state["diagnostics"] = self.watcher.state_dict()
            meta = {
                "model": self.cfg.model,
                "spec": dataclasses.asdict(self.spec),
                "has_ema": self.state.G_ema is not None,
            }
            path = runs.save(self.run_dir, self.step, modules, meta, state, self.cfg.keep_checkpoints)
            self._notify("on_checkpoint", path)
        self.saved_step = self.step

    def last_checkpoint_note(self) -> str:
        if self.saved_step == 0:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint is {runs.path_for(self.run_dir, self.saved_step)}"

    def _restore(self) -> None:
        """Continue from the newest checkpoint that loads; an unreadable newer one is named, then set aside."""
        used, skipped = runs.newest_readable(self.run_dir, self._load_checkpoint)
        for weights, why in skipped:
            renamed = runs.set_aside(weights) if self.main else weights
            self.say(f"warning: skipped {weights.name}, {why}; it is now {renamed.name}")
        if skipped:
            self.say(f"resuming from {used.name}, the newest readable checkpoint")

    def _load_checkpoint(self, weights: Path) -> None:
        modules = {"G": self.state.G, "D": self.state.D}
        if self.state.G_ema is not None:
            modules["G_ema"] = self.state.G_ema
        runs.load_weights(weights, modules)
        state = runs.load_state(weights)
        self.state.opt_g.load_state_dict(state["opt_g"])
        self.state.opt_d.load_state_dict(state["opt_d"])
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and self.state.precision.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.state.precision.device)
        if "scaler_d" in state and self.state.precision.scaler_d.is_enabled():
            self.state.precision.scaler_d.load_state_dict(state["scaler_d"])
            self.state.precision.scaler_g.load_state_dict(state["scaler_g"])
        if "diagnostics" in state and self.watcher is not None:
            self.watcher.load_state_dict(state["diagnostics"])
        self.step = self.saved_step = int(state["step"])
        self.elapsed_before = float(state["elapsed"])

    def close(self) -> None:
        self.progress.close()
        if self.tb is not None:
            self.tb.close()


def _each(hooks):
    def after_step(session):
        for hook in hooks:
            hook(session.step, session.state)

    return after_step


def train(
    cfg: TrainConfig | None = None,
    resume: bool | str | Path = False,
    show_progress: bool = True,
    callbacks: Sequence = (),
    **overrides,
) -> Path:
    """Train a GAN as `cfg` (plus keyword overrides) says; returns the run folder.

    `resume=RUN` (or `resume=True` with `out=RUN`) continues that run from its newest readable checkpoint with its
    own config.json; the overrides may change only `config.RESUMABLE` settings (`config.for_resume`).

    Ctrl-C (or SIGTERM) stops between steps, writes a checkpoint and raises `Interrupted`; a non-finite loss raises
    `NonFiniteLoss` with the last good checkpoint kept; bad data or config raise `DataError` / `ConfigError`.
    Under torchrun every process runs this; they form one process group and train one model (DDP), rank 0 writes.

    `callbacks`: objects with any of `on_step(step, state)` (after every step, on every rank: keep it cheap),
    `on_log(step, values)` (every --log-every steps), `on_eval(step, values)` (every --eval-every steps) and
    `on_checkpoint(step, path)`; the last three run where files are written (rank 0).
    """
    if resume:
        if cfg is not None:
            raise ConfigError(
                "a resumed run keeps its own config: pass the settings to change (steps=…, "
                "max_minutes=…), not a TrainConfig"
            )
        run_dir = overrides.get("out") if resume is True else resume
        if run_dir is None:
            raise ConfigError("resume=True needs out=RUN, the run folder to continue (or resume=RUN)")
        cfg = config_mod.for_resume(run_dir, overrides)
    else:
        cfg = config_mod.from_dict(overrides, base=cfg) if overrides else (cfg or TrainConfig())
    dist, device = distributed.start(device_for(cfg.device))
    session, together = None, False
    try:
        session = Session(cfg, resume=bool(resume), show_progress=show_progress, dist=dist, device=device)
        session.callbacks = list(callbacks)
        on_step = [cb.on_step for cb in callbacks if hasattr(cb, "on_step")]
        stop = StopRequested()
        with stop.installed():
            reason = train_loop(session, stop, after_step=_each(on_step) if on_step else None)
            if reason == "interrupted" and session.step > session.saved_step:
                session.save_checkpoint()
            together = True  # every rank got here: they leave together (see distributed.stop)
            if reason == "interrupted":
                raise Interrupted(
                    f"interrupted at step {session.step}; checkpoint saved in "
                    f"{session.run_dir}/checkpoints. Continue with: gankit train --resume {session.run_dir}"
                )
    except Exception as e:
        if dist.active and distributed.is_failure(e):
            where = f"at step {session.step}; {session.last_checkpoint_note()}" if session else "while starting"
            raise DistributedFailure(
                f"another process of this torchrun job failed or left {where} ({distributed.failure_summary(e)})"
            ) from None
        raise
    finally:
        if session is not None:
            session.close()
        distributed.stop(dist, together)
    return session.run_dir
