"""Reading published generator weights: PyTorch files (without torch) or NumPy ``.npz`` conversions."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from common import torchfile
from common.errors import UsageError


def read_checkpoint(path: str | Path):
    """The object stored in ``path``: a ``.npz`` becomes a flat dict of arrays; anything else is read as a
    ``torch.save`` file (zip or legacy format) with :mod:`common.torchfile`."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    return torchfile.load(path)


def sub_state(obj, key: str) -> dict:
    """Entry ``key`` of a checkpoint: ``obj[key]`` (a nested state_dict) or the ``key.``-prefixed arrays of
    a flat ``.npz``."""
    if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
        return dict(obj[key])
    prefix = key + "."
    flat = {k[len(prefix):]: v for k, v in obj.items() if isinstance(k, str) and k.startswith(prefix)}
    if not flat:
        raise UsageError(f"checkpoint has no {key!r} entry (keys: {', '.join(list(obj)[:6])})")
    return flat


def read_state_dict(path: str | Path) -> dict:
    """A flat state_dict {name: array} from ``path`` (a bare state_dict, or one under ``state_dict``)."""
    obj = read_checkpoint(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise UsageError(f"{path}: expected a state_dict (a mapping of tensor names), got {type(obj).__name__}")
    return dict(obj)
