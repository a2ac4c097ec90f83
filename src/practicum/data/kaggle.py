"""Kaggle's CIFAR-10 competition layout (D2L 14.13): PNGs named by id, labels in a CSV.

    <root>/train/1.png ... 50000.png     32x32 RGB
    <root>/trainLabels.csv               id,label   (1,frog)
    <root>/test/1.png ... 300000.png     unlabelled; a submission is id,label for each

``load_kaggle_cifar10()`` reads the tiny copy d2l ships (dataset ``cifar10-kaggle-tiny``: 100
training images, 1 test image, read straight from its zips); ``load_kaggle_cifar10(root)`` reads
a folder in the layout above (the full competition data, unpacked from Kaggle's train.7z/test.7z).

The held-out split is D2L's ``reorg_train_valid``: per class, ``max(1, floor(min class count *
valid_ratio))`` images go to validation, the same number for every class; we take each class's
lowest ids (D2L takes them in directory-listing order, which is not reproducible).
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from practicum.data.cache import fetch_file
from practicum.errors import PracticumError

TINY = "cifar10-kaggle-tiny"


@dataclass
class KaggleCifar10:
    train_x: np.ndarray  # (N, 3, 32, 32) uint8
    train_y: np.ndarray  # (N,) int64 index into classes
    train_ids: np.ndarray  # (N,) int64 image ids, ascending
    test_x: np.ndarray  # (M, 3, 32, 32) uint8, unlabelled
    test_ids: np.ndarray  # (M,) int64
    classes: list[str]  # sorted label names, as D2L's ImageFolder sees them

    def split(self, valid_ratio: float) -> tuple[np.ndarray, np.ndarray]:
        """(train index, valid index) into train_x: D2L's per-class hold-out, lowest ids first."""
        counts = np.bincount(self.train_y, minlength=len(self.classes))
        n_valid = max(1, math.floor(counts[counts > 0].min() * valid_ratio))
        valid = np.concatenate([np.flatnonzero(self.train_y == c)[:n_valid] for c in range(len(self.classes))])
        valid = np.sort(valid)
        return np.setdiff1d(np.arange(len(self.train_y)), valid), valid


def _decode(png: bytes, where: str) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        arr = np.asarray(im.convert("RGB"))
    if arr.shape != (32, 32, 3):
        raise PracticumError(f"{where}: image is {arr.shape[1]}x{arr.shape[0]}, expected 32x32")
    return arr.transpose(2, 0, 1)  # (3, 32, 32)


def _images(named: dict[int, tuple[str, callable]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.array(sorted(named), dtype=np.int64)
    x = np.zeros((len(ids), 3, 32, 32), np.uint8)
    for i, k in enumerate(ids):
        where, read = named[k]
        x[i] = _decode(read(), where)
    return x, ids


def _png_id(name: str) -> int | None:
    stem, dot, ext = Path(name).name.rpartition(".")
    return int(stem) if dot and ext.lower() == "png" and stem.isdigit() else None


def _zip_images(path: Path) -> dict[int, tuple[str, callable]]:
    z = zipfile.ZipFile(path)
    return {k: (f"{path}:{n}", lambda n=n: z.read(n)) for n in z.namelist() if (k := _png_id(n)) is not None}


def _folder_images(folder: Path) -> dict[int, tuple[str, callable]]:
    if not folder.is_dir():
        raise PracticumError(f"Kaggle CIFAR-10: no folder {folder} (expected train/, test/, trainLabels.csv)")
    return {k: (str(p), p.read_bytes) for p in folder.iterdir() if (k := _png_id(p.name)) is not None}


def _labels(text: str, where: str) -> dict[int, str]:
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header != ["id", "label"]:
        raise PracticumError(f"{where}: header {header}, expected ['id', 'label']")
    return {int(i): label for i, label in rows}


def load_kaggle_cifar10(root: str | Path | None = None) -> KaggleCifar10:
    """The tiny d2l copy (``root=None``), or a Kaggle-layout folder."""
    if root is None:
        labels_zip = fetch_file(TINY, "trainLabels.csv.zip")
        labels = _labels(zipfile.ZipFile(labels_zip).read("trainLabels.csv").decode(), str(labels_zip))
        train, test = _zip_images(fetch_file(TINY, "train_tiny.zip")), _zip_images(fetch_file(TINY, "test_tiny.zip"))
    else:
        root = Path(root)
        csv_path = root / "trainLabels.csv"
        if not csv_path.is_file():
            raise PracticumError(f"Kaggle CIFAR-10: no {csv_path} (expected train/, test/, trainLabels.csv)")
        labels = _labels(csv_path.read_text(), str(csv_path))
        train, test = _folder_images(root / "train"), _folder_images(root / "test")
    missing = sorted(set(train) - set(labels))
    if missing:
        raise PracticumError(f"Kaggle CIFAR-10: training images {missing[:5]} have no row in trainLabels.csv")
    classes = sorted(set(labels.values()))
    train_x, train_ids = _images(train)
    test_x, test_ids = _images(test)
    train_y = np.array([classes.index(labels[k]) for k in train_ids], dtype=np.int64)
    return KaggleCifar10(train_x, train_y, train_ids, test_x, test_ids, classes)
