"""The console logger of the GLO scripts: ``[time] message`` lines, with the original's extra INFOV level.

Lines go through ``tqdm.write`` so they do not break the progress bar.
"""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

INFOV = logging.INFO + 1  # the original's "verbose info" level
logging.addLevelName(INFOV, "INFOV")


class _TqdmHandler(logging.Handler):
    def emit(self, record):
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - a logging handler must never raise
            self.handleError(record)


def get_logger(name: str = "glo") -> logging.Logger:
    """The shared named logger (created once, INFO level, time-stamped lines)."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


log = get_logger()
