"""Scatter plots drawn with PIL, in the look of the original's matplotlib figures (spec §2.3).

The original saves ``plt.scatter`` figures with matplotlib's defaults: a 640x480 canvas at 100 dpi, the axes
box at [0.125, 0.11, 0.775, 0.77] of the figure, limits = data range plus 5 % margins, marker size s in
points² (diameter sqrt(s) pt plus a 1.5 pt edge of the face colour). Points are drawn here as discs of the
matching pixel radius, alpha-blended layer by layer in drawing order. Inside one layer (one colour, one
alpha) the blend of k overlapping discs is c + (1 - α)^k (background - c), whatever their order, so a
layer is blended at once from per-pixel coverage counts.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

# The original's colour list: index 0 for the mixture samples, c + 1 for component c.
COMPONENT_COLORS = ("gray", "red", "orange", "green", "blue", "purple", "saddlebrown", "greenyellow", "cyan",
                    "darkkhaki", "salmon")
DPI = 100
FIGSIZE = (640, 480)
AXES_BOX = (0.125, 0.11, 0.775, 0.77)  # left, bottom, width, height (fractions of the figure)
MARGIN = 0.05
DEFAULT_EDGE_PT = 1.5


def component_color(index: int) -> str:
    """Colour ``index`` of the original's list; cycles past the 11 colours (the original crashed there)."""
    return COMPONENT_COLORS[index % len(COMPONENT_COLORS)]


def points_to_pixels(points: float) -> float:
    return points * DPI / 72.0


@dataclasses.dataclass
class _Layer:
    points: np.ndarray
    color: tuple[int, int, int]
    alpha: float
    radius: float
    edge_color: tuple[int, int, int] | None
    edge_width: float


def _disc_offsets(radius: float) -> np.ndarray:
    r = max(radius, 0.5)
    span = int(math.ceil(r))
    dy, dx = np.mgrid[-span : span + 1, -span : span + 1]
    keep = dx * dx + dy * dy <= r * r + 1e-9
    return np.stack([dy[keep], dx[keep]], axis=1)


def _nice_ticks(low: float, high: float, target: int = 8) -> np.ndarray:
    """Round tick positions (1, 2, 2.5, 5 x 10^k steps) inside [low, high]."""
    if not high > low:
        return np.array([low])
    raw = (high - low) / target
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = np.arange(first, high + 1e-9 * step, step)
    return np.round(ticks / step) * step


class ScatterFigure:
    """Collect ``scatter`` layers, then :meth:`render` them to a uint8 [H, W, 3] image."""

    def __init__(self, size: tuple[int, int] = FIGSIZE):
        self.size = size
        self.layers: list[_Layer] = []

    def scatter(self, points, color: str = "black", alpha: float = 1.0, s: float = 20.0,
                edgecolor: str | None = None, linewidth: float | None = None) -> None:
        """Add points [N, 2] like ``plt.scatter(x, y, color=, alpha=, s=, edgecolors=, linewidth=)``."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        edge = DEFAULT_EDGE_PT if linewidth is None else float(linewidth)
        face_radius = points_to_pixels(math.sqrt(s)) / 2
        if edgecolor is None:  # matplotlib's default edge has the face colour: a larger disc
            layer = _Layer(points, ImageColor.getrgb(color), alpha, face_radius + points_to_pixels(edge) / 2, None, 0)
        else:
            layer = _Layer(points, ImageColor.getrgb(color), alpha, face_radius, ImageColor.getrgb(edgecolor),
                           points_to_pixels(edge))
        self.layers.append(layer)

    def _limits(self):
        finite = [layer.points[np.all(np.isfinite(layer.points), axis=1)] for layer in self.layers]
        allpts = np.concatenate([p for p in finite if len(p)] or [np.zeros((1, 2))])
        low, high = allpts.min(axis=0), allpts.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        return low - MARGIN * span, high + MARGIN * span

    def render(self) -> np.ndarray:
        width, height = self.size
        left = int(round(AXES_BOX[0] * width))
        right = int(round((AXES_BOX[0] + AXES_BOX[2]) * width))
        top = int(round((1 - AXES_BOX[1] - AXES_BOX[3]) * height))
        bottom = int(round((1 - AXES_BOX[1]) * height))
        low, high = self._limits()

        def to_pixels(points):
            x = left + (points[:, 0] - low[0]) / (high[0] - low[0]) * (right - left)
            y = bottom - (points[:, 1] - low[1]) / (high[1] - low[1]) * (bottom - top)
            return np.stack([y, x], axis=1)

        canvas = np.full((height, width, 3), 255.0)
        plot = canvas[top:bottom, left:right]  # a view: points are clipped to the axes box
        for layer in self.layers:
            pix = to_pixels(layer.points[np.all(np.isfinite(layer.points), axis=1)])
            pix = np.rint(pix).astype(np.int64) - [top, left]
            if layer.edge_color is not None:
                outer = layer.radius + layer.edge_width / 2
                self._blend(plot, pix, outer, layer.edge_color, layer.alpha)
                self._blend(plot, pix, max(layer.radius - layer.edge_width / 2, 0.5), layer.color, layer.alpha)
            else:
                self._blend(plot, pix, layer.radius, layer.color, layer.alpha)
        image = Image.fromarray(np.rint(canvas).astype(np.uint8))
        self._draw_axes(image, (left, top, right, bottom), low, high)
        return np.asarray(image)

    @staticmethod
    def _blend(plot: np.ndarray, centres: np.ndarray, radius: float, color, alpha: float) -> None:
        h, w = plot.shape[:2]
        cells = (centres[:, None, :] + _disc_offsets(radius)[None, :, :]).reshape(-1, 2)
        inside = (cells[:, 0] >= 0) & (cells[:, 0] < h) & (cells[:, 1] >= 0) & (cells[:, 1] < w)
        cells = cells[inside]
        counts = np.bincount(cells[:, 0] * w + cells[:, 1], minlength=h * w).reshape(h, w)
        keep = (1.0 - alpha) ** counts if alpha < 1 else (counts == 0).astype(np.float64)
        plot[...] = np.asarray(color, np.float64) + keep[..., None] * (plot - np.asarray(color, np.float64))

    @staticmethod
    def _draw_axes(image: Image.Image, box, low, high) -> None:
        left, top, right, bottom = box
        draw = ImageDraw.Draw(image)
        draw.rectangle([left, top, right, bottom], outline=(0, 0, 0), width=1)
        font = ImageFont.load_default()
        tick = int(round(points_to_pixels(3.5)))
        for value in _nice_ticks(low[0], high[0]):
            x = left + (value - low[0]) / (high[0] - low[0]) * (right - left)
            draw.line([(x, bottom), (x, bottom + tick)], fill=(0, 0, 0))
            draw.text((x, bottom + tick + 2), f"{value:g}", fill=(0, 0, 0), font=font, anchor="ma")
        for value in _nice_ticks(low[1], high[1]):
            y = bottom - (value - low[1]) / (high[1] - low[1]) * (bottom - top)
            draw.line([(left - tick, y), (left, y)], fill=(0, 0, 0))
            draw.text((left - tick - 3, y), f"{value:g}", fill=(0, 0, 0), font=font, anchor="rm")


def real_data_figure(real) -> np.ndarray:
    """``real_data.png``: the real batch in black, alpha 0.05, size 5."""
    figure = ScatterFigure()
    figure.scatter(real, color="black", alpha=0.05, s=5)
    return figure.render()


def samples_figure(real, mixture_samples, component_samples, component_centres) -> np.ndarray:
    """``samples_<i+1>.png`` (spec §2.3).

    Args:
        real: [N, 2] the fixed real batch, drawn in gainsboro.
        mixture_samples: [M, 2] G of mixture samples, in gray (alpha 0.75).
        component_samples: K arrays [n_c, 2], G of samples of component c, in colour c + 1 (alpha 0.75).
        component_centres: [K, 2] G(μ_c), big dots (size 100) in colour c + 1 with a black 3 pt edge.
    """
    figure = ScatterFigure()
    figure.scatter(real, color="gainsboro", s=5)
    for j, points in enumerate([mixture_samples, *component_samples]):
        figure.scatter(points, color=component_color(j), alpha=0.75, s=5)
    for c, centre in enumerate(np.asarray(component_centres).reshape(-1, 2)):
        figure.scatter(centre[None], color=component_color(c + 1), edgecolor="black", s=100, linewidth=3)
    return figure.render()
