"""The decision-boundary renderer: palette frames drawn with Pillow straight from a grid of
probabilities, for the activations practical's GIFs and grid and numpy_mlp's half-moon figure.

    canvas = Canvas.around(points, size=240, res=60)       # the box, its pixels, the coarse grid
    prob = model_probability(canvas.grid())                # recorded by the run: (res * res,)
    frame = render_frame(prob, canvas, points_layer(canvas, x, y), ["title", "line 2"])

P(class 1) is shaded in ``BANDS`` flat bands per class (flat colours keep GIFs small, no
dithering), the 0.5 contour is a dark line, NaN is grey. Everything is drawn from recorded data,
never from a live model, so any old run can be drawn again. NumPy and Pillow only.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

from practicum import fileio

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


def points_layer(canvas: Canvas, x: np.ndarray, y: np.ndarray, test_x: np.ndarray | None = None,
                 test_y: np.ndarray | None = None):
    """The points as (palette image, mask), drawn once and pasted on every frame: training points
    as dots, test points (if given) as crosses, in their class's colour."""
    from PIL import Image, ImageDraw

    layer = Image.new("P", (canvas.width, canvas.height), WHITE)
    mask = Image.new("L", (canvas.width, canvas.height), 0)
    draw, draw_mask = ImageDraw.Draw(layer), ImageDraw.Draw(mask)
    r = max(1.5, canvas.width / 160)
    for (u, v), label in zip(canvas.to_pixels(x), y):
        box = [u - r, v - r, u + r, v + r]
        draw.ellipse(box, fill=POINT[int(label)], outline=BLACK)
        draw_mask.ellipse(box, fill=255)
    if test_x is not None:
        c = 1.4 * r
        for (u, v), label in zip(canvas.to_pixels(test_x), test_y):
            for d in ([u - c, v - c, u + c, v + c], [u - c, v + c, u + c, v - c]):
                draw.line(d, fill=POINT[int(label)], width=2)
                draw_mask.line(d, fill=255, width=2)
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


def boundary_png(npz, path, size: int = 480, title: str = "decision boundary") -> None:
    """One boundary from an npz with ``lo``, ``hi`` (the box), ``prob`` (res, res) on the canvas
    grid, and the points ``xtr``, ``ytr`` (dots) and, optionally, ``xte``, ``yte`` (crosses)."""
    with np.load(npz, allow_pickle=False) as z:
        lo, hi, prob, xtr, ytr = z["lo"], z["hi"], z["prob"], z["xtr"], z["ytr"]
        test = (z["xte"], z["yte"]) if "xte" in z.files else (None, None)
    canvas = Canvas(lo, hi, size, size - TITLE_PX, prob.shape[0])
    frame = render_frame(prob.ravel(), canvas, points_layer(canvas, xtr, ytr, *test),
                         [title, "dots: train   crosses: test" if test[0] is not None else ""])
    save_png(frame, path)


def save_png(image, path) -> None:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    fileio.write_bytes(path, buf.getvalue())
