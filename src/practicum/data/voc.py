"""PASCAL-VOC data, all in one place: safe XML and image decoding, the multi-label layouts, and
the detection tensors.

Annotations: one XML file per image (``<object><name>apple</name><bndbox><xmin>..``), parsed with
``defusedxml``, so a file carrying a DTD, entity definitions or external references is refused
rather than expanded; a malformed file, a missing field, an unknown class or an inverted box is a
``PracticumError`` naming the file. Images are decoded with Pillow whatever their extension says
(some ``.jpg`` files in the fruit set are PNGs, a few with an alpha channel): transparency is
composited onto white and the result converted to RGB. The image's size is taken from the decoded
image, not from the XML's ``<size>`` (which is 0 x 0 in the PNG files of the fruit set).

Multi-label sets (practicals/multilabel.py): three layouts, each read into the same list of
``Item(path, labels)``:

    voc     PASCAL VOC: root/Annotations/<id>.xml, root/JPEGImages/<id>.jpg and, optionally,
            root/ImageSets/Main/<split>.txt listing the ids of a split (else every annotation)
    flat    one folder per split, an image beside its VOC XML (apple_1.jpg + apple_1.xml): the
            layout of fruit-detection-voc, the stand-in for seed 000's Tiny-VOC
    labels  seed 000's label file: one row per image, ``<id>,<class>,<class>,...`` (``00000,0,1``,
            ``00001,4``; a line starting with ``#`` is a comment), images in a folder as <id>.<ext>

An image's labels are the distinct classes of its objects. ``decode`` resizes every image once to
S x S and stacks them: (N, 3, S, S) uint8, 300 fruit images at 64 px are 3.7 MB. Augmentation then
runs batched on that tensor (data/augment.py).

Detection sets (practicals/detection.py): ``load_boxes`` decodes a split of a registered flat set
into a ``TensorSet`` whose ``y`` is the boxes, (N, M, 5) rows ``(class, x1, y1, x2, y2)`` in
coordinates normalised to the image (so resizing leaves them unchanged), padded to the most boxes
of an image with rows of -1.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from practicum.data.tensors import TensorSet
from practicum.errors import PracticumError


# ---------------------------------------------------------------------------------------------
# Annotations and images

FRUIT_CLASSES = ("apple", "banana", "orange")


@dataclass
class VocObject:
    name: str
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in pixels, as written
    difficult: bool


@dataclass
class VocAnnotation:
    path: Path
    filename: str
    size: tuple[int, int]  # (width, height) as written in <size>; may be (0, 0)
    objects: list[VocObject]


def _text(node, tag: str, path: Path, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise PracticumError(f"{path}: {where} has no <{tag}>")
    return child.text.strip()


def _number(node, tag: str, path: Path, where: str) -> float:
    text = _text(node, tag, path, where)
    try:
        return float(text)
    except ValueError:
        raise PracticumError(f"{path}: {where} <{tag}> is not a number: {text!r}") from None


def read_voc_xml(path: str | Path) -> VocAnnotation:
    """Parse one VOC annotation file (no class check: see ``boxes_and_labels``)."""
    path = Path(path)
    try:
        root = fromstring(path.read_bytes(), forbid_dtd=True)
    except DefusedXmlException as e:
        raise PracticumError(f"{path}: refused unsafe XML ({type(e).__name__}: {e})") from None
    except ET.ParseError as e:
        raise PracticumError(f"{path}: malformed XML ({e})") from None
    except OSError as e:
        raise PracticumError(f"{path}: cannot read ({e.strerror})") from None
    if root.tag != "annotation":
        raise PracticumError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    size = root.find("size")
    width = int(_number(size, "width", path, "<size>")) if size is not None else 0
    height = int(_number(size, "height", path, "<size>")) if size is not None else 0
    objects = []
    for i, obj in enumerate(root.findall("object")):
        where = f"object {i + 1}"
        name = _text(obj, "name", path, where)
        bb = obj.find("bndbox")
        if bb is None:
            raise PracticumError(f"{path}: {where} ({name}) has no <bndbox>")
        box = tuple(_number(bb, k, path, f"{where} ({name}) <bndbox>") for k in ("xmin", "ymin", "xmax", "ymax"))
        if not (box[0] < box[2] and box[1] < box[3]):
            raise PracticumError(f"{path}: {where} ({name}) has an empty or inverted box {box}")
        difficult = obj.find("difficult")
        objects.append(VocObject(name, box, difficult is not None and (difficult.text or "0").strip() == "1"))
    filename = root.findtext("filename", default="").strip()
    return VocAnnotation(path, filename, (width, height), objects)


def boxes_and_labels(ann: VocAnnotation, classes, image_size: tuple[int, int]):
    """(K, 4) float32 boxes normalised to 0..1 (clipped to the image) and (K,) int64 labels.

    ``image_size`` is (width, height) of the decoded image."""
    w, h = image_size
    boxes, labels = [], []
    for obj in ann.objects:
        if obj.name not in classes:
            raise PracticumError(f"{ann.path}: unknown class '{obj.name}'; expected one of {', '.join(classes)}")
        x1, y1, x2, y2 = obj.box
        boxes.append([x1 / w, y1 / h, x2 / w, y2 / h])
        labels.append(classes.index(obj.name))
    boxes = np.clip(np.array(boxes, np.float32).reshape(-1, 4), 0.0, 1.0)
    return boxes, np.array(labels, np.int64)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the image file as stored -- what VOC box coordinates refer to. Reads
    the header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except UnidentifiedImageError:
        raise PracticumError(f"{path}: not an image Pillow can decode") from None
    except OSError as e:
        raise PracticumError(f"{path}: cannot read image ({e})") from None


def load_image(path: str | Path, max_side: int | None = None):
    """An RGB ``PIL.Image``, whatever the file's real format; alpha is composited onto white.

    ``max_side``: a hint that the caller will shrink the image to about that size, which lets
    Pillow decode large JPEGs at 1/2, 1/4 or 1/8 scale (much faster); the result is never
    smaller than ``max_side`` on its shorter side unless the file is. The returned image is then
    smaller than the file: normalise box coordinates with ``image_size(path)``, not with it.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            if max_side and im.format == "JPEG":
                im.draft("RGB", (max_side, max_side))
            im.load()  # decode now, so a truncated file fails here, with its name
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(white, rgba).convert("RGB")
            return im.convert("RGB")
    except UnidentifiedImageError:
        raise PracticumError(f"{path}: not an image Pillow can decode") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
        raise PracticumError(f"{path}: corrupt image ({e})") from None


# ---------------------------------------------------------------------------------------------
# Multi-label layouts: which classes appear in each image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class Item:
    path: Path  # the image file
    labels: tuple[str, ...]  # distinct class names, sorted


def xml_labels(xml_path: Path) -> tuple[str, ...]:
    """The distinct object classes of one VOC annotation file."""
    return tuple(sorted({obj.name for obj in read_voc_xml(xml_path).objects}))


def find_image(folder: Path, stem: str, source: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / (stem + suffix), folder / (stem + suffix.upper())):
            if candidate.is_file():
                return candidate
    raise PracticumError(f"{source}: no image '{stem}.*' in {folder} (tried {', '.join(IMAGE_SUFFIXES)})")


def read_flat(folder: str | Path) -> list[Item]:
    """Every ``*.xml`` of ``folder`` with the image of the same name beside it, sorted by name."""
    folder = Path(folder)
    xmls = sorted(folder.glob("*.xml"))
    if not xmls:
        raise PracticumError(f"{folder}: no *.xml annotations")
    return [Item(find_image(folder, x.stem, x), xml_labels(x)) for x in xmls]


def read_voc(root: str | Path, split: str | None = None) -> list[Item]:
    """A PASCAL-VOC tree: the ids of ``ImageSets/Main/<split>.txt`` (every annotation when the
    split is None or there are no ImageSets), in listed order."""
    root = Path(root)
    ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
    if not ann_dir.is_dir():
        raise PracticumError(f"{root}: not a VOC tree (no Annotations/ folder)")
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if split is not None and split_file.is_file():
        ids = [line.split()[0] for line in split_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif split is not None and (root / "ImageSets" / "Main").is_dir():
        raise PracticumError(f"{root}: no split file ImageSets/Main/{split}.txt")
    else:
        ids = sorted(p.stem for p in ann_dir.glob("*.xml"))
    items = []
    for i in ids:
        xml = ann_dir / f"{i}.xml"
        if not xml.is_file():
            raise PracticumError(f"{split_file}: id '{i}' has no annotation {xml}")
        items.append(Item(find_image(img_dir, i, xml), xml_labels(xml)))
    return items


def read_label_file(path: str | Path, image_dir: str | Path, classes: list[str]) -> list[Item]:
    """Seed 000's ``<id>,<class index>,...`` rows; class indices refer to ``classes``."""
    path, image_dir = Path(path), Path(image_dir)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise PracticumError(f"{path}: cannot read label file ({e.strerror})") from None
    items = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        stem, *fields = [f.strip() for f in line.split(",")]
        try:
            idx = sorted({int(f) for f in fields if f})
        except ValueError:
            raise PracticumError(f"{path}:{n}: class indices must be integers: {line!r}") from None
        bad = [i for i in idx if not 0 <= i < len(classes)]
        if bad:
            raise PracticumError(f"{path}:{n}: class index {bad[0]} out of range 0..{len(classes) - 1}")
        items.append(Item(find_image(image_dir, stem, path), tuple(sorted(classes[i] for i in idx))))
    if not items:
        raise PracticumError(f"{path}: no label rows")
    return items


def write_label_file(path: str | Path, items: list[Item], classes: list[str]) -> None:
    """The inverse of ``read_label_file`` (ids are the image stems), e.g. to convert a VOC tree."""
    from practicum import fileio

    rows = ["#index,class0,class1,..."]
    rows += [",".join([it.path.stem, *(str(classes.index(c)) for c in it.labels)]) for it in items]
    fileio.write_text(Path(path), "\n".join(rows) + "\n")


def class_names(items: list[Item]) -> list[str]:
    """The sorted classes that occur in ``items``."""
    return sorted({c for it in items for c in it.labels})


def spread(items: list, limit: int | None) -> list:
    """``limit`` evenly spaced items (files sorted by name stay spread over the classes)."""
    if limit is None or limit >= len(items):
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def decode(items: list[Item], classes: list[str], size: int) -> TensorSet:
    """Decode and resize every image once: x (N, 3, size, size) uint8, y (N, K) int64 multi-hot."""
    from PIL import Image

    x = np.empty((len(items), size, size, 3), np.uint8)
    y = np.zeros((len(items), len(classes)), np.int64)
    for i, it in enumerate(items):
        image = load_image(it.path, max_side=size)  # RGB; large JPEGs decoded at 1/2..1/8 scale
        x[i] = np.asarray(image.resize((size, size), resample=Image.BICUBIC))
        for c in it.labels:
            if c not in classes:
                raise PracticumError(f"{it.path}: unknown class '{c}'; expected one of {', '.join(classes)}")
            y[i, classes.index(c)] = 1
    return TensorSet.from_arrays(x.transpose(0, 3, 1, 2), y, classes)


# ---------------------------------------------------------------------------------------------
# Detection tensors: every box of every image


def split_files(dataset: str, split: str, limit: int | None = None) -> list[str]:
    """The split's annotation files (paths inside the registered data set), sorted; ``limit``
    keeps evenly spaced ones, so a small slice still holds every class (the fruit files sort as
    apple_*, banana_*, mixed_*, orange_*)."""
    from practicum.data.cache import dataset_info

    xmls = sorted(f.path for f in dataset_info(dataset).files
                  if f.path.startswith(f"{split}/") and f.path.endswith(".xml"))
    if not xmls:
        raise PracticumError(f"dataset '{dataset}' has no {split}/*.xml annotations")
    return spread(xmls, limit)


def pad_boxes(rows: list[np.ndarray]) -> np.ndarray:
    """Per-image (K_i, 5) label rows -> (N, M, 5) float32, M = max K_i, padded with -1 rows."""
    padded = np.full((len(rows), max([len(r) for r in rows], default=0), 5), -1.0, np.float32)
    for i, r in enumerate(rows):
        padded[i, :len(r)] = r
    return padded


def load_boxes(dataset: str, split: str, size: int, limit: int | None = None,
               classes=FRUIT_CLASSES) -> tuple[TensorSet, list[str]]:
    """A flat VOC split decoded once: x (N, 3, size, size) uint8 and y (N, M, 5) float rows
    ``(class, x1, y1, x2, y2)`` normalised to 0..1 (padded with -1); and the images' paths."""
    from PIL import Image

    from practicum.data.cache import fetch_file

    xmls = split_files(dataset, split, limit)
    x = np.empty((len(xmls), size, size, 3), np.uint8)
    rows, names = [], []
    for i, xml_rel in enumerate(xmls):
        ann = read_voc_xml(fetch_file(dataset, xml_rel))
        image_rel = xml_rel[:-4] + ".jpg"
        image_path = fetch_file(dataset, image_rel)
        # boxes are in the stored image's pixels: normalise by its size, not by that of the
        # (draft-decoded, possibly 1/2 .. 1/8 scale) image load_image returns
        boxes, cls = boxes_and_labels(ann, classes, image_size(image_path))
        image = load_image(image_path, max_side=size)
        x[i] = np.asarray(image.resize((size, size), resample=Image.BICUBIC))  # boxes unchanged
        rows.append(np.concatenate([cls[:, None].astype(np.float32), boxes], 1))
        names.append(image_rel)
    return TensorSet.from_arrays(x.transpose(0, 3, 1, 2), pad_boxes(rows), list(classes)), names
