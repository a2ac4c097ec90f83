"""D2L 14.12, neural style transfer (Gatys et al.), with a random-feature network.

The image itself is the parameter: starting from the content image, Adam changes its pixels to
minimise

    content_weight * sum_l |F_l(x) - F_l(content)|^2 / |F_l(content)|^2     (content layers)
  + style_weight   * sum_l |G(F_l(x)) - G(F_l(style))|^2 / |G(F_l(style))|^2 (style layers)
  + tv_weight      * total variation(x)                                      (smoothness)

with G the Gram matrix (D2L's, divided by C * H * W) and F_l a layer's features. D2L uses plain
mean squared errors with weights 1, 1e4, 10 for VGG-19; with other features those weights mean
nothing, and the Gram errors of different layers differ by orders of magnitude (here 1e-5 at
stage 4 to 1e-2 at stage 1, so the deep layers would not count). Dividing each term by its
target's size makes every layer's error relative (1 = as far as zero features) and the weights
readable. Adam with D2L's schedule (lr decayed x0.8 every 50 steps), in normalised pixel units.

The features F come from ``practicum.models.stylenet.RandomVGG``: a VGG-shaped network with
seeded random weights, since no pretrained VGG is available offline (see that module for why
random features work, and what they miss).

Images: the content image is a fruit photo from ``fruit-detection-voc``; the style image is a
fruit photo too or generated here (``generated:mosaic`` -- a stained-glass Voronoi pattern;
``generated:waves`` -- warped colour stripes), so the run needs no other data.

Recorded: losses every ``log_every`` steps (``loss`` split content / style / tv / total), the
content, style and result images (``images.npz`` and figures), and a GIF of the image every
``gif_every`` steps. A checkpoint every ``checkpoint_every`` steps lets an interrupted run resume.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.errors import UsageError
from practicum.train.device import torch_threads
from practicum.store import Run
from practicum.train import checkpoint

MEAN = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)  # D2L's (ImageNet) normalisation
STD = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)


class Images(Section):
    content: str = Field("fruit:train/mixed_1.jpg", description="fruit:<path in fruit-detection-voc>")
    style: str = Field("generated:mosaic", description="generated:mosaic | generated:waves | fruit:<path>")
    height: int = Field(128, ge=16)
    width: int = Field(192, ge=16)


class Net(Section):
    channels: list[int] = Field([32, 64, 128, 256], min_length=1)
    convs_per_stage: int = Field(2, gt=0)
    seed: int = Field(0, description="the random network's weights")
    content_layers: list[str] = ["3_2"]
    style_layers: list[str] = ["1_1", "2_1", "3_1", "4_1"]


class Loss(Section):
    content_weight: float = Field(1.0, ge=0)
    style_weight: float = Field(10.0, ge=0)
    tv_weight: float = Field(3.0, ge=0)


class Optim(Section):
    lr: float = Field(0.2, gt=0)
    steps: int = Field(300, gt=0)
    decay_every: int = Field(50, gt=0)
    decay: float = Field(0.8, gt=0, le=1)


class Record(Section):
    log_every: int = Field(10, gt=0)
    gif_every: int = Field(25, gt=0)
    checkpoint_every: int = Field(100, gt=0)


class Config(Experiment):
    images: Images = Images()
    net: Net = Net()
    loss: Loss = Loss()
    optim: Optim = Optim()
    record: Record = Record()


# -- images ------------------------------------------------------------------------------------


def generated_style(kind: str, height: int, width: int, seed: int) -> np.ndarray:
    """A procedural style image, (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    palette = np.array([[230, 57, 70], [241, 250, 238], [69, 123, 157], [29, 53, 87], [252, 191, 73],
                        [42, 157, 143]], np.float64)
    if kind == "mosaic":  # Voronoi cells in palette colours with dark lead lines between them
        n = max(8, height * width // 600)
        pts = rng.uniform([0, 0], [height, width], size=(n, 2))
        d = np.sqrt((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2)  # (H, W, n)
        two = np.partition(d, 1, axis=-1)[..., :2]
        cell = d.argmin(-1)
        colors = palette[rng.integers(0, len(palette), n)]
        img = colors[cell]
        img[(two[..., 1] - two[..., 0]) < 1.5] = [20, 20, 20]
    elif kind == "waves":  # stripes bent by a sine, coloured by phase
        phase = (xx / width * 6 + 0.8 * np.sin(yy / height * 2 * np.pi * 2 + xx / width * 3)) % 1.0
        idx = (phase * len(palette)).astype(int) % len(palette)
        img = palette[idx]
    else:
        raise UsageError(f"unknown generated style '{kind}'; valid: mosaic, waves")
    return img.astype(np.uint8)


def load_source(spec: str, height: int, width: int, seed: int) -> np.ndarray:
    """``fruit:<relpath>`` or ``generated:<kind>`` -> (H, W, 3) uint8 at the working size."""
    kind, _, arg = spec.partition(":")
    if kind == "generated":
        return generated_style(arg, height, width, seed)
    if kind == "fruit":
        from practicum.data.cache import fetch_file
        from practicum.data.voc import load_image

        image = load_image(fetch_file("fruit-detection-voc", arg), max_side=max(height, width))
        return np.asarray(image.resize((width, height), resample=3))
    raise UsageError(f"image source '{spec}': expected 'fruit:<path>' or 'generated:<kind>'")


def to_tensor(img: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) normalised float."""
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
    return (x - MEAN) / STD


def to_image(x: Tensor) -> np.ndarray:
    """(1, 3, H, W) normalised -> (H, W, 3) uint8, clipped."""
    x = (x.detach() * STD + MEAN).clamp(0, 1)[0]
    return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


# -- the losses (D2L 14.12) --------------------------------------------------------------------


def content_loss(y_hat: Tensor, y: Tensor) -> Tensor:
    """Squared feature error relative to the target's size."""
    return ((y_hat - y) ** 2).sum() / (y ** 2).sum()


def style_loss(y_hat: Tensor, gram_y: Tensor) -> Tensor:
    """Squared Gram-matrix error relative to the target Gram matrix's size."""
    from practicum.models.stylenet import gram

    return ((gram(y_hat) - gram_y) ** 2).sum() / (gram_y ** 2).sum()


def tv_loss(x: Tensor) -> Tensor:
    """Total variation: mean absolute difference between neighbouring pixels."""
    return 0.5 * ((x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean() + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean())


def losses(net, x: Tensor, targets: dict, cfg: Config) -> dict[str, Tensor]:
    feats = net(x, cfg.net.content_layers + cfg.net.style_layers)
    c = sum(content_loss(feats[n], targets["content"][n]) for n in cfg.net.content_layers)
    s = sum(style_loss(feats[n], targets["style"][n]) for n in cfg.net.style_layers)
    t = tv_loss(x)
    w = cfg.loss
    parts = {"content": w.content_weight * c, "style": w.style_weight * s, "tv": w.tv_weight * t}
    parts["total"] = parts["content"] + parts["style"] + parts["tv"]
    return parts


# ---------------------------------------------------------------------------------------------


def run(cfg: Config, run: Run) -> dict:
    with torch_threads(1):  # shared machines: see practicals/threads.py
        return _run(cfg, run)


def _run(cfg: Config, run: Run) -> dict:
    from practicum.models.stylenet import RandomVGG, gram

    torch.manual_seed(cfg.seed)
    h, w = cfg.images.height, cfg.images.width
    content_img = load_source(cfg.images.content, h, w, cfg.seed)
    style_img = load_source(cfg.images.style, h, w, cfg.seed)
    net = RandomVGG(tuple(cfg.net.channels), cfg.net.convs_per_stage, cfg.net.seed)
    for name in cfg.net.content_layers + cfg.net.style_layers:
        if name not in net.layer_index:
            raise UsageError(f"net layer '{name}' does not exist; valid: {', '.join(net.layer_index)}")
    content_x, style_x = to_tensor(content_img), to_tensor(style_img)
    with torch.no_grad():
        targets = {"content": net(content_x, cfg.net.content_layers),
                   "style": {n: gram(f) for n, f in net(style_x, cfg.net.style_layers).items()}}

    x = content_x.clone().requires_grad_(True)  # D2L starts from the content image
    opt = torch.optim.Adam([x], lr=cfg.optim.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, cfg.optim.decay_every, cfg.optim.decay)
    start, first, frames, frame_steps = 0, None, [], []
    if run.resumed and run.checkpoint_path("last.pt").exists():
        state = checkpoint.load(run.checkpoint_path("last.pt"))
        with torch.no_grad():
            x.copy_(state["x"])
        opt.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        start, first = state["step"], state["first"]
        frames, frame_steps = list(state["frames"]), state["frame_steps"]
        run.rewind_metrics(state["metrics_position"])
    elif run.resumed:
        run.rewind_metrics(0)

    for step in range(start, cfg.optim.steps + 1):  # step 0 measures the start, then updates
        parts = losses(net, x, targets, cfg)
        if first is None:
            first = {k: float(v.detach()) for k, v in parts.items()}
        if step % cfg.record.log_every == 0 or step == cfg.optim.steps:
            run.log({"loss": float(parts["total"].detach())}, split="total", step=step)
            for k in ("content", "style", "tv"):
                run.log({"loss": float(parts[k].detach())}, split=k, step=step)
        if step % cfg.record.gif_every == 0 or step == cfg.optim.steps:
            frames.append(torch.from_numpy(to_image(x)))
            frame_steps.append(step)
        if step == cfg.optim.steps:
            break
        opt.zero_grad()
        parts["total"].backward()
        opt.step()
        sched.step()
        if (step + 1) % cfg.record.checkpoint_every == 0:
            checkpoint.save(run.checkpoint_path("last.pt"), {
                "x": x.detach(), "optim": opt.state_dict(), "sched": sched.state_dict(), "step": step + 1,
                "first": first, "frames": torch.stack(frames), "frame_steps": frame_steps,
                "metrics_position": run.metrics_position()})

    final = {k: float(v.detach()) for k, v in parts.items()}
    result = to_image(x)
    fileio.save_npz(run.artifact_path("images.npz"), content=content_img, style=style_img, result=result,
                    frames=torch.stack(frames).numpy(), frame_steps=np.array(frame_steps))
    images_figure(run.artifact_path("images.npz"), run.figure_path("style_transfer.png"), cfg)
    loss_figure(run.dir, run.figure_path("losses.png"))
    progress_gif(run.artifact_path("images.npz"), run.figure_path("progress.gif"))
    buf = io.BytesIO()
    from PIL import Image

    Image.fromarray(result).save(buf, format="PNG")
    fileio.write_bytes(run.figure_path("result.png"), buf.getvalue())
    fileio.write_json(run.dir / "tables" / "losses.json", {
        "columns": ["term", "weight", "at start", "at end"],
        "rows": [[k, getattr(cfg.loss, f"{k}_weight", None), _g(first[k]), _g(final[k])]
                 for k in ("content", "style", "tv")] + [["total", None, _g(first["total"]), _g(final["total"])]],
        "caption": (f"Weighted loss terms, {cfg.optim.steps} Adam steps on a {h}x{w} image; features: "
                    f"random VGG-shaped net {cfg.net.channels} (seed {cfg.net.seed})"),
    })
    def relative(values: dict, term: str) -> float:  # the unweighted relative error of a term
        weight = getattr(cfg.loss, f"{term}_weight")
        return values[term] / weight if weight else float("nan")

    return {"train/style_error": relative(final, "style"), "train/style_error_start": relative(first, "style"),
            "train/content_error": relative(final, "content"),
            "train/style_loss_drop": 1 - final["style"] / first["style"] if first["style"] > 0 else float("nan"),
            "train/tv_loss": final["tv"], "train/loss": final["total"],
            "train/pixel_change": float(np.abs(result.astype(float) - content_img.astype(float)).mean() / 255)}


def _g(v: float) -> float:
    return float(f"{v:.4g}")


def images_figure(npz, path, cfg: Config) -> None:
    from practicum.report.plots import plt, save

    with np.load(npz) as z:
        panels = [("content: " + cfg.images.content, z["content"]), ("style: " + cfg.images.style, z["style"]),
                  ("result", z["result"])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    save(fig, path)


def loss_figure(run_dir, path) -> None:
    """The weighted loss terms against step, log scale (the content term starts at 0: not drawn there)."""
    from practicum.report.plots import plt, save
    from practicum.store import read_metrics

    fig, ax = plt.subplots(figsize=(6, 4))
    for split in ("total", "content", "style", "tv"):
        pts = [(r["step"], r["value"]) for r in read_metrics(run_dir) if r["split"] == split and r["value"] > 0]
        if pts:
            ax.semilogy(*zip(*pts), label=split)
    ax.set_xlabel("step")
    ax.set_ylabel("weighted loss")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("style transfer: loss terms")
    save(fig, path)


def progress_gif(npz, path) -> None:
    """The image as optimisation goes on, looping; the last frame held."""
    from PIL import Image, ImageDraw

    with np.load(npz) as z:
        frames, steps = z["frames"], z["frame_steps"]
    images = []
    for f, step in zip(frames, steps):
        im = Image.fromarray(f)
        ImageDraw.Draw(im).text((3, 2), f"step {int(step)}", fill=(255, 255, 255))
        images.append(im)
    fileio.write_gif(path, images, 150)
