"""Seconds per MNIST epoch of LeNet-5 (32x32 input): practicum's loop against a peer-style loop.

Both train the same network (seed 004's LeNet-5 on images resized to 32x32) with the same
optimizer (Adam 1e-3), batch size (64) and thread count, measured in the same run:

  peer       the seeds' / D2L's way: a ``Dataset`` whose ``__getitem__`` makes a PIL image,
             resizes it, turns it into a tensor via NumPy and normalises it (torchvision's
             Resize, ToTensor, Normalize, written out); a
             ``DataLoader`` with default settings (shuffle, batch 64, no workers) collates them.
  practicum  ``practicum.train.loop.fit``: the data set as one uint8 tensor, batches as index
             slices of a seeded permutation, resize + normalise as whole-batch torch ops,
             channels_last (``train.channels_last``) -- the loop every classify entry runs,
             including its running metrics and epoch-end checkpoint.

Each side also reports its data pipeline alone (one epoch of batches, no model), which shows
where the difference comes from.

    python bench/loop.py                        # 3 alternating rounds of 20,000 images per loop
    python bench/loop.py --train-limit 60000 --rounds 1     # one full epoch each
    python bench/loop.py --threads 0            # torch's own thread count (all cores)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from practicum.data.tensors import Loader, Pipeline, TensorSet
from practicum.data.vision import load_mnist
from practicum.models import build_model
from practicum.train.loop import FitConfig, Recorder, evaluate, fit
from practicum.train.optim import build_optimizer
from practicum.train.objective import classification

MEAN, STD = 0.1307, 0.3081
EPOCH = 60_000


class PeerMNIST(Dataset):
    """Per-sample transforms as seed 004's MyDataset and D2L write them: PIL image -> Resize ->
    ToTensor -> Normalize. (torchvision is not available here: its three transforms are written
    out below with the same operations, so the cost per sample is theirs.)"""

    def __init__(self, x: np.ndarray, y: np.ndarray, size: int = 32):
        self.x, self.y, self.size = x, y, size

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        image = Image.fromarray(self.x[i], mode="L")
        image = image.resize((self.size, self.size), Image.BILINEAR)  # transforms.Resize(32)
        # transforms.ToTensor(): PIL -> NumPy -> (C, H, W) tensor, float in [0, 1]
        t = torch.from_numpy(np.array(image, np.uint8, copy=True))
        t = t.view(image.size[1], image.size[0], 1).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
        # transforms.Normalize((0.1307,), (0.3081,))
        mean, std = torch.as_tensor([MEAN]), torch.as_tensor([STD])
        t = t.sub_(mean[:, None, None]).div_(std[:, None, None])
        return t, int(self.y[i])  # (1, 32, 32), label


def peer_epoch(x, y, test, seed: int) -> tuple[float, float, float, float]:
    """(seconds for one training epoch, for its data alone, for the test pass; test accuracy)."""
    torch.manual_seed(seed)
    model = build_model("lenet5", image_size=32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(PeerMNIST(x, y), batch_size=64, shuffle=True)
    t = time.perf_counter()
    for _ in loader:
        pass
    data_seconds = time.perf_counter() - t
    t = time.perf_counter()
    model.train()
    total, correct, n = 0.0, 0, 0
    for xb, yb in loader:
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(yb)
        correct += (logits.argmax(1) == yb).sum().item()
        n += len(yb)
    train_seconds = time.perf_counter() - t
    t = time.perf_counter()  # the test pass every seed's loop makes after each epoch
    model.eval()
    hits = 0
    with torch.no_grad():
        for xb, yb in DataLoader(PeerMNIST(*test), batch_size=64):
            hits += (model(xb).argmax(1) == yb).sum().item()
    return train_seconds, data_seconds, time.perf_counter() - t, hits / len(test[1])


class BenchRun:
    """The few things fit() asks of a run, in a temporary directory (no index, no metrics file)."""

    def __init__(self, root: Path):
        self.dir, self.resumed, self.scope_start = root, False, 0
        self.tb_dir = root / "tb"

    def log(self, *args, **kwargs):
        pass

    def metrics_position(self) -> int:
        return 0

    def checkpoint_path(self, name: str) -> Path:
        (self.dir / "checkpoints").mkdir(exist_ok=True)
        return self.dir / "checkpoints" / name


def practicum_epoch(x, y, test, seed: int, channels_last: bool) -> tuple[float, float, float, float]:
    torch.manual_seed(seed)
    data = TensorSet.from_arrays(x, y, [str(i) for i in range(10)])
    pipe = Pipeline(image_size=32, mean=[MEAN], std=[STD], channels_last=channels_last)
    loader = Loader(data, 64, pipe, train=True, generator=torch.Generator().manual_seed(seed))
    order = loader.order()
    t = time.perf_counter()
    for step in range(loader.steps_per_epoch):
        loader.batch(order, step)
    data_seconds = time.perf_counter() - t

    model = build_model("lenet5", image_size=32)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer("adam", model.parameters(), lr=1e-3)  # practicum's registry: fused on CPU
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        run = BenchRun(Path(tmp))
        state = fit(model, opt, sched, classification(10), loader, {}, FitConfig(epochs=1, progress=False),
                    run, Recorder(run, tensorboard=False))
    t = time.perf_counter()  # the loop's evaluation, at classify's eval_batch_size
    test_set = TensorSet.from_arrays(*test, [str(i) for i in range(10)])
    results = evaluate(model, Loader(test_set, 1000, pipe, train=False), classification(10))
    return state.epoch_seconds[0], data_seconds, time.perf_counter() - t, float(results["accuracy"])


def data_float_once(x, seed: int) -> float:
    """The data pipeline alone with the set converted and normalised to float32 once up front
    (4x the memory): what per-batch uint8 -> float conversion costs, measured."""
    t = time.perf_counter()
    data = torch.from_numpy(x).unsqueeze(1).float().div_(255).sub_(MEAN).div_(STD)  # (N, 1, 28, 28)
    setup = time.perf_counter() - t
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    t = time.perf_counter()
    for i in range(0, len(x), 64):
        F.interpolate(data[order[i:i + 64]], size=(32, 32), mode="bilinear", align_corners=False)
    return setup + time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-limit", type=int, default=20_000, help="images per measured (partial) epoch")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate the two loops this many times; report the medians")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads, both sides (default 1, as train.threads; 0: torch's own)")
    parser.add_argument("--no-channels-last", action="store_true", help="practicum without channels_last")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    d = load_mnist("mnist")
    x, y = d.train_x[: args.train_limit], d.train_y[: args.train_limit]
    test = (d.test_x, d.test_y)
    scale = EPOCH / len(y)
    print(f"LeNet-5 32x32, Adam 1e-3, batch 64, {torch.get_num_threads()} thread(s); {args.rounds} rounds of "
          f"{len(y):,} training images per loop, alternating, scaled to a 60,000-image epoch, then the "
          f"10,000 test images (medians)")
    peer, ours = [], []
    for _ in range(args.rounds):  # alternate, so a slow spell of a shared machine hits both loops
        peer.append(peer_epoch(x, y, test, args.seed))
        ours.append(practicum_epoch(x, y, test, args.seed, channels_last=not args.no_channels_last))
    (p_s, p_data, p_test, p_acc), (o_s, o_data, o_test, o_acc) = (
        [float(np.median(col)) for col in zip(*runs)] for runs in (peer, ours))
    width = 52
    cl = "" if args.no_channels_last else ", channels_last"
    for name, s, data, test_s, acc, runs in (
            ("peer (DataLoader + per-sample transforms)", p_s, p_data, p_test, p_acc, peer),
            ("practicum (tensors + index slices" + cl + ")", o_s, o_data, o_test, o_acc, ours)):
        print(f"{name:<{width}} {s * scale:6.1f} s/epoch train (data alone {data * scale:4.1f} s; rounds: "
              f"{', '.join(f'{r[0] * scale:.1f}' for r in runs)}) + {test_s:4.2f} s test pass (acc {acc:.3f})")
    print(f"speed-up, training epoch: {p_s / o_s:.2f}x")
    print(f"speed-up, epoch + test pass (as the seeds' loops run): "
          f"{(p_s * scale + p_test) / (o_s * scale + o_test):.2f}x")
    print(f"(practicum's data alone with the whole set made float once, instead of per batch: "
          f"{data_float_once(x, args.seed) * scale:.1f} s/epoch)")

if __name__ == "__main__":
    main()
