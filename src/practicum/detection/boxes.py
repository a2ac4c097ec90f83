"""Bounding boxes in plain torch (D2L 14.3-14.4): IoU, anchor labelling, offsets, NMS, detection.

Conventions: a box is ``(x1, y1, x2, y2)``, corners, in coordinates normalised to the image
(0..1), x to the right and y down; a set of boxes is a float tensor (N, 4). Class 0 of the
detector's output is *background*; object class ``c`` (0-based, as in the label files) is
output class ``c + 1``. Every function here is checked against hand-computed cases in
``tests/test_d2l_detection.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def corner_to_center(boxes: Tensor) -> Tensor:
    """(N, 4) (x1, y1, x2, y2) -> (N, 4) (cx, cy, w, h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)


def center_to_corner(boxes: Tensor) -> Tensor:
    """(N, 4) (cx, cy, w, h) -> (N, 4) (x1, y1, x2, y2)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def box_area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise intersection over union: (N, 4), (M, 4) -> (N, M)."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)  # (N, M); 0 when disjoint
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clamp(min=1e-12)


# -- labelling anchors for training -------------------------------------------------------------


def assign_anchors(gt: Tensor, anchors: Tensor, iou_threshold: float = 0.5) -> Tensor:
    """For each anchor, the index of its ground-truth box in ``gt`` (G, 4), or -1 (background):
    (A,) long. One image of ``assign_batch``."""
    return assign_batch(gt[None], torch.ones(1, len(gt), dtype=torch.bool, device=gt.device), anchors,
                        iou_threshold)[0]


def assign_batch(boxes: Tensor, valid: Tensor, anchors: Tensor, iou_threshold: float = 0.5) -> Tensor:
    """For each image and anchor, the index of its box, or -1 (background): (B, A) long.

    boxes (B, M, 4), valid (B, M) bool (False: a padding row), anchors (A, 4). D2L's rule: first,
    repeatedly take the largest entry of the IoU matrix, give that anchor that box, and strike out
    its row and column -- so every box gets at least one anchor however badly the anchors fit it;
    then every other anchor whose best IoU is >= ``iou_threshold`` takes its best box. The greedy
    pass runs for the whole batch at once, M rounds (padding columns are struck from the start,
    so an image with fewer boxes simply stops taking any).
    """
    B, M, _ = boxes.shape
    A = len(anchors)
    if M == 0:
        return torch.full((B, A), -1, dtype=torch.long, device=boxes.device)
    iou = box_iou(anchors, boxes.reshape(-1, 4)).reshape(A, B, M).transpose(0, 1).contiguous()  # (B, A, M)
    iou = iou.masked_fill(~valid[:, None, :], -1.0)  # IoU >= 0 for real boxes, -1 = struck out
    best_iou, best_box = iou.max(dim=2)  # (B, A)
    assigned = torch.where(best_iou >= iou_threshold, best_box, -1)
    rows = torch.arange(B, device=boxes.device)
    for _ in range(M):  # the greedy pass; it overrides the threshold pass where they meet
        top, flat = iou.flatten(1).max(dim=1)  # (B,) the largest entry of each image (first if tied)
        anchor, box = flat // M, flat % M
        taken = top >= 0  # False once an image's boxes are all struck out
        assigned[rows, anchor] = torch.where(taken, box, assigned[rows, anchor])
        iou[rows, anchor, :] = -1.0
        iou[rows, :, box] = -1.0
    return assigned


def encode(anchors: Tensor, boxes: Tensor, eps: float = 1e-6) -> Tensor:
    """Offsets that turn each anchor into its box, D2L's (and SSD's) parameterisation with the
    usual scales (0.1 for centres, 0.2 for sizes):
    ``((cx - cx_a) / w_a / 0.1, (cy - cy_a) / h_a / 0.1, log(w / w_a) / 0.2, log(h / h_a) / 0.2)``.
    (..., 4), (..., 4) -> (..., 4)."""
    a, b = corner_to_center(anchors), corner_to_center(boxes)
    xy = 10 * (b[..., :2] - a[..., :2]) / a[..., 2:]
    wh = 5 * torch.log(eps + b[..., 2:] / a[..., 2:])
    return torch.cat([xy, wh], dim=-1)


def decode(anchors: Tensor, offsets: Tensor) -> Tensor:
    """The inverse of ``encode``: (..., 4) anchors + (..., 4) offsets -> (..., 4) corner boxes."""
    a = corner_to_center(anchors)
    xy = offsets[..., :2] * a[..., 2:] / 10 + a[..., :2]
    wh = torch.exp(offsets[..., 2:] / 5) * a[..., 2:]
    return center_to_corner(torch.cat([xy, wh], dim=-1))


def multibox_target(anchors: Tensor, labels: Tensor, iou_threshold: float = 0.5):
    """Training targets for a batch (D2L's ``multibox_target``, without its loop over images).

    anchors (A, 4); labels (B, M, 5) rows ``(class, x1, y1, x2, y2)``, padded with class -1
    (anywhere: padding rows are ignored). Returns offsets (B, A * 4), mask (B, A * 4) (1 where
    the anchor has a box) and classes (B, A) long (0 = background, c + 1 = object class c).
    """
    B, A = len(labels), len(anchors)
    if labels.shape[1] == 0:  # no image has a box: one padding row to gather from
        labels = labels.new_full((B, 1, 5), -1.0)
    assigned = assign_batch(labels[..., 1:], labels[..., 0] >= 0, anchors, iou_threshold)  # (B, A)
    has_box = assigned >= 0
    matched = labels.gather(1, assigned.clamp(min=0)[..., None].expand(B, A, 5))  # (B, A, 5)
    classes = torch.where(has_box, matched[..., 0].long() + 1, 0)
    mask = has_box[..., None].to(anchors.dtype).expand(B, A, 4)  # (B, A, 4)
    # a background anchor's "box" is the anchor itself: a finite offset, masked to 0 anyway
    target = torch.where(has_box[..., None], matched[..., 1:], anchors)
    offsets = encode(anchors.expand(B, A, 4), target) * mask
    return offsets.reshape(B, -1), mask.reshape(B, -1), classes


# -- from predictions to detections -------------------------------------------------------------


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Non-maximum suppression: indices of the kept boxes, highest score first.

    Take the best remaining box, drop every remaining box overlapping it by more than
    ``iou_threshold``, repeat.
    """
    order = torch.argsort(scores, descending=True)
    keep = []
    while order.numel() > 0:
        best = order[0]
        keep.append(int(best))
        if order.numel() == 1:
            break
        iou = box_iou(boxes[best][None], boxes[order[1:]])[0]  # (remaining,)
        order = order[1:][iou <= iou_threshold]
    return torch.tensor(keep, dtype=torch.long)


def multibox_detection(cls_probs: Tensor, offsets: Tensor, anchors: Tensor, nms_threshold: float = 0.5,
                       score_threshold: float = 0.01, max_detections: int = 100,
                       pre_nms_top: int = 400) -> list[Tensor]:
    """Per-image detections, rows ``(class, score, x1, y1, x2, y2)``, best first.

    cls_probs (B, A, C + 1) softmax outputs (column 0 = background); offsets (B, A * 4); anchors
    (A, 4). Unlike D2L's version, which keeps only each anchor's top class and runs one NMS over
    all classes, this scores every (anchor, class) pair and runs NMS per class -- what mAP, which
    ranks each class separately, expects.
    """
    results = []
    for probs, off in zip(cls_probs, offsets):
        boxes = decode(anchors, off.reshape(-1, 4)).clamp(0, 1)  # (A, 4)
        found = []
        for c in range(1, probs.shape[1]):
            scores = probs[:, c]
            candidates = torch.nonzero(scores > score_threshold).reshape(-1)
            candidates = candidates[torch.argsort(scores[candidates], descending=True)[:pre_nms_top]]
            keep = candidates[nms(boxes[candidates], scores[candidates], nms_threshold)]
            found.append(torch.cat([torch.full((len(keep), 1), float(c - 1)), scores[keep, None],
                                    boxes[keep]], dim=1))
        dets = torch.cat(found) if found else torch.zeros(0, 6)
        results.append(dets[torch.argsort(dets[:, 1], descending=True)[:max_detections]])
    return results
