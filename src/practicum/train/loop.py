"""The one fit loop every minibatch practical uses.

    state = fit(model, opt, sched, objective, train_loader, {"val": val_loader}, FitConfig(epochs=10), run)

Per step: a batch (``loader.batch(order, i)``: a slice of this epoch's order), the objective's
``step`` (forward and loss; under bf16 autocast when asked: bfloat16 needs no gradient scaler,
so there is none to checkpoint), backward, optional gradient clipping, optimizer and scheduler
step. The step's loss and sums stay tensors (on the GPU: no wait for it per step) until the loop
next logs, evaluates or checkpoints; then they are added up and a loss that is not finite stops
the run (``Diverged``) before anything is saved, so the last checkpoint is the last good state.
Every ``log_steps`` the mean training loss and sums
since the last log go to the run store and TensorBoard; every ``eval_steps`` and at each epoch
end every evaluation split is measured, the best checkpoint (by ``best_metric``, a validation
split) kept, and early stopping checked; every ``checkpoint_steps`` and at each epoch end the
whole state is saved for an exact resume.

What is problem-specific comes from an ``Objective`` (train/objective.py), the data from
loaders with ``steps_per_epoch``, ``order(epoch)``, ``batch(order, i)`` and a ``generator``
(data/tensors.py, data/arrays.py). Everything ``LoopState`` holds goes into the checkpoint,
with model, optimizer, scheduler, the objective's memory and every random state
(train/checkpoint.py), so a run killed at any step and resumed produces the same weights and metrics.

A run that trains several models in turn calls ``fit`` once per model on ``run.scope(name)``:
each scope has its own checkpoints, TensorBoard directory and metric splits (``train-gru``),
and a resumed run skips the scopes whose checkpoint says they are done.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from practicum.errors import PracticumError, UsageError
from practicum.progress import interactive
from practicum.train import checkpoint, ddp
from practicum.train.device import autocast, resolve_precision
from practicum.train.objective import Objective

CURVE_POINTS = 60  # default log_steps: about this many training points per run


class Diverged(PracticumError):
    """The loss became NaN or infinite: the run stops (exit 1) and keeps its last good checkpoint."""


class ProbeDone(PracticumError):
    """``PRACTICUM_PROBE_STEPS=N``: the run timed N training steps and stops (``practicum reproduce
    --plan`` estimates a run's length this way, in a scratch run store)."""

    exit_code = 3


def probe_steps() -> int:
    import os

    return int(os.environ.get("PRACTICUM_PROBE_STEPS", "0"))


@dataclass
class FitConfig:
    epochs: int
    log_steps: int | None = None  # None: about CURVE_POINTS points over the run; 0: epoch ends only
    eval_steps: int = 0  # 0: evaluate at epoch ends only
    eval_epochs: int = 1  # evaluate at the end of every N-th epoch (and of the last)
    checkpoint_steps: int = 0  # 0: checkpoint at epoch ends only
    best_metric: str | None = None  # "split/name", e.g. "val/accuracy": keep checkpoints/best.pt
    early_stop_patience: int | None = None  # stop after this many evaluations without a new best
    restore_best: bool = False  # end with the best weights (seed 004's Runner), not the last
    grad_clip: float | None = None  # max global gradient norm
    precision: str = "fp32"  # fp32 | bf16 | auto (train/device.py)
    progress: bool = True  # a progress bar, shown only on a terminal or in a notebook
    tensorboard: bool = True
    label: str = "model"  # names the model in messages (a diverged run says which one)


@dataclass
class LoopState:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs completed
    position: int = 0  # batches of the current epoch done
    order: Any = None  # the current epoch's order (a permutation, or what the loader draws)
    window: dict = field(default_factory=dict)  # training sums since the last log; "n" = their weight
    epoch_sums: dict = field(default_factory=dict)  # training sums of the current epoch
    last_train: dict = field(default_factory=dict)  # means of the last completed epoch
    last_eval: dict = field(default_factory=dict)  # {split: {name: tensor}} of the latest evaluation
    best: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the best one
    stopped_early: bool = False
    seconds: float = 0.0  # training wall time of the current epoch so far (evaluation excluded)
    epoch_seconds: list = field(default_factory=list)  # of every completed epoch
    done: bool = False  # fit() returned: a resumed run skips this scope


class Autocast(nn.Module):
    """Runs the wrapped module's forward under bf16 autocast (only built when bf16 is on)."""

    def __init__(self, module: nn.Module, device: torch.device, dtype: torch.dtype):
        super().__init__()
        self.module, self.device, self.dtype = module, device, dtype

    def forward(self, *args, **kwargs):
        with autocast(self.device, self.dtype):
            return self.module(*args, **kwargs)


def fit(model: nn.Module, opt: torch.optim.Optimizer, sched, objective: Objective, train,
        evals: dict, cfg: FitConfig, run, rec: "Recorder | None" = None) -> LoopState:
    """Train ``model`` for ``cfg.epochs`` (resuming from ``run``'s last checkpoint if it resumes)."""
    if cfg.best_metric and cfg.best_metric.split("/")[0] not in evals:
        raise UsageError(f"train.best_metric '{cfg.best_metric}': no evaluation split "
                         f"'{cfg.best_metric.split('/')[0]}' (have: {', '.join(evals) or 'none'})")
    rec = rec or Recorder(run, tensorboard=cfg.tensorboard)
    last_path, best_path = run.checkpoint_path("last.pt"), run.checkpoint_path("best.pt")
    state = LoopState()
    ck = checkpoint.load_resumable(last_path, run) if run.resumed else None
    if ck is not None:
        state = restore(ck, model, opt, sched, train, objective, run)
    elif run.resumed:  # killed before this scope's first checkpoint: start it over
        run.rewind_metrics(run.scope_start)
    rec.start(purge_step=state.step + 1 if run.resumed else None)
    if state.done:
        return state

    device = next(model.parameters()).device
    dtype = resolve_precision(cfg.precision, device)
    record_compute(run, device, dtype, model)
    ddp_net = ddp.wrap(model)  # after the restore: DDP copies rank 0's weights to every rank
    net = Autocast(ddp_net, device, dtype) if dtype else ddp_net
    eval_net = Autocast(model, device, dtype) if dtype else model
    steps = train.steps_per_epoch
    log_steps = cfg.log_steps if cfg.log_steps is not None else max(1, cfg.epochs * steps // CURVE_POINTS)
    bar = tqdm(total=cfg.epochs * steps, initial=state.step, unit="step", leave=False, dynamic_ncols=True,
               desc=cfg.label, disable=not (cfg.progress and ddp.is_main() and interactive()))

    def log_train(lr: float) -> None:
        add_pending(state, cfg, steps)  # accumulate did at this step already; here in case the cadence moves
        w = state.window
        metrics = {k: v / w["n"] for k, v in w.items() if k != "n"}
        rec.log({**metrics, "lr": lr}, split="train", step=state.step, epoch=state.step / steps)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        state.window = {}

    def evaluate_all() -> None:
        ddp.sync_buffers(model)  # every rank evaluates with rank 0's BatchNorm statistics
        state.last_eval = {split: evaluate(eval_net, loader, objective) for split, loader in evals.items()}
        for split, results in state.last_eval.items():
            rec.log(scalars(results), split=split, step=state.step, epoch=state.step / steps)
        if cfg.best_metric:
            split, name = cfg.best_metric.split("/", 1)
            if name not in state.last_eval[split]:
                raise UsageError(f"train.best_metric '{cfg.best_metric}': no metric '{name}' "
                                 f"(have: {', '.join(scalars(state.last_eval[split]))})")
            score = float(state.last_eval[split][name])
            sign = 1 if objective.higher_is_better(name) else -1
            if state.best is None or sign * score > sign * state.best:
                state.best, state.best_step, state.bad_evals = score, state.step, 0
                if ddp.is_main():
                    checkpoint.save(best_path, {"model": model.state_dict(), "step": state.step,
                                                "metric": cfg.best_metric, "score": score})
            else:
                state.bad_evals += 1
                state.stopped_early = bool(cfg.early_stop_patience and state.bad_evals >= cfg.early_stop_patience)

    def save() -> None:
        save_state(last_path, model, opt, sched, train, objective, state, run, rec)

    lr = opt.param_groups[0]["lr"]
    probe, probe_start, fit_start = probe_steps(), None, time.perf_counter()
    try:
        while state.epoch < cfg.epochs and not state.stopped_early:
            if state.order is None:
                state.order = train.order(state.epoch)
            net.train()
            tick = time.perf_counter()
            while state.position < steps and not state.stopped_early:
                run.guard()  # another process took the run over: stop (store.ClaimLost)
                s = objective.step(net, train.batch(state.order, state.position))
                opt.zero_grad(set_to_none=True)
                s.loss.backward()
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                lr = opt.param_groups[0]["lr"]  # the rate this step used
                opt.step()
                sched.step()
                if objective.after_step:
                    objective.after_step(model)
                state.step, state.position = state.step + 1, state.position + 1
                accumulate(state, s, cfg, lr, steps)
                bar.update()
                if probe:  # time `probe` steps after two of warm-up, report and stop
                    if state.step == 2:
                        probe_start = time.perf_counter()
                    elif probe_start is not None and state.step == 2 + probe:
                        report_probe(probe, probe_start, fit_start, cfg.epochs * steps)
                if state.position == steps:
                    break  # the epoch end below logs, evaluates and checkpoints
                if log_steps and state.step % log_steps == 0:
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
            s_ = state.epoch_sums
            state.last_train = {k: v / s_["n"] for k, v in s_.items() if k != "n"}
            state.epoch, state.position, state.order, state.epoch_sums = state.epoch + 1, 0, None, {}
            save()
    finally:
        bar.close()  # also when the run diverges or is interrupted: the error line stands alone

    if cfg.restore_best and best_path.exists():  # evaluate the best weights instead of the last
        model.load_state_dict(checkpoint.load(best_path)["model"])
        state.last_eval = {split: evaluate(eval_net, loader, objective) for split, loader in evals.items()}
    state.done = True
    save()
    run.scope_start = run.metrics_position()
    return state


def report_probe(steps: int, start: float, fit_start: float, total_steps: int) -> None:
    import json

    now = time.perf_counter()
    print("probe: " + json.dumps({"seconds_per_step": (now - start) / steps, "total_steps": total_steps,
                                  "seconds": now - fit_start}), file=sys.stderr, flush=True)
    raise ProbeDone(f"probe done after {steps + 2} steps")


def record_compute(run, device: torch.device, dtype, model: nn.Module | None = None) -> None:
    """env.json says where and how the run computed: device, precision, threads, processes; on a
    GPU also the card, CUDA, cuDNN, TF32 and deterministic mode (train/device.py ``gpu_compute``),
    and ``not_exact``: what keeps a resume there from being bit-identical (cuDNN's RNN dropout)."""
    from practicum import fileio

    path = run.dir / "env.json"
    caveats = not_exact_on(device, model) if model is not None else []
    if caveats and ddp.is_main():
        name = getattr(getattr(run, "cfg", None), "name", "practicum")
        print(f"{name}: {'; '.join(caveats)}: a resumed run continues but is not bit-identical to an "
              "uninterrupted one (recorded in env.json)", file=sys.stderr)
    if not ddp.is_main() or not path.exists():
        return
    env = fileio.read_json(path)
    latest = env["resumed"][-1] if env.get("resumed") else env
    latest["compute"] = {"device": str(device), "precision": "bf16" if dtype == torch.bfloat16 else "fp32",
                         "threads": torch.get_num_threads(), "processes": ddp.world_size()}
    if device.type == "cuda":
        from practicum.train.device import gpu_compute

        latest["compute"].update(gpu_compute(device))
    if caveats:
        latest["compute"]["not_exact"] = caveats
    fileio.write_json(path, env)


def not_exact_on(device: torch.device, model: nn.Module) -> list[str]:
    """What in ``model`` computes on ``device`` with random state outside torch's generators, so
    that no checkpoint holds it: dropout between the layers of a cuDNN RNN (its dropout state
    is seeded once per process and then advances inside cuDNN)."""
    if device.type != "cuda" or not torch.backends.cudnn.enabled:
        return []
    rnns = [name or "model" for name, m in model.named_modules()
            if isinstance(m, nn.RNNBase) and m.dropout > 0 and m.num_layers > 1]
    return [f"cuDNN RNN dropout in {', '.join(rnns)}"] if rnns else []


def accumulate(state: LoopState, s, cfg: FitConfig, lr: float, steps: int) -> None:
    """Keep a training batch's loss and sums as the tensors they are until the loop next reads
    them (``read_now``: a log, evaluation or checkpoint step, the epoch end): reading a GPU tensor
    makes the CPU wait for the GPU, so that happens once per log window, not once per step.
    ``add_pending`` then adds them to the log window and the epoch."""
    sums = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in s.sums.items()}
    state.__dict__.setdefault("pending", []).append((state.step, lr, s.loss.detach(), s.n, sums))
    if read_now(state, cfg, steps):
        add_pending(state, cfg, steps)


def read_now(state: LoopState, cfg: FitConfig, steps: int) -> bool:
    """Whether ``fit`` logs, evaluates (and may save best.pt), checkpoints or ends the epoch after
    this step: the cadence of fit's inner loop, which reads the sums only then."""
    log_steps = cfg.log_steps if cfg.log_steps is not None else max(1, cfg.epochs * steps // CURVE_POINTS)
    return state.position == steps or any(k and state.step % k == 0
                                          for k in (log_steps, cfg.eval_steps, cfg.checkpoint_steps))


def add_pending(state: LoopState, cfg: FitConfig, steps: int) -> None:
    """Add the kept steps' sums to the log window and the epoch, in step order, as Python floats
    (the numbers an ``.item()`` per step gave: LoopState holds plain values, exact on resume).
    A loss that is not finite stops the run here, naming its step, before anything is logged,
    evaluated or checkpointed: the last checkpoint is the last good state."""
    pending = state.__dict__.pop("pending", [])
    if not pending:
        return
    at, lrs, losses, ns, sums = zip(*pending)
    losses, ns = host_values(losses), host_values(ns)
    columns = {}  # sum name -> {step index: value}
    for key in dict.fromkeys(k for d in sums for k in d):
        rows = [i for i, d in enumerate(sums) if key in d]
        columns[key] = dict(zip(rows, host_values([sums[i][key] for i in rows])))
    for i, (step, lr) in enumerate(zip(at, lrs)):
        loss = losses[i]
        if not math.isfinite(loss):
            raise Diverged(f"{cfg.label} diverged at step {step} (epoch {step / steps:.2f}): loss = {loss}, "
                           f"learning rate {lr:.3g}; try a lower optim.lr or set optim.grad_clip (e.g. 1.0). "
                           "The last good checkpoint is kept")
        row = {"loss": loss * ns[i], **{k: float(c[i]) for k, c in columns.items() if i in c}, "n": ns[i]}
        for acc in (state.window, state.epoch_sums):
            for k, v in row.items():
                acc[k] = acc.get(k, 0) + v


def host_values(values) -> list:
    """Python numbers of scalars: tensors on one device come over in one copy, numbers stay."""
    if values and all(isinstance(v, torch.Tensor) for v in values) and len({(v.device, v.dtype) for v in values}) == 1:
        return torch.stack([v.detach().reshape(()) for v in values]).tolist()
    return [v.item() if isinstance(v, torch.Tensor) else v for v in values]


@torch.no_grad()
def evaluate(net: nn.Module, loader, objective: Objective) -> dict[str, torch.Tensor]:
    """The objective's metrics and the mean loss over ``loader`` (over every rank's shard under DDP).
    The objective's memory (a training batch's carried state) is set aside meanwhile."""
    from torchmetrics import MeanMetric

    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    carried = dict(objective.memory)
    objective.memory.clear()
    metrics = {"loss": MeanMetric().to(device), **{k: m.to(device) for k, m in objective.metrics().items()}}
    for batch in loader:
        s = objective.step(net, batch)
        metrics["loss"].update(s.loss, weight=s.n)
        for name, metric in metrics.items():
            if name != "loss":
                metric.update(*s.out)
    objective.memory.clear()
    objective.memory.update(carried)
    net.train(was_training)
    return {name: metric.compute().cpu() for name, metric in metrics.items()}


def evaluate_once(model: nn.Module, loader, objective: Objective, precision: str = "fp32") -> dict:
    """``evaluate`` outside ``fit``, at the run's precision: the test split of a run that selects
    its weights on validation data is measured this way, once, on the selected weights."""
    device = next(model.parameters()).device
    dtype = resolve_precision(precision, device)
    ddp.sync_buffers(model)
    return evaluate(Autocast(model, device, dtype) if dtype else model, loader, objective)


def scalars(results: dict[str, torch.Tensor]) -> dict[str, float]:
    """The one-number results (a confusion matrix is not a curve)."""
    return {k: float(v) for k, v in results.items() if torch.as_tensor(v).numel() == 1}


def summarize(state: LoopState, model: nn.Module, best_metric: str | None = None) -> dict[str, float]:
    """The summary every fit run reports: final evaluation, last epoch's training means, timing."""
    from statistics import fmean

    from practicum.models import count_parameters

    summary = {f"{split}/{k}": v for split, res in state.last_eval.items() for k, v in scalars(res).items()}
    summary.update({f"train/{k}": float(v) for k, v in state.last_train.items()})
    summary.update({
        "train/seconds_per_epoch": fmean(state.epoch_seconds) if state.epoch_seconds else float("nan"),
        "train/epochs": float(state.epoch),
        "train/steps": float(state.step),
        "train/stopped_early": float(state.stopped_early),
        "train/processes": float(ddp.world_size()),
        "model/parameters": float(count_parameters(model)),
        "model/trainable_parameters": float(count_parameters(model, trainable_only=True)),
    })
    if state.best is not None:
        summary["best/" + best_metric] = state.best
        summary["best/step"] = float(state.best_step)
    return summary


# ---------------------------------------------------------------------------------------------
# Checkpoints of the whole loop


def save_state(path, model, opt, sched, train, objective: Objective, state: LoopState, run, rec) -> None:
    rng = ddp.all_gather_object(checkpoint.rng_state(train.generator))  # one entry per rank
    memory = ddp.all_gather_object(objective.memory)  # each rank carries its own rows
    if not ddp.is_main():
        return
    run.guard(look=True)
    rec.flush()
    checkpoint.save(path, {
        "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "rng": rng, "memory": memory,
        "loop": dataclasses.asdict(state), "metrics_position": run.metrics_position(),
    }, keep_previous=True)


def restore(ck: dict, model, opt, sched, train, objective: Objective, run) -> LoopState:
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    mine = lambda per_rank: per_rank[ddp.rank()] if ddp.rank() < len(per_rank) else per_rank[0]  # noqa: E731
    checkpoint.set_rng_state(mine(ck["rng"]), train.generator)
    objective.memory.clear()
    objective.memory.update(mine(ck.get("memory") or [{}]))
    state = LoopState(**ck["loop"])
    if state.done:  # a finished scope's lines are followed by the next scope's: leave them
        run.scope_start = ck["metrics_position"]
    else:
        run.rewind_metrics(ck["metrics_position"])
    return state


# ---------------------------------------------------------------------------------------------
# Where metrics go: the run store and TensorBoard


class Recorder:
    """``run.log`` plus TensorBoard scalars (``<name>/<split>``) in ``run.tb_dir``; at the end an
    HParams entry with the final metrics. Only rank 0 writes."""

    def __init__(self, run, tensorboard: bool = True):
        self.run, self.tensorboard, self.writer = run, tensorboard and ddp.is_main(), None

    def start(self, purge_step: int | None = None) -> None:
        if self.tensorboard and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides events a killed run wrote after its last checkpoint.
            self.writer = SummaryWriter(str(self.run.tb_dir), purge_step=purge_step)

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
        finite = {f"hparam/{k}": float(v) for k, v in final.items() if isinstance(v, (int, float))}
        self.writer.add_hparams(clean, finite, run_name=".")
        self.writer.close()
        self.writer = None
