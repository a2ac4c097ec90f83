"""Layers with explicit forward and backward passes, in NumPy float32.

Each layer keeps what its backward pass needs from the last forward pass. ``backward(grad_out)``
returns the gradient with respect to the layer's input and stores the parameter gradients
(``dW``, ``db``) next to the parameters (``W``, ``b``). Shapes: a batch is ``(N, features)``.

The engine works in whatever float dtype its arrays have: float32 for training (nothing here
upcasts), float64 after ``astype(np.float64)`` for finite-difference gradient checks.
"""

from __future__ import annotations

import math

import numpy as np

from practicum.errors import PracticumError, UsageError
from practicum.registry import Registry, nearest


class Linear:
    """``y = x @ W + b`` with ``W`` of shape (in_features, out_features) and ``b`` of (out_features,).

    ``init="he"``: W ~ N(0, 2 / in_features), for ReLU networks (He et al. 2015).
    ``init="xavier"``: W ~ U(-a, a) with a = sqrt(6 / (in + out)), for sigmoid/tanh (Glorot & Bengio
    2010; what ``torch.nn.init.xavier_uniform_`` draws). Biases start at zero.
    """

    def __init__(self, in_features: int, out_features: int, rng: np.random.Generator, init: str = "he"):
        shape = (in_features, out_features)
        if init == "he":
            std = np.float32(math.sqrt(2.0 / in_features))
            self.W = rng.standard_normal(shape, dtype=np.float32) * std
        elif init == "xavier":
            a = np.float32(math.sqrt(6.0 / (in_features + out_features)))
            self.W = (rng.random(shape, dtype=np.float32) * 2 - 1) * a
        else:
            raise UsageError(f"unknown Linear init '{init}'{nearest(init, ['he', 'xavier'])}; valid: he, xavier")
        self.b = np.zeros(out_features, dtype=np.float32)
        # Gradient buffers, written in place by every backward pass (no allocation per step).
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)
        self.x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.dtype != self.W.dtype:  # e.g. uint8 / 255 is float64: the whole step would upcast
            raise UsageError(f"Linear got {x.dtype} input for {self.W.dtype} weights; "
                             f"convert the data once, e.g. x.astype(np.{self.W.dtype})")
        self.x = x  # (N, in), needed for dW
        out = x @ self.W  # (N, out)
        out += self.b
        return out

    def backward(self, grad_out: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        # grad_out: (N, out). dW = x^T g is the one GEMM every layer pays for.
        np.matmul(self.x.T, grad_out, out=self.dW)
        np.sum(grad_out, axis=0, out=self.db)
        # dx = g W^T is a second full GEMM; the first layer skips it (nobody needs d(data)).
        return grad_out @ self.W.T if need_input_grad else None

    def params(self) -> dict[str, np.ndarray]:
        return {"W": self.W, "b": self.b}

    def grads(self) -> dict[str, np.ndarray]:
        return {"W": self.dW, "b": self.db}

    def astype(self, dtype) -> "Linear":
        """Convert parameters and gradient buffers (float64 for gradient checks). New arrays:
        build the optimizer after this, not before."""
        self.W, self.b = self.W.astype(dtype), self.b.astype(dtype)
        self.dW, self.db = np.zeros_like(self.W), np.zeros_like(self.b)
        return self

    def __repr__(self) -> str:
        return f"Linear({self.W.shape[0]}, {self.W.shape[1]})"


class ReLU:
    """``max(x, 0)``. With ``inplace=True`` (as in ``torch.nn.ReLU``) it overwrites its input and
    its incoming gradient, saving two (N, features) allocations per step; ``mlp`` uses that, since
    there the input is a fresh Linear output and the gradient a fresh GEMM result."""

    def __init__(self, inplace: bool = False):
        self.inplace = inplace
        self.out: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.out = np.maximum(x, 0, out=x if self.inplace else None)
        return self.out

    def backward(self, grad_out: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        if not need_input_grad:
            return None
        # Gradient passes where the output is positive (0 at x = 0, as torch does).
        return np.multiply(grad_out, self.out > 0, out=grad_out if self.inplace else None)

    def __repr__(self) -> str:
        return "ReLU(inplace=True)" if self.inplace else "ReLU()"


class Sigmoid:
    """``1 / (1 + exp(-x))``, computed as ``0.5 * (1 + tanh(x / 2))``: the same function, but it
    cannot overflow for large negative x."""

    def __init__(self):
        self.out: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        out = x * 0.5
        np.tanh(out, out=out)
        out += 1
        out *= 0.5
        self.out = out
        return out

    def backward(self, grad_out: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        if not need_input_grad:
            return None
        return grad_out * self.out * (1 - self.out)  # s' = s (1 - s)

    def __repr__(self) -> str:
        return "Sigmoid()"


class Tanh:
    def __init__(self):
        self.out: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.out = np.tanh(x)
        return self.out

    def backward(self, grad_out: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        if not need_input_grad:
            return None
        return grad_out * (1 - self.out * self.out)  # tanh' = 1 - tanh^2

    def __repr__(self) -> str:
        return "Tanh()"


ACTIVATIONS: Registry[type] = Registry("activation")
ACTIVATIONS.register("relu", ReLU)
ACTIVATIONS.register("sigmoid", Sigmoid)
ACTIVATIONS.register("tanh", Tanh)


class Sequential:
    """Layers applied in order. Parameters are named ``"<layer index>.<W|b>"`` (like the
    ``"0.weight"`` of ``torch.nn.Sequential``): the keys of ``params()``, ``grads()``,
    ``state_dict()`` and of the optimizer's buffers."""

    def __init__(self, *layers):
        self.layers = list(layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate ``grad`` (d loss / d output); fills every ``dW``/``db``.

        ``need_input_grad=False`` lets the first layer skip d loss / d input (returns None):
        for a network fed with data that gradient is never used, and it costs a full GEMM.
        """
        for i in range(len(self.layers) - 1, -1, -1):
            grad = self.layers[i].backward(grad, need_input_grad=need_input_grad or i > 0)
        return grad

    def params(self) -> dict[str, np.ndarray]:
        """The live parameter arrays (update them in place)."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                if hasattr(layer, "params") for k, v in layer.params().items()}

    def grads(self) -> dict[str, np.ndarray]:
        """The gradient buffers filled by the last ``backward``, keyed like ``params()``."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                if hasattr(layer, "grads") for k, v in layer.grads().items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, name -> array, ready for ``np.savez``."""
        return {k: v.copy() for k, v in self.params().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy ``state`` into the live parameters (bit-exact); keys and shapes must match."""
        params = self.params()
        check_state(params, state, "model")
        for k, p in params.items():
            np.copyto(p, state[k])

    def astype(self, dtype) -> "Sequential":
        for layer in self.layers:
            if hasattr(layer, "astype"):
                layer.astype(dtype)
        return self

    def __repr__(self) -> str:
        return "Sequential(" + ", ".join(map(repr, self.layers)) + ")"


def check_state(own: dict[str, np.ndarray], state, what: str) -> None:
    """Raise naming the missing, unexpected or mis-shaped keys of a state dict."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise PracticumError(f"{what} state dict: missing keys {missing}, unexpected keys {unexpected}")
    for k, v in own.items():
        if np.shape(state[k]) != v.shape:
            raise PracticumError(f"{what} state dict: '{k}' has shape {np.shape(state[k])}, expected {v.shape}")


def mlp(sizes: list[int], activation: str, rng: np.random.Generator, init: str | None = None) -> Sequential:
    """A fully connected network, e.g. ``mlp([784, 1024, 10], "relu", rng)``: Linear layers with
    the activation between them (none after the last, which gives scores for the loss).

    ``init`` defaults to He for ReLU and Xavier for sigmoid/tanh.
    """
    if len(sizes) < 2:
        raise UsageError(f"mlp needs at least input and output sizes, got {sizes}")
    act = ACTIVATIONS[activation]
    init = init or ("he" if activation == "relu" else "xavier")
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(n_in, n_out, rng, init=init))
        if i < len(sizes) - 2:
            # In place is safe: the input is the fresh output of the Linear before it.
            layers.append(act(inplace=True) if act is ReLU else act())
    return Sequential(*layers)
