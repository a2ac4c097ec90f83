"""Kaggle CIFAR-10: the folder/zip loader on the real tiny data, D2L's per-class split, the
batched flip, and the cifar10-kaggle entry end to end with its submission.csv."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from practicum.data.kaggle import load_kaggle_cifar10
from practicum.data.tensors import Loader, Pipeline, TensorSet
from practicum.errors import PracticumError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]



@pytest.fixture
def tiny(data_env):
    return load_kaggle_cifar10()


def test_tiny_set_from_the_mirror(tiny):
    assert tiny.train_x.shape == (100, 3, 32, 32) and tiny.train_x.dtype == np.uint8
    assert tiny.test_x.shape == (1, 3, 32, 32) and tiny.test_ids.tolist() == [1]
    assert tiny.classes == CLASSES  # sorted names, as ImageFolder orders them in D2L
    ids = tiny.train_ids.tolist()  # d2l picked 10 per class: ids 1..193 with gaps
    assert ids == sorted(ids) and ids[:5] == [1, 2, 3, 4, 5] and ids[-1] == 193
    assert np.bincount(tiny.train_y).tolist() == [10] * 10
    assert CLASSES[tiny.train_y[0]] == "frog"  # trainLabels.csv: 1,frog
    assert 40 < tiny.train_x.mean() < 200  # real pictures, not zeros


def test_split_is_d2ls_per_class_hold_out(tiny):
    train, valid = tiny.split(0.1)
    assert len(train) == 90 and len(valid) == 10  # max(1, floor(10 * 0.1)) = 1 per class
    assert sorted(tiny.train_y[valid].tolist()) == list(range(10))
    assert not set(train) & set(valid)
    for c in range(10):  # each class's lowest id is held out
        assert valid[tiny.train_y[valid] == c][0] == np.flatnonzero(tiny.train_y == c)[0]
    assert len(tiny.split(0.3)[1]) == 30


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_kaggle_folder_layout(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    images = {i: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in (1, 2, 10)}
    for i, img in images.items():
        (tmp_path / "train" / f"{i}.png").write_bytes(_png(img))
    (tmp_path / "test" / "7.png").write_bytes(_png(images[1]))
    (tmp_path / "trainLabels.csv").write_text("id,label\n1,cat\n2,dog\n10,cat\n")
    d = load_kaggle_cifar10(tmp_path)
    assert d.classes == ["cat", "dog"] and d.train_ids.tolist() == [1, 2, 10]  # numeric order, not 1, 10, 2
    assert d.train_y.tolist() == [0, 1, 0]
    assert np.array_equal(d.train_x[2], images[10].transpose(2, 0, 1))
    assert d.test_ids.tolist() == [7] and np.array_equal(d.test_x[0], d.train_x[0])
    (tmp_path / "trainLabels.csv").write_text("id,label\n1,cat\n")
    with pytest.raises(PracticumError, match=r"training images \[2, 10\] have no row"):
        load_kaggle_cifar10(tmp_path)
    with pytest.raises(PracticumError, match="trainLabels.csv"):
        load_kaggle_cifar10(tmp_path / "nowhere")


def test_flip_is_batched_and_replayable():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    data = TensorSet(x, torch.tensor([0, 1]), ["a", "b"])
    pipe = Pipeline(flip=True)

    def batches(seed):
        loader = Loader(data, 2, pipe, train=True, generator=torch.Generator().manual_seed(seed))
        order = loader.order()
        return [loader.batch(order, 0)[0] for _ in range(8)], order

    (out, order), (again, _) = batches(0), batches(0)
    assert all(torch.equal(a, b) for a, b in zip(out, again))  # the generator decides
    src = x[order].float() / 255
    for b in out:
        for i in range(2):  # each image is itself or its mirror image
            assert torch.equal(b[i], src[i]) or torch.equal(b[i], src[i].flip(-1))
    assert any(not torch.equal(b, src) for b in out)  # some flip happened
    assert torch.equal(pipe(x, train=False), x.float() / 255)  # never at evaluation


def test_entry_trains_and_writes_a_submission(cli):
    code, _, err = cli("run", "cifar10-kaggle", "--quick", "--no-report")
    assert code == 0, err
    (record,) = json.loads(cli("runs", "--json")[1])
    s = record["summary"]
    assert "val/accuracy" in s and "train/accuracy" in s and s["model/parameters"] == 11_173_962
    rows = list(csv.reader((Path(record["dir"]) / "submission.csv").open()))
    assert rows[0] == ["id", "label"] and len(rows) == 2
    assert rows[1][0] == "1" and rows[1][1] in CLASSES
