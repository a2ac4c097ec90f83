"""Scale out: DistributedDataParallel under ``practicum run --nproc N`` or ``torchrun``.

    practicum run mnist-lenet --nproc 2                    # starts 2 processes (gloo on CPU)
    torchrun --nproc-per-node 2 -m practicum run mnist-lenet

(The launcher and the CLI's per-rank ``run`` are in train/launch.py, which imports no torch.)
Every rank loads the config and the data, builds the model, and trains its share of each global
batch (see ``practicum.data.tensors.Loader``: sharded by the global rank and world size, across
nodes too). Only global rank 0 touches the run store: it claims the run, then broadcasts the
run directory and whether it is a resume, so the other ranks can load the same checkpoint. Other ranks get a ``RankRun``, whose logging is a no-op.
Backend: nccl when every rank has a GPU, else gloo.
"""

from __future__ import annotations

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


def device_for_rank() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank())) % torch.cuda.device_count())
    return torch.device("cpu")


joined = False  # this process joined a process group (it is a rank)


def init() -> None:
    """Join the process group described by the environment (RANK, WORLD_SIZE, MASTER_*)."""
    if dist.is_initialized():
        return
    if (os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", 0))
            and int(os.environ.get("RANK", 0)) == 0 and int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) == 0):
        # torchrun's c10d rendezvous store outlives a restart, and the restarted ranks read the
        # addresses the dead ones published: gloo and nccl then fail to connect (pytorch#135712).
        print("practicum: torchrun --max-restarts with the shared rendezvous store: a restart may fail to "
              "connect (pytorch/pytorch#135712); run torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1",
              file=sys.stderr)
    gpus = torch.cuda.is_available() and torch.cuda.device_count() >= int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    backend = "nccl" if gpus else "gloo"
    global joined
    joined = True  # this process ends through exit_rank (cli.main)
    if os.environ.get("PRACTICUM_RENDEZVOUS"):  # `--nproc` on one host: a file store (train/launch.py)
        dist.init_process_group(backend, init_method="file://" + os.environ["PRACTICUM_RENDEZVOUS"],
                                rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
    else:  # torchrun, or MASTER_ADDR / MASTER_PORT set by hand
        dist.init_process_group(backend)
    if gpus:
        torch.cuda.set_device(device_for_rank())


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
    """[obj of rank 0, obj of rank 1, ...] on every rank (just [obj] without a process group)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


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
