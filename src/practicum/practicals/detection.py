"""D2L 14.7 on fruit: a small single-shot detector (TinySSD) trained on ``fruit-detection-voc``.

Data: every image of the train (240) and test (60) split, decoded with Pillow (alpha -> white),
resized to ``image_size`` squared, held whole as one uint8 tensor; boxes normalised to 0..1 by the
stored image's size (so the resize does not change them). Labels are padded to the most boxes in
an image, class -1.

Training: anchors are labelled with ``multibox_target`` (D2L's assignment, IoU >= 0.5), and the
loss is one of

- ``d2l``: cross-entropy averaged over *all* anchors plus L1 on the masked offsets averaged over
  all anchors (D2L's ``calc_loss``);
- ``ssd``: SSD's -- cross-entropy on the positives and the hardest ``neg_ratio`` x as many
  negatives, smooth-L1 on the positives' offsets, both divided by the number of positives. With
  ~1,400 anchors and about ten positives per image, D2L's average is dominated by easy
  background; hard-negative mining is the usual fix.

The optimizer is D2L's SGD (lr 0.2) or AdamW, with a constant or cosine learning rate; on the
fruit set's 240 images D2L's SGD is far from converged in a CPU budget (see the catalog entry).

Augmentation on the batch tensor: horizontal flip, a random square crop of side >= ``crop_min``
keeping boxes whose centre falls inside (clipped), brightness/contrast jitter.

Evaluation: softmax scores for every (anchor, class), decoded boxes, per-class NMS, then VOC
average precision at IoU 0.5 per class on the test split; mAP is their mean. A figure shows test
images with true boxes (dashed) and the detections above ``display_threshold`` (solid, score).

Resume: a checkpoint at every epoch end (weights, optimizer, RNG, metrics offset).
"""

from __future__ import annotations

import math
import time
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.detection import mean_average_precision, multibox_detection, multibox_target
from practicum.detection.voc import FRUIT_CLASSES, boxes_and_labels, image_size, load_image, read_voc_xml
from practicum.errors import PracticumError
from practicum.train.device import torch_threads
from practicum.store import Run
from practicum.train import checkpoint


class Data(Section):
    dataset: str = "fruit-detection-voc"
    image_size: int = Field(128, ge=32, description="images are resized to this square")
    train_limit: int | None = Field(None, gt=0, description="use N training images, spread over the classes")
    test_limit: int | None = Field(None, gt=0, description="use N test images, spread over the classes")


class Model(Section):
    preset: str = Field("tiny-ssd-128", description="see practicum.models.ssd.PRESETS")


class Augment(Section):
    flip: bool = True
    crop_min: float = Field(0.6, gt=0, le=1, description="smallest crop side (fraction); 1 = no crop")
    crop_prob: float = Field(0.5, ge=0, le=1)
    jitter: float = Field(0.2, ge=0, lt=1, description="brightness and contrast jitter, +-")


class Optim(Section):
    name: Literal["sgd", "adam"] = Field("sgd", description="D2L: sgd")
    lr: float = Field(0.2, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1, description="sgd only")
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(32, gt=0)
    schedule: Literal["constant", "cosine"] = Field("constant", description="cosine: lr -> 0 over the run")


class Train(Section):
    epochs: int = Field(20, gt=0)
    loss: Literal["d2l", "ssd"] = Field("ssd", description="d2l: mean over all anchors; ssd: hard negatives")
    neg_ratio: float = Field(3.0, gt=0, description="ssd loss: negatives per positive")
    eval_every: int = Field(5, gt=0, description="epochs between test mAP evaluations")


class Eval(Section):
    iou_threshold: float = Field(0.5, gt=0, lt=1, description="a detection is correct at IoU >= this")
    nms_threshold: float = Field(0.45, gt=0, le=1)
    score_threshold: float = Field(0.01, ge=0, lt=1)
    display_threshold: float = Field(0.3, ge=0, lt=1, description="figure: draw detections above")
    report_images: int = Field(12, ge=0)


class Config(Experiment):
    data: Data = Data()
    model: Model = Model()
    augment: Augment = Augment()
    optim: Optim = Optim()
    train: Train = Train()
    eval: Eval = Eval()


# -- data ------------------------------------------------------------------------------------


def split_files(dataset: str, split: str, limit: int | None) -> list[str]:
    """The split's annotation files (relative paths), sorted; ``limit`` picks evenly spaced ones so
    a small slice still holds every class (files are sorted apple_*, banana_*, mixed_*, orange_*)."""
    from practicum.data.cache import dataset_info

    xmls = sorted(f.path for f in dataset_info(dataset).files
                  if f.path.startswith(f"{split}/") and f.path.endswith(".xml"))
    if not xmls:
        raise PracticumError(f"dataset '{dataset}' has no {split}/*.xml annotations")
    if limit is not None and limit < len(xmls):
        xmls = [xmls[i] for i in np.linspace(0, len(xmls) - 1, limit).round().astype(int)]
    return xmls


def load_split(dataset: str, split: str, size: int, limit: int | None = None):
    """(images uint8 (N, 3, S, S), labels float (N, M, 5) padded with class -1, names)."""
    from practicum.data.cache import fetch_file

    images, labels, names = [], [], []
    for xml_rel in split_files(dataset, split, limit):
        ann = read_voc_xml(fetch_file(dataset, xml_rel))
        image_rel = xml_rel[:-4] + ".jpg"
        image_path = fetch_file(dataset, image_rel)
        # boxes are in the stored image's pixels: normalise by its size, not the (draft-decoded,
        # possibly 1/2 .. 1/8 scale) image load_image returns
        boxes, cls = boxes_and_labels(ann, FRUIT_CLASSES, image_size(image_path))
        image = load_image(image_path, max_side=size)
        image = image.resize((size, size), resample=3)  # bicubic; boxes are normalised, unchanged
        images.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))  # (3, S, S)
        labels.append(torch.from_numpy(np.concatenate([cls[:, None].astype(np.float32), boxes], 1)))
        names.append(image_rel)
    most = max(len(lb) for lb in labels)
    padded = torch.full((len(labels), most, 5), -1.0)
    for i, lb in enumerate(labels):
        padded[i, :len(lb)] = lb
    return torch.stack(images), padded, names


def normalize(images_uint8: Tensor) -> Tensor:
    return (images_uint8.float() / 255 - 0.5) / 0.25


def augment(x: Tensor, labels: Tensor, cfg: Augment, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Flip, crop and jitter a float batch (B, 3, S, S) and its labels (B, M, 5) (copies)."""
    x, labels = x.clone(), labels.clone()
    B, _, S, _ = x.shape
    valid = labels[..., 0] >= 0  # (B, M)
    if cfg.flip:
        flip = torch.rand(B, generator=gen) < 0.5
        x[flip] = x[flip].flip(-1)
        lb = labels[flip]
        lb[..., 1], lb[..., 3] = 1 - lb[..., 3], 1 - lb[..., 1]
        labels[flip] = torch.where(valid[flip][..., None], lb, labels[flip])
    for i in range(B):
        if cfg.crop_min >= 1 or float(torch.rand(1, generator=gen)) >= cfg.crop_prob:
            continue
        side = cfg.crop_min + (1 - cfg.crop_min) * float(torch.rand(1, generator=gen))
        ox, oy = (torch.rand(2, generator=gen) * (1 - side)).tolist()
        lb = labels[i, valid[i]]  # (K, 5)
        cx, cy = (lb[:, 1] + lb[:, 3]) / 2, (lb[:, 2] + lb[:, 4]) / 2
        inside = (cx > ox) & (cx < ox + side) & (cy > oy) & (cy < oy + side)
        if not inside.any():
            continue  # the crop would lose every object: leave this image alone
        lb = lb[inside]
        lb[:, 1:] = ((lb[:, 1:] - torch.tensor([ox, oy, ox, oy])) / side).clamp(0, 1)
        x0, y0, n = round(ox * S), round(oy * S), max(1, round(side * S))
        x[i] = F.interpolate(x[i:i + 1, :, y0:y0 + n, x0:x0 + n], size=(S, S), mode="bilinear",
                             align_corners=False)[0]
        labels[i] = -1
        labels[i, :len(lb)] = lb
    if cfg.jitter:
        bright = (torch.rand(B, 1, 1, 1, generator=gen) * 2 - 1) * cfg.jitter
        contrast = 1 + (torch.rand(B, 1, 1, 1, generator=gen) * 2 - 1) * cfg.jitter
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast + mean + bright / 0.25  # brightness in 0..1 units, normalised
    return x, labels


# -- loss ------------------------------------------------------------------------------------


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


# -- train / eval ----------------------------------------------------------------------------


@torch.no_grad()
def predict(model, images: Tensor, cfg: Eval, batch: int = 32) -> list[Tensor]:
    model.eval()
    dets = []
    for i in range(0, len(images), batch):
        anchors, cls, box = model(normalize(images[i: i + batch]))
        dets += multibox_detection(F.softmax(cls, dim=2), box, anchors, cfg.nms_threshold,
                                   cfg.score_threshold)
    return dets


@torch.no_grad()
def test_loss(model, images: Tensor, labels: Tensor, cfg: Config) -> float:
    model.eval()
    total = 0.0
    for i in range(0, len(images), 32):
        anchors, cls, box = model(normalize(images[i: i + 32]))
        off, mask, cl = multibox_target(anchors, labels[i: i + 32])
        c, b = detection_loss(cls, box, cl, off, mask, cfg.train.loss, cfg.train.neg_ratio)
        total += float(c + b) * len(cls)
    return total / len(images)


def evaluate(model, images, labels, cfg: Config) -> dict:
    dets = predict(model, images, cfg.eval)
    gts = [lb[lb[:, 0] >= 0] for lb in labels]
    result = mean_average_precision(dets, gts, len(FRUIT_CLASSES), cfg.eval.iou_threshold)
    result["dets"] = dets
    return result


def save_checkpoint(run: Run, model, opt, sched, gen, epoch: int, history: dict) -> None:
    checkpoint.save(run.checkpoint_path("last.pt"), {
        "model": model.state_dict(), "optim": opt.state_dict(), "sched": sched.state_dict(),
        "gen": gen.get_state(), "torch_rng": torch.get_rng_state(), "epoch": epoch, "history": history,
        "metrics_position": run.metrics_position()})


def load_checkpoint(run: Run, model, opt, sched, gen) -> tuple[int, dict]:
    state = checkpoint.load(run.checkpoint_path("last.pt"))
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optim"])
    sched.load_state_dict(state["sched"])
    gen.set_state(state["gen"])
    torch.set_rng_state(state["torch_rng"])
    run.rewind_metrics(state["metrics_position"])
    return state["epoch"] + 1, state["history"]


def run(cfg: Config, run: Run) -> dict:
    with torch_threads(1):  # shared machines: see practicals/threads.py
        return _run(cfg, run)


def _run(cfg: Config, run: Run) -> dict:
    from practicum.models.ssd import build_ssd

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    S = cfg.data.image_size
    xtr, ytr, _ = load_split(cfg.data.dataset, "train", S, cfg.data.train_limit)
    xte, yte, test_names = load_split(cfg.data.dataset, "test", S, cfg.data.test_limit)
    model = build_ssd(cfg.model.preset, len(FRUIT_CLASSES), image_size=S)
    if cfg.optim.name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                              weight_decay=cfg.optim.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    bs = cfg.optim.batch_size
    steps_per_epoch = math.ceil(len(xtr) / bs)
    total = steps_per_epoch * cfg.train.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / total)) if cfg.optim.schedule == "cosine" else 1.0)
    start, history = 0, {"epoch_seconds": []}
    if run.resumed and run.checkpoint_path("last.pt").exists():
        start, history = load_checkpoint(run, model, opt, sched, gen)
    elif run.resumed:
        run.rewind_metrics(0)

    for epoch in range(start, cfg.train.epochs):
        t0 = time.perf_counter()
        model.train()
        sums = np.zeros(2)
        order = torch.randperm(len(xtr), generator=gen)
        for i in range(steps_per_epoch):
            idx = order[i * bs: (i + 1) * bs]
            x, lb = augment(normalize(xtr[idx]), ytr[idx], cfg.augment, gen)
            anchors, cls, box = model(x)
            off, mask, cl = multibox_target(anchors, lb)
            c, b = detection_loss(cls, box, cl, off, mask, cfg.train.loss, cfg.train.neg_ratio)
            opt.zero_grad()
            (c + b).backward()
            opt.step()
            sched.step()
            sums += [c.item() * len(idx), b.item() * len(idx)]
        history["epoch_seconds"].append(time.perf_counter() - t0)
        step = (epoch + 1) * steps_per_epoch
        cls_l, box_l = sums / len(xtr)
        run.log({"loss": cls_l + box_l, "class_loss": cls_l, "box_loss": box_l, "lr": sched.get_last_lr()[0]},
                split="train", step=step, epoch=epoch + 1)
        run.log({"loss": test_loss(model, xte, yte, cfg)}, split="test", step=step, epoch=epoch + 1)
        if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs:
            result = evaluate(model, xte, yte, cfg)
            run.log({"map": result["map"], **{f"ap_{c}": a for c, a in zip(FRUIT_CLASSES, result["ap"])}},
                    split="test", step=step, epoch=epoch + 1)
        save_checkpoint(run, model, opt, sched, gen, epoch, history)

    checkpoint.save(run.artifact_path("weights.pt"), model.state_dict())

    result = evaluate(model, xte, yte, cfg)
    gts = [lb[lb[:, 0] >= 0] for lb in yte]
    n_gt = [sum(int((g[:, 0] == c).sum()) for g in gts) for c in range(len(FRUIT_CLASSES))]
    fileio.write_json(run.dir / "tables" / "ap_per_class.json", {
        "columns": ["class", "test boxes", f"AP@{cfg.eval.iou_threshold}"],
        "rows": [[c, n, _r(a)] for c, n, a in zip(FRUIT_CLASSES, n_gt, result["ap"])]
        + [["mean (mAP)", sum(n_gt), _r(result["map"])]],
        "caption": (f"Average precision per class on the test split ({len(xte)} images), VOC all-point, "
                    f"IoU {cfg.eval.iou_threshold}; {cfg.model.preset} at {S}x{S}, {cfg.train.epochs} epochs, "
                    f"{cfg.train.loss} loss"),
    })
    save_predictions(run, result, xte, yte, test_names, cfg)
    detections_figure(run.artifact_path("detections.npz"), run.figure_path("detections_test.png"),
                      cfg.eval.display_threshold, cfg.eval.report_images)
    pr_figure(run.artifact_path("detections.npz"), run.figure_path("precision_recall.png"))

    summary = {"test/map": result["map"],
               **{f"test/ap_{c}": a for c, a in zip(FRUIT_CLASSES, result["ap"])},
               "train/seconds_per_epoch": float(np.median(history["epoch_seconds"] or [float("nan")])),
               "model/parameters": float(sum(p.numel() for p in model.parameters()))}
    return summary


def _r(v: float):
    return None if v is None or not math.isfinite(v) else round(v, 4)


# -- records and figures ---------------------------------------------------------------------


def save_predictions(run: Run, result: dict, images: Tensor, labels: Tensor, names: list[str], cfg: Config):
    """detections.npz: every test detection (image index, class, score, box), the true boxes, the
    PR curves, and the first ``report_images`` test images (spread over the classes) for the figure."""
    rows = [torch.cat([torch.full((len(d), 1), float(i)), d], 1) for i, d in enumerate(result["dets"])]
    dets = torch.cat(rows).numpy() if rows else np.zeros((0, 7), np.float32)
    truth = [torch.cat([torch.full((int((lb[:, 0] >= 0).sum()), 1), float(i)), lb[lb[:, 0] >= 0]], 1)
             for i, lb in enumerate(labels)]
    shown = np.linspace(0, len(images) - 1, min(cfg.eval.report_images, len(images))).round().astype(int)
    arrays = {"dets": dets, "truth": torch.cat(truth).numpy(), "classes": np.array(FRUIT_CLASSES),
              "names": np.array(names), "shown": shown, "shown_images": images[shown].permute(0, 2, 3, 1).numpy(),
              "ap": np.array(result["ap"])}
    for c, (rec, prec) in enumerate(result["curves"]):
        arrays[f"recall_{c}"], arrays[f"precision_{c}"] = rec, prec
    fileio.save_npz(run.artifact_path("detections.npz"), **arrays)


COLORS = {"apple": "#d62728", "banana": "#e6c700", "orange": "#ff7f0e"}


def detections_figure(npz, path, threshold: float, limit: int) -> None:
    """Test images: true boxes dashed, detections above ``threshold`` solid with class and score."""
    from practicum.report.plots import plt, save

    with np.load(npz) as z:
        dets, truth, classes, names = z["dets"], z["truth"], list(z["classes"]), z["names"]
        shown, images = z["shown"], z["shown_images"]
    if len(shown) == 0 or limit == 0:
        return
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax, k, img in zip(axes.ravel(), shown, images):
        S = img.shape[0]
        ax.imshow(img)
        for c, *box in truth[truth[:, 0] == k][:, 1:]:
            x1, y1, x2, y2 = np.array(box) * S
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linestyle="--",
                                       linewidth=1.5, edgecolor="white"))
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linestyle="--",
                                       linewidth=1.0, edgecolor=COLORS[classes[int(c)]]))
        mine = dets[(dets[:, 0] == k) & (dets[:, 2] >= threshold)]
        for _, c, score, *box in mine:
            x1, y1, x2, y2 = np.array(box) * S
            color = COLORS[classes[int(c)]]
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linewidth=2, edgecolor=color))
            ax.text(x1, y1, f"{classes[int(c)]} {score:.2f}", fontsize=7, color="black", va="bottom",
                    bbox=dict(facecolor=color, alpha=0.8, pad=1, linewidth=0))
        ax.set_title(str(names[k]).split("/")[-1], fontsize=8)
        ax.axis("off")
    for ax in axes.ravel()[len(shown):]:
        ax.axis("off")
    fig.suptitle(f"test images: true boxes dashed, detections with score >= {threshold} solid")
    fig.tight_layout()
    save(fig, path)


def pr_figure(npz, path) -> None:
    from practicum.report.plots import plt, save

    with np.load(npz) as z:
        classes, ap = list(z["classes"]), z["ap"]
        curves = [(z[f"recall_{c}"], z[f"precision_{c}"]) for c in range(len(classes))]
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, a, (rec, prec) in zip(classes, ap, curves):
        ax.plot(rec, prec, color=COLORS[name], label=f"{name} (AP {a:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("test precision-recall, IoU 0.5")
    save(fig, path)
