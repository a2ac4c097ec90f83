"""Seconds per MNIST epoch for the NumPy engine, against its matmul-only lower bound.

The network is seed report 000's: 784-1024-10 ReLU, multiclass SVM loss, L2, mini-batch SGD.
Wall and CPU time are both reported: on a machine shared with other jobs the CPU time of a
single-threaded run (``OPENBLAS_NUM_THREADS=1``) is the steadier of the two.

The lower bound times, on preallocated arrays and at the same batch size, only the five GEMMs
one step cannot avoid: forward X@W1 and H@W2, backward dW2 = H^T G, dH = G W2^T, dW1 = X^T dH.
Everything else (bias, ReLU, loss, L2, SGD update, batch gathering) is the engine's overhead.

    python bench/numpy_mlp.py --batch-size 128 --epochs 1 --repeats 3

Uses the real MNIST training set when ``practicum.data.vision.load_mnist`` can provide it,
otherwise random float32 data of MNIST's shape (the timing does not depend on the values).
Under load, a two-thread GEMM whose second thread is descheduled waits for it (and spins, which
inflates its CPU time), so multi-threaded numbers from a busy machine mean little.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from practicum.scratch import LOSSES, SGD, l2_penalty, lr_at, mlp

N_TRAIN, N_IN, N_HIDDEN, N_CLASSES = 60_000, 784, 1024, 10


def mnist_or_random(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """(X (60000, 784) float32 in [0, 1], y (60000,) int64, description)."""
    try:
        from practicum.data.vision import load_mnist

        data = load_mnist("mnist")
        x = data.train_x.reshape(len(data.train_x), -1).astype(np.float32)  # (60000, 784)
        x /= 255
        return x, data.train_y, "real MNIST"
    except Exception as e:  # noqa: BLE001 - any failure falls back to random data
        x = rng.random((N_TRAIN, N_IN), dtype=np.float32)
        y = rng.integers(0, N_CLASSES, N_TRAIN)
        return x, y, f"random data of MNIST's shape ({type(e).__name__} loading MNIST)"


def train_epoch(model, opt, x, y, batch_size, rng, epoch, lam=0.01, base_lr=0.2) -> float:
    """One epoch of the training loop a practical runs; returns the mean loss."""
    n = len(x)
    steps = n // batch_size  # drop the last partial batch
    order = rng.permutation(n)
    schedule = {"name": "cosine_exp", "total_epochs": 400, "warmup_epochs": 5, "decay_rate": 0.98}
    params, grads = model.params(), model.grads()
    total = 0.0
    for s in range(steps):
        idx = order[s * batch_size:(s + 1) * batch_size]
        xb, yb = x[idx], y[idx]  # gather: (B, 784) copy
        scores = model(xb)  # (B, 10)
        loss, dscores = LOSSES["svm"](scores, yb)
        model.backward(dscores, need_input_grad=False)
        reg, _ = l2_penalty(params, lam, grads=grads)
        opt.lr = lr_at(schedule, base_lr, epoch + s / steps)
        opt.step(grads)
        total += loss + reg
    return total / steps


def matmul_epoch(batch_size: int, rng: np.random.Generator):
    """A function running one epoch's worth of the five bare GEMMs on preallocated float32 arrays."""
    b, f32 = batch_size, np.float32
    X = rng.random((b, N_IN), dtype=f32)
    W1 = rng.random((N_IN, N_HIDDEN), dtype=f32)
    W2 = rng.random((N_HIDDEN, N_CLASSES), dtype=f32)
    G = rng.random((b, N_CLASSES), dtype=f32)  # stands for d loss / d scores
    H, S, dH = np.empty((b, N_HIDDEN), f32), np.empty((b, N_CLASSES), f32), np.empty((b, N_HIDDEN), f32)
    dW1, dW2 = np.empty_like(W1), np.empty_like(W2)

    def run() -> None:
        for _ in range(N_TRAIN // b):
            np.matmul(X, W1, out=H)  # (B, 1024)
            np.matmul(H, W2, out=S)  # (B, 10)
            np.matmul(H.T, G, out=dW2)  # (1024, 10)
            np.matmul(G, W2.T, out=dH)  # (B, 1024)
            np.matmul(X.T, dH, out=dW1)  # (784, 1024)

    return run


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=1, help="epochs timed per repeat")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many")
    ap.add_argument("--momentum", type=float, default=0.0)
    args = ap.parse_args()

    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    x, y, source = mnist_or_random(rng)
    model = mlp([N_IN, N_HIDDEN, N_CLASSES], "relu", rng)
    opt = SGD(model.params(), lr=0.2, momentum=args.momentum)
    bare = matmul_epoch(args.batch_size, rng)
    n_warm = 20 * args.batch_size  # warm-up: BLAS threads, first-touch page faults
    train_epoch(model, opt, x[:n_warm], y[:n_warm], args.batch_size, rng, 0)

    epoch, losses = 0, []

    def engine_epochs() -> None:
        nonlocal epoch
        for _ in range(args.epochs):
            losses.append(train_epoch(model, opt, x, y, args.batch_size, rng, epoch))
            epoch += 1

    def bound_epochs() -> None:
        for _ in range(args.epochs):
            bare()

    engine, bound = [], []  # (wall, cpu) per repeat, in s/epoch
    for r in range(args.repeats):  # interleaved, so both see the same machine load
        engine.append(tuple(t / args.epochs for t in timed(engine_epochs)))
        bound.append(tuple(t / args.epochs for t in timed(bound_epochs)))
        print(f"repeat {r}: engine {engine[-1][0]:.3f} s/epoch (cpu {engine[-1][1]:.3f}), "
              f"matmul-only {bound[-1][0]:.3f} s/epoch (cpu {bound[-1][1]:.3f}), train loss {losses[-1]:.4f}")

    e_wall, e_cpu = min(w for w, _ in engine), min(c for _, c in engine)
    b_wall, b_cpu = min(w for w, _ in bound), min(c for _, c in bound)
    print(f"data: {source}; batch size {args.batch_size}; best of {args.repeats}; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, {os.cpu_count()} cpus, "
          f"1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"numpy engine : {e_wall:.3f} s/epoch wall, {e_cpu:.3f} s/epoch cpu")
    print(f"matmul bound : {b_wall:.3f} s/epoch wall, {b_cpu:.3f} s/epoch cpu")
    print(f"ratio        : {e_wall / b_wall:.2f} wall, {e_cpu / b_cpu:.2f} cpu  (goal <= 1.5)")


if __name__ == "__main__":
    main()
