"""Multi-label image sets: which classes appear in each image, decoded once into a uint8 tensor.

Three layouts, each read into the same list of ``Item(path, labels)``:

    voc     PASCAL VOC: root/Annotations/<id>.xml, root/JPEGImages/<id>.jpg and, optionally,
            root/ImageSets/Main/<split>.txt listing the ids of a split (else every annotation)
    flat    one folder per split, an image beside its VOC XML (apple_1.jpg + apple_1.xml): the
            layout of fruit-detection-voc, the stand-in for seed 000's Tiny-VOC
    labels  seed 000's label file: one row per image, ``<id>,<class>,<class>,...`` (``00000,0,1``,
            ``00001,4``; a line starting with ``#`` is a comment), images in a folder as <id>.<ext>

An image's labels are the distinct classes of its objects (boxes are not needed here). XML goes
through ``detection.voc.read_voc_xml`` (defusedxml, DTDs refused, so an external entity is never
resolved) and images through ``detection.voc.load_image`` (Pillow, whatever the extension claims;
alpha composited onto white); either failing is a PracticumError naming the file.

``decode`` resizes every image once to S x S and stacks them: (N, 3, S, S) uint8, 300 fruit
images at 64 px are 3.7 MB. Augmentation then runs batched on that tensor (data/augment.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from practicum.data.tensors import TensorSet
from practicum.detection.voc import load_image, read_voc_xml
from practicum.errors import PracticumError

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
