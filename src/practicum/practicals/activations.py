"""Seed 000, practical 5: which hidden non-linearities let a tiny MLP fit half-moons?

One MLP 2 -> 10 -> 10 -> 1 (plain torch, a logit out, BCE-with-logits, AdamW, full batch) is
trained per activation from the *same* initial weights, and each run is filmed: an animated GIF of
the decision boundary every few steps, with the training points on top. A final grid shows every
boundary side by side, and a table gives final accuracy, loss, and whether training diverged.

Where the non-linearity sits (as in the seed's code):

- pointwise ``f`` (abs, exp, exp_cos, sin, square, relu, sigmoid, reciprocal, tan, sgn) follows
  *both* hidden layers -- the seed's "abs x abs":   ``fc3(f(fc2(f(fc1(x)))))``;
- ``sort`` sorts the first hidden vector along the feature dimension, once:
  ``fc3(fc2(sort(fc1(x))))``. Sorting is piecewise linear (the identity inside each region where
  the order of the 10 features is fixed), and it is permutation-*invariant*: whatever order fc1
  puts its units in, sort returns the same vector;
- ``permute`` computes ``h = fc1(x)`` and ``y = fc2(h)`` with no activation at all, then reorders
  ``y`` by the sort order of ``h``: ``y'[n, j] = y[n, argsort(h[n])[j]]`` (the seed's
  ``torch.gather(fc2(x), -1, torch.sort(x, -1).indices)``); the output is ``fc3(y')``. The index
  is piecewise constant in x, so the gradient flows through ``y`` only, never through the ranking.
  This needs fc2 square (hidden -> hidden), which it is.

Divergence: every step's loss is checked; the first non-finite one stops that activation (reported
as ``diverged at step N``, its GIF held on the last finite boundary) and the others go on. What
fails, and how, measured: exp and exp_cos NaN at a large learning rate (exp(exp(.)) overflows, then
inf - inf); 1/x and tan rarely NaN in float32 under AdamW -- their first-layer gradients reach
1e4..1e8, Adam normalises the steps, and they simply do not fit. ``sgn`` has zero gradient almost
everywhere: fc1 and fc2 only shrink by weight decay, which leaves every sign -- the features --
unchanged, so only fc3 learns, on fixed random features (gradient column: 0).

Headline: ``test/accuracy`` is the *worst* test accuracy among the listed activations the seed
reports as fitting, so the expected band fails if any one of them stops fitting.

Resume: each finished activation is checkpointed (its table row and final boundary), so an
interrupted run picks up at the next activation.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.errors import UsageError
from practicum.registry import Registry, nearest
from practicum.store import Run


# -- the non-linearities ----------------------------------------------------------------------


@dataclass(frozen=True)
class Activation:
    """``fn`` maps a hidden batch (N, H) to (N, H); ``kind`` says where the model applies it.

    ``permute``'s fn takes two tensors, ``fn(y, h)``: it reorders ``y`` by the sort order of ``h``.
    ``seed_fits`` is what the seed reported (its "fits" and "cannot fit" lists).
    """

    fn: Callable[..., Tensor]
    kind: Literal["pointwise", "sort", "permute"] = "pointwise"
    seed_fits: bool = True


def sort_features(h: Tensor) -> Tensor:
    """(N, H) -> (N, H), each row sorted ascending. The gradient routes back through the order."""
    return torch.sort(h, dim=-1).values


def permute_by(y: Tensor, h: Tensor) -> Tensor:
    """(N, H), (N, H) -> (N, H): ``out[n, j] = y[n, argsort(h[n])[j]]``; each row of ``out`` is
    a permutation of that row of ``y``. No gradient reaches ``h`` (an index is not differentiable)."""
    return torch.gather(y, -1, torch.argsort(h, dim=-1))


ACTIVATIONS: Registry[Activation] = Registry("activation")
ACTIVATIONS.register("abs", Activation(torch.abs))
ACTIVATIONS.register("exp", Activation(torch.exp))
ACTIVATIONS.register("exp_cos", Activation(lambda x: torch.exp(x) * torch.cos(x)))
ACTIVATIONS.register("sin", Activation(torch.sin))
ACTIVATIONS.register("square", Activation(torch.square))
ACTIVATIONS.register("relu", Activation(torch.relu))
ACTIVATIONS.register("sigmoid", Activation(torch.sigmoid))
ACTIVATIONS.register("sort", Activation(sort_features, "sort"))
ACTIVATIONS.register("permute", Activation(permute_by, "permute"))
# The seed's failures: poles at 0 (1/x) and at pi/2 + k pi (tan); sgn's derivative is 0 a.e.
ACTIVATIONS.register("reciprocal", Activation(torch.reciprocal, seed_fits=False))
ACTIVATIONS.register("tan", Activation(torch.tan, seed_fits=False))
ACTIVATIONS.register("sgn", Activation(torch.sign, seed_fits=False))


class MoonNet(nn.Module):
    """2 -> hidden -> hidden -> 1, the non-linearity placed as the module docstring says."""

    def __init__(self, activation: str, hidden: int = 10):
        super().__init__()
        self.act = ACTIVATIONS[activation]
        self.fc1 = nn.Linear(2, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> Tensor:  # (N, 2) -> (N,) logits
        h = self.fc1(x)  # (N, H)
        if self.act.kind == "sort":
            h = self.fc2(self.act.fn(h))
        elif self.act.kind == "permute":
            h = self.act.fn(self.fc2(h), h)
        else:
            h = self.act.fn(self.fc2(self.act.fn(h)))
        return self.fc3(h).squeeze(-1)


# -- config -----------------------------------------------------------------------------------


class Data(Section):
    n_samples: int = Field(1000, ge=10, description="half-moons points generated")
    noise: float = Field(0.2, ge=0, description="Gaussian noise on each coordinate")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="held-out share")


class Model(Section):
    hidden: int = Field(10, gt=0, description="width of both hidden layers")
    activations: list[str] = Field(
        ["abs", "exp", "exp_cos", "sin", "square", "relu", "sigmoid", "sort", "permute",
         "reciprocal", "tan", "sgn"],
        min_length=1, description="one model per name, trained in this order")

    @field_validator("activations")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in ACTIVATIONS:
                raise ValueError(f"unknown activation '{name}'{nearest(name, ACTIVATIONS.names())}; "
                                 f"valid: {', '.join(ACTIVATIONS.names())}")
        if len(set(names)) != len(names):
            raise ValueError("an activation is listed twice")
        return names


class Optim(Section):
    lr: float = Field(0.02, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decoupled weight decay")


class Train(Section):
    steps: int = Field(1000, gt=0, description="full-batch AdamW steps per activation")
    log_every: int = Field(50, gt=0, description="steps between metrics.jsonl lines")
    fit_threshold: float = Field(0.9, gt=0, le=1, description="test accuracy that counts as 'fits'")


class Animation(Section):
    frames: int = Field(30, ge=2, description="GIF frames: the boundary at steps "
                        "round(linspace(0, steps, frames)), the first before any update")
    size: int = Field(240, ge=64, description="GIF width = height in pixels (title bar included)")
    resolution: int = Field(60, ge=8, description="the model is evaluated on resolution x resolution "
                            "points, upsampled bilinearly to the frame")
    frame_ms: int = Field(120, gt=0, description="display time of one frame; the last is held 1.5 s")


class Config(Experiment):
    data: Data = Data()
    model: Model = Model()
    optim: Optim = Optim()
    train: Train = Train()
    animation: Animation = Animation()

    @model_validator(mode="after")
    def _frames_fit(self) -> "Config":
        # Distinct frames need distinct steps and distinct progress-bar lengths. A UsageError, not a
        # ValueError: pydantic lets it through unwrapped, not buried under a dump of the config.
        frames = self.animation.frames
        if frames > self.train.steps + 1:
            raise UsageError(f"animation.frames = {frames} needs train.steps >= {frames - 1} "
                             f"(it is {self.train.steps})")
        if frames > self.animation.size:
            raise UsageError(f"animation.frames = {frames} needs animation.size >= {frames} "
                             f"(it is {self.animation.size})")
        return self


# -- rendering: palette frames drawn with Pillow straight from the probability grid ----------

TITLE_PX = 30  # title bar at the top of each frame
BANDS = 5  # shading levels per class: flat colour bands keep the GIFs small (no dithering)


def _palette() -> list[int]:
    """Every frame uses one fixed 256-entry palette; the indices are the constants below."""
    white = np.array([255.0, 255, 255])
    shades = [white + (c - white) * (k + 1) / BANDS  # light to strong, by confidence
              for c in (np.array([120.0, 170, 220]), np.array([250.0, 160, 90]))  # class 0, class 1
              for k in range(BANDS)]
    shades = shades[BANDS - 1::-1] + shades[BANDS:]  # index 0 = surest class 0 ... 2 BANDS - 1 = surest 1
    fixed = [(40, 40, 40), (190, 190, 190), (255, 255, 255), (0, 0, 0), (33, 102, 172), (178, 24, 43)]
    colours = [tuple(int(v) for v in c) for c in shades] + fixed
    return [v for c in colours for v in c] + [0] * 3 * (256 - len(colours))


PALETTE = _palette()
EDGE, NAN, WHITE, BLACK = 2 * BANDS, 2 * BANDS + 1, 2 * BANDS + 2, 2 * BANDS + 3
POINT = (2 * BANDS + 4, 2 * BANDS + 5)  # class 0, class 1 points


@dataclass
class Canvas:
    """The plot box in data coordinates, its size in pixels, and the coarse grid the model is
    evaluated on (``res`` x ``res`` points spanning the box, row 0 at the top)."""

    lo: np.ndarray  # (2,) lower-left corner in data units
    hi: np.ndarray  # (2,) upper-right corner
    width: int
    height: int
    res: int

    @classmethod
    def around(cls, x: np.ndarray, size: int, res: int) -> "Canvas":
        return cls(x.min(0) - 0.5, x.max(0) + 0.5, size, size - TITLE_PX, res)

    def grid(self) -> np.ndarray:
        """(res * res, 2) float32 points, row-major from the top-left corner."""
        xs = np.linspace(self.lo[0], self.hi[0], self.res)
        ys = np.linspace(self.hi[1], self.lo[1], self.res)
        gx, gy = np.meshgrid(xs, ys)
        return np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)

    def to_pixels(self, x: np.ndarray) -> np.ndarray:
        """(N, 2) data coordinates -> (N, 2) pixel coordinates (column, row) in the plot box."""
        u = (x[:, 0] - self.lo[0]) / (self.hi[0] - self.lo[0]) * (self.width - 1)
        v = (self.hi[1] - x[:, 1]) / (self.hi[1] - self.lo[1]) * (self.height - 1)
        return np.stack([u, v], 1)


def _font(px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)  # scalable when Pillow has FreeType
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def points_layer(canvas: Canvas, x: np.ndarray, y: np.ndarray):
    """The training points as (palette image, mask), drawn once and pasted on every frame."""
    from PIL import Image, ImageDraw

    layer = Image.new("P", (canvas.width, canvas.height), WHITE)
    mask = Image.new("L", (canvas.width, canvas.height), 0)
    draw, draw_mask = ImageDraw.Draw(layer), ImageDraw.Draw(mask)
    r = max(1.5, canvas.width / 160)
    for (u, v), label in zip(canvas.to_pixels(x), y):
        box = [u - r, v - r, u + r, v + r]
        draw.ellipse(box, fill=POINT[int(label)], outline=BLACK)
        draw_mask.ellipse(box, fill=255)
    return layer, mask


def render_frame(prob: np.ndarray, canvas: Canvas, points, title: list[str], progress: float | None = None):
    """One palette frame: P(class 1) in shaded bands, a dark 0.5 contour, the points, a title, and
    under the title a bar ``progress`` (0..1] of the width long.

    ``prob`` is (res * res,) on the canvas grid; NaN (exp overflowing far from the data) is grey.
    The bar also keeps the frames distinct: Pillow merges identical consecutive GIF frames, which
    would break the configured frame count (e.g. a title cut off at a small size)."""
    from PIL import Image, ImageDraw

    coarse = Image.fromarray(prob.reshape(canvas.res, canvas.res).astype(np.float32), "F")
    p = np.asarray(coarse.resize((canvas.width, canvas.height), Image.BILINEAR))  # (H, W)
    index = np.clip(np.nan_to_num(p, nan=0.5) * 2 * BANDS, 0, 2 * BANDS - 1).astype(np.uint8)
    side = p > 0.5
    edge = np.zeros_like(side)  # pixels where the predicted class changes: the decision boundary
    edge[:, 1:] |= side[:, 1:] != side[:, :-1]
    edge[1:, :] |= side[1:, :] != side[:-1, :]
    index[edge] = EDGE
    index[np.isnan(p)] = NAN
    frame = Image.new("P", (canvas.width, canvas.height + TITLE_PX), WHITE)
    frame.putpalette(PALETTE)
    frame.paste(Image.fromarray(index, "P"), (0, TITLE_PX))
    frame.paste(points[0], (0, TITLE_PX), points[1])
    draw = ImageDraw.Draw(frame)
    font = _font(max(8, TITLE_PX // 3))
    for i, line in enumerate(title[:2]):
        draw.text((4, 1 + i * TITLE_PX // 2), line, fill=BLACK, font=font)
    if progress is not None:
        draw.rectangle([0, TITLE_PX - 2, math.ceil(progress * canvas.width) - 1, TITLE_PX - 1], fill=EDGE)
    return frame


# -- training ---------------------------------------------------------------------------------


def accuracy(logits: Tensor, y: Tensor) -> float:
    return float(((logits > 0) == (y > 0.5)).float().mean())


def train_one(name: str, cfg: Config, data: dict, canvas: Canvas, points, run: Run) -> dict:
    """Train one activation, film it, and return its table row plus its final boundary."""
    xtr, ytr, xte, yte, grid = (data[k] for k in ("xtr", "ytr", "xte", "yte", "grid"))
    torch.manual_seed(cfg.seed)  # every activation starts from the same weights
    model = MoonNet(name, cfg.model.hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                            fused=True)  # one kernel for all six tensors: ~20% less time per step
    loss_fn = nn.BCEWithLogitsLoss()
    steps = cfg.train.steps
    frame_steps = set(np.round(np.linspace(0, steps, cfg.animation.frames)).astype(int).tolist())
    n_frames = cfg.animation.frames

    def boundary() -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(model(grid)).numpy()

    def snapshot(step: int) -> tuple[float, float]:
        with torch.no_grad():
            return accuracy(model(xtr), ytr), accuracy(model(xte), yte)

    frames, prob, diverged_at, fc1_grads = [], None, None, []
    for step in range(steps + 1):  # step 0 is the initial boundary; steps 1..steps are updates
        if step > 0:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xtr), ytr)
            loss.backward()
            # Watching the loss is enough: an inf gradient makes AdamW's update inf/inf = NaN, and a
            # NaN weight reaches every logit, so the next loss is NaN (reported one step late).
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                diverged_at = step
                break
            log = step == 1 or step % cfg.train.log_every == 0 or step == steps
            if log:  # |dL/dW1| before the update, in float64 (float32 overflows for 1/x and tan)
                fc1_grads.append(float(model.fc1.weight.grad.double().norm()))
            opt.step()
            if log:
                tr_acc, te_acc = snapshot(step)
                run.log({"loss": loss_value, "accuracy": tr_acc, "test_accuracy": te_acc,
                         "grad_fc1": fc1_grads[-1]}, split=name, step=step)
        if step in frame_steps:
            prob = boundary()
            tr_acc, te_acc = snapshot(step)
            frames.append(render_frame(prob, canvas, points, [
                f"{name}   step {step}/{steps}", f"train acc {tr_acc:.3f}   test {te_acc:.3f}"],
                progress=(len(frames) + 1) / n_frames))

    if diverged_at is not None:  # keep the frame count: hold the last finite boundary, say so
        while len(frames) < n_frames:
            frames.append(render_frame(prob, canvas, points, [
                f"{name}   DIVERGED at step {diverged_at}", "loss is NaN/inf: stopped"],
                progress=(len(frames) + 1) / n_frames))
    fileio.write_gif(run.figure_path(f"boundary_{name}.gif"), frames, cfg.animation.frame_ms)

    if diverged_at is None:
        with torch.no_grad():
            final_loss = float(loss_fn(model(xtr), ytr))
            train_acc, test_acc = accuracy(model(xtr), ytr), accuracy(model(xte), yte)
        fits = test_acc >= cfg.train.fit_threshold
        status = "fits" if fits else "does not fit"
    else:
        final_loss = train_acc = test_acc = float("nan")
        status = f"diverged at step {diverged_at}"
    return {"name": name, "train_acc": train_acc, "test_acc": test_acc, "loss": final_loss,
            "diverged_at": diverged_at, "fc1_grad": float(np.mean(fc1_grads)) if fc1_grads else math.nan,
            "status": status,
            "seed": "fits" if ACTIVATIONS[name].seed_fits else "fails", "prob": prob}


# -- checkpoint: one file per finished activation ---------------------------------------------


def save_done(run: Run, row: dict) -> None:
    meta = {k: v for k, v in row.items() if k != "prob"}
    meta["metrics_position"] = run.metrics_position()
    fileio.save_npz(run.checkpoint_path(f"{row['name']}.npz"), prob=row["prob"],
                    meta=np.array(json.dumps(meta)))


def load_done(run: Run, name: str) -> dict | None:
    path = run.checkpoint_path(f"{name}.npz")
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        row = json.loads(str(z["meta"]))
        row["prob"] = z["prob"]
    return row


# ---------------------------------------------------------------------------------------------


def load_data(cfg: Config) -> dict:
    from practicum.data.synthetic import make_moons, train_test_split

    rng = np.random.default_rng(cfg.seed)
    x, y = make_moons(cfg.data.n_samples, cfg.data.noise, rng)
    xtr, xte, ytr, yte = train_test_split(x, y, cfg.data.test_fraction, rng)
    return {"xtr": xtr, "ytr": ytr, "xte": xte, "yte": yte}


def run(cfg: Config, run: Run) -> dict:
    # One thread: for a 10-unit MLP, intra-op threads only add synchronisation. Measured on this
    # 2-core machine shared with other jobs: 2.5 ms per step with 1 thread, 36 ms with 2.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(cfg, run)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: Config, run: Run) -> dict:
    raw = load_data(cfg)
    canvas = Canvas.around(np.concatenate([raw["xtr"], raw["xte"]]), cfg.animation.size,
                           cfg.animation.resolution)
    data = {k: torch.from_numpy(v).float() for k, v in raw.items()}  # labels as 0./1. for BCE
    data["grid"] = torch.from_numpy(canvas.grid())  # (res * res, 2)
    points = points_layer(canvas, raw["xtr"], raw["ytr"])

    rows, position, rewound = [], 0, not run.resumed
    for name in cfg.model.activations:
        row = load_done(run, name) if run.resumed else None
        if row is not None:
            position = row["metrics_position"]
        else:
            if not rewound:  # drop the lines an interrupted activation had logged
                run.rewind_metrics(position)
                rewound = True
            row = train_one(name, cfg, data, canvas, points, run)
            save_done(run, row)
        rows.append(row)

    # Data first (the grid figure is drawn from it), then the figure and the table.
    probs = {r["name"]: r["prob"] for r in rows}  # a diverged one keeps its last finite boundary
    fileio.save_npz(run.artifact_path("boundaries.npz"), lo=canvas.lo, hi=canvas.hi,
                    xtr=raw["xtr"], ytr=raw["ytr"],
                    **{f"prob_{k}": v.reshape(canvas.res, canvas.res) for k, v in probs.items()})
    grid_figure(run.artifact_path("boundaries.npz"), rows, run.figure_path("boundaries.png"),
                cfg.animation.size)
    fileio.write_json(run.dir / "tables" / "activations.json", {
        "columns": ["activation", "train acc", "test acc", "final loss", "diverged at step",
                    "mean |grad W1|", "result", "seed"],
        "rows": [[r["name"], _num(r["train_acc"]), _num(r["test_acc"]), _num(r["loss"]),
                  r["diverged_at"], _num(r["fc1_grad"]), r["status"], r["seed"]] for r in rows],
        "caption": (f"Half-moons, MLP 2-{cfg.model.hidden}-{cfg.model.hidden}-1, AdamW lr {cfg.optim.lr}, "
                    f"{cfg.train.steps} full-batch steps; 'fits' = test accuracy >= "
                    f"{cfg.train.fit_threshold}; |grad W1| = norm of the first layer's weight gradient, mean "
                    f"over step 1 and every {cfg.train.log_every}th step; seed = what seed 000 reported"),
    })
    return summarize(rows, cfg.train.fit_threshold)


def _num(v: float) -> float | None:
    """A table cell: 4 significant digits; NaN (diverged, nothing measured) becomes empty."""
    return None if not math.isfinite(v) else float(f"{v:.4g}")


def summarize(rows: list[dict], fit_threshold: float) -> dict:
    """``test/accuracy_<name>`` per activation (NaN when it diverged), and as the headline
    ``test/accuracy`` = the *worst* test accuracy among activations the seed says fit (so the
    expected band fails if any one of them stops fitting); ``test/fitted`` counts the activations
    at or above the threshold, ``train/diverged`` those that diverged."""
    summary = {}
    for r in rows:
        summary[f"test/accuracy_{r['name']}"] = r["test_acc"]
        summary[f"train/accuracy_{r['name']}"] = r["train_acc"]
    fitting = [r["test_acc"] for r in rows if ACTIVATIONS[r["name"]].seed_fits]
    finite = [a for a in fitting if math.isfinite(a)]
    summary["test/accuracy"] = min(finite) if finite and len(finite) == len(fitting) else float("nan")
    summary["test/accuracy_best"] = max((r["test_acc"] for r in rows if math.isfinite(r["test_acc"])),
                                        default=float("nan"))
    summary["test/fitted"] = float(sum(r["test_acc"] >= fit_threshold for r in rows))
    summary["train/diverged"] = float(sum(r["diverged_at"] is not None for r in rows))
    return summary


def grid_figure(npz_path, rows: list[dict], path, size: int) -> None:
    """All final boundaries side by side (PNG), drawn from boundaries.npz with the GIFs' renderer."""
    from PIL import Image

    with np.load(npz_path, allow_pickle=False) as z:
        lo, hi, xtr, ytr = z["lo"], z["hi"], z["xtr"], z["ytr"]
        probs = {r["name"]: z[f"prob_{r['name']}"] for r in rows}
    res = next(iter(probs.values())).shape[0]
    canvas = Canvas(lo, hi, size, size - TITLE_PX, res)
    points = points_layer(canvas, xtr, ytr)
    cols = min(4, len(rows))
    sheet = Image.new("P", (cols * size, math.ceil(len(rows) / cols) * size), WHITE)
    sheet.putpalette(PALETTE)
    for i, r in enumerate(rows):
        result = (f"diverged at step {r['diverged_at']}" if r["diverged_at"] is not None
                  else f"train {r['train_acc']:.3f}  test {r['test_acc']:.3f}")
        tile = render_frame(probs[r["name"]].ravel(), canvas, points, [r["name"], result])
        sheet.paste(tile, ((i % cols) * size, (i // cols) * size))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    fileio.write_bytes(path, buf.getvalue())
