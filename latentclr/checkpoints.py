"""Direction checkpoints: ``best_model`` / ``final_model`` snapshots, and loading any of the accepted forms.

A snapshot ``<run>/<stem>.ckpt`` is a folder holding one ``tf.train.Checkpoint`` (``ckpt.index`` /
``ckpt.data-*``) of the direction model, the projector and the iteration; it plays the role of the
original's ``<stem>.pt``. It is written into a temporary folder first and swapped in, so a crash while
saving leaves the previous snapshot readable (the loader falls back to ``<stem>.ckpt.old``).

``checkpoint=`` of eval / gen (and the warm start of train) accepts: such a folder, a TensorFlow checkpoint
prefix (``most_recent-1000``), an original PyTorch file (``best_model.pt``, read without PyTorch), or an
``.npz`` of the original's state_dict tensors (``model.``/``projector.`` prefixes, or bare model keys plus
projector keys starting with ``net.`` / ``Projector.``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from common.errors import UsageError
from latentclr import models

SNAPSHOT_SUFFIX = ".ckpt"


def save_snapshot(run_dir: str | Path, stem: str, model, projector, iteration: int) -> Path:
    """Write ``<run_dir>/<stem>.ckpt`` atomically (temporary folder, then rename)."""
    run_dir = Path(run_dir)
    final = run_dir / f"{stem}{SNAPSHOT_SUFFIX}"
    tmp, old = final.with_name(final.name + ".tmp"), final.with_name(final.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    checkpoint = tf.train.Checkpoint(model=model, projector=projector,
                                     iteration=tf.Variable(int(iteration), dtype=tf.int64))
    checkpoint.write(str(tmp / "ckpt"))
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _tf_prefix(path: Path) -> str | None:
    """The checkpoint prefix inside a snapshot folder, or ``path`` itself if it is a prefix."""
    for folder in (path, path.with_name(path.name + ".old")):
        if folder.is_dir() and (folder / "ckpt.index").exists():
            return str(folder / "ckpt")
    if Path(str(path) + ".index").exists():
        return str(path)
    if path.is_dir():
        latest = tf.train.latest_checkpoint(str(path))
        if latest:
            return latest
    return None


def load_directions(path: str | Path, model, projector, feature_shape=None) -> None:
    """Load the direction model and projector parameters from ``path`` (any accepted form, see above).

    Raises:
        UsageError: the path does not exist, or its tensors do not fit the configured model (wrong ``k``,
            ``model.size``, model type or projector).
    """
    path = Path(path)
    prefix = _tf_prefix(path)
    if prefix is not None:
        checkpoint = tf.train.Checkpoint(model=model, projector=projector)
        try:
            status = checkpoint.read(prefix)
            status.expect_partial()
            status.assert_existing_objects_matched()
        except (ValueError, AssertionError, tf.errors.OpError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise UsageError(f"checkpoint={path}: does not fit the configured model/projector ({first[:200]})") from err
        return
    if not path.exists():
        raise UsageError(f"checkpoint={path}: no such file or checkpoint")
    from latentclr.generators.weights import read_checkpoint

    obj = read_checkpoint(path)
    model_state, projector_state = _split_state(obj, path)
    models.import_state(model, model_state, f"checkpoint={path} (model)")
    if projector_state or projector.torch_state():
        models.import_state(projector, projector_state, f"checkpoint={path} (projector)", feature_shape)


def _split_state(obj, path) -> tuple[dict, dict]:
    if not isinstance(obj, dict):
        raise UsageError(f"checkpoint={path}: expected a dict with 'model' and 'projector' entries")
    if isinstance(obj.get("model"), dict):
        return dict(obj["model"]), dict(obj.get("projector") or {})
    model_state, projector_state = {}, {}
    for key, value in obj.items():
        if key.startswith("model."):
            model_state[key[len("model."):]] = value
        elif key.startswith("projector."):
            projector_state[key[len("projector."):]] = value
        elif key.startswith(("net.", "Projector.")):
            projector_state[key] = value
        else:
            model_state[key] = np.asarray(value)
    return model_state, projector_state


def export_directions(path: str | Path, model, projector, iteration: int = 0) -> Path:
    """Write the original's checkpoint layout (``model`` / ``projector`` state_dicts) as a PyTorch file,
    loadable by the original's ``gen.py`` with ``torch.load``."""
    from common import torchfile

    projector_state = models.export_state(projector)
    state = {"iteration": int(iteration), "model": models.export_state(model),
             "projector": {**{f"net.{k}": v for k, v in projector_state.items()},
                           **{f"Projector.{k}": v for k, v in projector_state.items()}},
             "optimizer": None, "scheduler": None, "scaler": None}
    return torchfile.save(state, path)
