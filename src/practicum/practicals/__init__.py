"""The practicals: each task module defines ``Config`` (its experiment schema) and ``run(cfg, run)``.

Modules are imported on demand so that ``practicum list`` or a NumPy practical never pays for
importing torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from practicum.registry import Registry

TASKS: Registry[str] = Registry("task")
TASKS.register("numpy_classify", "practicum.practicals.numpy_mlp")
TASKS.register("activations", "practicum.practicals.activations")


def task_module(name: str) -> ModuleType:
    return importlib.import_module(TASKS[name])


def task_schema(name: str):
    return task_module(name).Config
