"""Helpers shared by the multi-device and compiled-vs-eager tests."""

import contextlib

import pytest
import tensorflow as tf


def two_cpus() -> list[str]:
    """The names of the two logical CPU devices tests/conftest.py creates (skips if TF started too early)."""
    names = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(names) < 2:
        pytest.skip("TensorFlow was initialised before conftest could split the CPU")
    return names[:2]


@contextlib.contextmanager
def eagerly(on: bool):
    """Run every ``tf.function`` eagerly inside the block when ``on`` (restored to compiled afterwards)."""
    tf.config.run_functions_eagerly(on)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(False)
