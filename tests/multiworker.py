"""Launch a tiny training as a real cluster: one process per worker on 127.0.0.1, each with its own TF_CONFIG.

Every process runs ``python -c <driver>`` with the venv's interpreter from the repository root; the driver gets
the worker index through ``TF_CONFIG`` (worker 0 is the chief). Both processes are killed if the test fails or
times out, so a hung collective never outlives the test.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# seconds for the whole cluster: the CPU is shared, and gRPC setup plus tracing take a while (MULTIWORKER_TIMEOUT
# raises it on a heavily loaded machine)
TIMEOUT = float(os.environ.get("MULTIWORKER_TIMEOUT", 240))


# Prepended to every cluster driver: the coordination service that MultiWorkerMirroredStrategy starts declares a task
# dead after 10 s without a heartbeat, which a process starved of CPU on a loaded shared machine misses (the run then
# aborts with "heartbeat timeout"). Configured here first, the strategy keeps this configuration (it only sets up
# the service when none is configured); a crashed worker still ends the test through run_cluster's timeout.
PATIENT_HEARTBEATS = """
import json as _json, os as _os
from tensorflow.compiler.xla.tsl.protobuf.coordination_config_pb2 import CoordinatedJob as _Job
from tensorflow.python.eager import context as _context
_cluster = _json.loads(_os.environ["TF_CONFIG"])["cluster"]
_leader = "chief" if "chief" in _cluster else "worker"
_context.context().configure_coordination_service(
    service_type="standalone", service_leader=f"/job:{_leader}/replica:0/task:0", heartbeat_timeout_in_ms=600_000,
    coordinated_jobs=[_Job(name=name, num_tasks=len(tasks)) for name, tasks in _cluster.items()])
"""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that were free on 127.0.0.1 a moment ago (the OS picks them)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker_env(index: int, ports: list[int]) -> dict:
    """The environment of worker ``index``: TF_CONFIG naming the whole cluster, CPU only, quiet TensorFlow."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    return env


def run_cluster(driver: str, workers: int = 2, cwd: Path | None = None, timeout: float = TIMEOUT) -> list[str]:
    """Run ``driver`` (Python source) in ``workers`` processes forming one cluster; return their outputs.

    Raises:
        AssertionError: a process exited non-zero or the cluster did not finish in ``timeout`` seconds
            (the message holds the tail of every output).
    """
    ports = free_ports(workers)
    procs = [subprocess.Popen([sys.executable, "-c", PATIENT_HEARTBEATS + driver], cwd=str(cwd or ROOT),
                              env=worker_env(i, ports), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(workers)]
    outputs = [""] * workers
    try:
        for i, proc in enumerate(procs):
            outputs[i], _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"cluster did not finish in {timeout} s") from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    codes = [p.returncode for p in procs]
    assert codes == [0] * workers, "exit codes " + str(codes) + "".join(
        f"\n--- worker {i} ---\n{out[-3000:]}" for i, out in enumerate(outputs))
    return outputs


def run_single(driver: str, cwd: Path | None = None, timeout: float = TIMEOUT) -> str:
    """Run ``driver`` in one process without TF_CONFIG (the one-process reference); return its output."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", driver], cwd=str(cwd or ROOT), env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout
