"""Average precision per class at one IoU threshold (PASCAL VOC, all-point interpolation)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

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


def match_detections(dets: list[Tensor], gts: list[Tensor], cls: int, iou_threshold: float = 0.5):
    """For class ``cls``: (scores, tp flags) of every detection over all images, sorted by score,
    and the number of ground-truth boxes. dets[i] (K, 6) rows (class, score, box); gts[i] (M, 5)
    rows (class, box). A detection is a true positive when it overlaps a not-yet-matched box of
    its class by IoU >= threshold (greedy, highest score first, as VOC's devkit)."""
    records = []  # (score, image, box)
    n_gt = 0
    for i, (d, g) in enumerate(zip(dets, gts)):
        n_gt += int((g[:, 0] == cls).sum())
        for row in d[d[:, 0] == cls]:
            records.append((float(row[1]), i, row[2:6]))
    records.sort(key=lambda r: -r[0])
    used = [torch.zeros(int((g[:, 0] == cls).sum()), dtype=torch.bool) for g in gts]
    tp = np.zeros(len(records))
    for k, (_, i, box) in enumerate(records):
        g = gts[i][gts[i][:, 0] == cls, 1:]
        if len(g) == 0:
            continue
        iou = box_iou(box[None], g)[0]
        j = int(torch.argmax(iou))
        if iou[j] >= iou_threshold and not used[i][j]:
            tp[k] = 1
            used[i][j] = True
    return np.array([r[0] for r in records]), tp, n_gt


def mean_average_precision(dets: list[Tensor], gts: list[Tensor], num_classes: int,
                           iou_threshold: float = 0.5) -> dict:
    """{"ap": [AP per class], "map": mean over classes with boxes, "curves": [(recall, precision)]}."""
    aps, curves = [], []
    for c in range(num_classes):
        _, tp, n_gt = match_detections(dets, gts, c, iou_threshold)
        ap, recall, precision = average_precision(tp, n_gt)
        aps.append(ap)
        curves.append((recall, precision))
    valid = [a for a in aps if not np.isnan(a)]
    return {"ap": aps, "map": float(np.mean(valid)) if valid else float("nan"), "curves": curves}
