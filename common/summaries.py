"""TensorBoard summaries and the ``metrics.jsonl`` record of a run folder.

Every evaluation appends one JSON line ``{"step": ..., "<metric>": ...}`` to ``<run_dir>/metrics.jsonl``
so that results can be read without TensorBoard; scalars, images and histograms go to the events file in
the run folder (``tensorboard --logdir logs`` shows every run).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

from common.fileio import append_jsonl

METRICS_FILE = "metrics.jsonl"


def tf1_image_scale(images: np.ndarray) -> np.ndarray:
    """Map float images to [0, 1] the way TF1's image summary op rescaled them.

    TF1 normalised each image on its own: if none of its values is negative, the largest maps to 255;
    otherwise 0 maps to 128 and the largest magnitude to 128 +- 127. Values were then rounded to uint8.
    TF2's ``tf.summary.image`` expects [0, 1], so the originals' image summaries are reproduced by
    applying the rule here.

    Args:
        images: [N, H, W, C] (or [H, W, C]) floats.
    Returns:
        float32 of the same shape in [0, 1], multiples of 1/255.
    """
    images = np.asarray(images, np.float32)
    single = images.ndim == 3
    batch = images[None] if single else images
    out = np.empty_like(batch)
    for i, image in enumerate(batch):
        low, high = float(image.min()), float(image.max())
        if low < 0:
            peak = max(-low, high)
            scale, offset = (127.0 / peak if peak >= 1e-6 else 0.0), 128.0
        else:
            scale, offset = (255.0 / high if high >= 1e-6 else 0.0), 0.0
        out[i] = np.clip(np.rint(image * scale + offset), 0, 255) / 255.0
    return out[0] if single else out


class Logbook:
    """The writer of one run: TensorBoard events plus ``metrics.jsonl``.

    Args:
        run_dir: the run folder; the events file goes directly into it (as in the originals).
        enabled: False (e.g. on non-chief workers) turns every call into a no-op.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._writer = tf.summary.create_file_writer(str(self.run_dir)) if enabled else None

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        with self._writer.as_default(step=int(step)):
            for tag, value in values.items():
                tf.summary.scalar(tag, float(value))

    def images(self, step: int, images: Mapping[str, np.ndarray], max_outputs: int = 3) -> None:
        """Write image summaries; each value is [N, H, W, C] (or [H, W, C]) in [0, 1]."""
        if not self.enabled:
            return
        with self._writer.as_default(step=int(step)):
            for tag, value in images.items():
                value = np.asarray(value, np.float32)
                if value.ndim == 3:
                    value = value[None]
                tf.summary.image(tag, np.clip(value, 0.0, 1.0), max_outputs=max_outputs)

    def histograms(self, step: int, values: Mapping[str, np.ndarray]) -> None:
        if not self.enabled:
            return
        with self._writer.as_default(step=int(step)):
            for tag, value in values.items():
                tf.summary.histogram(tag, np.asarray(value))

    def record(self, step: int, values: Mapping[str, object]) -> None:
        """Append ``{"step": step, **values}`` to ``metrics.jsonl``."""
        if not self.enabled:
            return
        append_jsonl(self.run_dir / METRICS_FILE, {"step": int(step), **values})

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All records of ``<run_dir>/metrics.jsonl`` (a torn last line from a crash is skipped)."""
    import json

    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
