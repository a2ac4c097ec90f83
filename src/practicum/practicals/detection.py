"""D2L 14.7 on fruit: a small single-shot detector (TinySSD) trained on ``fruit-detection-voc``.

Data (data/voc.py): every image of the train (240) and test (60) split, decoded with Pillow
(alpha -> white), resized to ``image_size`` squared and held whole as one uint8 tensor on the
device, with its boxes as one (N, M, 5) tensor of rows ``(class, x1, y1, x2, y2)`` normalised to
0..1 by the stored image's size (so the resize does not change them), padded with rows of -1.
``data.val_size`` evenly spaced training images (spread over the classes: the files sort as
apple_*, banana_*, mixed_*, orange_*) are held out as split ``val``, on which the best
checkpoint is chosen (``train.best_metric = "val/map"``); the test split is measured once, on
the selected weights.

Training batches (data/tensors.py ``AugmentLoader``) are augmented as a whole batch, every draw
from the loader's generator (data/augment.py): horizontal flip, a random square crop of side >=
``crop_min`` keeping the boxes whose centre falls inside (clipped; one affine ``grid_sample`` for
the batch), brightness/contrast jitter.

The step: anchors labelled with ``multibox_target`` (D2L's assignment, IoU >= 0.5), and the loss
is one of

- ``d2l``: cross-entropy averaged over *all* anchors plus L1 on the masked offsets averaged over
  all anchors (D2L's ``calc_loss``);
- ``ssd``: SSD's -- cross-entropy on the positives and the hardest ``neg_ratio`` x as many
  negatives, smooth-L1 on the positives' offsets, both divided by the number of positives. With
  ~1,400 anchors and about ten positives per image, D2L's average is dominated by easy
  background; hard-negative mining is the usual fix.

The optimizer and schedule come from the shared ``[optim]`` section (D2L: SGD lr 0.2; on the
fruit set's 240 images D2L's SGD is far from converged in a CPU budget, see the catalog entry).

Evaluation: softmax scores for every (anchor, class), decoded boxes, per-class NMS, then VOC
average precision at IoU 0.5 per class (``DetectionAP``, detection/metrics.py); mAP is their
mean. The shared fit loop (train/loop.py) evaluates, keeps the best checkpoint, resumes exactly
after a kill, runs bf16, on a GPU and under DDP.

Writes ``model.pt``, ``detections.npz`` (every test detection, the true boxes, the shown images),
``tables/ap_per_class.json``, and the figures (report/detection.py): test images with true boxes
(dashed) and the detections above ``display_threshold`` (solid, score), and the PR curves.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import Tensor

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.errors import UsageError
from practicum.train import config
from practicum.train.objective import Objective, Step


class Data(Section):
    dataset: str = "fruit-detection-voc"
    image_size: int = Field(128, ge=32, description="images are resized to this square")
    train_limit: int | None = Field(None, gt=0, description="use N training images, spread over the classes")
    test_limit: int | None = Field(None, gt=0, description="use N test images, spread over the classes")
    val_size: int = Field(40, ge=0, description="hold out N evenly spaced training images as split 'val'")


class Model(Section):
    preset: str = Field("tiny-ssd-128", description="see practicum.models.ssd.PRESETS")

    @field_validator("preset")
    @classmethod
    def _known(cls, name: str) -> str:
        from practicum.models.ssd import PRESETS
        from practicum.registry import nearest

        if name not in PRESETS:
            raise ValueError(f"unknown detector '{name}'{nearest(name, PRESETS)}; valid: {', '.join(PRESETS)}")
        return name

    def resolved(self) -> dict:
        from practicum.models.ssd import PRESETS

        return {"preset": PRESETS[self.preset]}


class Augment(Section):
    flip: bool = True
    crop_min: float = Field(0.6, gt=0, le=1, description="smallest crop side (fraction); 1 = no crop")
    crop_prob: float = Field(0.5, ge=0, le=1)
    jitter: float = Field(0.2, ge=0, lt=1, description="brightness (+- this, pixels in 0..1) and contrast "
                          "(x 1 +- this) jitter")


class Optim(config.Optim):  # D2L's: SGD lr 0.2, batch 32, weight decay 5e-4
    name: str = Field("sgd", description="sgd | adam | adamw | ... (train/optim.py)")
    lr: float = Field(0.2, gt=0)
    batch_size: int = Field(32, gt=0)
    weight_decay: float | None = Field(5e-4, ge=0)


class Train(config.Train):
    epochs: int = Field(20, gt=0)
    eval_batch_size: int = Field(64, gt=0)
    best_metric: str | None = Field("val/map", description="split/metric for checkpoints/best.pt")
    restore_best: bool = Field(True, description="measure the test split on the best checkpoint's weights")
    loss: Literal["d2l", "ssd"] = Field("ssd", description="d2l: mean over all anchors; ssd: hard negatives")
    neg_ratio: float = Field(3.0, gt=0, description="ssd loss: negatives per positive")


class Eval(Section):
    iou_threshold: float = Field(0.5, gt=0, lt=1, description="a detection is correct at IoU >= this")
    nms_threshold: float = Field(0.45, gt=0, le=1)
    score_threshold: float = Field(0.01, ge=0, lt=1)
    display_threshold: float = Field(0.3, ge=0, lt=1, description="figure: draw detections above")
    report_images: int = Field(12, ge=0)


DDP = True  # on the shared fit loop: runs under --nproc N and torchrun


class Config(Experiment):
    version = 2  # 2: the shared fit loop, a validation split, batched augmentation, shared [optim]

    data: Data = Data()
    model: Model = Model()
    augment: Augment = Augment()
    optim: Optim = Optim()
    train: Train = Train()
    eval: Eval = Eval()

    @model_validator(mode="after")
    def _validation_split(self) -> "Config":
        if (self.train.best_metric or "").startswith("val/") and not self.data.val_size:
            raise ValueError(f"train.best_metric '{self.train.best_metric}' needs a validation split: set "
                             "data.val_size > 0, or train.best_metric = '' to measure the final weights")
        return self


# -- data ------------------------------------------------------------------------------------


def load_data(cfg: Data):
    """(train, val or None, test) TensorSets: x (N, 3, S, S) uint8, y (N, M, 5); test names."""
    from practicum.data.voc import load_boxes

    train, _ = load_boxes(cfg.dataset, "train", cfg.image_size, cfg.train_limit)
    test, test_names = load_boxes(cfg.dataset, "test", cfg.image_size, cfg.test_limit)
    if not cfg.val_size:
        return train, None, test, test_names
    if cfg.val_size >= len(train):
        raise UsageError(f"data.val_size {cfg.val_size} leaves no training images (have {len(train)})")
    held = torch.zeros(len(train), dtype=torch.bool)
    held[torch.from_numpy(np.linspace(0, len(train) - 1, cfg.val_size).round().astype(np.int64))] = True
    return train.subset(~held), train.subset(held), test, test_names


def normalize(x: Tensor) -> Tensor:
    """Pixels in 0..1 -> about -2..2, the model's input."""
    return (x - 0.5) / 0.25


def augment_chain(cfg: Augment):
    """(x in [0, 1] (B, 3, S, S), labels (B, M, 5), generator) -> the same, augmented."""
    from practicum.data import augment as A

    def apply(x, labels, gen):
        B = len(x)
        if cfg.flip:
            mirror = (torch.rand(B, generator=gen) < 0.5).to(x.device)
            x, labels = A.flip(x, mirror), A.flip_boxes(labels, mirror)
        if cfg.crop_min < 1 and cfg.crop_prob > 0:
            windows = A.random_square_crops(labels, cfg.crop_prob, cfg.crop_min, gen)  # (B, 4)
            cropped = (windows != torch.tensor([0.0, 0.0, 1.0, 1.0], device=windows.device)).any(1)
            x = torch.where(cropped.view(-1, 1, 1, 1), A.resized_crop(x, windows), x)  # the rest exact
            labels = A.crop_boxes(labels, windows)
        if cfg.jitter:
            bright, contrast = (1 - 2 * torch.rand(2, B, generator=gen)) * cfg.jitter  # (2, B) in +-jitter
            x = A.brightness_contrast(x, bright, 1 + contrast)
        return x, labels

    return apply


# -- the step ----------------------------------------------------------------------------------


def detection_loss(cls_preds: Tensor, box_preds: Tensor, cls_labels: Tensor, box_labels: Tensor,
                   box_masks: Tensor, kind: str, neg_ratio: float = 3.0) -> tuple[Tensor, Tensor]:
    """(class loss, box loss), each a scalar. cls_preds (B, A, C + 1); box_preds, box_labels and
    box_masks (B, A * 4); cls_labels (B, A) long."""
    B, A, C1 = cls_preds.shape
    ce = F.cross_entropy(cls_preds.reshape(-1, C1), cls_labels.reshape(-1), reduction="none").reshape(B, A)
    if kind == "d2l":
        box = F.l1_loss(box_preds * box_masks, box_labels * box_masks, reduction="none").mean(1)
        return ce.mean(1).mean(), box.mean()
    pos = cls_labels > 0  # (B, A)
    n_pos = pos.sum(1, keepdim=True)  # (B, 1)
    # hard negatives: the background anchors with the largest loss, neg_ratio per positive
    neg_loss = ce.detach().masked_fill(pos, -1.0)
    rank = neg_loss.argsort(1, descending=True).argsort(1)  # (B, A) rank of each anchor's loss
    neg = rank < (neg_ratio * n_pos).clamp(min=1)
    n = n_pos.sum().clamp(min=1)
    cls_loss = (ce * (pos | neg)).sum() / n
    box_loss = (F.smooth_l1_loss(box_preds, box_labels, reduction="none") * box_masks).sum() / n
    return cls_loss, box_loss


def detect(anchors: Tensor, cls_logits: Tensor, offsets: Tensor, cfg: Eval) -> list[Tensor]:
    """Per-image detections (K, 6) rows (class, score, box), on the CPU (NMS is a sequential loop
    over a few hundred boxes: faster there than on a GPU)."""
    from practicum.detection import multibox_detection

    probs = F.softmax(cls_logits.float(), dim=2).cpu()
    return multibox_detection(probs, offsets.float().cpu(), anchors.cpu(), cfg.nms_threshold, cfg.score_threshold)


def objective(cfg: Config, num_classes: int) -> Objective:
    """Step: normalise, forward, label the anchors, the loss; n = images. Training sums the class
    and box losses; evaluation (the net in eval mode) also decodes the detections for the mAP."""
    from practicum.detection import DetectionAP, multibox_target

    t, e = cfg.train, cfg.eval

    def step(net, batch) -> Step:
        x, labels = batch  # (B, 3, S, S) in 0..1, (B, M, 5)
        anchors, cls, box = net(normalize(x))  # (A, 4), (B, A, C + 1), (B, A * 4)
        cls, box = cls.float(), box.float()
        offsets, mask, classes = multibox_target(anchors, labels)
        c, b = detection_loss(cls, box, classes, offsets, mask, t.loss, t.neg_ratio)
        n = len(x)
        # metrics are only updated in evaluation: training skips the NMS
        out = () if net.training else (detect(anchors, cls.detach(), box.detach(), e), labels)
        return Step(c + b, n, out, {"class_loss": c.detach() * n, "box_loss": b.detach() * n})

    return Objective(step, lambda: {"map": DetectionAP(num_classes, e.iou_threshold)})


# -- the run -----------------------------------------------------------------------------------


def run(cfg: Config, run) -> dict:
    from practicum.data.tensors import AugmentLoader, Loader, Pipeline
    from practicum.detection import DetectionAP
    from practicum.models.ssd import build_ssd
    from practicum.train import checkpoint, ddp
    from practicum.train.device import resolve_device
    from practicum.train.loop import Recorder, evaluate_once, fit, scalars, summarize
    from practicum.train.optim import build_training

    t, o = cfg.train, cfg.optim
    device = resolve_device(t.device)
    checkpoint.seed_everything(cfg.seed)
    world, rank = ddp.world_size(), ddp.rank()

    train_set, val_set, test_set, test_names = load_data(cfg.data)
    on_device = lambda s: dataclasses.replace(s, x=s.x.to(device), y=s.y.to(device)) if s else None  # noqa: E731
    train_set, val_set, test_set = on_device(train_set), on_device(val_set), on_device(test_set)  # once
    classes = train_set.classes
    model = build_ssd(cfg.model.preset, len(classes), image_size=cfg.data.image_size).to(device)

    gen = torch.Generator().manual_seed(cfg.seed)  # permutations and every augmentation draw
    loader = AugmentLoader(train_set, o.batch_size, augment_chain(cfg.augment), generator=gen,
                           rank=rank, world=world, device=device)
    shard = dict(train=False, rank=rank, world=world, device=device)  # a contiguous shard per rank
    evals = {"val": Loader(val_set, t.eval_batch_size, Pipeline(), **shard)} if val_set else {}
    test = Loader(test_set, t.eval_batch_size, Pipeline(), **shard)
    selects = bool(t.best_metric or t.early_stop_patience)
    if not selects:  # no model selection: the test curve may be drawn as it trains
        evals["test"] = test

    opt, sched = build_training(o, model.parameters(), loader.steps_per_epoch, t.epochs)
    obj = objective(cfg, len(classes))
    fit_cfg = t.fit_config(o.grad_clip)
    fit_cfg.label = cfg.model.preset
    rec = Recorder(run, tensorboard=t.tensorboard)
    state = fit(model, opt, sched, obj, loader, evals, fit_cfg, run, rec)
    # measured once, on the selected weights: mAP and the AP of each class
    per_class = lambda: {"map": DetectionAP(len(classes), cfg.eval.iou_threshold),  # noqa: E731
                         "ap": DetectionAP(len(classes), cfg.eval.iou_threshold, per_class=True)}
    state.last_eval["test"] = evaluate_once(model, test, dataclasses.replace(obj, metrics=per_class), t.precision)
    if selects:
        rec.log(scalars(state.last_eval["test"]), split="test", step=state.step, epoch=float(state.epoch))

    summary = summarize(state, model, t.best_metric)
    summary.update({f"test/ap_{c}": float(a) for c, a in zip(classes, state.last_eval["test"]["ap"])})
    if ddp.is_main():
        save_outputs(run, cfg, model, test_set, test_names, summary)
        rec.finish(cfg.hparams(), summary)
    return summary


@torch.no_grad()
def predict(model, test_set, cfg: Config) -> list[Tensor]:
    """Detections (K, 6) of every test image, in order (on one process: for the records)."""
    from practicum.data.tensors import Loader, Pipeline
    from practicum.train.device import resolve_precision
    from practicum.train.loop import Autocast

    device = next(model.parameters()).device
    dtype = resolve_precision(cfg.train.precision, device)
    net = Autocast(model, device, dtype) if dtype else model  # as the evaluation ran
    net.eval()
    dets = []
    for x, _ in Loader(test_set, cfg.train.eval_batch_size, Pipeline(), train=False, device=device):
        dets += detect(*net(normalize(x)), cfg.eval)
    return dets


def save_outputs(run, cfg: Config, model, test_set, names: list[str], summary: dict) -> None:
    """Weights; detections.npz: every test detection (image, class, score, box), the true boxes
    and the first ``report_images`` test images (spread over the classes); the AP table; figures."""
    from practicum.report.detection import DETECTIONS, detections_figure, pr_figure
    from practicum.train import checkpoint

    checkpoint.save(run.artifact_path("model.pt"), {"model": model.state_dict()})
    classes, labels = test_set.classes, test_set.y.cpu()
    rows = [torch.cat([torch.full((len(d), 1), float(i)), d], 1) for i, d in enumerate(predict(model, test_set, cfg))]
    truth = [torch.cat([torch.full((int((lb[:, 0] >= 0).sum()), 1), float(i)), lb[lb[:, 0] >= 0]], 1)
             for i, lb in enumerate(labels)]
    shown = np.linspace(0, len(test_set) - 1, min(cfg.eval.report_images, len(test_set))).round().astype(int)
    npz = run.artifact_path(DETECTIONS)
    fileio.save_npz(npz, dets=torch.cat(rows + [torch.zeros(0, 7)]).numpy(), truth=torch.cat(truth).numpy(),
                    classes=np.array(classes), names=np.array(names), iou_threshold=cfg.eval.iou_threshold,
                    shown=shown, shown_images=test_set.x[torch.from_numpy(shown)].permute(0, 2, 3, 1).cpu().numpy())

    n_gt = [int((labels[..., 0] == c).sum()) for c in range(len(classes))]
    iou, t = cfg.eval.iou_threshold, cfg.train
    run.write_table("ap_per_class", ["class", "test boxes", f"AP@{iou}"],
                    [[c, n, _r(summary[f"test/ap_{c}"])] for c, n in zip(classes, n_gt)]
                    + [["mean (mAP)", sum(n_gt), _r(summary["test/map"])]],
                    f"Average precision per class on the test split ({len(test_set)} images), VOC all-point, "
                    f"IoU {iou}; {cfg.model.preset} at {cfg.data.image_size}x{cfg.data.image_size}, "
                    f"{int(summary['train/epochs'])} epochs, {t.loss} loss"
                    + (f", the weights of the best {t.best_metric}" if t.best_metric and t.restore_best else ""))
    detections_figure(npz, run.figure_path("detections_test.png"), cfg.eval.display_threshold, cfg.eval.report_images)
    pr_figure(npz, run.figure_path("precision_recall.png"))


def _r(v: float):
    return None if v is None or not np.isfinite(v) else round(v, 4)
