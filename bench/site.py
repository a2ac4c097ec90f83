"""How long `practicum site` takes on a store of 300 runs: the first build, a rebuild with nothing
changed, and a rebuild after one more run (the refresh after every run, sweep and reproduction).

The runs are written through the store API as a task writes them (claim, Run, log, finish; as
tests/helpers.py `finished_run` does), without training: fmnist-softmax over a grid of 5 learning
rates x 4 weight decays x 3 batch sizes x 5 seeds, recorded as one study (a study page with its
parallel coordinates), 20 epochs of curves each.

    python bench/site.py [--runs 300] [--keep DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def fake_run(index, cfg, epochs: int = 20) -> None:
    from practicum.store import Run

    claim = index.claim(cfg)
    run = Run(index, claim.record, cfg, claim.hold, resumed=False)
    lr = cfg.optim.lr
    final = 0.8 + 0.05 * math.tanh(math.log10(lr) + 1) - 0.5 * (cfg.optim.weight_decay or 0.0) + 0.001 * cfg.seed
    for epoch in range(1, epochs + 1):
        f = 1 - (1 - epoch / epochs) ** 2
        run.log({"loss": 2.3 - (2.3 - 0.45) * f, "accuracy": 0.1 + (final - 0.1) * f}, split="train", step=epoch,
                epoch=float(epoch))
        run.log({"loss": 2.3 - (2.3 - 0.5) * f, "accuracy": 0.1 + (final - 0.12) * f}, split="test", step=epoch,
                epoch=float(epoch))
    run.finish({"test/accuracy": final - 0.02, "test/loss": 0.5, "train/accuracy": final, "train/loss": 0.45},
               headline=f"test/accuracy={final - 0.02:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--keep", help="write the store here (and keep it) instead of a temporary folder")
    args = parser.parse_args()
    home = Path(args.keep or tempfile.mkdtemp(prefix="practicum-site-bench-")) / "runs"
    os.environ["PRACTICUM_HOME"] = str(home)

    from practicum import sweeps
    from practicum.config import load_experiment
    from practicum.report.site import build
    from practicum.store import Index

    grid = {"optim.lr": [0.001, 0.01, 0.03, 0.1, 1.0], "optim.weight_decay": [0.0, 1e-4, 1e-3, 1e-2],
            "optim.batch_size": [64, 128, 256]}
    seeds = max(1, args.runs // 60)
    plan = sweeps.plan("fmnist-softmax", grid, seeds, name="study-bench")
    index = Index()
    t0 = time.perf_counter()
    for t in plan.trials[:args.runs]:
        fake_run(index, load_experiment("fmnist-softmax", t.overrides, seed=t.seed))
    sweeps.save_study_record(plan)
    written = time.perf_counter() - t0
    n = len(index.list())
    print(f"store: {n} runs written through the store API in {written:.1f} s ({home})")

    t0 = time.perf_counter()
    page = build(index=Index())
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    build(index=Index())
    again = time.perf_counter() - t0
    extra = load_experiment("fmnist-softmax", ["optim.lr=0.3"], seed=99)
    fake_run(index, extra)
    t0 = time.perf_counter()
    build(index=Index())
    one_more = time.perf_counter() - t0
    print(f"site build, first:               {first:.2f} s for {n} runs")
    print(f"site build, nothing changed:     {again:.2f} s for {n} runs")
    print(f"site build, after one more run:  {one_more:.2f} s for {n + 1} runs")
    print(f"site: {page}" + ("" if args.keep else " (removed: --keep DIR keeps it)"))
    sys.stdout.flush()
    if not args.keep:
        shutil.rmtree(home.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
