"""The shared training loop: checkpoints with exact resume, cadence of hooks, progress, clean stops.

A trainer builds its models, optimizers and random generators, puts every piece of state that the
next step depends on into one :class:`Checkpoints`, and hands a step function to :func:`train_loop`.
The loop owns the cadence (which hooks run after which iteration), saving, the progress bar, and
SIGINT / SIGTERM: a signal finishes the current iteration, saves a checkpoint, and exits with
status 130. Running the same command again restores the newest checkpoint and continues, so a run cut
at any point ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import tensorflow as tf

from common.errors import UsageError
from common.progress import Progress

INTERRUPTED_EXIT_CODE = 130


class Checkpoints:
    """One ``tf.train.Checkpoint`` of everything a run needs to continue, kept by a manager.

    Files are ``<run_dir>/<prefix>-<iteration>.index`` / ``.data-*`` plus TensorFlow's ``checkpoint``
    state file, the layout the originals' ``tf.train.Saver`` wrote (``model-100000``). TensorFlow
    writes the data under a temporary name and updates the state file last, so a crash while saving
    leaves the previous checkpoint in force.

    Args:
        run_dir: folder of the run.
        max_to_keep: how many checkpoints to keep (older ones are deleted).
        prefix: file prefix (``model`` in every original).
        **trackables: models, optimizers, variables, ``tf.random.Generator`` objects, dataset iterators.
    """

    def __init__(self, run_dir: str | Path, max_to_keep: int | None = 5, prefix: str = "model", **trackables):
        self.run_dir = Path(run_dir)
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(self.run_dir), max_to_keep=max_to_keep, checkpoint_name=prefix
        )

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def restore_latest(self) -> int:
        """Restore the newest checkpoint; return its iteration number (0 when there is none)."""
        path = self.manager.latest_checkpoint
        if path is None:
            return 0
        restore(self.checkpoint, path)
        return int(path.rsplit("-", 1)[1])

    def save(self, iteration: int) -> str:
        return self.manager.save(checkpoint_number=int(iteration))


def restore(checkpoint: tf.train.Checkpoint, path: str, partial: bool = False, written: bool = False) -> None:
    """Restore ``path`` into ``checkpoint``; a missing or incompatible file is a :class:`UsageError`.

    Args:
        partial: allow objects of ``checkpoint`` that the file does not hold (e.g. optimizer slots
            when only evaluating); values that are present must still match in shape.
        written: the file was made by ``Checkpoint.write`` (a fixed file name, no save counter, as the
            Self-Conditioned GAN's ``model_<it>`` snapshots) rather than ``Checkpoint.save``.
    """
    path = str(path)
    if not tf.io.gfile.exists(path + ".index"):
        raise UsageError(f"{path}: no checkpoint with this prefix (expected {path}.index)")
    try:
        status = checkpoint.read(path) if written else checkpoint.restore(path)
        if partial:
            status.expect_partial()
        else:
            status.assert_existing_objects_matched()
    except (ValueError, AssertionError, tf.errors.OpError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(
            f"{path}: checkpoint does not fit this model configuration ({first[:300]})"
        ) from err


class StopRequest:
    """Context manager that turns SIGINT / SIGTERM into a flag checked between iterations.

    A second signal while the first is being handled raises ``KeyboardInterrupt`` at once.
    """

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{signal.Signals(signum).name}: saving a checkpoint after this iteration", file=sys.stderr)

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside some test runners)
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


@dataclasses.dataclass
class Every:
    """Run ``fn(iteration, outputs)`` after every ``period``-th iteration (1-based count of finished ones).

    ``offset`` shifts the phase: the hook runs when ``(iteration - offset) % period == 0``. A period
    of 0 or less never runs (the originals' ``-1`` meaning "never").
    """

    period: int
    fn: Callable[[int, Mapping[str, float]], None]
    offset: int = 0
    at_end: bool = False

    def due(self, iteration: int, last: int) -> bool:
        if self.period <= 0:
            return False
        return (iteration - self.offset) % self.period == 0 or (self.at_end and iteration == last)


def to_floats(outputs: Mapping) -> dict[str, float]:
    """Scalars of a step's output dict as Python floats (one device-to-host copy per value)."""
    return {k: float(v) for k, v in outputs.items() if getattr(v, "shape", ()) == () or hasattr(v, "__float__")}


def train_loop(
    step_fn: Callable[[int], Mapping],
    *,
    start: int,
    total: int,
    checkpoints: Checkpoints | None,
    save_every: int,
    hooks: Sequence[Every] = (),
    progress_text: Callable[[Mapping[str, float]], str] | None = None,
    desc: str = "train",
    show_progress: bool = True,
) -> int:
    """Run iterations ``start .. total-1`` of ``step_fn`` with hooks, checkpoints and a progress bar.

    Args:
        step_fn: ``step_fn(i)`` runs iteration ``i`` (0-based) and returns a dict of scalar tensors.
        start: first iteration (the number restored from the newest checkpoint).
        total: number of iterations of the whole run.
        checkpoints: where to save; ``None`` saves nothing (e.g. evaluation-only loops).
        save_every: save after every ``save_every``-th finished iteration (and always at the end
            and when stopped by a signal).
        hooks: periodic work after an iteration (summaries, plots, evaluation).
        progress_text: formats the postfix of the progress bar from the step outputs.

    Returns:
        The number of finished iterations. Exits the process with status 130 after a signal.
    """
    bar = Progress(total=total, initial=start, desc=desc, enabled=show_progress)
    last_saved = start
    with StopRequest() as stop:
        for i in range(start, total):
            outputs = to_floats(step_fn(i))
            done = i + 1
            bar.update(done, progress_text(outputs) if progress_text else None)
            outputs["time/steps_per_sec"] = bar.rate
            for hook in hooks:
                if hook.due(done, total):
                    hook.fn(done, outputs)
            if checkpoints is not None and (done % max(save_every, 1) == 0 or done == total or stop.requested):
                if done != last_saved:
                    checkpoints.save(done)
                    last_saved = done
            if stop.requested:
                bar.close()
                print(f"stopped after iteration {done}; run the same command to continue", file=sys.stderr)
                sys.exit(INTERRUPTED_EXIT_CODE)
    bar.close()
    return total


class Timer:
    """Wall-clock seconds of a block: ``with Timer() as t: ...; t.seconds``."""

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._start
        return False
