"""PASCAL-VOC box annotations and their images, read safely.

One XML file per image (``<object><name>apple</name><bndbox><xmin>..``). XML is parsed with
``defusedxml``, so a file carrying a DTD, entity definitions or external references is refused
rather than expanded; a malformed file, a missing field, an unknown class or an inverted box is a
``PracticumError`` naming the file. Images are decoded with Pillow whatever their extension says
(some ``.jpg`` files in the fruit set are PNGs, a few with an alpha channel): transparency is
composited onto white and the result converted to RGB.

The image's size is taken from the decoded image, not from the XML's ``<size>`` (which is 0 x 0
in the PNG files of the fruit set).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from practicum.errors import PracticumError

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
