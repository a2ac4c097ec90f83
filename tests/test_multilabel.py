"""Multi-label classification (seed 000 §4, Tiny-VOC stand-in): loaders for the three layouts,
XML safety, metrics against hand-computed values, and every catalog entry end to end (--quick)."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from practicum.data import voc
from practicum.errors import PracticumError
from practicum.metrics.multilabel import metric_objects, per_class, pr_curves, summarize

FRUIT = ("apple_1", "banana_1", "mixed_1")  # apple_1.jpg is really an RGBA PNG; mixed_1 holds all three


@pytest.fixture
def fruit(data_mirror):
    return data_mirror / "fruit-detection-voc" / "train"


def flat_folder(fruit, dest: Path, stems=FRUIT) -> Path:
    dest.mkdir(parents=True)
    for s in stems:
        shutil.copy(fruit / f"{s}.jpg", dest)
        shutil.copy(fruit / f"{s}.xml", dest)
    return dest


def voc_tree(fruit, root: Path) -> Path:
    """root/Annotations, JPEGImages, ImageSets/Main/{train,test}.txt with VOC-style ids."""
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    for i, s in enumerate(FRUIT):
        shutil.copy(fruit / f"{s}.xml", root / "Annotations" / f"2008_{i:06d}.xml")
        shutil.copy(fruit / f"{s}.jpg", root / "JPEGImages" / f"2008_{i:06d}.jpg")
    (root / "ImageSets/Main/train.txt").write_text("2008_000002\n2008_000000\n")
    (root / "ImageSets/Main/test.txt").write_text("2008_000001\n")
    return root


# -- loaders ---------------------------------------------------------------------------------


def test_flat_layout_reads_labels_and_decodes_png_with_alpha(fruit, tmp_path):
    items = voc.read_flat(flat_folder(fruit, tmp_path / "train"))
    assert [it.path.name for it in items] == ["apple_1.jpg", "banana_1.jpg", "mixed_1.jpg"]
    assert [it.labels for it in items] == [("apple",), ("banana",), ("apple", "banana", "orange")]
    classes = voc.class_names(items)
    assert classes == ["apple", "banana", "orange"]
    data = voc.decode(items, classes, 32)
    assert data.x.shape == (3, 3, 32, 32) and data.x.dtype == torch.uint8
    assert data.y.tolist() == [[1, 0, 0], [0, 1, 0], [1, 1, 1]]
    from PIL import Image

    with Image.open(items[0].path) as im:  # the RGBA PNG behind a .jpg name
        assert im.format == "PNG" and im.mode == "RGBA"
        alpha = np.asarray(im.convert("RGBA").resize((32, 32)))[..., 3]
    if (alpha == 0).any():  # transparent pixels were composited onto white
        assert data.x[0].permute(1, 2, 0).numpy()[alpha == 0].mean() > 240


def test_voc_layout_follows_imagesets(fruit, tmp_path):
    root = voc_tree(fruit, tmp_path / "VOC")
    train = voc.read_voc(root, "train")
    assert [it.path.name for it in train] == ["2008_000002.jpg", "2008_000000.jpg"]
    assert [it.labels for it in train] == [("apple", "banana", "orange"), ("apple",)]
    assert [it.labels for it in voc.read_voc(root, "test")] == [("banana",)]
    assert len(voc.read_voc(root, None)) == 3  # no split: every annotation
    with pytest.raises(PracticumError, match="ImageSets/Main/val.txt"):
        voc.read_voc(root, "val")
    shutil.rmtree(root / "ImageSets")
    assert len(voc.read_voc(root, "train")) == 3  # no ImageSets at all: every annotation
    (root / "JPEGImages" / "2008_000001.jpg").unlink()
    with pytest.raises(PracticumError, match="2008_000001"):
        voc.read_voc(root, None)


def test_label_file_format_round_trip_and_seed_rows(fruit, tmp_path):
    images = tmp_path / "labels" / "images"
    images.mkdir(parents=True)
    for i, s in enumerate(FRUIT):
        shutil.copy(fruit / f"{s}.jpg", images / f"{i:05d}.jpg")
    classes = ["car", "plane", "cat", "people", "bird"]  # seed 000's five classes
    (tmp_path / "labels" / "train.txt").write_text("#index,class0,class1,...\n00000,0,1\n00001,4\n\n00002,1\n")
    items = voc.read_label_file(tmp_path / "labels" / "train.txt", images, classes)
    assert [it.labels for it in items] == [("car", "plane"), ("bird",), ("plane",)]
    data = voc.decode(items, classes, 16)
    assert data.y.tolist() == [[1, 1, 0, 0, 0], [0, 0, 0, 0, 1], [0, 1, 0, 0, 0]]
    voc.write_label_file(tmp_path / "copy.txt", items, classes)
    assert (tmp_path / "copy.txt").read_text().splitlines()[1:] == ["00000,0,1", "00001,4", "00002,1"]
    assert [it.labels for it in voc.read_label_file(tmp_path / "copy.txt", images, classes)] == \
        [it.labels for it in items]
    bad = tmp_path / "bad.txt"
    bad.write_text("00000,0\n00001,7\n")
    with pytest.raises(PracticumError, match=r"bad.txt:2: class index 7 out of range"):
        voc.read_label_file(bad, images, classes)
    bad.write_text("00000,x\n")
    with pytest.raises(PracticumError, match=r"bad.txt:1: class indices must be integers"):
        voc.read_label_file(bad, images, classes)
    bad.write_text("00009,1\n")
    with pytest.raises(PracticumError, match="no image '00009"):
        voc.read_label_file(bad, images, classes)


def test_corrupt_image_and_malformed_xml_name_the_file(fruit, tmp_path):
    folder = flat_folder(fruit, tmp_path / "f", stems=("banana_1",))
    (folder / "banana_1.jpg").write_bytes((fruit / "banana_1.jpg").read_bytes()[:300])  # truncated JPEG
    with pytest.raises(PracticumError, match="banana_1.jpg"):
        voc.decode(voc.read_flat(folder), ["banana"], 16)
    (folder / "banana_1.jpg").write_bytes(b"not an image at all")
    with pytest.raises(PracticumError, match="banana_1.jpg: not an image"):
        voc.decode(voc.read_flat(folder), ["banana"], 16)
    (folder / "banana_1.xml").write_text("<annotation><object><name>banana</name>")
    with pytest.raises(PracticumError, match="banana_1.xml: malformed XML"):
        voc.read_flat(folder)


def test_external_entity_document_is_refused(fruit, tmp_path):
    folder = flat_folder(fruit, tmp_path / "f", stems=("banana_1",))
    secret = tmp_path / "secret.txt"
    secret.write_text("apple")
    (folder / "banana_1.xml").write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        "<annotation><object><name>&xxe;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
        "<ymax>5</ymax></bndbox></object></annotation>")
    with pytest.raises(PracticumError, match="banana_1.xml: refused unsafe XML"):
        voc.read_flat(folder)


def test_unknown_class_is_named(fruit, tmp_path):
    items = voc.read_flat(flat_folder(fruit, tmp_path / "f", stems=("mixed_1",)))
    with pytest.raises(PracticumError, match="unknown class 'orange'"):
        voc.decode(items, ["apple", "banana"], 16)


# -- metrics ---------------------------------------------------------------------------------

PROBS = torch.tensor([[0.9, 0.2, 0.6],
                      [0.05, 0.7, 0.1],
                      [0.8, 0.6, 0.3],
                      [0.1, 0.3, 0.9]])
TARGET = torch.tensor([[1, 0, 1],
                       [1, 1, 0],
                       [1, 0, 0],
                       [0, 0, 1]])
# at 0.5: predictions [[1,0,1],[0,1,0],[1,1,0],[0,0,1]] -- row 1 misses class 0, row 2 adds class 1
HAND = {
    "accuracy": 2 / 4,  # rows 0 and 3 exactly right
    "label_accuracy": 10 / 12,
    "precision": 5 / 6, "recall": 5 / 6, "f1": 5 / 6,  # TP 5, FP 1, FN 1
    "precision_macro": (1 + 0.5 + 1) / 3,  # per class P: 2/2, 1/2, 2/2
    "recall_macro": (2 / 3 + 1 + 1) / 3,  # per class R: 2/3, 1/1, 2/2
    "f1_macro": (0.8 + 2 / 3 + 1) / 3,
    # class 0 ranked 0.9+ 0.8+ 0.1- 0.05+: AP = (1 + 1 + 3/4) / 3; classes 1, 2 ranked perfectly
    "map": ((1 + 1 + 0.75) / 3 + 1 + 1) / 3,
}


def test_metrics_match_hand_computed_values():
    got = summarize(PROBS, TARGET, threshold=0.5)
    for name, value in HAND.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name
    rows = per_class(PROBS, TARGET, ["a", "b", "c"])
    assert rows[0] == ["a", 3, 1.0, round(2 / 3, 4), 0.8, round(2.75 / 3, 4)]
    assert rows[1] == ["b", 1, 0.5, 1.0, round(2 / 3, 4), 1.0]


def test_metric_objects_take_logits_even_small_ones():
    """torchmetrics would read logits inside [0, 1] as probabilities; ours always apply the sigmoid."""
    logits = torch.logit(PROBS)
    for name, m in metric_objects(3).items():
        m.update(logits[:2], TARGET[:2])
        m.update(logits[2:], TARGET[2:].float())  # float targets (as a loader may give) work too
        assert float(m.compute()) == pytest.approx(HAND[name], abs=1e-6), name
    tiny = torch.full((2, 3), 0.3)  # logits in [0, 1]: probability 0.57 -> predicted positive
    m = metric_objects(3)["recall"]
    m.update(tiny, torch.ones(2, 3))
    assert float(m.compute()) == 1.0


def test_pr_curves_per_class_and_micro():
    curves = pr_curves(PROBS, TARGET)
    assert set(curves) == {"0", "1", "2", "micro"}
    p, r = curves["1"]
    assert float(p[0]) == pytest.approx(0.25) and float(r[0]) == 1.0  # every sample predicted positive
    mp, mr = curves["micro"]
    assert float(mp[-1]) == 1.0 and float(mr[-1]) == 0.0


def test_multilabel_task_loss_takes_soft_targets():
    from practicum.train.objective import multilabel

    objective = multilabel(3)
    identity = lambda x: x  # noqa: E731 - the "network" returns its input as logits
    step = objective.step(identity, (torch.zeros(2, 3), torch.full((2, 3), 0.5)))
    assert float(step.loss) == pytest.approx(np.log(2), abs=1e-6) and step.n == 2
    step = objective.step(identity, (torch.tensor([[2.0, -1, 3], [1, 1, 1]]), torch.tensor([[1, 0, 1], [1, 0, 1]])))
    assert int(step.sums["accuracy"]) == 1  # exact matches


# -- catalog entries end to end ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["voc-lenet", "voc-vgg11", "voc-resnet18", "voc-vit"])
def test_catalog_entry_quick_end_to_end(cli, home, name):
    code, _, err = cli("run", name, "--quick")
    assert code == 0, err
    rec = json.loads(cli("runs", "--json")[1])[0]
    run_dir, summary = Path(rec["dir"]), rec["summary"]
    for key in ("accuracy", "label_accuracy", "precision", "recall", "f1", "f1_macro", "map"):
        assert 0.0 <= summary[f"test/{key}"] <= 1.0 and 0.0 <= summary[f"val/{key}"] <= 1.0
    assert summary["model/parameters"] > 0 and summary["data/image_size"] == 32
    table = json.loads((run_dir / "tables" / "metrics.json").read_text())
    assert [r[1] for r in table["rows"]] == ["val", "test"]
    assert table["rows"][1][7] == pytest.approx(summary["test/f1"], abs=1e-4)
    assert [r[0] for r in json.loads((run_dir / "tables" / "per_class.json").read_text())["rows"]] == \
        ["apple", "banana", "orange"]
    with np.load(run_dir / "multilabel_predictions.npz") as z:
        assert z["scores"].shape == z["y_true"].shape == (12, 3) and list(z["classes"]) == ["apple", "banana", "orange"]
    assert (run_dir / "figures" / "pr_curves.png").stat().st_size > 5_000
    assert (run_dir / "report.html").read_text().count("data:image/png;base64,") >= 2


def test_image_size_override_reaches_the_model(cli, home):
    code, _, err = cli("run", "voc-vit", "--quick", "-o", "data.image_size=48", "-o", "train.epochs=1")
    assert code == 0, err
    assert json.loads(cli("runs", "--json")[1])[0]["summary"]["data/image_size"] == 48


@pytest.mark.parametrize("study,points", [("study-voc-models", 4), ("study-voc-augment", 11)])
def test_studies_quick_write_the_table_and_pr_figures(cli, home, study, points):
    code, _, err = cli("sweep", study, "--quick", "--seeds", "1")
    assert code == 0, err
    study_dir = home / "studies" / f"{study}-quick"
    with open(study_dir / "results.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 1 + points and any("test/f1" in c for c in rows[0])
    assert (study_dir / "figures" / "pr_overlay.png").is_file()
    assert len(list((study_dir / "figures").glob("pr_[0-9]*.png"))) == points
    assert "Precision-recall (test)" in (study_dir / "report.md").read_text()
