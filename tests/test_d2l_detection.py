"""Detection from scratch: IoU, anchors, offsets, labelling, NMS, AP -- against hand-computed values;
the VOC loader on the real fruit files and on hostile ones; the detector end to end on a slice."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from practicum.detection import (assign_anchors, average_precision, box_iou, decode, encode,
                                 mean_average_precision, multibox_detection, multibox_prior,
                                 multibox_target, nms)
from practicum.data.voc import FRUIT_CLASSES, boxes_and_labels, load_image, read_voc_xml
from practicum.errors import PracticumError



# D2L 14.4's worked example: two ground-truth boxes (dog, cat) and five anchors
GT = torch.tensor([[0, 0.1, 0.08, 0.52, 0.92], [1, 0.55, 0.2, 0.9, 0.88]])
ANCHORS = torch.tensor([[0, 0.1, 0.2, 0.3], [0.15, 0.2, 0.4, 0.4], [0.63, 0.05, 0.88, 0.98],
                        [0.66, 0.45, 0.8, 0.8], [0.57, 0.3, 0.92, 0.9]])
# D2L 14.4's NMS example: four predicted boxes
PRED = torch.tensor([[0.1, 0.08, 0.52, 0.92], [0.08, 0.2, 0.56, 0.95], [0.15, 0.3, 0.62, 0.91],
                     [0.55, 0.2, 0.9, 0.88]])


# -- IoU -----------------------------------------------------------------------------------------


def test_iou_hand_cases():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[0.0, 0.0, 2.0, 2.0],   # same box: 1
                      [1.0, 0.0, 3.0, 2.0],   # half overlap: 2 / (4 + 4 - 2)
                      [2.0, 2.0, 3.0, 3.0],   # touching corner: 0
                      [5.0, 5.0, 6.0, 6.0],   # disjoint: 0
                      [0.5, 0.5, 1.5, 1.5]])  # inside: 1 / 4
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1.0, 1 / 3, 0.0, 0.0, 0.25]]))


def test_iou_of_d2l_boxes_by_hand():
    # boxes 0 and 1: intersection x 0.10..0.52, y 0.20..0.92 -> 0.42 * 0.72 = 0.3024
    # areas 0.42 * 0.84 = 0.3528 and 0.48 * 0.75 = 0.36 -> IoU 0.3024 / 0.4104
    # boxes 0 and 2: intersection 0.37 * 0.61 = 0.2257; area 2 = 0.47 * 0.61 = 0.2867
    iou = box_iou(PRED, PRED)
    assert float(iou[0, 1]) == pytest.approx(0.3024 / (0.3528 + 0.36 - 0.3024))
    assert float(iou[0, 2]) == pytest.approx(0.2257 / (0.3528 + 0.2867 - 0.2257))
    assert float(iou[0, 3]) == 0.0
    torch.testing.assert_close(iou, iou.T)
    torch.testing.assert_close(iou.diagonal(), torch.ones(4))


# -- anchors -------------------------------------------------------------------------------------


def test_anchors_of_one_pixel_by_hand():
    a = multibox_prior(1, 1, sizes=[0.5, 0.25], ratios=[1, 2])
    r2 = math.sqrt(2)
    expected = torch.tensor([
        [0.25, 0.25, 0.75, 0.75],  # size 0.5, ratio 1
        [0.375, 0.375, 0.625, 0.625],  # size 0.25, ratio 1
        [0.5 - 0.25 * r2, 0.5 - 0.25 / r2, 0.5 + 0.25 * r2, 0.5 + 0.25 / r2],  # size 0.5, ratio 2
    ])
    torch.testing.assert_close(a, expected)


def test_anchor_centres_of_a_2x2_map():
    a = multibox_prior(2, 2, sizes=[0.2], ratios=[1])  # one anchor per pixel, row-major
    centres = (a[:, :2] + a[:, 2:]) / 2
    torch.testing.assert_close(centres, torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]))
    torch.testing.assert_close(a[:, 2] - a[:, 0], torch.full((4,), 0.2))


def test_anchor_matches_d2l_printed_value():
    # D2L 14.4: a 561 x 728 image, sizes (0.75, 0.5, 0.25), ratios (1, 2, 0.5): 2,042,040 anchors,
    # and the first anchor centred on pixel (250, 250) is [0.06, 0.07, 0.63, 0.82]
    a = multibox_prior(561, 728, [0.75, 0.5, 0.25], [1, 2, 0.5])
    assert a.shape == (2042040, 4)
    torch.testing.assert_close(a.reshape(561, 728, 5, 4)[250, 250, 0],
                               torch.tensor([0.06, 0.07, 0.63, 0.82]), atol=0.005, rtol=0)


# -- offsets -------------------------------------------------------------------------------------


def test_encode_by_hand_and_round_trip():
    anchor = torch.tensor([[0.0, 0.0, 1.0, 1.0]])  # centre (0.5, 0.5), 1 x 1
    box = torch.tensor([[0.35, 0.25, 0.85, 0.75]])  # centre (0.6, 0.5), 0.5 x 0.5
    off = encode(anchor, box, eps=0.0)
    torch.testing.assert_close(off, torch.tensor([[10 * 0.1, 0.0, 5 * math.log(0.5), 5 * math.log(0.5)]]),
                               atol=1e-5, rtol=0)
    g = torch.Generator().manual_seed(0)
    lo = torch.rand(100, 2, generator=g, dtype=torch.float64) * 0.6
    anchors = torch.cat([lo, lo + 0.05 + torch.rand(100, 2, generator=g, dtype=torch.float64) * 0.3], 1)
    lo = torch.rand(100, 2, generator=g, dtype=torch.float64) * 0.6
    boxes = torch.cat([lo, lo + 0.05 + torch.rand(100, 2, generator=g, dtype=torch.float64) * 0.3], 1)
    torch.testing.assert_close(decode(anchors, encode(anchors, boxes, eps=0.0)), boxes, atol=1e-12, rtol=0)


def test_multibox_target_matches_d2l_worked_example():
    offsets, mask, cls = multibox_target(ANCHORS, GT[None])
    assert cls.tolist() == [[0, 1, 2, 0, 2]]
    assert mask.tolist() == [[0.0] * 4 + [1.0] * 8 + [0.0] * 4 + [1.0] * 4]
    expected = torch.tensor([0, 0, 0, 0, 1.40, 10.0, 2.59, 7.18, -1.20, 0.269, 1.68, -1.57,
                             0, 0, 0, 0, -0.571, -1.00, 4.17e-06, 0.626])
    torch.testing.assert_close(offsets[0], expected, atol=0.006, rtol=0)


def test_padding_rows_are_ignored_and_every_box_gets_an_anchor():
    padded = torch.cat([GT, torch.full((3, 5), -1.0)])[None]
    for a, b in zip(multibox_target(ANCHORS, padded), multibox_target(ANCHORS, GT[None])):
        assert torch.equal(a, b)
    # a box no anchor overlaps by 0.5 still gets its best anchor (the greedy pass)
    tiny = torch.tensor([[0.0, 0.0, 0.05, 0.05]])
    assert (assign_anchors(tiny, ANCHORS) >= 0).sum() == 1


# -- NMS and detection ---------------------------------------------------------------------------


def test_nms_hand_cases():
    dog = torch.tensor([0.9, 0.8, 0.7, 0.1])
    # IoU(0, 1) = 0.737 and IoU(0, 2) = 0.545: both above 0.5, box 3 overlaps nothing
    assert nms(PRED, dog, 0.5).tolist() == [0, 3]
    # at 0.7 box 2 (IoU 0.545 with box 0, 0.631 with box 1 -- but box 1 is gone) survives
    assert nms(PRED, dog, 0.7).tolist() == [0, 2, 3]
    assert nms(PRED, dog, 1.0).tolist() == [0, 1, 2, 3]
    assert nms(PRED[:0], dog[:0], 0.5).tolist() == []


def test_multibox_detection_per_class():
    probs = torch.tensor([[0.0] * 4, [0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9]]).T[None]  # (1, 4, 3)
    (dets,) = multibox_detection(probs, torch.zeros(1, 16), PRED, nms_threshold=0.5, score_threshold=0.05)
    # dog (class 0): box 0 (0.9) and box 3 (0.1); cat (class 1): box 3 (0.9) and box 2 (0.3);
    # cat boxes 1 and 0 overlap box 2 by 0.631 and 0.545 and are suppressed
    got = sorted((int(c), round(float(s), 2), tuple(round(float(v), 2) for v in b)) for c, s, *b in dets)
    assert got == sorted([(0, 0.9, (0.1, 0.08, 0.52, 0.92)), (0, 0.1, (0.55, 0.2, 0.9, 0.88)),
                          (1, 0.9, (0.55, 0.2, 0.9, 0.88)), (1, 0.3, (0.15, 0.3, 0.62, 0.91))])
    assert dets[:, 1].tolist() == sorted(dets[:, 1].tolist(), reverse=True)


# -- average precision ---------------------------------------------------------------------------


def test_average_precision_by_hand():
    # 2 true boxes; ranked TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    # envelope: 1 up to recall 1/2, then 2/3 -> AP = 0.5 * 1 + 0.5 * 2/3
    ap, recall, precision = average_precision(np.array([1, 0, 1]), 2)
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3)
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])
    assert average_precision(np.array([1, 1]), 2)[0] == pytest.approx(1.0)
    assert average_precision(np.array([]), 3)[0] == 0.0
    assert math.isnan(average_precision(np.array([0]), 0)[0])


def test_map_counts_duplicates_as_false_positives():
    gts = [torch.tensor([[0, 0.1, 0.1, 0.5, 0.5]]), torch.tensor([[1, 0.2, 0.2, 0.8, 0.8]])]
    dets = [torch.tensor([[0, 0.9, 0.1, 0.1, 0.5, 0.5],     # TP
                          [0, 0.8, 0.12, 0.1, 0.5, 0.5]]),  # same box again: FP
            torch.tensor([[1, 0.7, 0.5, 0.5, 0.9, 0.9],     # IoU 0.09 with the cat: FP
                          [1, 0.6, 0.2, 0.2, 0.8, 0.8]])]   # TP
    r = mean_average_precision(dets, gts, 2)
    assert r["ap"][0] == pytest.approx(1.0)  # the TP ranks first
    assert r["ap"][1] == pytest.approx(0.5)  # precision 1/2 at recall 1
    assert r["map"] == pytest.approx(0.75)


# -- the VOC loader on the real files ------------------------------------------------------------


@pytest.fixture
def fruit(data_env):
    from practicum.data.cache import fetch_file

    return lambda rel: fetch_file("fruit-detection-voc", rel)


def test_reads_a_mixed_image_with_three_classes(fruit):
    ann = read_voc_xml(fruit("train/mixed_1.xml"))
    assert [o.name for o in ann.objects] == ["orange", "apple", "banana"]
    assert ann.objects[0].box == (221, 83, 463, 338)
    image = load_image(fruit("train/mixed_1.jpg"))
    assert image.mode == "RGB" and image.size == (800, 564) == ann.size
    boxes, labels = boxes_and_labels(ann, FRUIT_CLASSES, image.size)
    assert labels.tolist() == [2, 0, 1]
    np.testing.assert_allclose(boxes[0], [221 / 800, 83 / 564, 463 / 800, 338 / 564], rtol=1e-6)


def test_png_with_alpha_named_jpg_becomes_rgb_on_white(fruit):
    from PIL import Image

    path = fruit("test/apple_79.jpg")  # a PNG, RGBA, whose transparent pixels hide black
    with Image.open(path) as raw:
        assert raw.format == "PNG" and raw.mode == "RGBA"
        rgba = np.asarray(raw)
    image = np.asarray(load_image(path))
    assert image.shape == rgba.shape[:2] + (3,)
    clear = rgba[..., 3] == 0
    assert clear.mean() > 0.3
    assert (image[clear] == 255).all()  # white, not the black a plain convert("RGB") gives
    assert (rgba[clear][:, :3] == 0).all(1).mean() > 0.9  # mostly black under the transparency
    ann = read_voc_xml(fruit("test/apple_79.xml"))
    assert ann.size == (0, 0)  # the XML's <size> is empty: the decoded size is used
    boxes, _ = boxes_and_labels(ann, FRUIT_CLASSES, (720, 720))
    assert (boxes >= 0).all() and (boxes <= 1).all()


def test_boxes_use_the_stored_size_when_a_large_jpeg_is_draft_decoded(fruit):
    """Pillow may decode a big JPEG at 1/2 .. 1/8 scale; the XML's pixels refer to the stored size."""
    from practicum.data.voc import image_size, load_boxes

    path = fruit("test/apple_90.jpg")  # a 1814 x 2000 JPEG
    assert load_image(path, max_side=64).size[0] < 1814 and image_size(path) == (1814, 2000)
    ann = read_voc_xml(fruit("test/apple_90.xml"))
    data, names = load_boxes("fruit-detection-voc", "test", 64)
    k = names.index("test/apple_90.jpg")
    x1, y1, x2, y2 = ann.objects[0].box
    torch.testing.assert_close(data.y[k, 0], torch.tensor([0, x1 / 1814, y1 / 2000, x2 / 1814, y2 / 2000]))
    assert data.x.shape == (60, 3, 64, 64) and data.x.dtype == torch.uint8
    assert data.y.shape[2] == 5 and (data.y[..., 0] >= 0).sum(1).min() >= 1  # every image has a box
    assert ((data.y[..., 0] < 0) == (data.y < 0).all(-1)).all()  # padding rows are -1 throughout


def test_palette_png_with_transparency(fruit):
    image = load_image(fruit("train/apple_37.jpg"))
    assert image.mode == "RGB" and image.size == (389, 352)


def _xml(tmp_path, body: str, name="bad.xml") -> Path:
    p = tmp_path / name
    p.write_text(body)
    return p


GOOD_OBJECT = ("<object><name>apple</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax>"
               "</bndbox></object>")


def test_malformed_xml_names_the_file(tmp_path):
    p = _xml(tmp_path, "<annotation><object><name>apple</name></annotation>")
    with pytest.raises(PracticumError, match=r"bad\.xml: malformed XML"):
        read_voc_xml(p)


def test_external_entity_is_refused(tmp_path):
    p = _xml(tmp_path, '<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
                       f"<annotation><filename>&xxe;</filename>{GOOD_OBJECT}</annotation>")
    with pytest.raises(PracticumError, match=r"bad\.xml: refused unsafe XML"):
        read_voc_xml(p)


def test_entity_expansion_is_refused(tmp_path):
    p = _xml(tmp_path, '<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>\n'
                       "<annotation><filename>&b;</filename></annotation>")
    with pytest.raises(PracticumError, match="refused unsafe XML"):
        read_voc_xml(p)


@pytest.mark.parametrize("body, message", [
    ("<annotation><object><name>apple</name></object></annotation>", r"object 1 \(apple\) has no <bndbox>"),
    ("<annotation><object><bndbox/></object></annotation>", "object 1 has no <name>"),
    ("<annotation><object><name>apple</name><bndbox><xmin>a</xmin><ymin>2</ymin><xmax>3</xmax>"
     "<ymax>4</ymax></bndbox></object></annotation>", "<xmin> is not a number: 'a'"),
    ("<annotation><object><name>apple</name><bndbox><xmin>9</xmin><ymin>2</ymin><xmax>3</xmax>"
     "<ymax>4</ymax></bndbox></object></annotation>", "empty or inverted box"),
    ("<catalog/>", "expected <annotation>"),
])
def test_invalid_annotations_name_the_file_and_the_problem(tmp_path, body, message):
    with pytest.raises(PracticumError, match=r"bad\.xml: .*" + message):
        read_voc_xml(_xml(tmp_path, body))


def test_unknown_class_names_the_file(tmp_path):
    ann = read_voc_xml(_xml(tmp_path, f"<annotation>{GOOD_OBJECT.replace('apple', 'pear')}</annotation>"))
    with pytest.raises(PracticumError, match=r"bad\.xml: unknown class 'pear'"):
        boxes_and_labels(ann, FRUIT_CLASSES, (100, 100))


def test_corrupt_images_name_the_file(tmp_path, fruit):
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(fruit("train/apple_2.jpg").read_bytes()[:2000])
    with pytest.raises(PracticumError, match=r"cut\.jpg: corrupt image"):
        load_image(truncated)
    text = tmp_path / "text.jpg"
    text.write_text("not an image")
    with pytest.raises(PracticumError, match=r"text\.jpg: not an image"):
        load_image(text)


# -- the detector --------------------------------------------------------------------------------


def test_tiny_ssd_shapes():
    from practicum.models.ssd import build_ssd

    model = build_ssd("tiny-ssd-128", 3, image_size=64)
    anchors, cls, box = model(torch.zeros(2, 3, 64, 64))
    # maps 8, 4, 2, 1, 1; 4 anchors per pixel
    n = (64 + 16 + 4 + 1 + 1) * 4
    assert anchors.shape == (n, 4) and cls.shape == (2, n, 4) and box.shape == (2, n * 4)


def test_flip_and_crop_keep_boxes_on_their_objects():
    from practicum.practicals.detection import Augment, augment_chain

    x = torch.zeros(1, 3, 32, 32)
    x[0, :, 8:16, 4:12] = 1.0  # an object at x 4..12, y 8..16 (pixels)
    labels = torch.tensor([[[1, 4 / 32, 8 / 32, 12 / 32, 16 / 32], [-1, -1, -1, -1, -1]]])
    flips = 0
    for seed in range(6):  # a seed may or may not flip: check whichever happened
        flipped, lb = augment_chain(Augment(flip=True, crop_min=1.0, jitter=0.0))(
            x, labels, torch.Generator().manual_seed(seed))
        if torch.equal(flipped, x.flip(-1)):
            flips += 1
            torch.testing.assert_close(lb[0, 0], torch.tensor([1, 20 / 32, 8 / 32, 28 / 32, 16 / 32]))
        else:
            assert torch.equal(flipped, x) and torch.equal(lb, labels)
        assert lb[0, 1].tolist() == [-1] * 5
    assert 0 < flips < 6
    for seed in range(5):  # a batch of 4 copies: every image gets its own crop
        out, lb = augment_chain(Augment(flip=False, crop_min=0.5, crop_prob=1.0, jitter=0.0))(
            x.expand(4, -1, -1, -1), labels.expand(4, -1, -1), torch.Generator().manual_seed(seed))
        for i in range(4):
            b = lb[i, 0]
            assert b[0] == 1 and (b[1:] >= 0).all() and (b[1:] <= 1).all()
            x1, y1, x2, y2 = (b[1:] * 32).tolist()
            inside = out[i, 0, int(y1) + 1: int(y2) - 1, int(x1) + 1: int(x2) - 1]
            assert inside.numel() == 0 or inside.mean() > 0.5  # the box still covers the bright square
        assert not torch.equal(out[0], out[1])


@pytest.mark.parametrize("kind", ["d2l", "ssd"])
def test_losses_are_finite_and_reach_every_head(kind):
    from practicum.models.ssd import build_ssd
    from practicum.practicals.detection import detection_loss

    model = build_ssd("tiny-ssd-128", 3, image_size=64)
    anchors, cls, box = model(torch.randn(2, 3, 64, 64))
    off, mask, cl = multibox_target(anchors, torch.stack([GT, GT]))
    c, b = detection_loss(cls, box, cl, off, mask, kind)
    (c + b).backward()
    assert math.isfinite(c.item()) and math.isfinite(b.item()) and b.item() > 0
    assert all(p.grad is not None for p in model.cls_heads.parameters())
    assert all(p.grad is not None for p in model.box_heads.parameters())


def test_detect_fruit_quick_end_to_end(cli, home):
    code, out, err = cli("run", "detect-fruit", "--quick")
    assert code == 0, err
    rec = json.loads(cli("runs", "--json")[1])[0]
    run_dir, summary = Path(rec["dir"]), rec["summary"]
    for c in FRUIT_CLASSES:
        assert 0.0 <= summary[f"test/ap_{c}"] <= 1.0
    assert 0.0 <= summary["test/map"] <= 1.0
    table = json.loads((run_dir / "tables" / "ap_per_class.json").read_text())
    assert [r[0] for r in table["rows"]] == [*FRUIT_CLASSES, "mean (mAP)"]
    assert (run_dir / "figures" / "detections_test.png").stat().st_size > 10_000
    assert (run_dir / "figures" / "precision_recall.png").is_file()
    assert (run_dir / "report.html").read_text().count("data:image/png;base64,") >= 3
    with np.load(run_dir / "detections.npz") as z:
        assert z["truth"].shape[1] == 6 and z["dets"].shape[1] == 7 and len(z["names"]) == 8
    assert (run_dir / "model.pt").is_file() and (run_dir / "checkpoints" / "best.pt").is_file()
    # the best checkpoint is chosen on the held-out training images, the test split measured once
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {("val", "map"), ("train", "class_loss"), ("train", "box_loss"), ("test", "map")} <= \
           {(r["split"], r["name"]) for r in lines}
    assert [r["name"] for r in lines if r["split"] == "test"] == ["loss", "map"]
    assert summary["best/val/map"] == max(r["value"] for r in lines if (r["split"], r["name"]) == ("val", "map"))
