"""Scale out: DistributedDataParallel under ``practicum run --nproc N`` or ``torchrun``.

    practicum run mnist-lenet --nproc 2                    # starts 2 processes (gloo on CPU)
    torchrun --nproc-per-node 2 -m practicum run mnist-lenet

(The launcher and the CLI's per-rank ``run`` are in train/launch.py, which imports no torch.)
Every rank loads the config and the data, builds the model, and trains its share of each global
batch (see ``practicum.data.tensors.Loader``: sharded by the global rank and world size, across
nodes too). Only global rank 0 touches the run store: it claims the run, then broadcasts the
run directory and whether it is a resume, so the other ranks can load the same checkpoint. Other ranks get a ``RankRun``, whose logging is a no-op.
Backend: from the device the run trains on (``train.device``, resolved as the practical will):
gloo for cpu, nccl for cuda (gloo, with a note, when a host has fewer GPUs than processes:
nccl refuses two ranks on one GPU); mps has none and is refused. Every collective gives up
after ``PRACTICUM_DDP_TIMEOUT`` seconds (``timeout()``), so a rank whose peer died does not
wait forever.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn



def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


BACKENDS = {"cpu": "gloo", "cuda": "nccl"}


def backend_for(device: torch.device) -> str:
    """The process group's backend for a run on ``device``; a device no backend serves is refused."""
    from practicum.errors import UsageError

    if device.type not in BACKENDS:
        raise UsageError(f"train.device = '{device.type}': no torch.distributed backend trains on it "
                         "(gloo is for cpu, nccl for cuda); use -o train.device=cpu with --nproc, or run one process")
    if device.type == "cuda":
        per_host, gpus = int(os.environ.get("LOCAL_WORLD_SIZE", 1)), torch.cuda.device_count()
        if gpus < per_host:  # nccl refuses two ranks on one GPU; gloo reduces CUDA tensors through the host
            if int(os.environ.get("RANK", 0)) == 0:
                print(f"practicum: {per_host} processes share {gpus} GPU(s) on this host: gloo, not nccl (which "
                      "needs a GPU per process); slower, for trying DDP out", file=sys.stderr)
            return "gloo"
    return BACKENDS[device.type]


def timeout() -> datetime.timedelta:
    """How long a collective may wait: 15 minutes unless ``PRACTICUM_DDP_TIMEOUT`` (seconds) says,
    longer than the longest wait practicum itself makes (a restarted rank 0 waiting 1.5 claim
    timeouts, 7.5 minutes, for a stale claim) and shorter than torch's 30-minute gloo default."""
    return datetime.timedelta(seconds=float(os.environ.get("PRACTICUM_DDP_TIMEOUT") or 900))


joined = False  # this process joined a process group (it is a rank)


def init(device_name: str = "auto") -> None:
    """Join the process group described by the environment (RANK, WORLD_SIZE, MASTER_*), with
    the backend for ``device_name`` (``train.device``: auto | cpu | cuda | mps)."""
    if dist.is_initialized():
        return
    from practicum.train.device import resolve_device

    device = resolve_device(device_name)  # cuda: LOCAL_RANK's GPU, made current
    backend = backend_for(device)
    if (os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", 0))
            and int(os.environ.get("RANK", 0)) == 0 and int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) == 0):
        # torchrun's c10d rendezvous store outlives a restart, and the restarted ranks read the
        # addresses the dead ones published: gloo and nccl then fail to connect (pytorch#135712).
        print("practicum: torchrun --max-restarts with the shared rendezvous store: a restart may fail to "
              "connect (pytorch/pytorch#135712); run torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1",
              file=sys.stderr)
    global joined
    joined = True  # this process ends through exit_rank (cli.main)
    options = {"timeout": timeout()}  # resolve_device made this rank's GPU the current one
    if os.environ.get("PRACTICUM_RENDEZVOUS"):  # `--nproc` on one host: a file store (train/launch.py)
        dist.init_process_group(backend, init_method="file://" + os.environ["PRACTICUM_RENDEZVOUS"],
                                rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]), **options)
    else:  # torchrun, or MASTER_ADDR / MASTER_PORT set by hand
        dist.init_process_group(backend, **options)


def wrap(model: nn.Module) -> nn.Module:
    if world_size() == 1:
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
    if world_size() > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def all_gather_object(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (just [obj] without a process group).
    Tensors in ``obj`` travel as CPU tensors: a pickled GPU tensor would be unpickled onto the
    sender's GPU index on every rank (an RNN's hidden state in the objective's memory)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, to_cpu(obj))
    return out


def to_cpu(obj):
    """``obj`` with every tensor in its dicts, lists and tuples moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple
        return type(obj)(*(to_cpu(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


class RankRun:
    """What a task sees on ranks other than 0: the run's directory (to read checkpoints from)
    and whether it resumes; every write is a no-op."""

    def __init__(self, run_dir: Path, resumed: bool, cfg, run_id: str):
        self.dir, self.resumed, self.cfg, self.id = Path(run_dir), resumed, cfg, run_id
        self.scope_start = 0
        self.index = None

    @property
    def tb_dir(self) -> Path:
        return self.dir / "tb"

    def scope(self, name: str):
        from practicum.store import Scope

        return Scope(self, name)

    def log(self, *args, **kwargs) -> None:
        pass

    def guard(self, look: bool = False) -> None:
        pass  # rank 0 holds the claim; when it stops, the launcher stops the other ranks

    lost = False

    def metrics_position(self) -> int:
        return 0

    def rewind_metrics(self, position: int) -> None:
        pass

    def checkpoint_path(self, name: str) -> Path:
        return self.dir / "checkpoints" / name

    def figure_path(self, name: str) -> Path:
        return self.dir / "figures" / name

    def artifact_path(self, name: str) -> Path:
        return self.dir / name

    def write_table(self, *args, **kwargs) -> None:
        pass


def shutdown(wait_for_all: bool = False) -> None:
    """Leave the process group. After a clean finish every rank waits for the others first: a
    rank that tears gloo down while rank 0 still writes can abort (std::terminate) in gloo's
    threads. See also ``exit_rank``."""
    if dist.is_available() and dist.is_initialized():
        if wait_for_all:
            dist.barrier()
        dist.destroy_process_group()


def exit_rank(code: int) -> None:
    """End a rank's process now, skipping interpreter finalization: a DDP module or work object
    still referenced at exit would destroy gloo's worker threads while Python is torn down, which
    aborts with "terminate called without an active exception" (SIGABRT) at random."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
