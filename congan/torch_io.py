"""PyTorch checkpoints without PyTorch: read ``.pth``/``.tar`` zip files and ``.npz`` state dicts, and map
their tensors onto the Keras models (spec §6, §7.7).

Why a reader of its own: ``torch`` is not a dependency of this project. Since PyTorch 1.6 ``torch.save``
writes a zip archive: ``<name>/data.pkl`` is a pickle in which every tensor is a call of
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` and every storage is a *persistent
id* ``("storage", <dtype class>, key, location, numel)`` whose raw little-endian bytes are the archive member
``<name>/data/<key>``. :func:`load_torch_file` unpickles ``data.pkl`` with a restricted ``Unpickler``: it
resolves only those few PyTorch globals (to NumPy builders) plus ``collections.OrderedDict``, and refuses
every other global, so a checkpoint cannot run code. The pre-1.6 legacy format is not read; convert such
a file to ``.npz`` with ``numpy.savez(path, **{k: v.numpy() for k, v in state_dict.items()})``.

The key mapping is data-driven: every model lists its leaf layers under their PyTorch prefixes
(``torch_modules()``) and every leaf lists its tensors with the layout transforms
(``torch_tensors()``). A spectral-norm conv that PyTorch registers twice is listed twice; on import both
copies must be equal and the variable is written once.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from common.errors import UsageError

# PyTorch storage classes -> NumPy dtypes (little endian, as torch.save writes them).
_STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}
_IGNORED_SUFFIXES = ("num_batches_tracked",)


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """NumPy version of ``torch._utils._rebuild_tensor_v2`` (strides are in elements)."""
    size, stride = tuple(size), tuple(stride)
    if not size:
        return np.array(storage[offset])
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * storage.itemsize for s in stride), writeable=False
    )
    return np.array(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _TorchUnpickler(pickle.Unpickler):
    """Unpickler for ``data.pkl`` of a PyTorch zip checkpoint; storages come from the archive."""

    _GLOBALS = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, data, archive, prefix, source):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.source = archive, prefix, source
        self._storages = {}

    def find_class(self, module, name):
        if (module, name) in self._GLOBALS:
            return self._GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UsageError(f"{self.source}: the checkpoint refers to {module}.{name}, which this reader does not "
                         "load (expected tensors, dicts, lists and numbers only)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise UsageError(f"{self.source}: unexpected persistent id {pid!r} in data.pkl")
        _, storage_type, key, _location, numel = pid
        if key not in self._storages:
            raw = self.archive.read(f"{self.prefix}/data/{key}")
            array = np.frombuffer(raw, dtype=storage_type.dtype)
            if array.size != numel:
                raise UsageError(f"{self.source}: storage {key} has {array.size} elements, expected {numel}")
            self._storages[key] = array
        return self._storages[key]


def load_torch_file(path: str | Path):
    """Unpickle a PyTorch zip checkpoint (``torch.save`` of torch >= 1.6) into Python objects + NumPy arrays."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path}: not a PyTorch zip checkpoint (legacy pre-1.6 files are not read; "
                         "save the state_dict as .npz instead)")
    with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkl:
            raise UsageError(f"{path}: zip file without <name>/data.pkl; expected a torch.save checkpoint")
        prefix = pkl[0].split("/")[0]
        byteorder = f"{prefix}/byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise UsageError(f"{path}: big-endian checkpoints are not supported")
        return _TorchUnpickler(archive.read(pkl[0]), archive, prefix, path).load()


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A flat ``{key: array}`` state dict from ``.npz`` or a PyTorch zip checkpoint.

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
