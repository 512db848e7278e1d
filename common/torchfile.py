"""Read (and write) PyTorch checkpoint files with the standard library only: torch is not a dependency.

``torch.save`` has written two formats: before PyTorch 1.6 a sequence of pickles followed by the raw
tensor storages (the "legacy" format of the published BigGAN, StyleGAN and StyleGAN2 conversions), since
1.6 a zip archive holding ``data.pkl`` and one file per storage (the format of LatentCLR's own
``best_model.pt``). Both are read here with :mod:`pickle` and :mod:`zipfile`. The unpickler only accepts
the handful of globals a state_dict needs (tensor rebuild functions, storage types, ``OrderedDict``,
``torch.Size``); anything else - a pickled ``nn.Module``, arbitrary code - is refused, so loading a file
cannot run code from it. Tensors come back as NumPy arrays with their PyTorch shapes and layouts.

:func:`save` writes the zip format (or, with ``legacy=True``, the old one); ``torch.load`` reads both. The
tests use it to make small checkpoints of the published layouts, and it lets trained directions be handed
back to the original code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from common.errors import UsageError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
DTYPE_STORAGES = {np.dtype(v): k for k, v in STORAGE_DTYPES.items() if v != "bfloat16"}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize


class _Storage:
    """A flat storage whose bytes may arrive after the pickle that references it (legacy format)."""

    def __init__(self, storage_type: _StorageType, numel: int):
        self.type, self.numel, self.data = storage_type, int(numel), None

    def fill(self, raw: bytes, byteorder: str = "little") -> None:
        if self.type.dtype == "bfloat16":
            bits = np.frombuffer(raw, dtype=np.dtype("<u2" if byteorder == "little" else ">u2"), count=self.numel)
            self.data = (bits.astype(np.uint32) << 16).view(np.float32)
        else:
            dtype = np.dtype(self.type.dtype).newbyteorder("<" if byteorder == "little" else ">")
            self.data = np.frombuffer(raw, dtype=dtype, count=self.numel).astype(np.dtype(self.type.dtype))


class _StorageView:
    """Legacy format: a storage that is a window (offset, size) of another one."""

    def __init__(self, base: _Storage, offset: int, numel: int):
        self.base, self.offset, self.numel = base, int(offset), int(numel)

    @property
    def data(self):
        return self.base.data[self.offset: self.offset + self.numel]


class _LazyTensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def resolve(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise UsageError("PyTorch checkpoint: a tensor refers to a storage that is not in the file")
        if not self.size:
            return np.array(flat[self.offset])
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                               strides=[s * itemsize for s in self.stride])
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    return data


def _size(*args):
    return tuple(*args) if args else ()


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): _size,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module, name):
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only tensors and containers are read)")

    def persistent_load(self, pid):
        return self._load_storage(pid)


def _resolve(obj):
    if isinstance(obj, _LazyTensor):
        return obj.resolve()
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _resolve(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v) for v in obj)
    return obj


def load(path: str | Path):
    """Load a ``torch.save`` file; tensors become NumPy arrays (shapes and layouts as in PyTorch).

    Raises:
        UsageError: not a PyTorch file, an unsupported format, or objects other than tensors/containers.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _resolve(_load_zip(path))
        with open(path, "rb") as f:
            return _resolve(_load_legacy(f, path))
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError, ValueError, AttributeError) as err:
        raise UsageError(f"{path}: cannot read it as a PyTorch checkpoint ({err})") from err


def _load_zip(path: Path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl")]
        if not pickles:
            raise UsageError(f"{path}: zip file without data.pkl; not a PyTorch checkpoint")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode().strip()
        storages = {}

        def load_storage(pid):
            kind, storage_type, key, _location, numel = pid[:5]
            if kind != "storage":
                raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")
            if key not in storages:
                raw = archive.read(f"{prefix}data/{key}")
                if not isinstance(storage_type, _StorageType):
                    raise pickle.UnpicklingError(f"unknown storage type {storage_type!r}")
                storage = _Storage(storage_type, len(raw) // storage_type.itemsize)
                storage.fill(raw, byteorder)
                storages[key] = storage
            return storages[key]

        return _Unpickler(io.BytesIO(archive.read(pickles[0])), load_storage).load()


def _plain_load(f):
    """One pickle of plain values (header fields, key lists): no globals at all."""

    def no_storage(pid):
        raise pickle.UnpicklingError("unexpected storage reference")

    return _Unpickler(f, no_storage).load()


def _load_legacy(f, path: Path):
    try:
        magic = _plain_load(f)
    except pickle.UnpicklingError:
        raise
    except Exception as err:  # noqa: BLE001 - any other failure here means "not this format"
        raise UsageError(f"{path}: not a PyTorch checkpoint (unreadable header: {err})") from err
    if magic != LEGACY_MAGIC:
        raise UsageError(f"{path}: not a PyTorch checkpoint (bad magic number; tar archives of PyTorch < 0.4 "
                         "are not supported)")
    protocol = _plain_load(f)
    if protocol != LEGACY_PROTOCOL:
        raise UsageError(f"{path}: unsupported PyTorch file protocol {protocol}")
    sys_info = _plain_load(f)
    little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
    storages = {}

    def load_storage(pid):
        kind, storage_type, root_key, _location, numel, view_metadata = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")
        if root_key not in storages:
            storages[root_key] = _Storage(storage_type, numel)
        if view_metadata is not None:
            _view_key, offset, view_size = view_metadata
            return _StorageView(storages[root_key], offset, view_size)
        return storages[root_key]

    result = _Unpickler(f, load_storage).load()
    keys = _plain_load(f)
    for key in keys:
        storage = storages[key]
        (numel,) = struct.unpack("<q", f.read(8))
        storage.numel = numel
        storage.fill(f.read(numel * storage.type.itemsize), "little" if little else "big")
    return result


# ---------------------------------------------------------------------------------------------------
# Writer


class _Writer:
    """Protocol-2 pickle opcodes for the objects a checkpoint holds; tensors become storage references."""

    def __init__(self, legacy: bool):
        self.legacy = legacy
        self.out = io.BytesIO()
        self.storages: list[tuple[str, np.ndarray]] = []

    def global_(self, module: str, name: str) -> None:
        self.out.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())

    def dump(self, obj) -> bytes:
        self.out.write(pickle.PROTO + b"\x02")
        self.save(obj)
        self.out.write(pickle.STOP)
        return self.out.getvalue()

    def save(self, obj) -> None:
        w = self.out.write
        if obj is None:
            w(pickle.NONE)
        elif isinstance(obj, bool):
            w(pickle.NEWTRUE if obj else pickle.NEWFALSE)
        elif isinstance(obj, (int, np.integer)):
            obj = int(obj)
            if -(2 ** 31) <= obj < 2 ** 31:
                w(pickle.BININT + struct.pack("<i", obj))
            else:
                raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
                w(pickle.LONG1 + bytes([len(raw)]) + raw)
        elif isinstance(obj, (float, np.floating)):
            w(pickle.BINFLOAT + struct.pack(">d", float(obj)))
        elif isinstance(obj, str):
            raw = obj.encode("utf-8")
            w(pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw)
        elif isinstance(obj, tuple):
            w(pickle.MARK)
            for item in obj:
                self.save(item)
            w(pickle.TUPLE)
        elif isinstance(obj, list):
            w(pickle.EMPTY_LIST + pickle.MARK)
            for item in obj:
                self.save(item)
            w(pickle.APPENDS)
        elif isinstance(obj, dict):
            self.global_("collections", "OrderedDict")
            w(pickle.EMPTY_TUPLE + pickle.REDUCE)
            if obj:
                w(pickle.MARK)
                for key, value in obj.items():
                    self.save(key)
                    self.save(value)
                w(pickle.SETITEMS)
        elif isinstance(obj, np.ndarray):
            self.save_tensor(obj)
        else:
            raise TypeError(f"torchfile.save cannot write {type(obj).__name__}")

    def save_tensor(self, array: np.ndarray) -> None:
        array = np.array(array, order="C", copy=True)
        if array.dtype not in DTYPE_STORAGES:
            array = array.astype(np.float32)
        key = str(len(self.storages))
        self.storages.append((key, array))
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.out.write(pickle.MARK)
        # persistent id of the storage
        self.out.write(pickle.MARK)
        self.save("storage")
        self.global_("torch", DTYPE_STORAGES[array.dtype])
        self.save(key)
        self.save("cpu")
        self.save(int(array.size))
        if self.legacy:
            self.save(None)
        self.out.write(pickle.TUPLE + pickle.BINPERSID)
        self.save(0)
        self.save(tuple(int(s) for s in array.shape))
        stride, acc = [], 1
        for dim in reversed(array.shape):
            stride.insert(0, acc)
            acc *= int(dim)
        self.save(tuple(stride))
        self.save(False)
        self.save({})
        self.out.write(pickle.TUPLE + pickle.REDUCE)


def save(obj, path: str | Path, legacy: bool = False) -> Path:
    """Write ``obj`` (nested dicts / lists / tuples of numbers, strings and NumPy arrays) like torch.save.

    Args:
        legacy: the pre-1.6 format (magic number, pickles, raw storages) instead of the zip archive.
    """
    path = Path(path)
    writer = _Writer(legacy)
    data = writer.dump(obj)
    if legacy:
        with open(path, "wb") as f:
            pickle.dump(LEGACY_MAGIC, f, protocol=2)
            pickle.dump(LEGACY_PROTOCOL, f, protocol=2)
            pickle.dump({"protocol_version": LEGACY_PROTOCOL, "little_endian": True,
                         "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
            f.write(data)
            pickle.dump([key for key, _ in writer.storages], f, protocol=2)
            for _, array in writer.storages:
                f.write(struct.pack("<q", array.size))
                f.write(array.astype(array.dtype.newbyteorder("<")).tobytes())
        return path
    stem = path.stem or "archive"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{stem}/data.pkl", data)
        archive.writestr(f"{stem}/byteorder", "little")
        for key, array in writer.storages:
            archive.writestr(f"{stem}/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes())
        archive.writestr(f"{stem}/version", "3\n")
    return path
