"""Metrics of the 2-D experiments (the original's ``2d_mix/evaluation.py``, spec §7.7).

On the generated points: the fraction of high-quality points (within 3 sigma of some mode mean in each
coordinate), the number of modes that received a high-quality point, and the reverse KL of the
nearest-mode histogram against the uniform one, in natural log. The arithmetic is
:func:`common.metrics.mixture_2d_metrics` (vectorised; the original loops over points in Python).
"""

from __future__ import annotations

import math

import numpy as np

from common.metrics import mixture_2d_metrics
from selfcond.mix2d.data import means_of


def percent_good(points: np.ndarray, data_type: str, var: float) -> tuple[float, int, float]:
    """(prop_real, modes, kl) of generated points [N, 2] for ``ring`` or ``grid`` with variance ``var``."""
    return mixture_2d_metrics(points, means_of(data_type), 3.0 * math.sqrt(var))
