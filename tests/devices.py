"""Helpers shared by the multi-device and compiled-vs-eager tests."""

import contextlib

import numpy as np
import pytest
import tensorflow as tf


def two_cpus() -> list[str]:
    """The names of the two logical CPU devices tests/conftest.py creates (skips if TF started too early)."""
    names = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(names) < 2:
        pytest.fail("fewer than 2 logical CPUs: tests/conftest.py must split the CPU before TensorFlow starts")
    return names[:2]


@contextlib.contextmanager
def eagerly(on: bool):
    """Run every ``tf.function`` eagerly inside the block when ``on`` (restored to compiled afterwards)."""
    tf.config.run_functions_eagerly(on)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(False)


def assert_same_run(a, b, rtol: float, atol: float) -> None:
    """Two runs' ``(values: dict name -> array, outputs: list of dicts of scalars)`` agree.

    Each value within rtol of itself or of its array's largest magnitude (gradients summed in another order differ
    by rounding relative to the whole vector, not to each entry); each output within rtol.
    """
    (values_a, outputs_a), (values_b, outputs_b) = a, b
    assert values_a.keys() == values_b.keys()
    for key, value in values_a.items():
        scale = float(np.abs(value).max()) if value.size and value.dtype.kind == "f" else 0.0
        np.testing.assert_allclose(values_b[key], value, rtol=rtol, atol=atol + rtol * scale, err_msg=key)
    for out_a, out_b in zip(outputs_a, outputs_b):
        for key in out_a:
            assert out_b[key] == pytest.approx(out_a[key], rel=rtol, abs=atol), key
