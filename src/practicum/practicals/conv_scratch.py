"""Seed 003, task 05 / D2L 7.2-7.5: two-dimensional convolution and pooling computed by hand.

The from-scratch pieces, each a few lines of loops as d2l writes them, each checked against
torch's own operator on random tensors drawn with the seed (table ``1_checks``; the tests hold
them to float rounding):

- ``corr2d(X, K)``: the cross-correlation a "convolution" layer computes, one output element
  per window position (D2L 7.2), with zero ``padding`` and ``stride`` (D2L 7.3);
  output size floor((n + 2p - k + s) / s) per dimension (``output_size``);
- ``corr2d_multi_in``: a sum over input channels; ``corr2d_multi_in_out``: a stack over output
  channels; ``corr2d_multi_in_out_1x1``: a 1x1 convolution as the matrix product
  (c_o, c_i) @ (c_i, h*w) (D2L 7.4);
- ``pool2d``: max and average pooling of every channel, with padding and stride (D2L 7.5;
  max pooling pads with -inf, average pooling with zeros that count, as torch's default);
- ``Conv2D``: d2l's layer, a weight and a bias around ``corr2d``; autograd differentiates the loops.

Then D2L 7.2's kernel learning: an image X of ones with a black band (X[:, 2:6] = 0), its edges
Y = corr2d(X, K) under the true kernel K = [[1, -1]], and a kernel of K's shape learned from
(X, Y) alone by gradient descent on the summed squared error (d2l: lr 0.03, 10 steps, no bias).
It is learned twice from the same start: with the scratch ``Conv2D`` and with ``nn.Conv2d``. A
full-batch lesson loop (one image, no minibatches), as in the book. Table ``2_kernel`` and the
figure show the kernel at every step; the loss is logged per step (splits ``train-scratch`` and
``train-torch``). Headline: the largest |learned - true| kernel entry.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.store import Run


class Data(Section):
    height: int = Field(6, gt=0, description="image rows (d2l: 6)")
    width: int = Field(8, gt=0, description="image columns (d2l: 8)")
    band: tuple[int, int] = Field((2, 6), description="columns [a, b) that are 0, the rest 1 (d2l: X[:, 2:6] = 0)")
    kernel: list[list[float]] = Field([[1.0, -1.0]], min_length=1, description="the true kernel K")


class Train(Section):
    implementations: list[Literal["scratch", "torch"]] = Field(["scratch", "torch"], min_length=1)
    lr: float = Field(0.03, gt=0, description="d2l: 3e-2")
    steps: int = Field(10, gt=0, description="gradient steps on the one image (d2l: 10)")
    init: Literal["uniform", "default"] = Field("uniform", description="uniform: U(0, 1) as d2l's Conv2D, "
                                                "the same start for both; default: nn.Conv2d's own")
    threads: int = Field(1, ge=0, description="torch threads (tensors of a few dozen numbers)")
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="cpu: a few dozen numbers, where a GPU "
                                                   "adds only launch latency; cuda (auto: when present) runs the "
                                                   "same loops and float64 checks there (no mps: it has no float64)")


class Config(Experiment):
    version = 1

    data: Data = Data()
    train: Train = Train()

    @model_validator(mode="after")
    def _sizes(self):
        kh, kw = len(self.data.kernel), len(self.data.kernel[0])
        if any(len(row) != kw for row in self.data.kernel):
            raise ValueError("data.kernel: every row needs the same length")
        if kh > self.data.height or kw > self.data.width:
            raise ValueError(f"data.kernel ({kh}x{kw}) is larger than the image")
        return self


# -- the from-scratch operators (D2L 7.2-7.5) --------------------------------------------------


def pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def output_size(n: int, k: int, p: int = 0, s: int = 1) -> int:
    """Output length along one dimension: floor((n + 2p - k + s) / s) (D2L 7.3)."""
    return (n + 2 * p - k + s) // s


def pad2d(X: Tensor, padding: tuple[int, int], value: float = 0.0) -> Tensor:
    """(h, w) -> (h + 2 ph, w + 2 pw), ``value`` around the edge."""
    ph, pw = padding
    if not ph and not pw:
        return X
    out = X.new_full((X.shape[0] + 2 * ph, X.shape[1] + 2 * pw), value)
    out[ph: ph + X.shape[0], pw: pw + X.shape[1]] = X
    return out


def corr2d(X: Tensor, K: Tensor, padding: int | tuple[int, int] = 0, stride: int | tuple[int, int] = 1) -> Tensor:
    """2-D cross-correlation: Y[i, j] = sum(window of X at (i s_h, j s_w) * K). X (h, w), K (kh, kw)."""
    (ph, pw), (sh, sw) = pair(padding), pair(stride)
    X = pad2d(X, (ph, pw))
    kh, kw = K.shape
    Y = X.new_zeros((output_size(X.shape[0], kh, 0, sh), output_size(X.shape[1], kw, 0, sw)))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i * sh: i * sh + kh, j * sw: j * sw + kw] * K).sum()
    return Y


def corr2d_multi_in(X: Tensor, K: Tensor, **kw) -> Tensor:
    """X (c_i, h, w), K (c_i, kh, kw) -> (h', w'): one cross-correlation per channel, summed."""
    return sum(corr2d(x, k, **kw) for x, k in zip(X, K))


def corr2d_multi_in_out(X: Tensor, K: Tensor, **kw) -> Tensor:
    """X (c_i, h, w), K (c_o, c_i, kh, kw) -> (c_o, h', w'): one multi-input result per output channel."""
    return torch.stack([corr2d_multi_in(X, k, **kw) for k in K], 0)


def corr2d_multi_in_out_1x1(X: Tensor, K: Tensor) -> Tensor:
    """A 1x1 convolution is a fully-connected layer at every pixel: (c_o, c_i) @ (c_i, h*w)."""
    c_i, h, w = X.shape
    c_o = K.shape[0]
    Y = K.reshape(c_o, c_i) @ X.reshape(c_i, h * w)  # (c_o, h*w)
    return Y.reshape(c_o, h, w)


def pool2d(X: Tensor, pool_size: int | tuple[int, int], mode: Literal["max", "avg"] = "max",
           padding: int | tuple[int, int] = 0, stride: int | tuple[int, int] | None = None) -> Tensor:
    """Max or average pooling of every channel of X (c, h, w) (or of one (h, w) map). The stride
    defaults to the window, as torch's. Max pools pad with -inf (a pad never wins), average pools
    with zeros that count in the mean (torch's ``count_include_pad=True``)."""
    if X.ndim == 3:
        return torch.stack([pool2d(x, pool_size, mode, padding, stride) for x in X], 0)
    (kh, kw), (ph, pw) = pair(pool_size), pair(padding)
    sh, sw = pair(stride) if stride is not None else (kh, kw)
    X = pad2d(X, (ph, pw), float("-inf") if mode == "max" else 0.0)
    Y = X.new_zeros((output_size(X.shape[0], kh, 0, sh), output_size(X.shape[1], kw, 0, sw)))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            window = X[i * sh: i * sh + kh, j * sw: j * sw + kw]
            Y[i, j] = window.max() if mode == "max" else window.mean()
    return Y


class Conv2D(nn.Module):
    """d2l's convolution layer: Y = corr2d(X, weight) + bias, one channel in and out."""

    def __init__(self, kernel_size: tuple[int, int], bias: bool = True, generator: torch.Generator | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(kernel_size, generator=generator))  # U(0, 1), as d2l
        self.bias = nn.Parameter(torch.zeros(1)) if bias else None

    def forward(self, x: Tensor) -> Tensor:  # (h, w) -> (h - kh + 1, w - kw + 1)
        y = corr2d(x, self.weight)
        return y + self.bias if self.bias is not None else y


# -- checks against torch ----------------------------------------------------------------------


def checks(gen: torch.Generator, device: torch.device | str = "cpu") -> list[list]:
    """[operation, shapes, max |scratch - torch|] on random float64 tensors (drawn on the CPU)."""
    rand = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64).to(device)  # noqa: E731
    rows = []

    def row(name: str, ours: Tensor, theirs: Tensor) -> None:
        assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
        rows.append([name, "x".join(map(str, ours.shape)), float((ours - theirs).abs().max())])

    X, K = rand(7, 9), rand(3, 2)
    row("corr2d vs F.conv2d", corr2d(X, K), F.conv2d(X[None, None], K[None, None])[0, 0])
    for p, s, k in (((1, 1), (1, 1), (3, 3)), ((2, 1), (1, 1), (5, 3)), ((1, 1), (2, 2), (3, 3)),
                    ((0, 1), (3, 4), (3, 5))):  # D2L 7.3's four cases (on an 8x8 image)
        X8, Kp = rand(8, 8), rand(*k)
        row(f"corr2d padding {p} stride {s} kernel {k}", corr2d(X8, Kp, padding=p, stride=s),
            F.conv2d(X8[None, None], Kp[None, None], padding=p, stride=s)[0, 0])
    X3, K3 = rand(3, 6, 5), rand(3, 2, 2)
    row("corr2d_multi_in (3 channels)", corr2d_multi_in(X3, K3), F.conv2d(X3[None], K3[None])[0, 0])
    K32 = rand(2, 3, 2, 2)
    row("corr2d_multi_in_out (3 -> 2)", corr2d_multi_in_out(X3, K32), F.conv2d(X3[None], K32)[0])
    row("corr2d_multi_in_out, padding 1, stride 2", corr2d_multi_in_out(X3, K32, padding=1, stride=2),
        F.conv2d(X3[None], K32, padding=1, stride=2)[0])
    K1 = rand(2, 3, 1, 1)
    row("1x1 as a matrix product vs corr2d_multi_in_out", corr2d_multi_in_out_1x1(X3, K1), corr2d_multi_in_out(X3, K1))
    row("1x1 as a matrix product vs F.conv2d", corr2d_multi_in_out_1x1(X3, K1), F.conv2d(X3[None], K1)[0])
    X4 = rand(2, 4, 4)
    row("pool2d max 2x2", pool2d(X4, 2, "max", stride=1), F.max_pool2d(X4[None], 2, stride=1)[0])
    row("pool2d avg 2x2", pool2d(X4, 2, "avg", stride=1), F.avg_pool2d(X4[None], 2, stride=1)[0])
    row("pool2d max 3x3, padding 1, stride 2", pool2d(X4, 3, "max", 1, 2), F.max_pool2d(X4[None], 3, 2, 1)[0])
    row("pool2d avg 3x3, padding 1, stride 2", pool2d(X4, 3, "avg", 1, 2), F.avg_pool2d(X4[None], 3, 2, 1)[0])
    row("pool2d max (2, 3), padding (0, 1), stride (2, 3)", pool2d(X4, (2, 3), "max", (0, 1), (2, 3)),
        F.max_pool2d(X4[None], (2, 3), (2, 3), (0, 1))[0])
    return rows


# -- kernel learning (D2L 7.2.4) ---------------------------------------------------------------


def edge_image(cfg: Data) -> Tensor:
    X = torch.ones(cfg.height, cfg.width)
    X[:, cfg.band[0]: cfg.band[1]] = 0  # a black band: edges at its two sides
    return X


def learn_kernel(impl: str, X: Tensor, Y: Tensor, shape: tuple[int, int], cfg: Train, start: Tensor | None,
                 run: Run) -> tuple[list[list[float]], list[float]]:
    """Gradient descent on sum((net(X) - Y)^2) (d2l's update by hand). Returns the kernel and
    its loss at every step (the kernel flattened; step 0 is the start)."""
    if impl == "scratch":
        net = Conv2D(shape, bias=False).to(X.device)
        forward = lambda: net(X)  # noqa: E731 - (h, w) -> (h, w - 1)
    else:
        net = nn.Conv2d(1, 1, kernel_size=shape, bias=False).to(X.device)
        forward = lambda: net(X[None, None])[0, 0]  # noqa: E731 - torch wants (B, C, h, w)
    if start is not None:
        with torch.no_grad():
            net.weight.copy_(start.view_as(net.weight))
    kernels, losses = [], []
    for step in range(cfg.steps + 1):
        run.guard()
        loss = ((forward() - Y) ** 2).sum()
        kernels.append(net.weight.detach().flatten().tolist())
        losses.append(loss.item())
        run.log({"loss": losses[-1]}, split=f"train-{impl}", step=step)
        if step == cfg.steps:
            break  # the last kernel's loss, no update after it
        net.zero_grad()
        loss.backward()
        with torch.no_grad():
            net.weight -= cfg.lr * net.weight.grad
    return kernels, losses


def run(cfg: Config, run: Run) -> dict:
    if run.resumed:  # a second of work: start over
        run.rewind_metrics(0)
    from practicum.train.device import resolve_device

    device = resolve_device(cfg.train.device)
    gen = torch.Generator().manual_seed(cfg.seed)
    rows = checks(gen, device)
    run.write_table("1_checks", ["operation", "output shape", "max |scratch - torch|"], rows,
                    "Each from-scratch operator against torch's (random float64 inputs, seed "
                    f"{cfg.seed}): the differences are rounding")

    X = edge_image(cfg.data).to(device)
    K = torch.tensor(cfg.data.kernel).to(device)
    Y = corr2d(X, K)  # the edges: +1 where 1 -> 0 (left side of the band), -1 where 0 -> 1
    shape = tuple(K.shape)
    start = torch.rand(shape, generator=gen).to(device) if cfg.train.init == "uniform" else None
    if start is None:
        torch.manual_seed(cfg.seed)  # nn.Conv2d's (and Conv2D's) own initialisation, from the seed
    learned = {impl: learn_kernel(impl, X, Y, shape, cfg.train, start, run) for impl in cfg.train.implementations}

    names = [f"k[{i},{j}]" for i in range(shape[0]) for j in range(shape[1])]
    true = K.flatten().tolist()
    steps = list(range(cfg.train.steps + 1))
    run.write_table("2_kernel", ["step", *[f"{impl} {n}" for impl in learned for n in names],
                                 *[f"{impl} loss" for impl in learned]],
                    [[s, *[round(kernels[s][k], 4) for kernels, _ in learned.values() for k in range(len(names))],
                      *[round(losses[s], 4) for _, losses in learned.values()]]
                     for s in steps],
                    f"The kernel after each step (step 0: the start) and its loss sum((conv(X) - Y)^2); "
                    f"true K = {cfg.data.kernel}, lr {cfg.train.lr}")
    errors = {impl: max(abs(a - b) for a, b in zip(kernels[-1], true)) for impl, (kernels, _) in learned.items()}
    run.write_table("3_learned", ["kernel entry", "true", *learned],
                    [[n, t, *[round(kernels[-1][k], 4) for kernels, _ in learned.values()]]
                     for k, (n, t) in enumerate(zip(names, true))],
                    f"Learned against true after {cfg.train.steps} steps (from the same start)")
    edges_t = corr2d(X.t(), K)  # the band turned horizontal: this kernel sees no edge at all

    fileio.write_json(run.artifact_path("kernel.json"), {
        "X": X.tolist(), "Y": Y.tolist(), "K": cfg.data.kernel, "shape": list(shape), "lr": cfg.train.lr,
        "kernels": {impl: k for impl, (k, _) in learned.items()},
        "losses": {impl: l for impl, (_, l) in learned.items()}})
    from practicum.report.conv_scratch import kernel_figures

    kernel_figures(run.artifact_path("kernel.json"), run.dir / "figures")

    summary = {"kernel/max_abs_error": max(errors.values()),
               "check/max_abs_diff": max(r[2] for r in rows),
               "edges/transposed_max_abs": float(edges_t.abs().max())}
    for impl, (kernels, losses) in learned.items():
        summary[f"kernel/max_abs_error_{impl}"] = errors[impl]
        summary[f"train/loss_{impl}"] = losses[-1]
        summary.update({f"kernel/{impl}_{n}": v for n, v in zip(names, kernels[-1])})
    return summary
