"""Image classifiers by name: ``build_model("resnet18", num_classes=10, in_channels=1)``.

One file per family, each with a ``PRESETS`` table (name -> constructor arguments), timm-style:

    mlp.py     softmax, mlp, mlp2                        (28x28)
    cnn2.py    cnn2, cnn2-sigmoid, cnn2-deep             (28x28)
    lenet.py   lenet5 (32x32), lenet5-28, lenet-d2l, lenet-bn, lenet-bn-scratch (28x28)
    vgg.py     vgg11, vgg11-bn, vgg11-slim               (28x28; 224x224 works too)
    resnet.py  resnet18, resnet18-slim (28x28), resnet18-imagenet (224x224), resnet18-d2l (96x96)
    vit.py     vit, vit-noscale                          (28x28)
    alexnet.py alexnet (224x224), alexnet-slim (28x28)   D2L's modern CNNs: the D2L size, and a
    nin.py     nin (224x224), nin-slim (28x28)           CPU preset (3x3 stride-1 stem, narrower)
    googlenet.py googlenet (96x96), googlenet-slim (28x28)
    densenet.py  densenet (96x96), densenet-slim (28x28)

Every model takes a float batch (B, C, H, W) and returns logits (B, num_classes). Each preset has
a natural input size (``MODELS[name].image_size``) which ``build_model`` uses when no
``image_size`` is given. Family options (``hidden``, ``activation``, ``width_div``, ...) are
keyword arguments; an unknown one is a UsageError naming the nearest valid option.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from practicum.errors import UsageError
from practicum.models import alexnet, cnn2, densenet, googlenet, lenet, mlp, nin, resnet, vgg, vit
from practicum.models.layers import ACTIVATIONS, make_activation
from practicum.registry import Registry, nearest

__all__ = ["MODELS", "ACTIVATIONS", "Preset", "build_model", "count_parameters", "make_activation"]


@dataclass
class Preset:
    """A named architecture: a model class and the constructor arguments that make it."""

    name: str
    cls: type[nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)

    def options(self) -> list[str]:
        """The keyword arguments the model class accepts."""
        return [p for p in inspect.signature(self.cls).parameters if p != "self"]

    def check(self, options: dict) -> None:
        """ValueError (for the config loader) when ``options`` names an argument the class lacks."""
        known = self.options()
        unknown = [k for k in options if k not in known]
        if unknown:
            raise ValueError(f"model.options: preset '{self.name}' has no option '{unknown[0]}'"
                             f"{nearest(unknown[0], known)}; valid: {', '.join(known)}")

    def identity(self) -> dict:
        """What the name stands for, for a run's identity: the class and its table of arguments."""
        return {"class": f"{self.cls.__module__}.{self.cls.__qualname__}", "preset": self.defaults}

    @property
    def image_size(self) -> int:
        """The natural input size: the preset's, else the class's default."""
        return self.defaults.get("image_size", inspect.signature(self.cls).parameters["image_size"].default)

    def __call__(self, **kwargs) -> nn.Module:
        options = self.options()
        for key in kwargs:
            if key not in options:
                raise UsageError(
                    f"model '{self.name}' has no option '{key}'{nearest(key, options)}; "
                    f"valid: {', '.join(options)}"
                )
        return self.cls(**{**self.defaults, **kwargs})


MODELS: Registry[Preset] = Registry("model")


def add_presets(cls: type[nn.Module], presets: dict[str, dict[str, Any]]) -> None:
    """Register a family's preset table; another module can add its own the same way."""
    for name, defaults in presets.items():
        MODELS.register(name, Preset(name, cls, defaults))


add_presets(mlp.MLP, mlp.PRESETS)
add_presets(cnn2.CNN2, cnn2.PRESETS)
add_presets(lenet.LeNet, lenet.PRESETS)
add_presets(vgg.VGG, vgg.PRESETS)
add_presets(resnet.ResNet, resnet.PRESETS)
add_presets(vit.ViT, vit.PRESETS)
add_presets(alexnet.AlexNet, alexnet.PRESETS)
add_presets(nin.NiN, nin.PRESETS)
add_presets(googlenet.GoogLeNet, googlenet.PRESETS)
add_presets(densenet.DenseNet, densenet.PRESETS)


def build_model(
    name: str, num_classes: int = 10, in_channels: int = 1, image_size: int | None = None, **kwargs
) -> nn.Module:
    """Build preset ``name``; ``image_size=None`` means the preset's natural size. A name with a
    colon is the user's own model (models/user.py: ``file.py:Class``, ``module:Class``, ``python:...``)."""
    from practicum.models import user

    if user.is_user_model(name):
        try:
            model = user.resolve(name, [Path.cwd()])
        except ValueError as e:
            raise UsageError(f"model.name = '{name}': {e}") from None
        return model.build(num_classes=num_classes, in_channels=in_channels, image_size=image_size or 28, **kwargs)
    preset = MODELS[name]
    if image_size is None:
        image_size = preset.image_size
    return preset(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (of those that require grad, with ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
