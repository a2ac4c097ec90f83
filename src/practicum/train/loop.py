"""The one fit loop every torch practical uses.

    state = fit(model, opt, sched, task, train_loader, {"test": test_loader}, FitConfig(epochs=10), run, rec)

Per step: a batch (index slice of this epoch's permutation), forward (bf16 autocast if asked:
bfloat16 needs no gradient scaler, so there is none to checkpoint),
the task's loss, backward, optional gradient clipping, optimizer and scheduler step. Every
``log_steps`` the mean training loss/metrics since the last log go to the run store and
TensorBoard; every ``eval_steps`` and at each epoch end every evaluation split is measured,
the best checkpoint (by ``best_metric``) kept, and early stopping checked; every
``checkpoint_steps`` and at each epoch end the whole state is saved for an exact resume.

What is problem-specific (loss, metrics) comes from a ``Task`` (train/tasks.py); data from
``Loader``s (data/tensors.py). Everything ``LoopState`` holds goes into the checkpoint, together
with model, optimizer, scheduler and random states (train/checkpoint.py), so a run killed at any
step and resumed from its last checkpoint produces the same weights and metrics.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from practicum.data.tensors import Loader
from practicum.errors import UsageError
from practicum.train import checkpoint, ddp
from practicum.train.tasks import Task


@dataclass
class FitConfig:
    epochs: int
    log_steps: int = 0  # 0: log training metrics at epoch ends only
    eval_steps: int = 0  # 0: evaluate at epoch ends only
    eval_epochs: int = 1  # evaluate at the end of every N-th epoch (and of the last)
    checkpoint_steps: int = 0  # 0: checkpoint at epoch ends only
    best_metric: str | None = None  # "split/name", e.g. "test/accuracy": keep checkpoints/best.pt
    early_stop_patience: int | None = None  # stop after this many evaluations without a new best
    restore_best: bool = False  # end with the best weights (seed 004's Runner), not the last
    grad_clip: float | None = None  # max global gradient norm
    bf16: bool = False  # bfloat16 autocast for forward passes
    progress: bool = True  # a progress bar, shown only when stderr is a terminal


@dataclass
class LoopState:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs completed
    position: int = 0  # batches of the current epoch done
    order: torch.Tensor | None = None  # (N,) the current epoch's permutation
    window: dict = field(default_factory=dict)  # training sums since the last log; "n" = samples
    epoch_sums: dict = field(default_factory=dict)  # training sums of the current epoch
    last_train: dict = field(default_factory=dict)  # means of the last completed epoch
    last_eval: dict = field(default_factory=dict)  # {split: {name: tensor}} of the latest evaluation
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the best one
    stopped_early: bool = False
    seconds: float = 0.0  # training wall time of the current epoch so far (evaluation excluded)
    epoch_seconds: list = field(default_factory=list)  # of every completed epoch


def fit(model: nn.Module, opt: torch.optim.Optimizer, sched, task: Task, train: Loader,
        evals: dict[str, Loader], cfg: FitConfig, run, rec: "Recorder", *,
        on_eval: Callable[[LoopState, dict], None] | None = None) -> LoopState:
    """Train ``model`` for ``cfg.epochs`` (resuming from run's last checkpoint if it resumes)."""
    if cfg.best_metric and cfg.best_metric.split("/")[0] not in evals:
        raise UsageError(f"best_metric '{cfg.best_metric}': no evaluation split "
                         f"'{cfg.best_metric.split('/')[0]}' (have: {', '.join(evals)})")
    last_path, best_path = run.checkpoint_path("last.pt"), run.checkpoint_path("best.pt")
    state = LoopState()
    if run.resumed and last_path.exists():
        state = restore(last_path, model, opt, sched, train, run)
    elif run.resumed:  # killed before its first checkpoint: start over, dropping what it logged
        run.rewind_metrics(0)
    rec.start(purge_step=state.step + 1 if run.resumed else None)
    net = ddp.wrap(model)  # after the restore: DDP copies rank 0's weights to every rank
    steps = train.steps_per_epoch
    device_type = next(model.parameters()).device.type
    bar = tqdm(total=cfg.epochs * steps, initial=state.step, unit="step", leave=False, dynamic_ncols=True,
               disable=not (cfg.progress and ddp.is_main() and sys.stderr.isatty()))

    def log_train(lr: float) -> None:
        w = state.window
        metrics = {"loss": w["loss"] / w["n"], **{k: v / w["n"] for k, v in w.items() if k not in ("loss", "n")}}
        rec.log({**metrics, "lr": lr}, split="train", step=state.step, epoch=state.step / steps)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        state.window = {}

    def evaluate_all() -> None:
        ddp.sync_buffers(model)  # every rank evaluates with rank 0's BatchNorm statistics
        state.last_eval = {split: evaluate(model, loader, task, cfg.bf16) for split, loader in evals.items()}
        for split, results in state.last_eval.items():
            rec.log(scalars(results), split=split, step=state.step, epoch=state.step / steps)
        if on_eval:
            on_eval(state, state.last_eval)
        if cfg.best_metric:
            split, name = cfg.best_metric.split("/", 1)
            if name not in state.last_eval[split]:
                raise UsageError(f"best_metric '{cfg.best_metric}': no metric '{name}' "
                                 f"(have: {', '.join(scalars(state.last_eval[split]))})")
            score = float(state.last_eval[split][name])
            sign = 1 if task.higher_is_better(name) else -1
            if state.best is None or sign * score > sign * state.best:
                state.best, state.best_step, state.bad_evals = score, state.step, 0
                if ddp.is_main():
                    checkpoint.save(best_path, {"model": model.state_dict(), "step": state.step,
                                                "metric": cfg.best_metric, "score": score})
            else:
                state.bad_evals += 1
                state.stopped_early = bool(cfg.early_stop_patience and state.bad_evals >= cfg.early_stop_patience)

    def save() -> None:
        save_state(last_path, model, opt, sched, train, state, run, rec)

    while state.epoch < cfg.epochs and not state.stopped_early:
        if state.order is None:
            state.order = train.order()
        net.train()
        tick = time.perf_counter()
        while state.position < steps and not state.stopped_early:
            x, y = train.batch(state.order, state.position)  # (B, C, H, W), (B,)
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=cfg.bf16):
                logits = net(x)
            loss = task.loss(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            lr = opt.param_groups[0]["lr"]  # the rate this step used
            opt.step()
            sched.step()
            state.step, state.position = state.step + 1, state.position + 1
            accumulate(state, loss, logits.detach().float(), y, task)
            bar.update()
            if state.position == steps:
                break  # the epoch end below logs, evaluates and checkpoints
            if cfg.log_steps and state.step % cfg.log_steps == 0:
                log_train(lr)
            if cfg.eval_steps and state.step % cfg.eval_steps == 0:
                state.seconds += time.perf_counter() - tick
                evaluate_all()
                net.train()
                tick = time.perf_counter()
            if cfg.checkpoint_steps and state.step % cfg.checkpoint_steps == 0 or state.stopped_early:
                save()
        if state.stopped_early:
            break
        state.epoch_seconds.append(state.seconds + time.perf_counter() - tick)
        state.seconds = 0.0
        log_train(lr)
        if (state.epoch + 1) % cfg.eval_epochs == 0 or state.epoch + 1 == cfg.epochs:
            evaluate_all()
        s = state.epoch_sums
        state.last_train = {k: v / s["n"] for k, v in s.items() if k != "n"}
        state.epoch, state.position, state.order, state.epoch_sums = state.epoch + 1, 0, None, {}
        save()
    bar.close()

    if cfg.restore_best and best_path.exists():  # evaluate the best weights instead of the last
        model.load_state_dict(checkpoint.load(best_path)["model"])
        state.last_eval = {split: evaluate(model, loader, task, cfg.bf16) for split, loader in evals.items()}
    return state


def accumulate(state: LoopState, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, task: Task) -> None:
    """Add a training batch's sums to the log window and the epoch (Python floats: exact on resume)."""
    n = len(y)
    sums = {"loss": loss.item() * n, **{k: v.item() for k, v in task.batch_stats(logits, y).items()}, "n": n}
    for acc in (state.window, state.epoch_sums):
        for k, v in sums.items():
            acc[k] = acc.get(k, 0) + v


@torch.no_grad()
def evaluate(model: nn.Module, loader: Loader, task: Task, bf16: bool = False) -> dict[str, torch.Tensor]:
    """The task's metrics and the mean loss over ``loader`` (over every rank's shard under DDP)."""
    from torchmetrics import MeanMetric

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    metrics = {"loss": MeanMetric().to(device), **{k: m.to(device) for k, m in task.metrics().items()}}
    for x, y in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).float()
        metrics["loss"].update(task.loss(logits, y), weight=len(y))
        for name, metric in metrics.items():
            if name != "loss":
                metric.update(logits, y)
    model.train(was_training)
    return {name: metric.compute().cpu() for name, metric in metrics.items()}


def scalars(results: dict[str, torch.Tensor]) -> dict[str, float]:
    """The one-number results (a confusion matrix is not a curve)."""
    return {k: float(v) for k, v in results.items() if torch.as_tensor(v).numel() == 1}


# ---------------------------------------------------------------------------------------------
# Checkpoints of the whole loop


def save_state(path, model, opt, sched, train: Loader, state: LoopState, run, rec) -> None:
    rng = ddp.all_gather_object(checkpoint.rng_state(train.generator))  # one entry per rank
    if not ddp.is_main():
        return
    rec.flush()
    checkpoint.save(path, {
        "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "rng": rng,
        "loop": dataclasses.asdict(state), "metrics_position": run.metrics_position(),
    })


def restore(path, model, opt, sched, train: Loader, run) -> LoopState:
    ck = checkpoint.load(path)
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    rng = ck["rng"]
    checkpoint.set_rng_state(rng[ddp.rank()] if ddp.rank() < len(rng) else rng[0], train.generator)
    run.rewind_metrics(ck["metrics_position"])
    return LoopState(**ck["loop"])


# ---------------------------------------------------------------------------------------------
# Where metrics go: the run store and TensorBoard


class Recorder:
    """``run.log`` plus TensorBoard scalars (``<name>/<split>``) in ``run.dir/tb``; at the end an
    HParams entry with the final metrics. Only rank 0 writes."""

    def __init__(self, run, tensorboard: bool = True):
        self.run, self.tensorboard, self.writer = run, tensorboard and ddp.is_main(), None

    def start(self, purge_step: int | None = None) -> None:
        if self.tensorboard and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides events a killed run wrote after its last checkpoint.
            self.writer = SummaryWriter(str(self.run.dir / "tb"), purge_step=purge_step)

    def log(self, metrics: dict[str, float], *, split: str, step: int, epoch: float | None = None) -> None:
        self.run.log(metrics, split=split, step=step, epoch=epoch)
        if self.writer:
            for name, value in metrics.items():
                self.writer.add_scalar(f"{name}/{split}", value, step)

    def flush(self) -> None:
        if self.writer:
            self.writer.flush()

    def finish(self, hparams: dict, final: dict[str, float]) -> None:
        if not self.writer:
            return
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        self.writer.add_hparams(clean, {f"hparam/{k}": float(v) for k, v in final.items()}, run_name=".")
        self.writer.close()
        self.writer = None
