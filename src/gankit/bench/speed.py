"""`gankit bench`: speed measured side by side in one run, rows taking turns, so a noisy shared machine affects all
rows alike.

Section "training": per resolution, the classic PyTorch DCGAN loop (`bench_reference`; in a plain child process,
as its users run it, and in this process), gankit's engine in fp32 and in its fast mode, on the same architecture,
batch and data: img/s, ratios to the classic loop in its plain process, FLOPs per step
(counted by torch.utils.flop_counter), achieved GFLOP/s as a fraction of the fp32 and bf16 matmul peaks measured
in the same run, and the peak resident memory while each mode ran.
Section "inception": FID feature extraction, img/s of the TorchScript module as shipped (run in a plain child
process, as its users run it) vs gankit's eager rebuild (fp32) and its bf16 mode, on the same 299×299 batch, with the
largest feature difference from the shipped module.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from gankit import host
from gankit.bench.reference import ReferenceLoop, reference_spec
from gankit.config import TrainConfig
from gankit.data import load_images, to_model_range
from gankit.data.batches import ImageBatches
from gankit.errors import ConfigError, DataError
from gankit.host import keep_freed_memory
from gankit.models import build
from gankit.training.defaults import make_optimizer, resnet_widths
from gankit.training.engine import train_step
from gankit.training.losses import LOSSES
from gankit.training.state import Game, Precision, TrainState
from gankit.training.stats import Stats

RESOLUTIONS = (28, 32, 64)
MODES = ("reference", "reference, gankit's allocator", "gankit fp32", "gankit fast")
RESNET_ROW = "gankit resnet, fast"  # the residual networks at their default widths, in gankit's fast arithmetic
RESNET_RESOLUTIONS = (32, 64)


def training_modes(resolution: int | None = None) -> tuple[str, ...]:
    """The rows to run. Where bf16 is not faster than fp32, gankit's fast mode is its fp32 mode, and one row of it is
    enough; where bf16 is native but slower, a "gankit bf16" row shows by how much. At 32 and 64 a last row runs
    `--model resnet`, beside the DCGAN rows."""
    if host.current().fast_bf16:
        modes = MODES
    else:
        modes = MODES[:-1] + (("gankit bf16",) if host.current().native_bf16 else ())
    return modes + ((RESNET_ROW,) if resolution in RESNET_RESOLUTIONS else ())


def bench_images(n: int = 60000) -> tuple[torch.Tensor, str]:
    """Fashion-MNIST's training images, or random images of the same shape when it is not installed."""
    try:
        return load_images("fashion-mnist", "train").x[:n], "fashion-mnist train"
    except DataError:
        generator = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=generator), "random 1×28×28"


def gankit_loop(images: torch.Tensor, resolution: int, batch_size: int, bf16: bool, model: str = "dcgan"):
    """A step function running gankit's engine (`engine.train_step`, as `gankit train` does, EMA included) on the
    classic loop's architecture and optimiser settings; fp32 is the same arithmetic as the reference. `model`
    "resnet": the residual networks at their default widths instead, laid out as `gankit train` lays them out."""
    torch.manual_seed(0)
    spec = reference_spec(images.shape[1], resolution)
    if model != "dcgan":
        width_g, width_d = resnet_widths(resolution)
        spec = dataclasses.replace(spec, width_g=width_g, width_d=width_d, spectral_norm_d=True)
    G, D = (m.to(memory_format=torch.channels_last) for m in build(model, spec))
    dtype = torch.bfloat16 if bf16 else None
    cfg = TrainConfig(batch_size=batch_size, seed=0, ema=0.999, beta1=0.5, beta2=0.999)
    state = TrainState(
        G=G,
        D=D,
        G_ema=copy.deepcopy(G).eval().requires_grad_(False),
        opt_g=make_optimizer(cfg, G.parameters(), lr=2e-4),
        opt_d=make_optimizer(cfg, D.parameters(), lr=2e-4),
        game=Game(LOSSES["ns"], real_target=1.0, gp_weight=0.0, weight_clip=None, n_critic=1),
        precision=Precision(torch.device("cpu"), dtype, channels_last=True),
        batches=ImageBatches(to_model_range(images, resolution), None, batch_size, seed=0),
        latent_dim=spec.latent_dim,
        batch_size=batch_size,
        seed=0,
        ema=cfg.ema,
    )
    stats, counter = Stats(), iter(range(10**9))

    def step():
        i = next(counter)
        train_step(state, i, stats)
        if (i + 1) % 50 == 0:  # the host sync of a log line, every log_every steps
            stats.flush()

    return step


class PeakRSS:
    """The largest resident set size of this process and its children (the classic loop's DataLoader workers) while
    the block runs (Linux; NaN elsewhere).

    The kernel's own high-water marks (VmHWM), reset on entry through /proc/PID/clear_refs, cost nothing while the
    block runs; where they cannot be reset, a thread samples VmRSS every 5 ms instead (it steals a little time).
    """

    def __enter__(self):
        self._sampler = None
        self.peak = _rss_mb()
        if not all(_reset_peak(pid) for pid in _self_and_children()):
            self._done = threading.Event()
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self):
        while not self._done.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc):
        if self._sampler is None:
            self.peak = _rss_mb("VmHWM:")
        else:
            self._done.set()
            self._sampler.join()
        self.peak = max(self.peak, _rss_mb())


def _self_and_children() -> list[int]:
    pids = [os.getpid()]
    for children in Path("/proc/self/task").glob("*/children"):
        try:
            pids += [int(p) for p in children.read_text().split()]
        except OSError:
            pass
    return pids


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset the peak resident set size to the current one
        return True
    except OSError:
        return False


def _rss_mb(field: str = "VmRSS:") -> float:
    """`field` (VmRSS or VmHWM) of this process plus its children, in MB; NaN without /proc."""
    pids = _self_and_children()
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024
        except (OSError, StopIteration):
            if pid == pids[0]:
                return float("nan")  # no /proc (not Linux)
    return total


def time_steps(step, images_per_step: int, seconds: float, warmup: int = 1, step_s: float = 0.0) -> dict:
    """img/s of `step` over at least `seconds` (and 2 steps) after `warmup` untimed steps, and the seconds per step.

    A step known (`step_s`) to take longer than `seconds` is timed once, with no untimed step before it: the caches
    another loop left cost a step microseconds to milliseconds, nothing next to seconds. This keeps `--quick` within
    its time at 64×64 on a slow CPU, where one classic step of batch 128 takes ~5 s.
    """
    long_steps = step_s > seconds
    for _ in range(0 if long_steps else warmup):
        step()
    steps, start = 0, time.perf_counter()
    while steps < (1 if long_steps else 2) or time.perf_counter() - start < seconds:
        step()
        steps += 1
    elapsed = time.perf_counter() - start
    return {"img_per_s": images_per_step * steps / elapsed, "steps": steps, "step_s": elapsed / steps}


def count_flops(step) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def matmul_peaks(seconds: float = 1.0, n: int = 2048) -> dict:
    """GFLOP/s of a large square matmul in fp32 and in bf16 (best call): the ceiling convolutions can approach. bf16
    is None on a CPU without native bf16: emulated, one such matmul took a minute (0.3 GFLOP/s)."""
    out = {"bf16": None}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))[: 2 if host.current().native_bf16 else 1]:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        torch.mm(a, b)
        best, calls, start = float("inf"), 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - start < seconds:  # one call can be preempted on a busy machine
            t = time.perf_counter()
            torch.mm(a, b)
            best, calls = min(best, time.perf_counter() - t), calls + 1
        out[name] = float(f"{2 * n**3 / best / 1e9:.4g}")  # not rounded to 0 on a busy machine
    return out


class _InProcess:
    """A loop run in this process: `step` built and warmed by `make`, memory it adds measured meanwhile."""

    def __init__(self, make, warmup: int):
        before = _rss_mb()
        with PeakRSS() as rss:
            self.step, self.close = make()
            for _ in range(warmup + 1):
                start = time.perf_counter()
                self.step()
        self.step_s = time.perf_counter() - start  # the last warm-up step's: tells `time` how long steps are
        self.added_mb = round(rss.peak - before)

    def time(self, images_per_step: int, seconds: float) -> dict:
        timed = time_steps(self.step, images_per_step, seconds, step_s=self.step_s)
        self.step_s = timed["step_s"]
        return timed

    def flops(self) -> int:
        return count_flops(self.step)


class PlainProcessLoop:
    """The classic loop in a fresh interpreter with PyTorch's defaults, as its users run it, driven from here.

    gankit's allocator setting (`keep_freed_memory`) is process-wide and cannot be undone, so a classic loop run in
    the bench's own process would get it too; that row is also measured ("reference, gankit's allocator").
    """

    def __init__(self, images: torch.Tensor, resolution: int, batch_size: int, warmup: int):
        context = multiprocessing.get_context("spawn")  # not fork: a fork inherits the allocator setting
        self.conn, child_end = context.Pipe()
        self.process = context.Process(target=serve_plain_reference, args=(child_end,))  # not daemonic: it has workers
        self.process.start()
        child_end.close()
        self.added_mb = self._ask(("start", images, resolution, batch_size, warmup))

    def _ask(self, request):
        try:
            self.conn.send(request)
            ok, reply = self.conn.recv()
        except (EOFError, BrokenPipeError):
            self.process.join(timeout=30)
            raise RuntimeError(f"the classic loop's process died (exit code {self.process.exitcode})") from None
        if not ok:  # the child has ended
            self.process.join(timeout=30)
            raise RuntimeError(f"the classic loop failed in its process: {reply}")
        return reply

    def time(self, images_per_step: int, seconds: float) -> dict:
        return self._ask(("time", images_per_step, seconds))

    def flops(self) -> int:
        return self._ask(("flops",))

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self._ask(("close",))
            except RuntimeError:  # it stopped meanwhile; its error, if any, has been raised already
                pass
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()


def serve_plain_reference(conn) -> None:
    """The child of `PlainProcessLoop`: answers its requests until "close"."""
    # A spawned child inherits "spawn" as its start method; a user's fresh interpreter has the platform's default
    # (fork on Linux), which is what the classic loop's DataLoader workers start with there. Spawned workers each
    # re-import torch: ~5 s more per start, and again at every epoch.
    multiprocessing.set_start_method(None, force=True)
    loop = None
    try:
        while True:
            request = conn.recv()
            try:
                if request[0] == "start":
                    _, images, resolution, batch_size, warmup = request
                    holder = _InProcess(lambda: _reference(images, resolution, batch_size), warmup)
                    loop, reply = holder, holder.added_mb
                elif request[0] == "time":
                    reply = loop.time(*request[1:])
                elif request[0] == "flops":
                    reply = loop.flops()
                else:
                    conn.send((True, None))
                    return
            except Exception as e:  # reported to the parent, which stops with its message
                conn.send((False, f"{type(e).__name__}: {e}"))
                return
            conn.send((True, reply))
    finally:
        if loop is not None:
            loop.close()
        conn.close()


def _reference(images: torch.Tensor, resolution: int, batch_size: int):
    loop = ReferenceLoop(images, resolution, batch_size=batch_size)
    return loop.step, loop.close


def training_bench(
    resolutions=RESOLUTIONS,
    batch_size: int = 128,
    seconds: float = 8.0,
    warmup: int = 2,
    images: torch.Tensor | None = None,
    peaks: dict | None = None,
    rounds: int = 3,
) -> dict:
    """Every mode at every resolution: one dict per resolution, one row per mode.

    Per resolution the loops take turns, one at a time, `rounds` rounds of seconds/rounds each (after one untimed
    step, so no loop pays for the caches the previous one left; steps longer than a round are timed one a round),
    and each row keeps its best round: a neighbour slowing the shared machine for a while then hits all rows alike.
    The baseline, "reference", is the classic loop in a plain child process (`PlainProcessLoop`); the same loop in
    this process, under gankit's allocator setting, is the row after it. `added_mb` is the resident memory each loop
    adds (its data, workers, activations).
    """
    peaks = peaks or matmul_peaks()
    keep_freed_memory()
    out = {}
    for resolution in resolutions:
        loops = {}
        try:
            for mode in training_modes(resolution):
                if mode == "reference":
                    loops[mode] = PlainProcessLoop(images, resolution, batch_size, warmup)
                elif mode == "reference, gankit's allocator":
                    loops[mode] = _InProcess(lambda: _reference(images, resolution, batch_size), warmup)
                else:
                    bf16 = mode != "gankit fp32" and (mode != RESNET_ROW or host.current().fast_bf16)
                    model = "resnet" if mode == RESNET_ROW else "dcgan"
                    loops[mode] = _InProcess(
                        lambda: (gankit_loop(images, resolution, batch_size, bf16, model), _nothing), warmup
                    )
            rows = {mode: {"img_per_s": 0.0, "steps": 0, "added_mb": loop.added_mb} for mode, loop in loops.items()}
            for _ in range(rounds):
                for mode, loop in loops.items():
                    timed = loop.time(batch_size, seconds / rounds)
                    rows[mode]["steps"] += timed["steps"]
                    rows[mode]["img_per_s"] = max(rows[mode]["img_per_s"], timed["img_per_s"])
            for mode, row in rows.items():
                flops = loops[mode].flops()
                achieved = flops * row["img_per_s"] / batch_size / 1e9
                row.update(
                    img_per_s=round(row["img_per_s"], 1),
                    x_reference=round(row["img_per_s"] / rows["reference"]["img_per_s"], 2),
                    gflop_per_step=round(flops / 1e9, 2),
                    gflop_per_s=round(achieved, 1),
                    fraction_fp32_peak=round(achieved / peaks["fp32"], 3),
                    fraction_bf16_peak=round(achieved / peaks["bf16"], 3) if peaks["bf16"] else None,
                )
        finally:
            for loop in loops.values():
                loop.close()
        out[str(resolution)] = rows
    return out


def _nothing() -> None:
    pass


def scaling_bench(
    images: torch.Tensor, batches=(16, 32, 64, 128, 256), resolutions=RESOLUTIONS, seconds: float = 4.0
) -> dict:
    """gankit's fast mode: ms per step and peak resident memory for every (resolution, batch)."""
    keep_freed_memory()
    out = {}
    for resolution in resolutions:
        for batch_size in batches:
            with PeakRSS() as rss:
                step = gankit_loop(images, resolution, batch_size, bf16=host.current().fast_bf16)
                row = time_steps(step, batch_size, seconds, warmup=2)
            out[f"{resolution}x{batch_size}"] = {
                "resolution": resolution,
                "batch_size": batch_size,
                "ms_per_step": round(1000 * batch_size / row["img_per_s"], 1),
                "img_per_s": round(row["img_per_s"], 1),
                "peak_rss_mb": round(rss.peak),
            }
    return out


def format_scaling(rows: dict) -> str:
    lines = ["gankit fast mode: ms per step (img/s) [peak RSS MB]"]
    for row in rows.values():
        lines.append(
            f"  {row['resolution']}×{row['resolution']}, batch {row['batch_size']:>4}: "
            f"{row['ms_per_step']:>8.1f} ms ({row['img_per_s']:>7.1f} img/s) [{row['peak_rss_mb']}]"
        )
    return "\n".join(lines)


PROFILED = (("reference", 28), ("gankit fast", 28), ("gankit fast", 32), ("gankit fast", 64))

# aten op names (overload packets) by kind, for `op_times`' summary; the rest is "other element-wise"
OP_KINDS = {
    "convolutions and matmuls": {"convolution", "convolution_backward", "mm", "addmm", "bmm"},
    "batch norm": {
        "native_batch_norm",
        "native_batch_norm_backward",
        "_native_batch_norm_legit",
        "_native_batch_norm_legit_functional",
        "_native_batch_norm_legit_no_training",
    },
    "activations": {
        "relu",
        "relu_",
        "threshold_backward",
        "leaky_relu",
        "leaky_relu_",
        "leaky_relu_backward",
        "tanh",
        "tanh_backward",
        "sigmoid",
    },
    "copies, casts, pads": {"copy_", "_to_copy", "clone", "constant_pad_nd", "cat", "stack"},
    "optimiser, EMA": {"_fused_adam_", "_foreach_lerp_", "_foreach_norm"},
}


class OpTimer(TorchDispatchMode):
    """Wall time of every aten op, timed around the call. torch.profiler slowed one copy of the 32×32 step five-fold
    (docs/performance.md); this leaves the ops' own speed alone and costs a few µs per op."""

    def __init__(self):
        super().__init__()
        self.seconds: dict[tuple, float] = {}
        self.calls: dict[tuple, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        key = (func.overloadpacket.__name__, tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))[:3])
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start
        self.calls[key] = self.calls.get(key, 0) + 1
        return out


def op_times(step, steps: int = 5, top: int = 12) -> dict:
    """ms per step of `step` without and with `OpTimer`, the timed ops' total by kind, and the hottest ops."""
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    plain_ms = 1000 * (time.perf_counter() - start) / steps
    timer = OpTimer()
    with timer:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        timed_ms = 1000 * (time.perf_counter() - start) / steps
    kinds = dict.fromkeys([*OP_KINDS, "other element-wise"], 0.0)
    for (name, _), seconds in timer.seconds.items():
        kind = next((k for k, names in OP_KINDS.items() if name in names), "other element-wise")
        kinds[kind] += 1000 * seconds / steps
    hottest = sorted(timer.seconds.items(), key=lambda item: -item[1])[:top]
    return {
        "step_ms": round(plain_ms, 1),
        "step_ms_timed": round(timed_ms, 1),
        "ops_ms": round(sum(kinds.values()), 2),
        "kinds_ms": {k: round(v, 2) for k, v in kinds.items()},
        "hottest": [
            {
                "op": name,
                "shapes": shapes,
                "calls_per_step": timer.calls[(name, shapes)] / steps,
                "ms_per_step": round(1000 * seconds / steps, 2),
            }
            for (name, shapes), seconds in hottest
        ],
    }


def format_op_times(t: dict) -> str:
    lines = [f"  step {t['step_ms']} ms ({t['step_ms_timed']} under the timer), of which in ops {t['ops_ms']} ms:"]
    lines += [f"  {kind:<28}{ms:>8.1f} ms" for kind, ms in t["kinds_ms"].items()]
    lines += [
        f"  {h['ms_per_step']:>7.2f} ms  {h['calls_per_step']:>4.1f}× {h['op']} {list(h['shapes'])}"
        for h in t["hottest"]
    ]
    return "\n".join(lines)


def profile_tables(images: torch.Tensor, batch_size: int = 128, steps: int = 3, top: int = 14) -> dict[str, str]:
    """torch.profiler tables of the hottest ops (self CPU time, grouped by input shapes so layers show apart), and
    for gankit's loop the same step timed op by op without the profiler (`op_times`)."""
    from torch.profiler import ProfilerActivity, profile

    tables = {}
    for mode, resolution in PROFILED:
        loop = ReferenceLoop(images, resolution, batch_size=batch_size) if mode == "reference" else None
        step = loop.step if loop else gankit_loop(images, resolution, batch_size, bf16=host.current().fast_bf16)
        for _ in range(2):
            step()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(steps):
                step()
        name = f"{mode} at {resolution}×{resolution}"
        tables[name] = prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=30, max_shapes_column_width=60
        )
        if loop:
            loop.close()
        else:
            tables[f"{name}, timed op by op without the profiler"] = format_op_times(op_times(step, steps))
    return tables


def _rate(fn, x: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    """Images per second of fn on x (best of `repeats` timed runs after one warm-up run)."""
    with torch.inference_mode():
        out = fn(x)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x)
            best = min(best, time.perf_counter() - start)
    return x.shape[0] / best, out.float()


def _inception_input(batch: int) -> torch.Tensor:
    from gankit.metrics.inception import resize_clean

    images = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return resize_clean(images) / 128 - 1


def _load_shipped(path: str) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(path, map_location="cpu").eval()


def shipped_inception_child(path: str, batch: str, repeats: str, features_out: str) -> None:
    """Run in a fresh interpreter by `inception_bench`: the shipped module as its users run it, in a plain PyTorch
    process (none of gankit's runtime settings); prints img/s, saves the features for the comparison."""
    rate, features = _rate(_load_shipped(path), _inception_input(int(batch)), int(repeats))
    torch.save(features, features_out)
    print(json.dumps({"img_per_s": rate}))


def _shipped_in_plain_process(path: str, batch: int, repeats: int) -> tuple[float, torch.Tensor]:
    with tempfile.TemporaryDirectory() as tmp:
        features_out = os.path.join(tmp, "features.pt")
        code = "import sys; from gankit.bench.speed import shipped_inception_child as c; c(*sys.argv[1:])"
        done = subprocess.run(
            [sys.executable, "-c", code, path, str(batch), str(repeats), features_out], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"the shipped Inception module failed in a child process: {done.stderr.strip()}")
        return json.loads(done.stdout.strip().splitlines()[-1])["img_per_s"], torch.load(features_out)


def inception_bench(batch: int = 32, repeats: int = 2, rounds: int = 2, path: str | None = None) -> dict:
    """The shipped TorchScript module in a plain child process (the baseline) and in this process under gankit's
    allocator setting, against gankit's eager rebuild in fp32 and (where bf16 is native) bf16, as `gankit eval`
    (--fast where bf16 beats fp32) runs them. Rows take turns for `rounds` rounds; each keeps its best."""
    from gankit.metrics.inception import default_path, load_inception

    extractor = load_inception(path)  # also makes this process keep freed memory, as `gankit eval` does
    shipped_path = str(path or default_path())
    shipped = _load_shipped(shipped_path)
    x = _inception_input(batch)

    def bf16(t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return extractor.model(t)

    rows = {
        "as shipped (TorchScript, fp32, plain process)": lambda: _shipped_in_plain_process(
            shipped_path, batch, repeats
        ),
        "as shipped, with gankit's allocator setting": lambda: _rate(shipped, x, repeats),
        "gankit eager rebuild (fp32)": lambda: _rate(extractor.model, x, repeats),
    }
    if host.current().native_bf16:  # elsewhere bf16 is emulated, many times slower, and --fast is the fp32 row
        fast = host.current().fast_bf16
        name = "gankit eager rebuild (bf16, --fast)" if fast else "gankit eager rebuild (bf16; --fast: fp32)"
        rows[name] = lambda: _rate(bf16, x, repeats)
    best, features = {}, {}
    for _ in range(rounds):
        for name, measure in rows.items():
            rate, features[name] = measure()
            best[name] = max(best.get(name, 0.0), rate)
    baseline = next(iter(rows))
    return {
        name: {
            "img_per_s": round(rate, 2),
            "speedup": round(rate / best[baseline], 2),
            "max_abs_feature_diff": float((features[name] - features[baseline]).abs().max()),
        }
        for name, rate in best.items()
    }


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "host": dataclasses.asdict(host.current()),
    }


def run_bench(
    quick: bool = False, out: str | Path = "bench.json", inception: str | None = None, profile: bool = False
) -> dict:
    result = {"machine": machine(), "fast_mode": "bf16" if host.current().fast_bf16 else "fp32"}
    images, source = bench_images()
    peaks = matmul_peaks(seconds=0.5 if quick else 2.0)
    result["matmul_peak_gflop_per_s"] = peaks
    result["training"] = {
        "data": source,
        "batch_size": 128,
        "rows": training_bench(
            seconds=2.4 if quick else 12.0,
            warmup=0 if quick else 2,
            images=images,
            peaks=peaks,
            rounds=2 if quick else 3,
        ),
    }
    if profile:
        result["profiles"] = profile_tables(images)
    try:
        result["inception"] = inception_bench(
            batch=16 if quick else 32, repeats=1 if quick else 3, rounds=1 if quick else 2, path=inception
        )
    except ConfigError as e:  # the extractor is optional: say so and keep the training numbers
        result["inception"] = {"skipped": str(e)}
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_bench(result: dict) -> str:
    lines = [f"machine: {result['machine']}"]
    peaks = result["matmul_peak_gflop_per_s"]
    bf16_peak = f"{peaks['bf16']} GFLOP/s" if peaks["bf16"] else "none native"
    if result.get("fast_mode") == "fp32":
        bf16_peak += " (gankit's fast mode is its fp32 mode)"
    lines += [
        "",
        f"Training, DCGAN (ngf = ndf = 64, z 100), batch {result['training']['batch_size']}, "
        f"data: {result['training']['data']}; matmul peak fp32 {peaks['fp32']} GFLOP/s, bf16 {bf16_peak}",
        f"{'':<33}{'img/s':>8}{'× ref':>7}{'GFLOP/step':>12}{'GFLOP/s':>9}{'% fp32 pk':>11}"
        f"{'% bf16 pk':>11}{'added MB':>10}",
    ]
    for resolution, rows in result["training"]["rows"].items():
        lines.append(f"{resolution}×{resolution}")
        for mode, r in rows.items():
            of_bf16 = f"{100 * r['fraction_bf16_peak']:.0f}" if r["fraction_bf16_peak"] is not None else "–"
            lines.append(
                f"  {mode:<31}{r['img_per_s']:>8.1f}{r['x_reference']:>7.2f}{r['gflop_per_step']:>12.2f}"
                f"{r['gflop_per_s']:>9.1f}{100 * r['fraction_fp32_peak']:>11.0f}{of_bf16:>11}"
                f"{r['added_mb']:>10}"
            )
    for name, table in result.get("profiles", {}).items():
        what = "ms per step" if "op by op" in name else "self CPU time"
        lines += ["", f"Hottest ops, {name} (3 steps of batch 128, {what})", table]
    inception_rows = result.get("inception", {})
    if "skipped" in inception_rows:
        lines += ["", f"Inception feature extraction skipped: {inception_rows['skipped']}"]
    elif inception_rows:
        lines += [
            "",
            "Inception feature extraction (299×299, batch as run)",
            f"{'':<40}{'img/s':>8}{'× shipped':>11}{'max |Δfeature|':>16}",
        ]
        for name, row in inception_rows.items():
            lines.append(
                f"{name:<40}{row['img_per_s']:>8.2f}{row['speedup']:>11.2f}{row['max_abs_feature_diff']:>16.2e}"
            )
    return "\n".join(lines)
