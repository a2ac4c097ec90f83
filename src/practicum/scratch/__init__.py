"""The NumPy engine: layers with explicit backward passes, losses, SGD and schedules.

Never imports torch (the tests use torch as the oracle). One training step:

    model = mlp([784, 1024, 10], "relu", np.random.default_rng(0))
    opt = SGD(model.params(), lr=0.2, momentum=0.9)
    scores = model(x)                                   # (N, 10)
    loss, dscores = LOSSES["svm"](scores, y)
    model.backward(dscores, need_input_grad=False)      # fills model.grads()
    reg, _ = l2_penalty(model.params(), 0.01, grads=model.grads())
    opt.lr = lr_at({"name": "cosine", "total_epochs": 400}, 0.2, epoch)
    opt.step(model.grads())
"""

from practicum.scratch.layers import ACTIVATIONS, Linear, ReLU, Sequential, Sigmoid, Tanh, mlp
from practicum.scratch.losses import LOSSES, l2_penalty, mse_onehot, softmax_cross_entropy, svm_hinge
from practicum.scratch.optim import SCHEDULES, SGD, constant, cosine_warmup, cosine_warmup_exp, lr_at, step_decay

__all__ = [
    "ACTIVATIONS", "LOSSES", "SCHEDULES",
    "Linear", "ReLU", "Sigmoid", "Tanh", "Sequential", "mlp",
    "softmax_cross_entropy", "mse_onehot", "svm_hinge", "l2_penalty",
    "SGD", "lr_at", "constant", "step_decay", "cosine_warmup", "cosine_warmup_exp",
]
