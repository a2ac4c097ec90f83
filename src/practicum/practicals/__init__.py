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
TASKS.register("classify", "practicum.practicals.classify")
TASKS.register("activations", "practicum.practicals.activations")
TASKS.register("translation", "practicum.practicals.translation")
TASKS.register("word2vec", "practicum.practicals.word2vec")
TASKS.register("sentiment", "practicum.practicals.sentiment")
TASKS.register("language_model", "practicum.practicals.language_model")
TASKS.register("linreg", "practicum.practicals.linreg")
TASKS.register("optim2d", "practicum.practicals.optim2d")
TASKS.register("detect", "practicum.practicals.detection")
TASKS.register("style_transfer", "practicum.practicals.style")
TASKS.register("gan_2d", "practicum.practicals.gan2d")
TASKS.register("dcgan", "practicum.practicals.dcgan")
TASKS.register("multilabel", "practicum.practicals.multilabel")
TASKS.register("cifar10_kaggle", "practicum.practicals.cifar_kaggle")


def task_module(name: str) -> ModuleType:
    return importlib.import_module(TASKS[name])


def task_schema(name: str):
    return task_module(name).Config
