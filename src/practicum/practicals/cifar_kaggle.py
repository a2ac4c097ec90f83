"""Kaggle's CIFAR-10 competition (D2L 14.13): ResNet-18 with crop + flip, and a submission.csv.

The data come in Kaggle's layout (data/kaggle.py): labelled PNGs, a CSV of labels, unlabelled
test PNGs. D2L's per-class hold-out gives the ``val`` split the loop evaluates and checkpoints
on; after training, every test image gets a predicted class name in ``submission.csv``
(``id,label``, ids ascending), the file Kaggle takes.

Training is the classify practical's (same model registry, loop, checkpoints); only the data
section differs. Augmentation, batched in torch (data/tensors.py, the flip from data/augment.py):
pad 4 + random 32x32 crop (``shift = 4``) and a random horizontal flip. D2L instead resizes to
40x40 and takes ``RandomResizedCrop(32, scale=(0.64, 1))``; pad-and-crop is the usual CIFAR
recipe and needs no resampling. Normalisation uses the training split's own channel statistics.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from practicum import fileio
from practicum.config import Section
from practicum.practicals import classify
from practicum.train.config import Policy


class Data(Section):
    name: Literal["cifar10-kaggle-tiny"] = Field("cifar10-kaggle-tiny", description="the offline tiny copy; "
                                                  "data.root reads the full competition data instead")
    root: str | None = Field(None, description="a folder with train/, test/, trainLabels.csv (Kaggle's data)")
    valid_ratio: float = Field(0.1, gt=0, lt=1, description="per-class share held out as split 'val'")
    train_limit: int | None = Field(None, gt=0, description="use the first N training images (after the split)")
    image_size: int | None = Field(None, gt=0, description="model input size; default: the preset's")
    normalize: bool = True
    shift: int = Field(4, ge=0, description="pad N pixels and crop back: random translation up to N")
    flip: bool = Field(True, description="random horizontal flip")
    policy: Policy = Field(Policy(), description="after shift and flip: autoaugment (learned_on = 'cifar10') | "
                           "randaugment | augmix (data/autoaugment.py)")


DDP = True  # on the shared fit loop: runs under --nproc N and torchrun


class Config(classify.Config):
    data: Data = Data()


check_model = classify.check_model  # your own model: built and run on a (2, 3, 32, 32) batch before any run


def predict_classes(model, pipeline, x, batch_size: int = 500):
    """The predicted class (N,) of uint8 images x (N, C, H, W) on the CPU: each batch goes to the
    model's device as uint8 (a quarter of the bytes of floats) and is prepared there."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model(pipeline(x[i:i + batch_size].to(device), train=False)).argmax(1).cpu()
                          for i in range(0, len(x), batch_size)])


def run(cfg: Config, run) -> dict:
    from practicum.data.kaggle import load_kaggle_cifar10
    from practicum.data.tensors import TensorSet

    d = load_kaggle_cifar10(cfg.data.root)
    train_idx, valid_idx = d.split(cfg.data.valid_ratio)
    train_idx = train_idx[: cfg.data.train_limit]
    train = TensorSet.from_arrays(d.train_x[train_idx], d.train_y[train_idx], d.classes)
    valid = TensorSet.from_arrays(d.train_x[valid_idx], d.train_y[valid_idx], d.classes)

    def write_submission(model, pipeline) -> None:
        import torch

        pred = predict_classes(model, pipeline, torch.from_numpy(d.test_x))
        lines = ["id,label"] + [f"{i},{d.classes[p]}" for i, p in zip(d.test_ids.tolist(), pred.tolist())]
        fileio.write_text(run.artifact_path("submission.csv"), "\n".join(lines) + "\n")

    summary = classify.fit_classifier(cfg, run, train, valid, None, extra_outputs=write_submission)
    return summary
