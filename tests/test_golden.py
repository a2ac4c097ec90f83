"""Golden values: what the classify and multilabel paths compute at a fixed config, so that a
change to the code that alters what an unchanged config computes fails here (and bumps the
practical's version), on any CPU.

Two promises, two kinds of check:

* **On one machine, bit for bit.** The same config trained twice gives identical weights and
  identical metric lines (and a resume does: the kill-and-resume tests).
* **Across machines and revisions, within a tolerance.** oneDNN and ATen pick other kernels on
  another CPU (AVX2, AVX-512, AMX), which sum in another order, so the last bits differ and a
  hash of the weights cannot be pinned. The pins in ``golden_values.json`` (recorded on an AMD
  EPYC, torch 2.13.0, 1 thread) hold every logged loss, every other logged metric and the L2
  norm of every weight tensor; they are compared with tolerances measured, not guessed: the
  same runs under ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` and
  ``ATEN_CPU_CAPABILITY=default`` (other kernels, as on another CPU) drift from the native
  ones by at most (relative):

  ============  =========  =====================  =============================================
  precision     losses     weight-tensor norms    smallest real change below (losses)
  ============  =========  =====================  =============================================
  fp32          1.6e-5     1.7e-4 (a BN mean)     3.3e-4 (label smoothing 0.1 -> 0.11, LeNet)
  bf16          1.9e-4     1.9e-4                 9.1e-3 (the same, the bf16 MLP)
  ============  =========  =====================  =============================================

  ``TOLERANCE`` sits between: 6-10x above the worst drift, 3-5x below the smallest change
  (``test_a_real_change_is_caught`` shows it: label smoothing 0.11, one more step per epoch,
  another seed). Count-based metrics (accuracy, precision, ...) did not move at all under other
  kernels; a prediction on the decision boundary may still flip on some CPU, and one flip moves
  them by 1/n of their predictions (1/256 for classify, up to ~1/20 for the multilabel
  precision over 12 images), hence their absolute tolerance.

Re-record (after an intended change, with the practical's version bumped):
``PRACTICUM_RECORD_GOLDEN=1 pytest tests/test_golden.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
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
    "train.threads=1", "train.tensorboard=false", "train.device='cpu'",
]
MULTILABEL = [
    "data.image_size=32", "data.train_limit=48", "data.test_limit=12", "data.val_size=8",
    "optim.batch_size=8", "train.epochs=2", "train.log_steps=2", "train.threads=1", "train.tensorboard=false",
    "train.device='cpu'",
]

GOLDEN = {  # name: (entry, overrides, precision)
    "classify-lenet": ("mnist-lenet", CLASSIFY, "fp32"),
    "classify-mlp-bf16": ("fmnist-mlp", CLASSIFY + ["train.precision='bf16'"], "bf16"),
    "multilabel-resnet": ("voc-resnet18", MULTILABEL + ["model.options={ width = 0.25 }"], "fp32"),
}
TOLERANCE = {  # precision: relative tolerance of (losses, weight norms); see the table above
    "fp32": (1e-4, 1e-3),
    "bf16": (2e-3, 2e-3),
}
COUNT_ATOL = 0.06  # accuracy, precision, recall, F1, mAP: a few boundary predictions may flip
PINS = Path(__file__).with_name("golden_values.json")


def observe(home: Path, name: str, extra: list[str] = ()) -> dict:
    """Train the case; return its metric lines, weight norms and a hash of its weights."""
    entry, overrides, _ = GOLDEN[name]
    cfg = load_experiment(entry, [*overrides, *extra])
    _, rec = run_experiment(cfg, index=Index(home), force=True)
    assert rec.status == "finished", rec.error
    run_dir = Path(rec.dir)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    state = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)["model"]
    digest = hashlib.sha256()
    for key, tensor in state.items():
        digest.update(key.encode())
        digest.update(tensor.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return {"metrics": [[r["step"], r["split"], r["name"], r["value"]] for r in lines],
            "norms": {k: float(v.double().norm()) for k, v in state.items() if v.is_floating_point()},
            "weights_sha256": digest.hexdigest()}


def mismatches(got: dict, pinned: dict, precision: str) -> list[str]:
    """Where ``got`` leaves the pinned values' tolerance (empty: it matches)."""
    loss_rtol, norm_rtol = TOLERANCE[precision]
    out = []
    keys = lambda rows: [tuple(r[:3]) for r in rows]  # noqa: E731 - (step, split, name)
    if keys(got["metrics"]) != keys(pinned["metrics"]):
        return [f"other metric lines: {len(got['metrics'])} logged, {len(pinned['metrics'])} pinned"]
    for (step, split, name, value), (_, _, _, want) in zip(got["metrics"], pinned["metrics"]):
        if name == "loss":
            ok = abs(value - want) <= loss_rtol * abs(want)
        elif name == "lr":
            ok = abs(value - want) <= 1e-12 * abs(want)
        else:
            ok = abs(value - want) <= COUNT_ATOL
        if not ok:
            out.append(f"{split}/{name} at step {step}: {value!r}, pinned {want!r}")
    if set(got["norms"]) != set(pinned["norms"]):
        return [*out, "other weight tensors"]
    for key, want in pinned["norms"].items():
        if abs(got["norms"][key] - want) > norm_rtol * abs(want):
            out.append(f"|{key}| = {got['norms'][key]!r}, pinned {want!r}")
    return out


def pinned() -> dict:
    return json.loads(PINS.read_text())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden(home, name):
    first, second = observe(home, name), observe(home, name)
    assert first == second, "the same config twice must be bit-identical on one machine"
    if os.environ.get("PRACTICUM_RECORD_GOLDEN"):
        values = pinned() if PINS.exists() else {}
        values[name] = {k: first[k] for k in ("metrics", "norms")}
        PINS.write_text(json.dumps(values, indent=1) + "\n")
        pytest.skip(f"recorded {name} in {PINS.name}")
    assert mismatches(first, pinned()[name], GOLDEN[name][2]) == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("change", ["train.label_smoothing=0.11", "data.train_limit=544", "seed=1"])
def test_a_real_change_is_caught(home, change):
    """Label smoothing 0.1 -> 0.11, one more step per epoch (17 batches of 32, not 16), another
    seed: each leaves the tolerance."""
    got = observe(home, "classify-lenet", [change])
    assert mismatches(got, pinned()["classify-lenet"], "fp32") != []
