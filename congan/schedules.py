"""Per-epoch schedules: the consistency coefficients (spec §2.2, §2.3) and the exponential LR decay (§1.7).

A coefficient schedule is written as comma-separated points ``EPOCH:VALUE`` (the value holds from that
epoch on) or ``EPOCH~VALUE`` (the value is reached at that epoch by a linear ramp from the previous point),
e.g. the README's Run 1 ``0:0,30:0.1,60:1`` or a ramp ``0:0,30~1``. A bare number is a constant.
Epochs are 0-based global epochs.
"""

from __future__ import annotations

import bisect
import dataclasses

from common.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Piecewise-constant / piecewise-linear function of the epoch.

    Attributes:
        points: sorted ``(epoch, value, ramp)``; ``ramp`` means "interpolate linearly from the previous
            point up to this one"; before the first point the first value holds.
    """

    points: tuple[tuple[int, float, bool], ...]

    def __call__(self, epoch: int) -> float:
        epochs = [p[0] for p in self.points]
        k = bisect.bisect_right(epochs, epoch) - 1
        if k < 0:
            return self.points[0][1]
        if k + 1 < len(self.points) and self.points[k + 1][2]:
            (e0, v0, _), (e1, v1, _) = self.points[k], self.points[k + 1]
            return v0 + (v1 - v0) * (epoch - e0) / (e1 - e0)
        return self.points[k][1]

    def boundaries(self) -> list[int]:
        """Epochs at which a step change takes effect (the starts of the "run cells" of a schedule)."""
        return [e for e, _, ramp in self.points[1:] if not ramp]

    def __str__(self):
        return ",".join(f"{e}{'~' if r else ':'}{v:g}" for e, v, r in self.points)


def parse_schedule(text: str | float, flag: str) -> Schedule:
    """Parse ``"0:0,30:0.1,60:1"`` / ``"0:0,30~1"`` / ``"0.1"``; errors name ``flag``."""
    text = str(text).strip()
    try:
        return Schedule(((0, float(text), False),))
    except ValueError:
        pass
    points = []
    for part in text.split(","):
        part = part.strip()
        sep = "~" if "~" in part else ":"
        try:
            epoch_text, value_text = part.split(sep)
            epoch, value = int(epoch_text), float(value_text)
        except ValueError:
            raise UsageError(f"{flag}: expected EPOCH:VALUE or EPOCH~VALUE points separated by commas "
                             f"(e.g. 0:0,30:0.1,60:1), got {text!r}") from None
        if epoch < 0:
            raise UsageError(f"{flag}: epochs must be >= 0, got {epoch}")
        points.append((epoch, value, sep == "~"))
    epochs = [p[0] for p in points]
    if epochs != sorted(set(epochs)):
        raise UsageError(f"{flag}: epochs must be strictly increasing, got {text!r}")
    if points[0][2]:
        raise UsageError(f"{flag}: the first point cannot be a ramp (~), got {text!r}")
    return Schedule(tuple(points))


def exponential_lr(lr0: float, lr_decay: float, epoch: int) -> float:
    """``ExponentialLR(gamma = 1 - lr_decay)`` stepped once per epoch: lr0 * (1 - lr_decay)^epoch."""
    return lr0 * (1.0 - lr_decay) ** epoch
