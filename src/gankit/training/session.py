"""A training session: the wiring of one run. It resolves the config against the data (training.defaults), builds
the TrainState (training.setup), hands it to the loop (training.loop, whose steps are training.engine's), and owns
the run folder: config.json, metrics.jsonl and TensorBoard, checkpoints and resuming, the sample grids and
diagnostics (training.callbacks), evaluation during training, and the user's callbacks.

`train(...)` is the entry point (`gankit.train`); loading a trained run is `gankit.runs`'s job, not the trainer's.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from gankit import config as config_mod
from gankit import distributed, host, runs
from gankit.config import TrainConfig
from gankit.data.batches import fixed_noise
from gankit.distributed import Dist
from gankit.errors import ConfigError, DistributedFailure, Interrupted
from gankit.files import append_jsonl
from gankit.host import keep_freed_memory
from gankit.metrics.evaluate import TrainingEvaluator
from gankit.training.callbacks import TOY_POINTS, Diagnostics, SampleGrids, report_non_finite
from gankit.training.defaults import device_for, net_spec, resolve
from gankit.training.finetune import initialise_from
from gankit.training.loop import StopRequested, train_loop
from gankit.training.setup import build_state, load_data


class Session:
    """One run: `state` (what the steps train), `step`, the clock, and the run folder's writers. In a torchrun job
    every rank holds one and rank 0 alone writes files (`self.main`)."""

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
        torch.manual_seed(cfg.seed)
        self.spec = net_spec(cfg, shape)
        self.toy = data if shape["resolution"] == 0 else None
        self.state = build_state(cfg, self.spec, data, dist, device)
        n_fixed = TOY_POINTS if self.toy is not None else cfg.grid_size
        self.fixed_z, self.fixed_y = fixed_noise(cfg.seed, n_fixed, cfg.latent_dim, self.spec.drawn_classes)

        self.evaluator = None
        if cfg.eval_every and self.main:
            self.evaluator = TrainingEvaluator(cfg, self.spec)
        self.diagnostics = Diagnostics(self) if cfg.diagnostics and self.main else None
        self.samples = SampleGrids()
        self.step = self.saved_step = 0
        self.callbacks: list = []  # see train()
        self.elapsed_before = 0.0
        self.best = math.inf  # the lowest --keep-best value so far
        if resume:
            self._restore()
        elif cfg.init_from:
            self.started_from = initialise_from(self.state, cfg.init_from)
        self.state.G_train = self._distributed(self.state.G)
        self.state.D_train = self._distributed(self.state.D)
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
            if cfg.init_from and not resume:
                frozen = f", D's first {cfg.freeze_d} stages frozen" if cfg.freeze_d else ""
                self.say(f"starting from {self.started_from}{frozen}")
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

    def writer(self):
        """TensorBoard's writer for the run, made when there is first something to write."""
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
        writer = self.writer()
        for name, value in values.items():
            writer.add_scalar(f"train/{name}", value, self.step)
        writer.add_scalar("train/img_per_s", images_per_s, self.step)
        self._notify("on_log", values)
        if self.diagnostics is not None:
            self.diagnostics.check(self, values)
        self.progress.set_postfix_str(
            f"D {values['loss_d']:.3f} G {values['loss_g']:.3f} D(x) {values['d_real']:.2f} "
            f"D(G(z)) {values['d_fake']:.2f} {images_per_s:.0f} img/s",
            refresh=False,
        )

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def save_samples(self) -> None:
        if self.main:
            self.samples.save(self)

    def diagnose_non_finite(self, names: list[str]) -> None:
        if self.main:
            report_non_finite(self, names)

    def evaluate(self) -> None:
        if self.evaluator is None:
            return
        G = self.state.G_ema if self.state.G_ema is not None else self.state.G
        values = self.evaluator(G)
        append_jsonl(self.run_dir / "metrics.jsonl", {"step": self.step, "time": round(self.elapsed(), 3), **values})
        for name, value in values.items():
            self.writer().add_scalar(f"eval/{name}", value, self.step)
        self.say(f"step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
        best = self.cfg.keep_best
        if best and values.get(best, math.inf) < self.best:
            self.best = values[best]
            if self.main:
                meta = {**self.checkpoint_metadata(), best: self.best}
                runs.save_best(self.run_dir, self.step, self.state.modules(), meta)
        self._notify("on_eval", values)

    def _notify(self, hook: str, value) -> None:
        for callback in self.callbacks:
            if hasattr(callback, hook):
                getattr(callback, hook)(self.step, value)

    def save_checkpoint(self) -> None:
        if self.main:
            state = {"step": self.step, "elapsed": self.elapsed(), "best": self.best, **self.state.state_dict()}
            if self.diagnostics is not None:
                state["diagnostics"] = self.diagnostics.watcher.state_dict()
            meta = self.checkpoint_metadata()
            path = runs.save(self.run_dir, self.step, self.state.modules(), meta, state, self.cfg.keep_checkpoints)
            self._notify("on_checkpoint", path)
        self.saved_step = self.step

    def checkpoint_metadata(self) -> dict:
        return {"model": self.cfg.model, "spec": dataclasses.asdict(self.spec), "has_ema": self.state.G_ema is not None}

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
        runs.load_weights(weights, self.state.modules())
        state = runs.load_state(weights)
        self.state.load_state_dict(state)
        if "diagnostics" in state and self.diagnostics is not None:
            self.diagnostics.watcher.load_state_dict(state["diagnostics"])
        self.step = self.saved_step = int(state["step"])
        self.best = float(state.get("best", math.inf))
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
