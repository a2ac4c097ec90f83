"""Multi-label image classification: seed 000 §4 ("Tiny-VOC"), on fruit-detection-voc.

Seed 000 turned a 5-class Tiny-VOC set into per-image class lists, resized images to 224 x 224
and trained LeNet, VGG, ResNet-18 and ViT with augmentation, BatchNorm and Dropout (Adam 1e-3,
ViT 5e-5), reporting parameters, accuracy, precision, recall, F1 and a PR curve per model. Here
the stand-in is fruit-detection-voc (apple, banana, orange; the ``mixed_*`` images hold several),
read from its per-image VOC XML; a PASCAL-VOC tree or a seed-style label file works the same
way (``data.layout``).

Data: every image decoded and resized once into a uint8 tensor (data/voc.py); training batches
are augmented batched in torch (data/augment.py: flip, random resized crop, colour jitter,
normalise, random erasing, then mixup or cutmix with soft targets). The head is the model's
K logits with BCE; metrics (metrics/multilabel.py) through torchmetrics at ``train.threshold``.
The shared fit loop (train/loop.py) trains, evaluates and checkpoints.

Writes ``multilabel_predictions.npz`` (test ``y_true``, ``scores``, ``classes``, ``names``),
``tables/metrics.json`` (seed 000's table: parameters, accuracy, P, R, F1, + mAP, per split),
``tables/per_class.json`` and ``figures/pr_curves.png``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.errors import UsageError
from practicum.practicals.classify import Model
from practicum.train import config


class Data(Section):
    dataset: str = Field("fruit-detection-voc", description="a registered data set name, or a folder")
    layout: Literal["flat", "voc", "labels"] = Field(
        "flat", description="flat: <split>/ holds images with VOC XML beside them; voc: Annotations/, "
        "JPEGImages/, ImageSets/Main/<split>.txt; labels: <split>.txt rows '<id>,<class>,...' with images/")
    train_split: str = "train"
    test_split: str = "test"
    classes: list[str] | None = Field(None, description="class order; default: the sorted names in the "
                                      "training split (labels layout: required)")
    image_size: int = Field(64, ge=16, description="images are resized once to this square")
    train_limit: int | None = Field(None, gt=0, description="use N training images, evenly spaced")
    test_limit: int | None = Field(None, gt=0, description="use N test images, evenly spaced")
    val_size: int = Field(0, ge=0, description="hold out N evenly spaced training images as split 'val'")
    normalize: bool = Field(True, description="subtract the training set's mean, divide by its std")


class Augment(Section):
    flip: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip")
    crop: float = Field(0.0, ge=0, le=1, description="probability of a random resized crop")
    crop_scale: float = Field(0.35, gt=0, le=1, description="smallest crop area (fraction of the image)")
    jitter: float = Field(0.0, ge=0, lt=1, description="brightness, contrast, saturation factors in 1 +- this")
    erase: float = Field(0.0, ge=0, le=1, description="probability of random erasing (after normalising)")
    mixup: float = Field(0.0, ge=0, description="mixup Beta(alpha, alpha); 0 = off")
    cutmix: float = Field(0.0, ge=0, description="cutmix Beta(alpha, alpha); 0 = off")
    mix_prob: float = Field(1.0, ge=0, le=1, description="share of batches mixed (when mixup/cutmix on)")
    policy: config.Policy = Field(config.Policy(), description="after flip, crop and jitter: autoaugment | "
                                  "randaugment | augmix (data/autoaugment.py); none by default")


class Train(config.Train):
    loss: Literal["bce"] = Field("bce", description="bce (a sigmoid per class)")
    drop_last: bool = False
    threshold: float = Field(0.5, gt=0, lt=1, description="a class is predicted when its probability > this")
    eval_batch_size: int = Field(100, gt=0)


DDP = True  # on the shared fit loop: runs under --nproc N and torchrun


class Config(Experiment):
    data: Data = Data()
    augment: Augment = Augment()
    model: Model = Model(name="resnet18")
    optim: config.Optim = config.Optim()
    train: Train = Train()


# ---------------------------------------------------------------------------------------------


def read_split(cfg: Data, split: str, classes: list[str] | None):
    """The split's ``Item``s (image path, class names) for the configured layout."""
    from practicum.data import voc
    from practicum.data.cache import dataset_names, fetch

    root = fetch(cfg.dataset) if cfg.dataset in dataset_names() else Path(cfg.dataset)
    if cfg.layout == "flat":
        return voc.read_flat(root / split)
    if cfg.layout == "voc":
        return voc.read_voc(root, split)
    if not classes:
        raise UsageError("data.layout = 'labels' needs data.classes (the names of class 0, 1, ...)")
    return voc.read_label_file(root / f"{split}.txt", root / "images", classes)


def load_data(cfg: Data):
    """(train, val or None, test) TensorSets: x (N, 3, S, S) uint8, y (N, K) multi-hot; test names."""
    from practicum.data import voc

    train_items = read_split(cfg, cfg.train_split, cfg.classes)
    classes = list(cfg.classes) if cfg.classes else voc.class_names(train_items)
    test_items = voc.spread(read_split(cfg, cfg.test_split, classes), cfg.test_limit)
    train_items = voc.spread(train_items, cfg.train_limit)
    val_items = []
    if cfg.val_size:
        if cfg.val_size >= len(train_items):
            raise UsageError(f"data.val_size {cfg.val_size} leaves no training images (have {len(train_items)})")
        held = set(np.linspace(0, len(train_items) - 1, cfg.val_size).round().astype(int).tolist())
        val_items = [it for i, it in enumerate(train_items) if i in held]
        train_items = [it for i, it in enumerate(train_items) if i not in held]
    decode = lambda items: voc.decode(items, classes, cfg.image_size)
    return (decode(train_items), decode(val_items) if val_items else None, decode(test_items),
            [str(it.path.name) for it in test_items])


def augment_chain(cfg: Augment, mean, std):
    """(x in [0, 1], y, generator) -> (normalised x, targets): the training batch transform.
    AugMix with its consistency loss makes x (B, 3, 3, S, S): the clean image and two views, each
    normalised and erased like a single image, and mixed (mixup, cutmix) with the same partner."""
    import torch

    from practicum.data import augment as A
    from practicum.data.autoaugment import policy_transform

    mean_t = torch.tensor(mean).view(1, -1, 1, 1) if mean is not None else None
    std_t = torch.tensor(std).view(1, -1, 1, 1) if std is not None else None
    policy = policy_transform(cfg.policy)

    def apply(x, y, gen):  # x (B, 3, S, S) float in [0, 1]; y (B, K)
        if cfg.flip:
            x = A.random_flip(x, cfg.flip, gen)
        if cfg.crop:
            x = A.random_resized_crop(x, cfg.crop, (cfg.crop_scale, 1.0), gen)
        if cfg.jitter:
            x = A.random_jitter(x, cfg.jitter, gen)
        if policy is not None:
            x = policy(x, gen)  # (B, 3, S, S), or (B, 3 views, 3, S, S)
        if mean_t is not None:
            x = (x - mean_t) / std_t
        if cfg.erase and x.ndim == 5:
            x = A.random_erase(x.flatten(0, 1), cfg.erase, gen).view_as(x)
        elif cfg.erase:
            x = A.random_erase(x, cfg.erase, gen)  # filled with 0: the mean after normalising
        return A.random_mix(x, y, cfg.mixup, cfg.cutmix, cfg.mix_prob, gen)

    return apply


def predict(model, loader) -> tuple:
    """Sigmoid probabilities (N, K) and targets (N, K) over an evaluation loader (under DDP,
    every rank's contiguous shard gathered in rank order: the whole split, in data order)."""
    import torch

    from practicum.train import ddp

    model.eval()
    probs, ys = [], []
    with torch.no_grad():
        for x, y in loader:
            probs.append(torch.sigmoid(model(x).float()).cpu())
            ys.append(y.cpu())
    shards = ddp.all_gather_object((torch.cat(probs), torch.cat(ys)))
    return torch.cat([p for p, _ in shards]), torch.cat([y for _, y in shards])


def run(cfg: Config, run) -> dict:
    import torch

    from practicum.data.autoaugment import policy_transform
    from practicum.data.tensors import AugmentLoader, Loader, Pipeline
    from practicum.metrics.multilabel import summarize
    from practicum.models import build_model
    from practicum.report.augment import save_examples
    from practicum.train import checkpoint, ddp, loop
    from practicum.train.consistency import with_consistency
    from practicum.train.device import resolve_device
    from practicum.train.objective import multilabel
    from practicum.train.optim import build_training

    t, o = cfg.train, cfg.optim
    device = resolve_device(t.device)
    checkpoint.seed_everything(cfg.seed)

    tick = time.perf_counter()
    train_set, val_set, test_set, test_names = load_data(cfg.data)
    load_seconds = time.perf_counter() - tick
    classes = train_set.classes
    mean, std = train_set.mean_std() if cfg.data.normalize else (None, None)
    model = build_model(cfg.model.name, num_classes=len(classes), in_channels=3, image_size=cfg.data.image_size,
                        **cfg.model.options).to(device)

    gen = torch.Generator().manual_seed(cfg.seed)  # permutations and every augmentation draw
    world, rank = ddp.world_size(), ddp.rank()
    loader = AugmentLoader(train_set, o.batch_size, augment_chain(cfg.augment, mean, std), generator=gen,
                           drop_last=t.drop_last, rank=rank, world=world, device=device)
    eval_pipe = Pipeline(mean=mean, std=std)
    shard = dict(train=False, rank=rank, world=world, device=device)  # a contiguous shard per rank
    evals = {"val": Loader(val_set, t.eval_batch_size, eval_pipe, **shard)} if val_set else {}
    evals["test"] = Loader(test_set, t.eval_batch_size, eval_pipe, **shard)

    opt, sched = build_training(o, model.parameters(), loader.steps_per_epoch, t.epochs)
    objective = multilabel(len(classes), t.loss, t.threshold)
    if cfg.augment.policy.views == 3:  # AugMix: + the consistency of each label's sigmoid over the views
        objective = with_consistency(objective, cfg.augment.policy.jsd, multilabel=True)
    if cfg.augment.policy.name != "none" and ddp.is_main():  # figures/augment_examples.png
        save_examples(run, policy_transform(cfg.augment.policy), train_set.x[:6], cfg.augment.policy, cfg.seed)
    fit_cfg = t.fit_config(o.grad_clip)
    fit_cfg.label = cfg.model.name
    rec = loop.Recorder(run, tensorboard=t.tensorboard)
    tick = time.perf_counter()
    state = loop.fit(model, opt, sched, objective, loader, evals, fit_cfg, run, rec)
    fit_seconds = time.perf_counter() - tick

    summary, results = {}, {}
    for split, split_loader in evals.items():  # final weights (the best ones with restore_best)
        probs, y = predict(model, split_loader)
        results[split] = (probs, y)
        summary.update({f"{split}/{k}": v for k, v in summarize(probs, y, t.threshold).items()})
    summary.update({k: v for k, v in loop.summarize(state, model, t.best_metric).items()
                    if k.startswith(("train/", "best/", "model/"))})
    summary.update({"train/seconds": fit_seconds, "data/seconds": load_seconds,
                    "data/image_size": float(cfg.data.image_size)})
    if ddp.is_main():
        save_outputs(run, cfg, model, classes, results, test_names, summary)
        rec.finish(cfg.hparams(), summary)
    return summary


def save_outputs(run, cfg: Config, model, classes, results, test_names, summary) -> None:
    """Weights, test scores, seed 000's table, per-class table and the PR figure."""
    from practicum.metrics.multilabel import per_class
    from practicum.report.multilabel import PREDICTIONS, pr_figure
    from practicum.train import checkpoint

    checkpoint.save(run.artifact_path("model.pt"), {"model": model.state_dict()})
    probs, y = results["test"]
    npz = run.artifact_path(PREDICTIONS)
    fileio.save_npz(npz, y_true=y.numpy().astype(np.int64), scores=probs.numpy(), classes=np.array(classes),
                    names=np.array(test_names))
    cols = ["accuracy", "label_accuracy", "precision", "recall", "f1", "f1_macro", "map"]
    run.write_table("metrics", ["model", "split", "parameters", "accuracy (exact match)", "label accuracy",
                                "precision (micro)", "recall (micro)", "F1 (micro)", "F1 (macro)", "mAP"],
                    [[cfg.model.name, split, int(summary["model/parameters"]),
                      *(round(summary[f"{split}/{c}"], 4) for c in cols)] for split in results],
                    f"Seed 000's table (threshold {cfg.train.threshold}, {cfg.data.image_size}px)")
    run.write_table("per_class", ["class", "positives", "precision", "recall", "F1", "AP"],
                    per_class(probs, y, classes, cfg.train.threshold), "Per class on the test split")
    pr_figure(npz, run.figure_path("pr_curves.png"),
              f"{cfg.model.name}: test F1 {summary['test/f1']:.3f}, mAP {summary['test/map']:.3f}")
