"""What this machine can do, asked in one place.

Every choice that depends on the host — default widths and precision, the bench's rows, bf16 feature extraction,
`--device auto`, the processes that decode a folder — reads `current()`, and nothing else asks PyTorch or the CPU.
`$GANKIT_HOST` (JSON with Host's fields, e.g. '{"vectors": "AVX512", "bf16_speedup": 2.3, "cores": 2}') replaces
the measurement: tests pin it (see tests/conftest.py) so that the suite takes the same branches on every machine,
child processes included, and can take each branch on any; a user can pin it to make one machine choose as another
would.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import json
import os
import sys
import time

import torch

from gankit.errors import ConfigError

BF16_PAYS = 1.25  # bf16 must beat fp32 by this much to be gankit's fast arithmetic; measured 2.2–2.3× with
# full-rate bf16, 0.52× (quiet) to 0.83× (beside a training run) without


@dataclasses.dataclass(frozen=True)
class Host:
    cuda: bool = False  # PyTorch sees a CUDA device
    cuda_bf16: bool = False  # ...and it computes in bf16
    vectors: str = "AVX2"  # the CPU's widest vector unit PyTorch uses: AVX512, AVX2, DEFAULT (others) …
    bf16_speedup: float | None = None  # bf16 over fp32 matmul throughput on the CPU; None = bf16 is emulated
    cores: int = 1  # CPU cores this process may run on: worker processes for decoding a folder of pictures

    @property
    def native_bf16(self) -> bool:
        """oneDNN runs bf16 natively (AVX-512 BF16 or AMX). Elsewhere (AVX2-only CPUs: Intel's laptop chips, AMD's
        before Zen 4) PyTorch emulates it: a 2048² bf16 matmul ran at 0.3 GFLOP/s on a Zen 3 EPYC, 115 in fp32."""
        return self.bf16_speedup is not None

    @property
    def fast_bf16(self) -> bool:
        """bf16 autocast is gankit's fast CPU arithmetic: native, and measured clearly faster than fp32. Native is not
        fast: AVX-512 BF16 on a Xeon VM whose AMX units are hidden ran bf16 at 0.5–0.6× fp32."""
        return self.native_bf16 and self.bf16_speedup >= BF16_PAYS

    def bf16_note(self) -> str:
        """Why bf16 is not gankit's fast arithmetic on this CPU, for a note to the user."""
        if not self.native_bf16:
            return "this CPU has no native bf16 arithmetic; PyTorch emulates it, many times slower than fp32"
        return f"bf16 ran at {self.bf16_speedup:.2f}× the speed of fp32 on this CPU (a matmul, timed at start)"


def measure() -> Host:
    """Ask PyTorch and time the CPU (a fraction of a second)."""
    from torch.backends.cpu import get_cpu_capability

    cuda = torch.cuda.is_available()
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return Host(
        cuda=cuda,
        cuda_bf16=cuda and torch.cuda.is_bf16_supported(),
        vectors=get_cpu_capability(),
        bf16_speedup=bf16_speedup() if native else None,
        cores=usable_cores(),
    )


@functools.cache
def current() -> Host:
    """This machine: measured once per process, or as $GANKIT_HOST pins it."""
    pinned = os.environ.get("GANKIT_HOST")
    return parse(pinned) if pinned else measure()


def parse(text: str) -> Host:
    """A Host from JSON (fields left out take Host's defaults)."""
    try:
        return Host(**json.loads(text))
    except (json.JSONDecodeError, TypeError) as e:
        fields = ", ".join(f.name for f in dataclasses.fields(Host))
        raise ConfigError(f"$GANKIT_HOST must be a JSON object with some of {fields}: {e}") from None


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity (a container's or taskset's limit), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pinned_json(h: Host) -> str:
    return json.dumps(dataclasses.asdict(h))


def bf16_speedup(n: int = 1024, calls: int = 4) -> float:
    """bf16 over fp32 throughput of an n² matmul (best of `calls` each, taking turns). Call it only where bf16 is
    native: an emulated one takes seconds."""
    best = {torch.float32: float("inf"), torch.bfloat16: float("inf")}
    operands = {dtype: (torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)) for dtype in best}
    for a, b in operands.values():
        torch.mm(a, b)  # oneDNN builds its kernel on the first call
    for _ in range(calls):
        for dtype, (a, b) in operands.items():
            start = time.perf_counter()
            torch.mm(a, b)
            best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[torch.float32] / best[torch.bfloat16]


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    A training step allocates and frees the same activation buffers every time; by default glibc returns large
    blocks (munmap, heap trimming) and the next step pays page faults to zero fresh pages. Keeping them measured
    +11% img/s at 28×28 and +30% at 64×64 (`gankit bench`). Peak memory is unchanged; memory freed after the
    peak stays with the process. A no-op (False) where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False
