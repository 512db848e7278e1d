"""Shared fixtures. Tests never touch the network or the real datasets."""

import os

# Two logical CPU devices so that tf.distribute tests can run a MirroredStrategy on one CPU.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


def pytest_configure(config):
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
        )
    except RuntimeError:
        pass  # already initialised by an earlier import; the distribute tests then skip themselves


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test with the temporary folder as the working directory (entry points write ./logs)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def _fresh_collective_keys():
    """Give every test's MirroredStrategy its own collective-key range.

    Each MirroredStrategy numbers its collective instances from the same base; a second strategy in one
    process whose collectives differ in shape or type then aborts ("Shape mismatch in the collective
    instance ..."). Real runs build one strategy per process; the test process builds many.
    """
    import tensorflow as tf

    tf.distribute.MirroredStrategy._collective_key_base += 10_000
    yield
