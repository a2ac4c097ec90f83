"""Where and how a torch practical computes: device, precision and the number of threads.

    device = resolve_device("auto")        # cuda:<local rank> when a GPU is present, else cpu
    dtype = resolve_precision("auto", device)   # torch.bfloat16 or None (fp32)
    with autocast(device, dtype): ...      # a no-op context for fp32

bf16 pays only where the hardware has it: a GPU of compute capability 8.0 or more (Ampere on),
or a CPU with native bf16 instructions (AVX512-BF16 or AMX). Elsewhere it is emulated and slower
(``torch.cuda.is_bf16_supported()`` counts a V100's or T4's emulation as support), so ``auto``
chooses fp32 there. Asking for ``bf16`` explicitly is always honoured, with a warning below 8.0.

A CUDA device is set up for exact resumes when it is resolved (``cuda_setup``): deterministic
algorithms (``torch.use_deterministic_algorithms(True, warn_only=True)``: an op without a
deterministic CUDA kernel warns instead of failing), ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, cuDNN
deterministic and not benchmarking, and TF32 off for matmuls and convolutions, so ``fp32`` means
IEEE float32 on every card (bf16 is the fast path). env.json records these choices
(``gpu_compute``). Nothing of this touches a CPU run.
"""

from __future__ import annotations

import contextlib
import os
import sys

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
        device = torch.device("cuda", local_rank() % torch.cuda.device_count())
        cuda_setup(device)
        return device
    cuda_setup(None)  # a CPU or MPS run after a GPU run in the same process: torch's defaults again
    if name == "mps" or (name == "auto" and mps):
        return torch.device("mps")
    return torch.device("cpu")


CUBLAS_WORKSPACE = ":4096:8"  # what cuBLAS needs to be deterministic (CUDA >= 10.2)


_before_cuda_setup: dict = {}  # torch's settings before cuda_setup changed them, to put back


def cuda_setup(device: torch.device | None) -> None:
    """Make ``device`` the current GPU and compute on it reproducibly (the module docstring);
    ``None`` puts back what an earlier call changed in this process (deterministic mode also
    picks other CPU kernels, and a CPU run must compute as it does in a fresh process).
    ``CUBLAS_WORKSPACE_CONFIG`` must be set before this process's first cuBLAS call: resolving the
    device is the first thing a practical does; a value already set is left alone."""
    if device is None:
        if _before_cuda_setup:
            mode, warn_only, cudnn_det, bench = _before_cuda_setup.pop("settings")
            torch.use_deterministic_algorithms(mode, warn_only=warn_only)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_det, bench
        return
    _before_cuda_setup.setdefault("settings", (
        torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 is IEEE fp32 (Ampere's default TF32 convs are not)
    torch.backends.cudnn.allow_tf32 = False
    torch.cuda.set_device(device)  # the run's own device: its RNG is the one checkpointed


def gpu_compute(device: torch.device) -> dict:
    """What env.json says about a GPU run: the card, its capability, the CUDA and cuDNN versions,
    and the settings that decide its numbers. A resume on another card is not bit-identical."""
    name = torch.cuda.get_device_name(device)
    major, minor = torch.cuda.get_device_capability(device)
    return {"gpu": f"{name} (sm {major}.{minor})", "capability": f"{major}.{minor}",
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "tf32": bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "cublas_workspace": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


def native_bf16_cuda(device: torch.device) -> bool:
    """True on compute capability 8.0 or more (A100, RTX 30xx, H100): bf16 in the tensor cores."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


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


_warned_bf16: set = set()  # devices already warned about emulated bf16 (fit and evaluate_once both ask)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """``fp32 | bf16 | auto`` -> the autocast dtype, or None for plain fp32."""
    if name == "fp32":
        return None
    if name == "bf16":
        if device.type == "cuda" and not native_bf16_cuda(device) and device not in _warned_bf16:
            _warned_bf16.add(device)
            major, minor = torch.cuda.get_device_capability(device)
            print(f"practicum: train.precision = 'bf16' on {torch.cuda.get_device_name(device)} (compute "
                  f"capability {major}.{minor} < 8.0): bf16 is emulated there, slower than fp32",
                  file=sys.stderr)
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if native_bf16_cuda(device) else None
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
