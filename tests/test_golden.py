"""Golden values: the classify and multilabel paths compute, bit for bit, what they computed
before the engine refactor (issue 13), so the long runs recorded for the seed rows stay valid.

Each case trains a few dozen steps on a slice of the real data at one thread and pins a hash of
the final weights and every logged metric value (exact floats). The pinned numbers were recorded
on the code of commit 0d1d7e7, before any change to the loop; a change that alters what an
unchanged config computes must fail here (and bump the practical's version).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from practicum.config import load_experiment
from practicum.execute import run_experiment
from practicum.store import Index

CLASSIFY = [
    "data.train_limit=512", "data.test_limit=256", "data.val_size=128", "data.shift=2",
    "optim.name=sgd", "optim.lr=0.05", "optim.momentum=0.9", "optim.nesterov=true", "optim.batch_size=32",
    "optim.grad_clip=1.0", "optim.schedule={ name = 'cosine', warmup_epochs = 0.5 }",
    "train.epochs=2", "train.label_smoothing=0.1", "train.log_steps=4", "train.eval_steps=6",
    "train.threads=1", "train.tensorboard=false",
]
MULTILABEL = [
    "data.image_size=32", "data.train_limit=48", "data.test_limit=12", "data.val_size=8",
    "optim.batch_size=8", "train.epochs=2", "train.log_steps=2", "train.threads=1", "train.tensorboard=false",
]

GOLDEN = {
    "classify-lenet": ("mnist-lenet", CLASSIFY, ("4acaed1ee4ee9a8d", "2b885ba6db090f29")),
    "classify-mlp-bf16": ("fmnist-mlp", CLASSIFY + ["train.precision='bf16'"], ("212e9efe1f5028c4", "bff09b2cd130924f")),
    "multilabel-resnet": ("voc-resnet18", MULTILABEL + ["model.options={ width = 0.25 }"],
                          ("bd506d196834874b", "d9bde43c82d985b0")),
}


def weights_hash(path: Path) -> str:
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    h = hashlib.sha256()
    for name, tensor in state.items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def metric_values(run_dir: Path) -> list:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["split"], r["name"], r["value"]) for r in rows]


def record(home, name: str) -> tuple[str, str]:
    entry, overrides, _ = GOLDEN[name]
    cfg = load_experiment(entry, overrides)
    action, rec = run_experiment(cfg, index=Index(home))
    assert rec.status == "finished", rec.error
    values = metric_values(Path(rec.dir))
    digest = hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]
    return weights_hash(Path(rec.dir) / "model.pt"), digest


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden(home, name):
    expected = GOLDEN[name][2]
    got = record(home, name)
    assert expected is not None, f"record the golden values: {got}"
    assert got == expected
