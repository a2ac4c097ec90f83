"""Where and how a torch practical computes: device, precision and the number of threads.

    device = resolve_device("auto")        # cuda:<local rank> when a GPU is present, else cpu
    dtype = resolve_precision("auto", device)   # torch.bfloat16 or None (fp32)
    with autocast(device, dtype): ...      # a no-op context for fp32

bf16 pays only where the hardware has it: a GPU, or a CPU with native bf16 instructions
(AVX512-BF16 or AMX). Elsewhere the CPU emulates it and a LeNet step gets slower, so ``auto``
chooses fp32 there. Asking for ``bf16`` explicitly is always honoured.
"""

from __future__ import annotations

import contextlib
import os

import torch

from practicum.errors import UsageError


def local_world_size() -> int:
    """Processes of this job on this host (torchrun and ``--nproc`` set LOCAL_WORLD_SIZE)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))


def resolve_device(name: str = "auto") -> torch.device:
    """``auto | cpu | cuda | mps`` -> a torch.device; one-line error when it is not here."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "cuda" and not cuda:
        raise UsageError("train.device = 'cuda' but this machine has no CUDA GPU (torch.cuda.is_available() "
                         "is False); use train.device = 'auto' or 'cpu'")
    if name == "mps" and not mps:
        raise UsageError("train.device = 'mps' but Apple's Metal backend is not available here; "
                         "use train.device = 'auto' or 'cpu'")
    if name == "cuda" or (name == "auto" and cuda):
        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    if name == "mps" or (name == "auto" and mps):
        return torch.device("mps")
    return torch.device("cpu")


def native_bf16_cpu() -> bool:
    """True when the CPU computes bf16 in hardware (x86 AVX512-BF16 or AMX; Arm BF16)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    except OSError:
        pass
    return False


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """``fp32 | bf16 | auto`` -> the autocast dtype, or None for plain fp32."""
    if name == "fp32":
        return None
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if native_bf16_cpu() else None
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for bf16; nothing at all for fp32 (so fp32 runs are untouched)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def default_threads() -> int:
    """torch's own thread count (OMP_NUM_THREADS when set, else the cores), shared among the
    processes of this job on this host. A sweep with N workers sets OMP_NUM_THREADS = cores / N
    for its trials, so each trial gets its share from torch's own count."""
    if "OMP_NUM_THREADS" in os.environ:
        return max(1, torch.get_num_threads())
    return max(1, torch.get_num_threads() // local_world_size())


@contextlib.contextmanager
def torch_threads(n: int):
    """Run with ``n`` torch threads (0: ``default_threads()``), then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n or default_threads())
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
