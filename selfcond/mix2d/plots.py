"""Scatter plots of the 2-D experiments, drawn with PIL (matplotlib is not a dependency of the project).

The three plots of the original's ``2d_mix/visualizations.py`` (spec §2.3), at matplotlib's default
size (640 x 480 px at dpi 100) and axes box:

- ``all/{it}.png``: real test points in red, generated points in blue, axes fitted to the data;
- ``all/{it}square.png``: generated points only, alpha 0.1, square axes [-6, 6]^2;
- ``clusters/{it}.png``: test points coloured by their cluster label, for labels 0 .. max - 1 (the
  largest label present is not drawn, as in the original).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor, ImageDraw

from common.images import save_png

# The original's cluster colours (matplotlib/CSS4 names), in order.
COLORS = [
    "purple", "wheat", "maroon", "red", "powderblue", "dodgerblue", "magenta", "tan", "aqua", "yellow",
    "slategray", "blue", "rosybrown", "violet", "lightseagreen", "pink", "darkorange", "teal", "royalblue",
    "lawngreen", "gold", "navy", "darkgreen", "deeppink", "palegreen", "silver", "saddlebrown", "plum", "peru",
    "black",
]
RED, BLUE = (255, 0, 0), (0, 0, 255)
# matplotlib's default subplot box (left, bottom, right, top) as fractions of the figure.
DEFAULT_BOX = (0.125, 0.11, 0.9, 0.88)
MARKER_RADIUS = 1.6  # matplotlib's '.' marker at its default size, in pixels at dpi 100


def nice_ticks(low: float, high: float, nbins: int = 8) -> np.ndarray:
    """Round tick positions inside [low, high], about ``nbins`` intervals (step 1, 2, 2.5 or 5 x 10^k)."""
    if not np.isfinite([low, high]).all() or high <= low:
        return np.array([low])
    raw = (high - low) / nbins
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.ceil(low / step) * step
    return np.arange(start, high + step * 1e-9, step)


def data_limits(*arrays: np.ndarray, margin: float = 0.05) -> tuple[tuple[float, float], tuple[float, float]]:
    """matplotlib-like autoscale: the data range of all points plus 5% on each side."""
    points = np.concatenate([a[np.isfinite(a).all(axis=1)] for a in arrays if len(a)], axis=0)
    if len(points) == 0:
        return (-1.0, 1.0), (-1.0, 1.0)
    lows, highs = points.min(axis=0), points.max(axis=0)
    spans = np.where(highs > lows, highs - lows, 1.0)
    lows, highs = lows - margin * spans, highs + margin * spans
    return (float(lows[0]), float(highs[0])), (float(lows[1]), float(highs[1]))


class ScatterCanvas:
    """A white figure with one axes box; points are composited with per-series alpha.

    Args:
        size: (width, height) in pixels.
        xlim, ylim: data ranges of the axes.
        box: axes box as figure fractions (left, bottom, right, top).
        nbins: about how many tick intervals per axis.
    """

    def __init__(self, size=(640, 480), xlim=(-1.0, 1.0), ylim=(-1.0, 1.0), box=DEFAULT_BOX, nbins: int = 8):
        self.width, self.height = size
        self.xlim, self.ylim, self.nbins = xlim, ylim, nbins
        left, bottom, right, top = box
        self.px0, self.px1 = left * self.width, right * self.width
        self.py0, self.py1 = (1 - top) * self.height, (1 - bottom) * self.height  # image rows grow downwards
        self.pixels = np.full((self.height, self.width, 3), 255.0)

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        """[N, 2] data coordinates -> [N, 2] (column, row) pixel coordinates."""
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        col = self.px0 + (points[:, 0] - x0) / (x1 - x0) * (self.px1 - self.px0)
        row = self.py1 - (points[:, 1] - y0) / (y1 - y0) * (self.py1 - self.py0)
        return np.stack([col, row], axis=1)

    def scatter(self, points: np.ndarray, color, alpha: float = 1.0, radius: float = MARKER_RADIUS) -> None:
        """Draw dots; a pixel covered n times by this series gets alpha 1 - (1 - alpha)^n."""
        points = np.asarray(points, np.float64)
        points = points[np.isfinite(points).all(axis=1)]
        if len(points) == 0:
            return
        centers = np.rint(self.to_pixels(points)).astype(np.int64)
        reach = int(math.ceil(radius))
        offsets = [(dx, dy) for dx in range(-reach, reach + 1) for dy in range(-reach, reach + 1)
                   if dx * dx + dy * dy <= radius * radius]
        hits = np.zeros((self.height, self.width), np.int64)
        c0, c1, r0, r1 = int(self.px0), int(math.ceil(self.px1)), int(self.py0), int(math.ceil(self.py1))
        for dx, dy in offsets:
            cols, rows = centers[:, 0] + dx, centers[:, 1] + dy
            keep = (cols >= c0) & (cols < c1) & (rows >= r0) & (rows < r1)  # clipped to the axes box
            np.add.at(hits, (rows[keep], cols[keep]), 1)
        coverage = 1.0 - (1.0 - alpha) ** hits
        rgb = np.asarray(ImageColor.getrgb(color) if isinstance(color, str) else color, np.float64)
        self.pixels = self.pixels * (1.0 - coverage[..., None]) + rgb * coverage[..., None]

    def image(self) -> np.ndarray:
        """The figure as uint8 [H, W, 3], with the axes frame, ticks and tick labels."""
        img = Image.fromarray(np.clip(np.rint(self.pixels), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        draw.rectangle([self.px0, self.py0, self.px1, self.py1], outline=(0, 0, 0))
        for value in nice_ticks(*self.xlim, self.nbins):
            col = self.to_pixels(np.array([[value, self.ylim[0]]]))[0, 0]
            draw.line([col, self.py1, col, self.py1 + 4], fill=(0, 0, 0))
            label = _tick_label(value)
            draw.text((col - 3 * len(label), self.py1 + 6), label, fill=(0, 0, 0))
        for value in nice_ticks(*self.ylim, self.nbins):
            row = self.to_pixels(np.array([[self.xlim[0], value]]))[0, 1]
            draw.line([self.px0 - 4, row, self.px0, row], fill=(0, 0, 0))
            label = _tick_label(value)
            draw.text((self.px0 - 8 - 6 * len(label), row - 5), label, fill=(0, 0, 0))
        return np.asarray(img)


def _tick_label(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def plot_generated(fake: np.ndarray, real: np.ndarray, it: int, outdir: str | Path) -> None:
    """``all/{it}.png`` (real red, fake blue) and ``all/{it}square.png`` (fake, alpha 0.1, [-6, 6]^2)."""
    outdir = Path(outdir)
    xlim, ylim = data_limits(real, fake)
    canvas = ScatterCanvas(xlim=xlim, ylim=ylim)
    canvas.scatter(real, RED)
    canvas.scatter(fake, BLUE)
    save_png(outdir / "all" / f"{it}.png", canvas.image())
    square = ScatterCanvas(size=(480, 480), xlim=(-6.0, 6.0), ylim=(-6.0, 6.0), box=(0.1, 0.08, 0.97, 0.95), nbins=4)
    square.scatter(fake, BLUE, alpha=0.1)
    save_png(outdir / "all" / f"{it}square.png", square.image())


def plot_clusters(points: np.ndarray, labels: np.ndarray, it: int, outdir: str | Path) -> None:
    """``clusters/{it}.png``: points of label i in ``COLORS[i % 30]`` for i in 0 .. max(labels) - 1."""
    labels = np.asarray(labels)
    drawn = [points[labels == i] for i in range(int(labels.max()))]
    xlim, ylim = data_limits(*drawn) if drawn else data_limits(points)
    canvas = ScatterCanvas(xlim=xlim, ylim=ylim)
    for i, group in enumerate(drawn):
        canvas.scatter(group, COLORS[i % len(COLORS)])
    save_png(Path(outdir) / "clusters" / f"{it}.png", canvas.image())
