"""A progress bar with iterations per second, ETA and the current losses (tqdm)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    """Thin wrapper of ``tqdm`` that also exposes the smoothed rate for TensorBoard.

    Args:
        total: number of iterations of the run.
        initial: iterations already done (a resumed run starts the bar there).
        enabled: False writes nothing (tests, evaluation loops).
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "", enabled: bool = True):
        self._bar = tqdm(
            total=total, initial=initial, desc=desc, unit="it", dynamic_ncols=True, file=sys.stderr,
            disable=not enabled, mininterval=0.5, smoothing=0.05,
        )
        self._position = initial
        self._last_time = time.perf_counter()
        self._last_position = initial
        self.rate = 0.0

    def update(self, position: int, text: str | None = None) -> None:
        """Move the bar to ``position`` (finished iterations) and show ``text`` after it."""
        self._bar.update(position - self._position)
        self._position = position
        now = time.perf_counter()
        if now - self._last_time >= 1.0:
            self.rate = (position - self._last_position) / (now - self._last_time)
            self._last_time, self._last_position = now, position
        if text:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        self._bar.close()
