"""The user's own command: ``cd glo && python evaler.py --reconstruct`` as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from glo.testing import make_dataset

GLO_DIR = Path(__file__).resolve().parent.parent / "glo"


def test_evaler_runs_from_inside_glo(tmp_path):
    """The script finds its packages from inside glo/, reads a folder dataset and logs the reconstruction."""
    dataset = make_dataset(tmp_path / "faces", n=20, size=32, channels=1, dim=6)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, "evaler.py", "--reconstruct", "--dataset", str(dataset), "--batch_size", "4",
         "--gpu", "-1", "--seed", "0"],
        cwd=GLO_DIR, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "No checkpoint is given. Just random initialization :-)" in proc.stderr
    assert proc.stderr.count("Loss (test):") == 2 // 4 + 1
    assert "Average loss : " in proc.stderr
