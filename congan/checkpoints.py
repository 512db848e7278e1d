"""The notebook's three result files in TensorFlow form, and the importer of the original ``.pth.tar`` files.

``results/`` of a Framework-2 run holds (spec §6):
- ``model.weights.h5``: G and D (the notebook's ``model.pth.tar``, the whole ``SNResNetGAN``),
- ``latent_transform.weights.h5`` (``latent_transform.pth.tar``; no tensors in noop mode),
- ``Q.weights.h5`` (``Q.pth.tar``),
- ``state.json``: configuration, finished global epochs and the coefficient schedules.
Like the notebook's files they hold weights only (plus BN running statistics and SN u/v); the exact-resume
state (optimizers, RNG, step) is the run's ``tf.train.Checkpoint`` (``model-<iteration>.*``).

:func:`load_weights_folder` reads such a folder, or one with the original ``model.pth.tar``,
``latent_transform.pth.tar`` and ``Q.pth.tar`` (or ``.npz`` state dicts of them), into fresh networks.
"""

from __future__ import annotations

import os
from pathlib import Path

from common.errors import UsageError
from common.fileio import atomic_write_json
from congan.torch_io import export_state_dict, import_state_dict, load_state_dict, save_npz_state_dict

STEMS = ("model", "latent_transform", "Q")
STATE_FILE = "state.json"


def _modules(nets):
    return {"model": nets.gan, "latent_transform": nets.T, "Q": nets.Q}


def save_keras_weights(model, path: Path):
    tmp = path.with_name("tmp_" + path.name)
    model.save_weights(str(tmp))
    os.replace(tmp, path)


def save_results(results_dir: str | Path, nets, state: dict) -> None:
    """Write the three ``*.weights.h5`` files and ``state.json`` (each atomically)."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    for stem, model in _modules(nets).items():
        save_keras_weights(model, results_dir / f"{stem}.weights.h5")
    atomic_write_json(results_dir / STATE_FILE, state)


def _find(folder: Path, stem: str) -> Path:
    for suffix in (".weights.h5", ".pth.tar", ".npz", ".pth", ".tar"):
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise UsageError(f"{folder}: no {stem}.weights.h5 / {stem}.pth.tar / {stem}.npz found")


def load_weights_folder(folder: str | Path, nets, flag: str = "--load") -> dict[str, Path]:
    """Load G, D, T and Q from ``folder`` (Keras ``.weights.h5`` or original PyTorch / ``.npz`` files)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{flag}: {folder} is not a folder")
    used = {}
    for stem, model in _modules(nets).items():
        path = _find(folder, stem)
        if str(path).endswith(".weights.h5"):
            try:
                model.load_weights(str(path))
            except (ValueError, OSError) as err:
                raise UsageError(f"{flag}: {path} does not fit this configuration ({str(err)[:200]})") from err
        else:
            import_state_dict(model, load_state_dict(path), source=str(path))
        used[stem] = path
    return used


def export_original(folder: str | Path, nets) -> dict[str, Path]:
    """Write ``model.npz``, ``latent_transform.npz`` and ``Q.npz`` in the PyTorch state-dict layout."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for stem, model in _modules(nets).items():
        paths[stem] = folder / f"{stem}.npz"
        state = export_state_dict(model) if model.torch_modules() else {}
        save_npz_state_dict(paths[stem], state)
    return paths
