"""Average precision per class at one IoU threshold (PASCAL VOC, all-point interpolation), as
functions of a split's detections and as a torchmetric (``DetectionAP``) for the fit loop."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from practicum.detection.boxes import box_iou


def average_precision(tp: np.ndarray, n_gt: int) -> tuple[float, np.ndarray, np.ndarray]:
    """AP from detections already sorted by decreasing score (``tp`` 1 = true positive).

    Precision is made monotone (each point takes the best precision at any higher recall) and
    integrated over recall: VOC 2010+'s all-point AP. Returns (AP, recall, precision); AP is NaN
    when the class has no ground-truth boxes.
    """
    if n_gt == 0:
        return float("nan"), np.zeros(0), np.zeros(0)
    tp = np.asarray(tp, dtype=np.float64)
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # envelope: best precision at recall >= r
    steps = np.flatnonzero(r[1:] != r[:-1])  # where recall changes
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1])), recall, precision


def match_image(dets: Tensor, gt: Tensor, iou_threshold: float = 0.5) -> Tensor:
    """One image's detections judged against its boxes: (K, 3) rows ``(class, score, tp)``,
    highest score first (ties in the given order).

    dets (K, 6) rows (class, score, x1, y1, x2, y2); gt (G, 5) rows (class, x1, y1, x2, y2). As
    VOC's devkit: taking the detections best score first, each is a true positive when the box of
    its class it overlaps most has IoU >= ``iou_threshold`` and no earlier detection took that
    box; otherwise (a duplicate, a miss) a false positive. Nothing here needs another image, so
    a split can be judged batch by batch (``DetectionAP``).
    """
    dets, gt = dets.float().cpu(), gt.float().cpu()
    dets = dets[torch.sort(dets[:, 1], descending=True, stable=True).indices]
    tp = torch.zeros(len(dets))
    if len(dets) and len(gt):
        iou = box_iou(dets[:, 2:6], gt[:, 1:])  # (K, G)
        iou = iou.masked_fill(dets[:, :1] != gt[None, :, 0], -1.0)  # only boxes of its own class
        best, box = iou.max(dim=1)
        used = set()
        for k, (overlap, j) in enumerate(zip(best.tolist(), box.tolist())):
            if overlap >= iou_threshold and j not in used:
                tp[k] = 1.0
                used.add(j)
    return torch.stack([dets[:, 0], dets[:, 1], tp], 1)


def class_curve(matched: Tensor, n_gt: int, cls: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(AP, recall, precision) of class ``cls`` from ``match_image`` rows of a whole split (in
    image order) and its number of boxes: the rows are ranked by score over every image."""
    rows = matched[matched[:, 0] == cls]
    order = torch.sort(rows[:, 1], descending=True, stable=True).indices
    return average_precision(rows[order, 2].numpy(), n_gt)


def mean_average_precision(dets: list[Tensor], gts: list[Tensor], num_classes: int,
                           iou_threshold: float = 0.5) -> dict:
    """{"ap": [AP per class], "map": mean over classes with boxes, "curves": [(recall, precision)]}.
    dets[i] (K, 6) rows (class, score, box) and gts[i] (G, 5) rows (class, box) of image i."""
    matched = torch.cat([match_image(d, g, iou_threshold) for d, g in zip(dets, gts)] + [torch.zeros(0, 3)])
    n_gt = [sum(int((g[:, 0] == c).sum()) for g in gts) for c in range(num_classes)]
    aps, curves = [], []
    for c in range(num_classes):
        ap, recall, precision = class_curve(matched, n_gt[c], c)
        aps.append(ap)
        curves.append((recall, precision))
    valid = [a for a in aps if not np.isnan(a)]
    return {"ap": aps, "map": float(np.mean(valid)) if valid else float("nan"), "curves": curves}


class DetectionAP(Metric):
    """VOC average precision at ``iou_threshold`` over an evaluation split, as a torchmetric.

    ``update(dets, labels)`` per batch: dets a list of (K, 6) detections per image
    (``multibox_detection``), labels (B, M, 5) padded with class -1. Each image's detections are
    judged at once (``match_image``), so the state is only (class, score, tp) per detection and
    the number of boxes per class; ``compute()`` ranks each class over the whole split. Under
    DDP the rows of every rank are concatenated and the counts summed.

    ``per_class=False``: mAP, the mean over the classes that have boxes (a scalar, logged as a
    curve); ``per_class=True``: the (C,) AP of each class (NaN where a class has no boxes).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int, iou_threshold: float = 0.5, per_class: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.iou_threshold, self.per_class = num_classes, iou_threshold, per_class
        self.add_state("matched", default=[], dist_reduce_fx="cat")  # (K, 3) tensors
        self.add_state("boxes", default=torch.zeros(num_classes), dist_reduce_fx="sum")  # (C,)

    def update(self, dets: list[Tensor], labels: Tensor) -> None:
        for d, lb in zip(dets, labels):
            gt = lb[lb[:, 0] >= 0]
            self.matched.append(match_image(d, gt, self.iou_threshold).to(self.boxes.device))
            self.boxes += torch.bincount(gt[:, 0].long(), minlength=self.num_classes).to(self.boxes)

    def compute(self) -> Tensor:
        matched = dim_zero_cat(self.matched).cpu() if len(self.matched) else torch.zeros(0, 3)
        boxes = self.boxes.cpu().long().tolist()
        ap = torch.tensor([class_curve(matched, boxes[c], c)[0] for c in range(self.num_classes)])
        return ap if self.per_class else ap.nanmean()
