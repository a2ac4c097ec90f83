"""Seed 000, practicals 1 and 2: a NumPy back-propagation network on half-moons and on MNIST.

The whole loop is here, top to bottom: data as float32 arrays, mini-batches as index slices,
forward, loss (+ L2), backward, SGD step, evaluation, checkpoint. Never imports torch.
A checkpoint at each epoch end holds the weights, the momentum buffers, the RNG state and the
metrics-file offset, so a run killed at any point resumes to bit-identical weights.
"""

from __future__ import annotations

import json
import math
import time
from typing import Literal

import numpy as np
from pydantic import Field

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.store import Run
from practicum.scratch import ACTIVATIONS, LOSSES, SGD, l2_penalty, lr_at, mlp


class Data(Section):
    name: Literal["halfmoon", "mnist", "fashion-mnist"] = "halfmoon"
    n_samples: int = Field(1000, gt=0, description="half-moons: points generated")
    noise: float = Field(0.2, ge=0, description="half-moons: Gaussian noise")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="half-moons: held-out share")
    train_limit: int | None = Field(None, gt=0, description="use the first N training samples")
    test_limit: int | None = Field(None, gt=0, description="use the first N test samples")
    normalize: Literal["unit", "standard"] = "unit"


class Model(Section):
    hidden: list[int] = [10]
    activation: str = "relu"
    init: Literal["he", "xavier"] | None = None


class Schedule(Section):
    name: Literal["constant", "step", "cosine", "cosine_exp"] = "constant"
    warmup_epochs: float | None = None
    decay_rate: float | None = None
    decay_every: float | None = None
    min_lr: float | None = None


class Optim(Section):
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    l2: float = Field(0.0, ge=0, description="L2 strength: loss += 0.5 * l2 * sum W^2")
    batch_size: int = Field(0, ge=0, description="0 = full batch (gradient descent)")
    schedule: Schedule = Schedule()


class Train(Section):
    epochs: int = Field(100, gt=0)
    loss: Literal["ce", "mse", "svm"] = "ce"
    eval_every: int = Field(1, gt=0, description="epochs between evaluations")
    log_steps: int | None = Field(None, ge=0, description="log the training loss every N steps; default: about "
                                  "60 points over the run; 0: at evaluations only")
    checkpoint_every: int = Field(1, gt=0, description="epochs between checkpoints")


class Config(Experiment):
    data: Data = Data()
    model: Model = Model()
    optim: Optim = Optim()
    train: Train = Train()


# ---------------------------------------------------------------------------------------------


def load_data(cfg: Data, rng: np.random.Generator):
    """(train_x, train_y, test_x, test_y, test_images, classes): float32 (N, D) features, int64
    labels, and the raw test images (uint8, for the report's misclassified grid; None for 2-D data)."""
    if cfg.name == "halfmoon":
        from practicum.data.synthetic import make_moons, train_test_split

        x, y = make_moons(cfg.n_samples, cfg.noise, rng)
        xtr, xte, ytr, yte = train_test_split(x, y, cfg.test_fraction, rng)
        images, classes = None, ["upper moon", "lower moon"]
    else:
        from practicum.data.vision import load_mnist

        d = load_mnist(cfg.name)
        xtr, ytr, xte, yte = d.train_x, d.train_y, d.test_x, d.test_y
        images, classes = d.test_x[: cfg.test_limit], d.classes
    xtr, ytr = xtr[: cfg.train_limit], ytr[: cfg.train_limit]
    xte, yte = xte[: cfg.test_limit], yte[: cfg.test_limit]
    xtr = xtr.reshape(len(xtr), -1).astype(np.float32)
    xte = xte.reshape(len(xte), -1).astype(np.float32)
    if cfg.name != "halfmoon":
        xtr /= 255.0
        xte /= 255.0
    if cfg.normalize == "standard":  # statistics of the training set only
        mean, std = xtr.mean(), xtr.std()
        xtr = (xtr - mean) / std
        xte = (xte - mean) / std
    return xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), images, classes


def evaluate(model, loss_fn, x, y, chunk: int = 8192) -> tuple[float, float]:
    """Mean loss and accuracy over (x, y), in chunks to bound memory."""
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), chunk):
        scores = model.forward(x[i: i + chunk])
        loss, _ = loss_fn(scores, y[i: i + chunk])
        total_loss += loss * len(scores)
        correct += int((scores.argmax(1) == y[i: i + chunk]).sum())
    return total_loss / len(x), correct / len(x)


def schedule_settings(cfg: Config) -> dict:
    s = {k: v for k, v in cfg.optim.schedule.model_dump().items() if v is not None}
    if s["name"] in ("cosine", "cosine_exp"):
        s["total_epochs"] = cfg.train.epochs
    return s


# -- checkpoints: one .npz, no pickle ---------------------------------------------------------


def save_checkpoint(run: Run, model, opt, rng, epoch: int, history: dict) -> None:
    meta = {"epoch": epoch, "rng": rng.bit_generator.state, "metrics_position": run.metrics_position(),
            "history": history}
    arrays = {f"model.{k}": v for k, v in model.params().items()}
    arrays.update({f"optim.{k}": v for k, v in opt.state_dict().items()})
    arrays["meta"] = np.array(json.dumps(meta))
    fileio.save_npz(run.checkpoint_path("last.npz"), **arrays)


def load_checkpoint(run: Run, model, opt, rng) -> tuple[int, dict]:
    """Restore state in place; returns (next epoch, history)."""
    with np.load(run.checkpoint_path("last.npz"), allow_pickle=False) as z:
        model.load_state_dict({k[6:]: z[k] for k in z.files if k.startswith("model.")})
        opt.load_state_dict({k[6:]: z[k] for k in z.files if k.startswith("optim.")})
        meta = json.loads(str(z["meta"]))
    rng.bit_generator.state = meta["rng"]
    run.rewind_metrics(meta["metrics_position"])
    return meta["epoch"] + 1, meta["history"]


# ---------------------------------------------------------------------------------------------


def run(cfg: Config, run: Run) -> dict:
    rng = np.random.default_rng(cfg.seed)
    xtr, ytr, xte, yte, test_images, classes = load_data(cfg.data, rng)
    n_classes = int(max(ytr.max(), yte.max())) + 1
    ACTIVATIONS[cfg.model.activation]  # unknown name -> a clear error before any work
    model = mlp([xtr.shape[1], *cfg.model.hidden, n_classes], cfg.model.activation, rng, cfg.model.init)
    loss_fn = LOSSES[cfg.train.loss]
    opt = SGD(model.params(), lr=cfg.optim.lr, momentum=cfg.optim.momentum, nesterov=cfg.optim.nesterov)
    schedule = schedule_settings(cfg)
    batch = cfg.optim.batch_size or len(xtr)
    steps_per_epoch = math.ceil(len(xtr) / batch)

    start, history = 0, {"diverged_at": None}
    if run.resumed and run.checkpoint_path("last.npz").exists():
        start, history = load_checkpoint(run, model, opt, rng)

    log_steps = cfg.train.log_steps
    if log_steps is None:  # curves that show training, whatever the run's length
        log_steps = max(1, cfg.train.epochs * steps_per_epoch // 60)
    for epoch in range(start, cfg.train.epochs):
        t0 = time.perf_counter()
        order = rng.permutation(len(xtr)) if batch < len(xtr) else None
        loss_sum, correct = 0.0, 0
        window = [0.0, 0, 0]  # loss sum, correct, samples since the last log line
        for i in range(steps_per_epoch):
            run.guard()
            if order is None:
                xb, yb = xtr, ytr  # full batch: no copy
            else:
                idx = order[i * batch: (i + 1) * batch]
                xb, yb = xtr[idx], ytr[idx]
            opt.lr = lr_at(schedule, cfg.optim.lr, epoch + i / steps_per_epoch)
            scores = model.forward(xb)
            hits = int((scores.argmax(1) == yb).sum())
            correct += hits
            loss, dscores = loss_fn(scores, yb)
            model.backward(dscores, need_input_grad=False)
            if cfg.optim.l2:
                penalty, _ = l2_penalty(model.params(), cfg.optim.l2, grads=model.grads())
                loss += penalty
            loss_sum += loss * len(yb)
            opt.step(model.grads())
            step = epoch * steps_per_epoch + i + 1
            window = [window[0] + loss * len(yb), window[1] + hits, window[2] + len(yb)]
            if log_steps and step % log_steps == 0 and i + 1 < steps_per_epoch:  # the epoch end logs its means
                run.log({"loss": window[0] / window[2], "accuracy": window[1] / window[2], "lr": opt.lr},
                        split="train", step=step, epoch=step / steps_per_epoch)
                window = [0.0, 0, 0]
        train_loss = loss_sum / len(xtr)
        history["epoch_seconds"] = history.get("epoch_seconds", []) + [time.perf_counter() - t0]
        diverged = not math.isfinite(train_loss)
        last = epoch == cfg.train.epochs - 1 or diverged
        if (epoch + 1) % cfg.train.eval_every == 0 or last:
            # Train metrics come from the epoch's own forward passes (free); test is evaluated.
            run.log({"loss": train_loss, "accuracy": correct / len(xtr), "lr": opt.lr},
                    split="train", step=(epoch + 1) * steps_per_epoch, epoch=epoch + 1)
            if not diverged:
                test_loss, test_acc = evaluate(model, loss_fn, xte, yte)
                run.log({"loss": test_loss, "accuracy": test_acc}, split="test",
                        step=(epoch + 1) * steps_per_epoch, epoch=epoch + 1)
        if diverged:
            history["diverged_at"] = epoch + 1
            break
        if (epoch + 1) % cfg.train.checkpoint_every == 0 or last:
            save_checkpoint(run, model, opt, rng, epoch, history)

    fileio.save_npz(run.artifact_path("weights.npz"), **model.state_dict())
    summary = {"train/diverged": float(history["diverged_at"] is not None),
               "train/seconds_per_epoch": float(np.median(history["epoch_seconds"])),
               "model/parameters": float(sum(p.size for p in model.params().values()))}
    if history["diverged_at"] is None:
        summary["train/loss"], summary["train/accuracy"] = evaluate(model, loss_fn, xtr, ytr)
        summary["test/loss"], summary["test/accuracy"] = evaluate(model, loss_fn, xte, yte)
    else:
        summary["train/diverged_epoch"] = float(history["diverged_at"])
        summary["test/accuracy"] = float("nan")
    if history["diverged_at"] is None:
        save_predictions(run, model, xte, yte, test_images, classes)
    if xtr.shape[1] == 2:
        from practicum.report.boundary import boundary_png

        save_boundary(run, model, xtr, ytr, xte, yte)
        boundary_png(run.artifact_path("boundary.npz"), run.figure_path("decision_boundary.png"),
                     title=f"{cfg.name}: decision boundary")
    return summary


def save_predictions(run: Run, model, xte, yte, images, classes) -> None:
    """Test labels and predictions (+ up to 32 misclassified images) for the report."""
    pred = np.concatenate([model.forward(xte[i: i + 8192]).argmax(1) for i in range(0, len(xte), 8192)])
    wrong = np.flatnonzero(pred != yte)
    arrays = {"y_true": yte, "y_pred": pred, "mis_index": wrong, "classes": np.array(classes)}
    if images is not None:
        arrays["mis_images"] = images[wrong[:32]]
    fileio.save_npz(run.artifact_path("predictions.npz"), **arrays)


def save_boundary(run: Run, model, xtr, ytr, xte, yte, res: int = 120) -> None:
    """``boundary.npz``: P(class 1) of the trained model on a res x res grid over the data's box
    (softmax of the scores: its 0.5 contour is the argmax boundary whatever the loss), with the
    points; report/boundary.py draws the figure from it."""
    from practicum.report.boundary import Canvas

    canvas = Canvas.around(np.concatenate([xtr, xte]), 480, res)  # the box and its res x res grid
    scores = model.forward(canvas.grid())  # (res * res, 2)
    e = np.exp(scores - scores.max(1, keepdims=True))
    prob = (e[:, 1] / e.sum(1)).reshape(res, res)
    fileio.save_npz(run.artifact_path("boundary.npz"), lo=canvas.lo, hi=canvas.hi, prob=prob,
                    xtr=xtr, ytr=ytr, xte=xte, yte=yte)
