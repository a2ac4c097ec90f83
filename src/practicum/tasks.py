"""The practicals an experiment file can name with ``task = "..."``: a task is a module of
``practicum.practicals``, named alike (``task = "detection"`` runs practicals/detection.py).

Each module defines ``Config`` (its experiment schema, with a ``version`` that joins the run
identity), ``run(cfg, run)``, and ``DDP = True`` when it trains on the shared fit loop and so can
run under ``--nproc N`` / torchrun; optionally ``check_model(cfg)``, which builds your own model and
runs it on a dummy batch before the run is claimed (execute.start; classify's). Modules are imported on demand, so ``practicum list`` or a
NumPy practical never pays for importing torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from practicum.errors import UsageError
from practicum.registry import nearest

TASKS = ("numpy_mlp", "activations", "linreg", "optim2d", "classify", "cifar_kaggle", "multilabel",
         "language_model", "translation", "sentiment", "word2vec", "glove", "detection", "dcgan", "gan2d", "style",
         "conv_scratch", "stability", "ngram", "gd_basics")

# Names of tasks before they were named after their modules: old experiment files still load.
RENAMED = {"numpy_classify": "numpy_mlp", "detect": "detection", "style_transfer": "style", "gan_2d": "gan2d",
           "cifar10_kaggle": "cifar_kaggle"}


def task_name(name: str) -> str:
    name = RENAMED.get(name, name)
    if name not in TASKS:
        raise UsageError(f"unknown task '{name}'{nearest(name, TASKS)}; valid: {', '.join(sorted(TASKS))}")
    return name


def task_module(name: str) -> ModuleType:
    return importlib.import_module(f"practicum.practicals.{task_name(name)}")


def task_schema(name: str):
    return task_module(name).Config


def supports_ddp(name: str) -> bool:
    return bool(getattr(task_module(name), "DDP", False))
