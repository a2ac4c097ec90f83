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
    """For each anchor, the index of its ground-truth box, or -1 (background): (A,) long.

    D2L's rule: first, repeatedly take the largest entry of the IoU matrix, give that anchor that
    box, and strike out its row and column -- so every box gets at least one anchor however
    badly the anchors fit it; then every other anchor whose best IoU is >= ``iou_threshold``
    takes its best box.
    """
    num_anchors, num_gt = anchors.shape[0], gt.shape[0]
    assigned = torch.full((num_anchors,), -1, dtype=torch.long)
    if num_gt == 0:
        return assigned
    iou = box_iou(anchors, gt)  # (A, G)
    best_iou, best_box = iou.max(dim=1)
    ok = best_iou >= iou_threshold
    assigned[ok] = best_box[ok]
    iou = iou.clone()
    for _ in range(num_gt):  # the greedy pass; it overrides the threshold pass where they meet
        flat = int(torch.argmax(iou))
        anchor, box = divmod(flat, num_gt)
        assigned[anchor] = box
        iou[:, box] = -1
        iou[anchor, :] = -1
    return assigned


def encode(anchors: Tensor, boxes: Tensor, eps: float = 1e-6) -> Tensor:
    """Offsets that turn each anchor into its box, D2L's (and SSD's) parameterisation with the
    usual scales (0.1 for centres, 0.2 for sizes):
    ``((cx - cx_a) / w_a / 0.1, (cy - cy_a) / h_a / 0.1, log(w / w_a) / 0.2, log(h / h_a) / 0.2)``.
    (A, 4), (A, 4) -> (A, 4)."""
    a, b = corner_to_center(anchors), corner_to_center(boxes)
    xy = 10 * (b[:, :2] - a[:, :2]) / a[:, 2:]
    wh = 5 * torch.log(eps + b[:, 2:] / a[:, 2:])
    return torch.cat([xy, wh], dim=1)


def decode(anchors: Tensor, offsets: Tensor) -> Tensor:
    """The inverse of ``encode``: (A, 4) anchors + (A, 4) offsets -> (A, 4) corner boxes."""
    a = corner_to_center(anchors)
    xy = offsets[:, :2] * a[:, 2:] / 10 + a[:, :2]
    wh = torch.exp(offsets[:, 2:] / 5) * a[:, 2:]
    return center_to_corner(torch.cat([xy, wh], dim=1))


def multibox_target(anchors: Tensor, labels: Tensor, iou_threshold: float = 0.5):
    """Training targets for a batch (D2L's ``multibox_target``).

    anchors (A, 4); labels (B, M, 5) rows ``(class, x1, y1, x2, y2)``, padded with class -1.
    Returns offsets (B, A * 4), mask (B, A * 4) (1 where the anchor has a box) and classes
    (B, A) long (0 = background, c + 1 = object class c).
    """
    offsets, masks, classes = [], [], []
    for label in labels:
        label = label[label[:, 0] >= 0]  # drop the padding rows before matching
        assigned = assign_anchors(label[:, 1:], anchors, iou_threshold)  # (A,)
        has_box = assigned >= 0
        cls = torch.zeros(len(anchors), dtype=torch.long)
        target = torch.zeros_like(anchors)
        cls[has_box] = label[assigned[has_box], 0].long() + 1
        target[has_box] = label[assigned[has_box], 1:]
        mask = has_box.float()[:, None].expand(-1, 4)  # (A, 4)
        offsets.append((encode(anchors, target) * mask).reshape(-1))
        masks.append(mask.reshape(-1))
        classes.append(cls)
    return torch.stack(offsets), torch.stack(masks), torch.stack(classes)


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
