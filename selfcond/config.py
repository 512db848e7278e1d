"""YAML configs with inheritance, exactly as the original loads them (spec §3.1).

1. Parse the YAML. If it has ``inherit_from: P``, load P first (recursively, same rules); otherwise load
   ``configs/default.yaml``.
2. Merge the child into that base: for each key of the child, recurse when the base value is a dict,
   otherwise the child's value replaces it (keys the base lacks are added).
3. ``inherit_from`` stays in the result.
4. YAML 1.1 scalars through ``yaml.safe_load``: ``None`` is the *string* "None", ``0.`` and ``10.`` are
   floats, ``False`` is a bool.

Paths (the config, ``inherit_from`` and the default) are relative to the working directory in the
original. The port tries the working directory first and then this package's folder, so both
``python selfcond/train.py selfcond/configs/cifar/selfcondgan.yaml`` (from the repository root) and
``python train.py configs/cifar/selfcondgan.yaml`` (from inside ``selfcond/``) work, while
``inherit_from: configs/cifar/default.yaml`` keeps its original text.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from common.errors import UsageError

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = "configs/default.yaml"


def resolve_path(path: str | Path, what: str = "config") -> Path:
    """``path`` relative to the working directory if it exists there, else relative to ``selfcond/``."""
    path = Path(path)
    if path.exists():
        return path
    if not path.is_absolute() and (PACKAGE_DIR / path).exists():
        return PACKAGE_DIR / path
    raise UsageError(f"{what} {str(path)!r}: file not found (looked in the working directory and {PACKAGE_DIR})")


def _read_yaml(path: str | Path, what: str) -> dict:
    resolved = resolve_path(path, what)
    try:
        with open(resolved) as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as err:
        raise UsageError(f"{what} {str(path)!r}: not valid YAML ({str(err).splitlines()[0]})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{what} {str(path)!r}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def update_recursive(base: dict, child: dict, where: str = "") -> None:
    """Merge ``child`` into ``base`` in place (the original's ``update_recursive``)."""
    for key, value in child.items():
        if key not in base:
            base[key] = None
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise UsageError(f"config key {where}{key}: expected a mapping (the base config has one), "
                                 f"got {value!r}")
            update_recursive(base[key], value, f"{where}{key}.")
        else:
            base[key] = value


def load_config(path: str | Path, default_path: str | Path | None = DEFAULT_CONFIG, _seen: tuple = ()) -> dict:
    """The effective config tree of ``path`` (spec §3.1).

    Args:
        path: the YAML file.
        default_path: the root of every chain without ``inherit_from`` (None: an empty dict).

    Raises:
        UsageError: a missing file, invalid YAML or an inheritance cycle.
    """
    key = str(resolve_path(path).resolve())
    if key in _seen:
        raise UsageError(f"config {str(path)!r}: inherit_from forms a cycle")
    special = _read_yaml(path, "config")
    inherit_from = special.get("inherit_from")
    if inherit_from is not None:
        config = load_config(inherit_from, default_path, _seen + (key,))
    elif default_path is not None:
        config = _read_yaml(default_path, "default config")
    else:
        config = {}
    update_recursive(config, copy.deepcopy(special))
    return config


def get(config: dict, dotted: str):
    """``config["a"]["b"]`` for ``"a.b"``, with a usage error naming the key when it is missing."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UsageError(f"config: missing key {dotted}")
        node = node[part]
    return node
