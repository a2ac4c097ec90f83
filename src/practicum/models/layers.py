"""What more than one model family shares: the activation and initialisation registries and a size check.

Every family that has an ``activation`` option builds it with ``make_activation(name)``, so a
sweep over activations (seed 002: relu vs sigmoid; seed 000: sigmoid vs relu) is one config key
whatever the model. Add an activation here with ``ACTIVATIONS.register("name", ModuleClass)``.
"""

from __future__ import annotations

from torch import nn

from practicum.errors import UsageError
from practicum.registry import Registry

ACTIVATIONS: Registry[type[nn.Module]] = Registry("activation")
ACTIVATIONS.register("relu", nn.ReLU)
ACTIVATIONS.register("sigmoid", nn.Sigmoid)
ACTIVATIONS.register("tanh", nn.Tanh)
ACTIVATIONS.register("gelu", nn.GELU)
ACTIVATIONS.register("leaky_relu", nn.LeakyReLU)  # negative slope 0.01


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name; an unknown name is a UsageError naming the nearest."""
    return ACTIVATIONS[name]()


# Weight initialisations by name (biases keep torch's default); "default" leaves torch's own
# (kaiming_uniform_ with a = sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in)), variance 1/(3 fan_in)).
INITS: Registry = Registry("initialisation")
INITS.register("default", lambda w: None)
INITS.register("xavier", nn.init.xavier_uniform_)  # U(-a, a), a = sqrt(6 / (fan_in + fan_out))
INITS.register("kaiming", lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"))  # variance 2 / fan_in


def init_weights(model: nn.Module, name: str) -> None:
    """Re-initialise the weight of every Linear and Conv2d of ``model`` by ``INITS[name]``."""
    fn = INITS[name]
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fn(m.weight)


def check_feature_size(size: int, model: str, image_size: int, minimum: int = 1) -> None:
    """Raise a UsageError when a conv stack would shrink the image below ``minimum`` pixels."""
    if size < minimum:
        raise UsageError(
            f"{model}: image_size {image_size} is too small (feature map would be {size}x{size}); "
            "use a larger image_size or padding"
        )


def xavier_init(model: nn.Module) -> None:
    """Xavier-uniform weights for every Linear and Conv2d, as D2L's ``train_ch6`` initialises its
    CNNs. Without BatchNorm, PyTorch's default init leaves AlexNet/NiN/GoogLeNet on a loss
    plateau at ln 10 for the first ~100 Adam steps (measured on Fashion-MNIST); Xavier starts them
    learning within ~50."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
