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
readable. Adam with D2L's schedule (lr decayed x0.8 every 50 steps), in normalised pixel units;
the optimizer is named in the config (``optim.name``, the registry of train/optim.py). The image
is the one parameter of a module (``models.stylenet.SynthesizedImage``, as D2L). The loop stays
here, not in the fit loop: there are no data, batches or evaluation, one image is optimised.

The features F come from ``practicum.models.stylenet.RandomVGG``: a VGG-shaped network with
seeded random weights, since no pretrained VGG is available offline (see that module for why
random features work, and what they miss).

Images: the content image is a fruit photo from ``fruit-detection-voc``; the style image is a
fruit photo too or generated here (``generated:mosaic`` -- a stained-glass Voronoi pattern;
``generated:waves`` -- warped colour stripes), so the run needs no other data.

Recorded: losses every ``train.log_steps`` steps (``loss`` split content / style / tv / total),
the content, style and result images and the image every ``train.gif_steps`` steps
(``images.npz``), drawn by report/style.py. A checkpoint every ``train.checkpoint_steps`` steps
(train/checkpoint.py) lets a killed run resume bit-identically; a loss that is not finite stops
the run (exit 1), the last good checkpoint kept.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import Tensor

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.errors import UsageError
from practicum.store import Run
from practicum.train import config

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
    name: str = Field("adam", description="an optimizer of train/optim.py's registry")
    lr: float = Field(0.2, gt=0)
    steps: int = Field(300, gt=0)
    decay_every: int = Field(50, gt=0, description="multiply the lr by optim.decay every N steps")
    decay: float = Field(0.8, gt=0, le=1)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return config.check_name("optimizer", name)


class Train(config.Compute):
    log_steps: int = Field(10, gt=0, description="steps between loss lines")
    gif_steps: int = Field(25, gt=0, description="steps between GIF frames")
    checkpoint_steps: int = Field(100, ge=0, description="checkpoint every N steps; 0: never")


class Config(Experiment):
    version: ClassVar[int] = 2  # the registry's optimizer and step schedule, device/precision keys
    images: Images = Images()
    net: Net = Net()
    loss: Loss = Loss()
    optim: Optim = Optim()
    train: Train = Train()


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
    x = (x.detach().float().cpu() * STD + MEAN).clamp(0, 1)[0]
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
    return 0.5 * ((x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean()
                  + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean())


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
    from practicum.models.stylenet import RandomVGG, SynthesizedImage, gram
    from practicum.report.style import images_figure, loss_figure, progress_gif, result_png
    from practicum.train import checkpoint
    from practicum.train.device import autocast, resolve_device, resolve_precision
    from practicum.train.divergence import check_finite
    from practicum.train.optim import build_optimizer, build_schedule

    t, o = cfg.train, cfg.optim
    device = resolve_device(t.device)
    dtype = resolve_precision(t.precision, device)
    torch.manual_seed(cfg.seed)
    h, w = cfg.images.height, cfg.images.width
    content_img = load_source(cfg.images.content, h, w, cfg.seed)
    style_img = load_source(cfg.images.style, h, w, cfg.seed)
    net = RandomVGG(tuple(cfg.net.channels), cfg.net.convs_per_stage, cfg.net.seed)
    for name in cfg.net.content_layers + cfg.net.style_layers:
        if name not in net.layer_index:
            raise UsageError(f"net layer '{name}' does not exist; valid: {', '.join(net.layer_index)}")
    net = net.to(device)
    content_x, style_x = to_tensor(content_img).to(device), to_tensor(style_img).to(device)  # (1, 3, H, W)
    with torch.no_grad(), autocast(device, dtype):
        targets = {"content": net(content_x, cfg.net.content_layers),
                   "style": {n: gram(f) for n, f in net(style_x, cfg.net.style_layers).items()}}

    image = SynthesizedImage(content_x).to(device)  # D2L starts from the content image
    opt = build_optimizer(o.name, image.parameters(), o.lr)
    sched = build_schedule(opt, "step", total_steps=o.steps, step_size=o.decay_every, gamma=o.decay)
    path = run.checkpoint_path("last.pt")
    state = dict(modules={"image": image}, optimizers={"image": opt}, schedulers={"image": sched})
    p = checkpoint.load_run_state(run, path, **state) or {"step": 0, "first": None, "frames": [],
                                                          "frame_steps": []}

    for step in range(p["step"], o.steps + 1):  # step 0 measures the start, then updates
        run.guard()
        with autocast(device, dtype):
            parts = losses(net, image(), targets, cfg)
        values = {k: float(v.detach()) for k, v in parts.items()}
        check_finite(values["total"], label="style transfer", step=step, lr=opt.param_groups[0]["lr"],
                     hint="try a lower optim.lr")
        if p["first"] is None:
            p["first"] = values
        if step % t.log_steps == 0 or step == o.steps:
            run.log({"loss": values["total"]}, split="total", step=step)
            for k in ("content", "style", "tv"):
                run.log({"loss": values[k]}, split=k, step=step)
        if step % t.gif_steps == 0 or step == o.steps:
            p["frames"].append(torch.from_numpy(to_image(image())))
            p["frame_steps"].append(step)
        if step == o.steps:
            break
        opt.zero_grad(set_to_none=True)
        parts["total"].backward()
        opt.step()
        sched.step()
        p["step"] = step + 1
        if t.checkpoint_steps and p["step"] % t.checkpoint_steps == 0:
            checkpoint.save_run_state(run, path, **state, extra=p)

    first, final = p["first"], values
    result = to_image(image())
    npz = run.artifact_path("images.npz")
    fileio.save_npz(npz, content=content_img, style=style_img, result=result,
                    frames=torch.stack(p["frames"]).numpy(), frame_steps=np.array(p["frame_steps"]))
    images_figure(npz, run.figure_path("style_transfer.png"), cfg.images.content, cfg.images.style)
    loss_figure(run.dir, run.figure_path("losses.png"))
    progress_gif(npz, run.figure_path("progress.gif"))
    result_png(npz, run.figure_path("result.png"))
    run.write_table("losses", ["term", "weight", "at start", "at end"],
                    [[k, getattr(cfg.loss, f"{k}_weight", None), _g(first[k]), _g(final[k])]
                     for k in ("content", "style", "tv")]
                    + [["total", None, _g(first["total"]), _g(final["total"])]],
                    caption=(f"Weighted loss terms, {o.steps} {o.name} steps on a {h}x{w} image; features: "
                             f"random VGG-shaped net {cfg.net.channels} (seed {cfg.net.seed})"))

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
