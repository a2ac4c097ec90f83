"""Object detection from scratch in plain torch (D2L chapter 14.3-14.7).

    boxes.py    IoU, anchor labelling, offset encode/decode, NMS, multibox detection
    anchors.py  anchor boxes on a feature map (``multibox_prior``)
    metrics.py  average precision per class at an IoU threshold (VOC all-point), and the
                torchmetrics ``DetectionAP`` the fit loop evaluates with

The single-shot detector that uses them is ``practicum.models.ssd``; the VOC files and the box
tensors come from ``practicum.data.voc``; the practical that trains it on the fruit set is
``practicum.practicals.detection``.
"""

from practicum.detection.anchors import anchors_per_pixel, multibox_prior
from practicum.detection.boxes import (assign_anchors, assign_batch, box_iou, center_to_corner, corner_to_center,
                                       decode, encode, multibox_detection, multibox_target, nms)
from practicum.detection.metrics import DetectionAP, average_precision, mean_average_precision

__all__ = ["DetectionAP", "anchors_per_pixel", "assign_anchors", "assign_batch", "average_precision", "box_iou",
           "center_to_corner", "corner_to_center", "decode", "encode", "mean_average_precision",
           "multibox_detection", "multibox_prior", "multibox_target", "nms"]
