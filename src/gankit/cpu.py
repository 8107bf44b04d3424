"""CPU runtime settings that gankit chooses by itself."""

from __future__ import annotations

import ctypes
import functools
import sys
import time

import torch

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    A training step allocates and frees the same activation buffers every time; by default glibc returns large
    blocks (munmap, heap trimming) and the next step pays page faults to zero fresh pages. Keeping them measured
    +11% img/s at 28×28 and +30% at 64×64 here (`gankit bench`). Peak memory is unchanged; memory freed after the
    peak stays with the process. A no-op (False) where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False


def native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX-512 BF16 or AMX). Elsewhere (AVX2-only CPUs: Intel's laptop
    chips, AMD's before Zen 4) PyTorch emulates it: a 2048² bf16 matmul ran at 0.3 GFLOP/s on an AMD EPYC (Zen 3)
    against 115 in fp32."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


BF16_PAYS = 1.25  # bf16 must beat fp32 by this much to be gankit's fast arithmetic; measured 2.2–2.3× with
# full-rate bf16, 0.52× (quiet) to 0.83× (beside a training run) without


@functools.cache
def bf16_speedup(n: int = 1024, calls: int = 4) -> float | None:
    """bf16 over fp32 throughput of an n² matmul on this CPU (best of `calls` each, taking turns); None without
    native bf16, where one such matmul would take seconds.

    Native is not the same as fast: AVX-512 BF16 on a CPU whose AMX units are hidden (a Xeon "Emerald Rapids" VM)
    ran bf16 matmuls and convolutions at 0.5–0.6× fp32, where a CPU with full-rate bf16 ran them 2.3× faster.
    """
    if not native_bf16():
        return None
    best = {torch.float32: float("inf"), torch.bfloat16: float("inf")}
    operands = {dtype: (torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)) for dtype in best}
    for dtype, (a, b) in operands.items():
        torch.mm(a, b)  # oneDNN builds its kernel on the first call
    for _ in range(calls):
        for dtype, (a, b) in operands.items():
            start = time.perf_counter()
            torch.mm(a, b)
            best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[torch.float32] / best[torch.bfloat16]


def fast_bf16() -> bool:
    """Whether bf16 autocast is gankit's fast arithmetic here: native, and measured clearly faster than fp32."""
    speedup = bf16_speedup()
    return speedup is not None and speedup >= BF16_PAYS


def bf16_note() -> str:
    """Why bf16 is not gankit's fast arithmetic on this CPU, for a note to the user."""
    speedup = bf16_speedup()
    if speedup is None:
        return "this CPU has no native bf16 arithmetic; PyTorch emulates it, many times slower than fp32"
    return f"bf16 ran at {speedup:.2f}× the speed of fp32 on this CPU (a matmul, timed at start)"
