"""The detection practical on the shared fit loop: batched box-aware augmentation on known tensors,
batched anchor labelling against the per-image one, the mAP torchmetric against hand-computed
cases and the per-detection reference, the [optim] section, a kill -9 mid-epoch resumed
bit-identically, and two DDP processes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import kill_when, one_thread_env, practicum, runs

from practicum.data import augment as A
from practicum.detection import (
    DetectionAP,
    average_precision,
    box_iou,
    mean_average_precision,
    multibox_target,
)

PAD = [-1.0] * 5


# -- augmentation: each op on a known tensor -------------------------------------------------------


def test_flip_boxes_mirrors_the_flipped_images_only():
    labels = torch.tensor([[[0, 0.1, 0.2, 0.4, 0.6], PAD], [[2, 0.1, 0.2, 0.4, 0.6], PAD]])
    out = A.flip_boxes(labels, torch.tensor([True, False]))
    torch.testing.assert_close(out[0, 0], torch.tensor([0, 0.6, 0.2, 0.9, 0.6]))
    assert out[0, 1].tolist() == PAD  # padding stays padding
    assert torch.equal(out[1], labels[1])
    # the image and its boxes move together: the bright columns 1..3 of 10 end up at 6..8
    x = torch.zeros(1, 1, 1, 10)
    x[..., 1:4] = 1
    img, lb = A.flip(x, torch.tensor([True])), A.flip_boxes(torch.tensor([[[0, 0.1, 0, 0.4, 1]]]), torch.tensor([True]))
    assert img[0, 0, 0].nonzero().flatten().tolist() == [6, 7, 8]
    torch.testing.assert_close(lb[0, 0, [1, 3]], torch.tensor([0.6, 0.9]))


def test_crop_boxes_by_hand():
    labels = torch.tensor([[[1, 0.3, 0.3, 0.5, 0.9],      # centre (0.4, 0.6): inside, clipped below
                            [2, 0.75, 0.1, 0.95, 0.3],    # centre (0.85, 0.2): outside -> padding
                            PAD]])
    out = A.crop_boxes(labels, torch.tensor([[0.2, 0.2, 0.7, 0.7]]))  # a square of side 0.5
    torch.testing.assert_close(out[0, 0], torch.tensor([1, 0.2, 0.2, 0.6, 1.0]))
    assert out[0, 1].tolist() == PAD and out[0, 2].tolist() == PAD
    assert torch.equal(A.crop_boxes(labels, torch.tensor([[0.0, 0, 1, 1]])), labels)  # the whole image


def test_crop_moves_image_and_box_together():
    x = torch.zeros(1, 1, 20, 20)
    x[..., 8:12, 10:14] = 1.0  # object at x 10..14, y 8..12 (pixels)
    labels = torch.tensor([[[0, 10 / 20, 8 / 20, 14 / 20, 12 / 20]]])
    window = torch.tensor([[0.25, 0.25, 0.75, 0.75]])  # pixels 5..15, blown up x2
    img, lb = A.resized_crop(x, window), A.crop_boxes(labels, window)
    torch.testing.assert_close(lb[0, 0], torch.tensor([0, 0.5, 0.3, 0.9, 0.7]))
    x1, y1, x2, y2 = (lb[0, 0, 1:] * 20).round().int().tolist()  # 10..18, 6..14
    assert img[0, 0, y1 + 1:y2 - 1, x1 + 1:x2 - 1].min() > 0.99
    assert img[0, 0].sum() == pytest.approx(64, rel=0.05)  # 4 x 4 pixels became 8 x 8


def test_random_square_crops_keep_a_box_or_the_whole_image():
    g = torch.Generator().manual_seed(0)
    centre = torch.tensor([[0, 0.45, 0.45, 0.55, 0.55]])
    corner = torch.tensor([[1, 0.0, 0.0, 0.04, 0.04]])  # a crop rarely keeps this one
    labels = torch.stack([torch.cat([centre, torch.tensor([PAD])]), torch.cat([corner, torch.tensor([PAD])]),
                          torch.tensor([PAD, PAD])] * 20)  # (60, 2, 5); every third image has no box
    w = A.random_square_crops(labels, 0.7, 0.5, g)
    whole = (w == torch.tensor([0.0, 0, 1, 1])).all(1)
    side = w[:, 2] - w[:, 0]
    torch.testing.assert_close(side, w[:, 3] - w[:, 1])  # squares
    assert ((side >= 0.5) & (side <= 1)).all() and (w >= 0).all() and (w <= 1).all()
    assert (A.crop_boxes(labels, w)[~whole][..., 0] >= 0).any(1).all()  # every real crop keeps a box
    assert whole[2::3].all()  # nothing to keep: the image is left alone
    assert 0.3 < (~whole[0::3]).float().mean() < 1  # about crop_prob of the centred ones are cropped
    assert (~whole[1::3]).sum() < (~whole[0::3]).sum()
    assert A.random_square_crops(labels, 0.0, 0.5, g).eq(torch.tensor([0.0, 0, 1, 1])).all()


def test_brightness_contrast_by_hand_and_within_bounds():
    x = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)  # mean 0.5
    out = A.brightness_contrast(x, torch.tensor([0.1, 0.0]), torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(out[0], x[0] + 0.1)
    torch.testing.assert_close(out[1].flatten(), torch.tensor([0.35, 0.45, 0.55, 0.65]))
    # the practical's draws stay within +- jitter (brightness) and 1 +- jitter (contrast)
    from practicum.practicals.detection import Augment, augment_chain

    x = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([[[0, 0.2, 0.2, 0.8, 0.8]]]).expand(64, -1, -1)
    out, lb = augment_chain(Augment(flip=False, crop_min=1.0, jitter=0.2))(x, labels, torch.Generator().manual_seed(2))
    assert torch.equal(lb, labels)
    shift = out.mean((1, 2, 3)) - x.mean((1, 2, 3))
    scale = out.std((1, 2, 3)) / x.std((1, 2, 3))
    assert shift.abs().max() <= 0.2 + 1e-6 and shift.abs().max() > 0.15 and shift.std() > 0.05
    assert (scale - 1).abs().max() <= 0.2 + 1e-5 and (scale - 1).abs().max() > 0.15


# -- batched anchor labelling ----------------------------------------------------------------------


def test_multibox_target_of_a_batch_is_that_of_each_image():
    from practicum.models.ssd import build_ssd

    anchors, _, _ = build_ssd("tiny-ssd-fruit", 3, image_size=64)(torch.zeros(1, 3, 64, 64))
    g = torch.Generator().manual_seed(0)
    lo = torch.rand(5, 6, 2, generator=g) * 0.6
    labels = torch.cat([torch.randint(0, 3, (5, 6, 1), generator=g).float(), lo,
                        (lo + 0.05 + torch.rand(5, 6, 2, generator=g) * 0.4).clamp(max=1)], 2)
    labels[torch.rand(5, 6, generator=g) < 0.5] = -1.0  # padding rows anywhere, not only at the end
    labels[3] = -1.0  # an image without boxes: all background
    batch = multibox_target(anchors, labels)
    for i in range(5):
        alone = multibox_target(anchors, labels[i][labels[i, :, 0] >= 0][None])
        for a, b in zip(batch, alone):
            assert torch.equal(a[i], b[0])
    assert (batch[2][3] == 0).all() and (batch[1][3] == 0).all()


# -- the mAP metric --------------------------------------------------------------------------------


def reference_map(dets, gts, num_classes, iou_threshold=0.5):
    """The per-detection loop the metric replaced: every detection of a class over all images,
    ranked by score, each matched greedily to the best-overlapping box of its image (VOC devkit)."""
    aps = []
    for cls in range(num_classes):
        records = sorted([(float(r[1]), i, r[2:6]) for i, d in enumerate(dets) for r in d if r[0] == cls],
                         key=lambda r: -r[0])
        used = [set() for _ in gts]
        tp = np.zeros(len(records))
        for k, (_, i, box) in enumerate(records):
            g = gts[i][gts[i][:, 0] == cls, 1:]
            if len(g):
                iou = box_iou(box[None], g)[0]
                j = int(torch.argmax(iou))
                if iou[j] >= iou_threshold and j not in used[i]:
                    tp[k] = 1
                    used[i].add(j)
        aps.append(average_precision(tp, sum(int((g[:, 0] == cls).sum()) for g in gts))[0])
    return aps


def padded(gts: list[torch.Tensor]) -> torch.Tensor:
    out = torch.full((len(gts), max(len(g) for g in gts), 5), -1.0)
    for i, g in enumerate(gts):
        out[i, :len(g)] = g
    return out


# test_d2l_detection's duplicate case: class 0 a TP then a duplicate FP, class 1 an FP then a TP
GTS = [torch.tensor([[0, 0.1, 0.1, 0.5, 0.5]]), torch.tensor([[1, 0.2, 0.2, 0.8, 0.8]])]
DETS = [torch.tensor([[0, 0.9, 0.1, 0.1, 0.5, 0.5], [0, 0.8, 0.12, 0.1, 0.5, 0.5]]),
        torch.tensor([[1, 0.7, 0.5, 0.5, 0.9, 0.9], [1, 0.6, 0.2, 0.2, 0.8, 0.8]])]


def test_detection_ap_metric_on_the_hand_computed_case():
    m = DetectionAP(3)  # class 2 has no boxes: left out of the mean
    m.update(DETS, padded(GTS))
    assert float(m.compute()) == pytest.approx(0.75)
    per_class = DetectionAP(3, per_class=True)
    per_class.update(DETS, padded(GTS))
    ap = per_class.compute()
    assert ap[:2].tolist() == pytest.approx([1.0, 0.5]) and math.isnan(ap[2])
    # batch by batch, an image at a time, gives the same
    m = DetectionAP(3)
    for d, g in zip(DETS, GTS):
        m.update([d], g[None])
    assert float(m.compute()) == pytest.approx(0.75)
    # a detection of a class the image has no box of is a false positive; a missed box lowers recall
    m = DetectionAP(2, per_class=True)
    m.update([torch.tensor([[1, 0.9, 0.1, 0.1, 0.5, 0.5]]), torch.zeros(0, 6)], padded(GTS))
    assert m.compute().tolist() == [0.0, 0.0]


def test_detection_ap_matches_the_reference_on_random_detections():
    g = torch.Generator().manual_seed(0)
    gts, dets = [], []
    for _ in range(12):
        lo = torch.rand(4, 2, generator=g) * 0.6
        n = int(torch.randint(1, 5, (1,), generator=g))  # 1..4 boxes
        gt = torch.cat([torch.randint(0, 3, (4, 1), generator=g).float(), lo, lo + 0.3], 1)[:n]
        jitter = (torch.rand(8, 4, generator=g) - 0.5) * 0.2
        boxes = gt[torch.randint(0, len(gt), (8,), generator=g), 1:] + jitter  # near the true boxes
        cls = torch.randint(0, 3, (8, 1), generator=g).float()
        score = (torch.rand(8, 1, generator=g) * 4).round() / 4  # ties across and within images
        gts.append(gt)
        dets.append(torch.cat([cls, score, boxes], 1))
    expected = reference_map(dets, gts, 3)
    m = DetectionAP(3, per_class=True)
    for i in range(0, 12, 5):  # uneven batches
        m.update(dets[i:i + 5], padded(gts[i:i + 5]))
    np.testing.assert_allclose(m.compute().numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(mean_average_precision(dets, gts, 3)["ap"], expected, rtol=1e-6)
    assert 0.1 < np.mean(expected) < 0.9  # a case with both hits and misses


# -- the [optim] section -------------------------------------------------------------------------


@pytest.mark.parametrize("name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                       ("sgd", torch.optim.SGD)])
def test_optim_name_builds_that_optimizer(name, cls):
    from practicum.config import load_experiment
    from practicum.train.optim import build_training

    cfg = load_experiment("detect-fruit", [f"optim.name={name}"])
    opt, sched = build_training(cfg.optim, torch.nn.Linear(2, 2).parameters(), 10, cfg.train.epochs)
    assert type(opt) is cls  # "adam" was AdamW before version 2
    assert opt.param_groups[0]["weight_decay"] == 5e-4 and opt.param_groups[0]["lr"] == 1e-3
    for _ in range(10 * cfg.train.epochs - 1):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # the entry's cosine ends at 0


def test_entry_names_adamw_and_unknown_names_are_config_errors():
    from practicum.config import load_experiment
    from practicum.errors import UsageError

    assert load_experiment("detect-fruit").optim.name == "adamw"
    with pytest.raises(UsageError, match="unknown optimizer .adamm."):
        load_experiment("detect-fruit", ["optim.name=adamm"])
    with pytest.raises(UsageError, match="train.loss"):
        load_experiment("detect-fruit", ["train.loss=focal"])
    with pytest.raises(UsageError, match="best_metric"):
        load_experiment("detect-fruit", ["train.best_metric=test/map"])
    with pytest.raises(UsageError, match="needs a validation split"):  # at load, before any run exists
        load_experiment("detect-fruit", ["data.val_size=0"])
    assert load_experiment("detect-fruit", ["data.val_size=0", "train.best_metric="]).train.best_metric is None


# -- processes: kill -9 and resume, DDP ---------------------------------------------------------------


# 56 training images (64 held out by train_limit, 8 of them for val), batch 4: 14 steps per epoch,
# 2 epochs, a checkpoint every 2 steps and a validation mAP every 5.
RESUME_ARGS = ["run", "detect-fruit", "--quick", "--no-report", "-o", "data.train_limit=64", "-o", "data.val_size=8",
               "-o", "train.checkpoint_steps=2", "-o", "train.log_steps=1", "-o", "train.eval_steps=5",
               "-o", "train.threads=1"]


def metric_lines(run_dir: Path) -> list[tuple]:
    return [(r["step"], r["split"], r["name"], r["value"])
            for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


def test_detection_killed_mid_epoch_resumes_bit_identical(cli, home, tmp_path, monkeypatch):
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "ref"))
    assert cli(*RESUME_ARGS)[0] == 0
    monkeypatch.setenv("PRACTICUM_HOME", str(home))
    (ref_dir,) = (tmp_path / "ref").glob("detect-fruit/*/")

    env = one_thread_env()
    ck = kill_when(RESUME_ARGS, home, "detect-fruit/*/checkpoints/last.pt",
                   lambda ck: ck["step"] >= 4 and ck["position"] > 0, env)
    assert ck is not None and 0 < ck["step"] < 28 and ck["position"] > 0, "the kill must land mid-epoch"
    assert [r["status"] for r in runs(env)] == ["interrupted"]

    out = practicum(*RESUME_ARGS, env=env)
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stderr
    (record,) = runs(env)
    run_dir = Path(record["dir"])
    a = torch.load(ref_dir / "model.pt", weights_only=True)["model"]
    b = torch.load(run_dir / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert metric_lines(ref_dir) == metric_lines(run_dir)
    assert ("val", "map") in {(s, n) for _, s, n, _ in metric_lines(run_dir)}
    ref_summary = json.loads((ref_dir / "summary.json").read_text())
    assert {k: v for k, v in ref_summary.items() if k != "train/seconds_per_epoch"} == \
           {k: v for k, v in record["summary"].items() if k != "train/seconds_per_epoch"}
    with np.load(ref_dir / "detections.npz") as z1, np.load(run_dir / "detections.npz") as z2:
        assert np.array_equal(z1["dets"], z2["dets"])


def test_two_processes_train_one_detection_run(cli, home, tmp_path, monkeypatch):
    env = one_thread_env()
    out = practicum("run", "detect-fruit", "--quick", "--no-report", "--nproc", "2", env=env)
    assert out.returncode == 0, out.stderr
    assert "on 2 processes" in out.stderr
    (record,) = runs(env)
    assert record["status"] == "finished" and record["summary"]["train/processes"] == 2
    assert len(list(home.glob("detect-fruit/*/"))) == 1
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "single"))
    assert cli("run", "detect-fruit", "--quick", "--no-report")[0] == 0
    (one,) = json.loads(cli("runs", "--json")[1])
    two, single = record["summary"], one["summary"]
    assert two["train/steps"] == single["train/steps"]
    assert 0 <= two["test/map"] <= 1 and math.isfinite(two["val/map"])
    assert abs(two["train/loss"] - single["train/loss"]) < 0.25 * single["train/loss"]
