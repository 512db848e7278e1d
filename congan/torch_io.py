"""PyTorch checkpoints without PyTorch: read ``.pth``/``.tar`` files and ``.npz`` state dicts, and map their tensors
onto the Keras models (spec §6, §7.7).

``torch`` is not a dependency of this project. :func:`load_torch_file` uses the project's torch-free reader
(:mod:`common.torchfile`), which reads both formats ``torch.save`` has written: the zip archive of
PyTorch >= 1.6 and the legacy pre-1.6 stream (magic number, pickles, raw storages) that older checkpoints such as
the published SimSiam ``.pth.tar`` files use. Its unpickler resolves only tensor rebuilds, storage types and plain
containers and refuses every other global, so a checkpoint cannot run code.

The key mapping is data-driven: every model lists its leaf layers under their PyTorch prefixes
(``torch_modules()``) and every leaf lists its tensors with the layout transforms
(``torch_tensors()``). A spectral-norm conv that PyTorch registers twice is listed twice; on import both
copies must be equal and the variable is written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from common import torchfile
from common.errors import UsageError

_IGNORED_SUFFIXES = ("num_batches_tracked",)


def load_torch_file(path: str | Path):
    """Unpickle a ``torch.save`` file (zip or legacy format) into Python objects with NumPy arrays as tensors.

    Raises:
        UsageError: the file is missing, is not a PyTorch checkpoint, or holds objects other than tensors and
            containers.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such checkpoint file")
    return torchfile.load(path)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A flat ``{key: array}`` state dict from ``.npz`` or a PyTorch checkpoint (zip or legacy format).

    ``{'state_dict': ...}`` wrappers are unpacked and a ``module.`` prefix (DataParallel) is removed.
    """
    path = Path(path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise UsageError(f"{path}: no such .npz file")
        with np.load(path, allow_pickle=False) as data:
            state = {k: data[k] for k in data.files}
    else:
        state = load_torch_file(path)
        if isinstance(state, Mapping) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise UsageError(f"{path}: expected a state_dict (a mapping of tensors), got {type(state).__name__}")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return {k: np.asarray(v) for k, v in state.items()}


def _tensor_table(modules: Iterable[tuple[str, object]]):
    table = {}
    for prefix, layer in modules:
        for suffix, entry in layer.torch_tensors().items():
            table[f"{prefix}.{suffix}"] = entry
    return table


def export_state_dict(model) -> dict[str, np.ndarray]:
    """The model's weights as a PyTorch-layout state dict (doubled SN keys included)."""
    return {key: np.ascontiguousarray(to_torch(np.asarray(var))) for key, (var, to_torch, _)
            in _tensor_table(model.torch_modules()).items()}


def import_state_dict(model, state: Mapping[str, np.ndarray], source: str = "state_dict") -> int:
    """Assign a PyTorch-layout state dict to the model's variables; return how many variables were set.

    Every expected key must be present with the right shape and no unknown keys may remain
    (``num_batches_tracked`` is ignored). Keys that name the same variable must hold equal values.

    Raises:
        UsageError: missing, unexpected, mis-shaped or inconsistent duplicate entries.
    """
    table = _tensor_table(model.torch_modules())
    keys = {k for k in state if not k.endswith(_IGNORED_SUFFIXES)}
    missing, unexpected = sorted(set(table) - keys), sorted(keys - set(table))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
        raise UsageError(f"{source}: keys do not match the model ({'; '.join(parts)})")
    assigned = {}
    for key, (var, _, from_torch) in table.items():
        value = np.asarray(state[key])
        converted = from_torch(value) if value.ndim > 1 else value
        if tuple(converted.shape) != tuple(var.shape):
            raise UsageError(f"{source}: {key} has shape {value.shape}, the model expects {tuple(var.shape)} "
                             "(in Keras layout)")
        if id(var) in assigned:
            first_key, first_value = assigned[id(var)]
            if not np.array_equal(first_value, converted):
                raise UsageError(f"{source}: duplicate entries {first_key} and {key} of one module differ")
            continue
        assigned[id(var)] = (key, converted)
        var.assign(converted.astype(np.asarray(var).dtype))
    return len(assigned)


def save_npz_state_dict(path: str | Path, state: Mapping[str, np.ndarray]) -> None:
    """Write a state dict as ``.npz`` (the format :func:`load_state_dict` reads without PyTorch)."""
    np.savez(path, **{k: np.asarray(v) for k, v in state.items()})
