"""Input pipelines alone: examples/s from disk to batch with each trainer's own data code (JSON lines).

    python benchmarks/bench_input.py [--pipelines slogan_cifar2,glo_mnist] [--data_dir /path/to/data]

One record per pipeline (``kind: input``): ``load_s`` is the one-time work before the first batch (reading the
files into memory, building the data set), ``examples_per_sec`` the batches a trainer then draws (median of
timed repeats, ``benchmarks/harness.time_calls``) times the batch size, ``peak_rss_mb`` the process's peak
while this pipeline was built and drawn from. ``step_bench`` names the train-step record of the same
trainer; ``benchmarks/run.py`` puts the examples/s that step consumes beside the pipeline's.

Pipelines (the data each trainer reads by default, at its default batch size):

- ``slogan_synthetic``: the 8-Gaussian mixture built twice from NumPy, then the 100 000-slot shuffled index
  stream and a gather of 128 points (``common.slogan.data``), compiled as in the train step;
- ``slogan_cifar2``: CIFAR-10 from the dataset cache (``download.py``'s python batches), CIFAR-2 built four
  times, a train batch of 64 with the flip/noise augmentation (``common.slogan.cifar2_data.build_streams``);
- ``glo_mnist``: ``datasets/mnist`` (GLO's HDF5 file, one group per image), batches of 16 ids read through
  ``glo.data.DataFile`` in the first epoch (later epochs come from its in-memory image cache);
- ``congan_cifar32_jpeg``: the CIFAR-10 JPEG folder decoded into memory by ``congan.data.load_images`` (the
  CIFAR-10 configuration of ``bench_congan.py`` reads a folder), then ``EpochBatches`` of 64 with flips;
- ``selfcond_cifar_jpeg``: ``selfcond.data.build_dataset`` on the JPEG archive (decoded into memory), then the
  ``Loader``'s batches of 64 with flip and dequantisation noise;
- ``selfcond_stacked_mnist``: Stacked MNIST built from ``mnist.npz`` (100 000 triples), ``Loader`` batches of 64;
- ``tfdata_jpeg_folder``: ``common.data_selfcond.selfcond_image_dataset`` (``common.data_pipelines``), the
  tf.data pipeline that decodes each JPEG of the folder in every epoch (no trainer uses it by default).

Real data comes from ``--data_dir`` (default ``$BENCH_DATA_DIR`` or ``/work/shared/data``: ``mnist.npz`` and
``cifar10_jpg.tar.gz``, ``train/<class>/*.jpg``, extracted once into the temporary folder and reused), the
dataset cache and ``datasets/mnist``; a pipeline whose data is missing prints a record with ``skipped: <why>``
instead of failing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.harness import emit, machine, peak_rss_mb, reset_peak_rss, time_calls, time_once  # noqa: E402

DEFAULT_DATA_DIR = os.environ.get("BENCH_DATA_DIR", "/work/shared/data")
JPEG_ARCHIVE = "cifar10_jpg.tar.gz"
MNIST_NPZ = "mnist.npz"


class Skip(Exception):
    """The pipeline's data is not on this machine; the message says what is missing."""


class JpegFolder:
    """The training images of the CIFAR-10 JPEG archive as a folder, extracted once and kept for later runs.

    The folder is ``$TMPDIR/bench_cifar10_jpg_<size>_<mtime>`` (deleting 50 000 files after every run costs as
    much as extracting them); a run that finds it complete reuses it (``extract_s`` is then None).
    """

    def __init__(self, data_dir: Path):
        self.archive = data_dir / JPEG_ARCHIVE
        self.extract_s = None
        self._root: Path | None = None

    def path(self) -> Path:
        """The folder holding ``train/<class>/*.jpg``."""
        if not self.archive.is_file():
            raise Skip(f"no {self.archive} (pass --data_dir)")
        if self._root is None:
            stat = self.archive.stat()
            root = Path(tempfile.gettempdir()) / f"bench_cifar10_jpg_{stat.st_size}_{int(stat.st_mtime)}"
            if not (root / ".complete").is_file():
                partial = root.with_name(f"{root.name}.partial{os.getpid()}")
                shutil.rmtree(partial, ignore_errors=True)
                with tarfile.open(self.archive) as archive:
                    # Only the training images: every pipeline here reads train/<class>/*.
                    members = (m for m in archive if "train" in Path(m.name).parts[:-1])
                    _, self.extract_s, _ = time_once(
                        lambda: archive.extractall(partial, members=members, filter="data"))
                (partial / ".complete").touch()
                shutil.rmtree(root, ignore_errors=True)
                os.replace(partial, root)
            self._root = root
        found = sorted(p.parent for p in self._root.rglob("train") if p.is_dir())
        if not found:
            raise Skip(f"{self.archive} has no train/<class>/ folder")
        return found[0]


# ------------------------------------------------------------------------------------------ the pipelines


def slogan_synthetic(ctx) -> dict:
    import tensorflow as tf

    from common.slogan.data import ShuffledStream, build_synthetic_streams
    from common.slogan.synthetic import SyntheticConfig

    config = SyntheticConfig()
    (train, _), *load = time_once(lambda: build_synthetic_streams(config.seed))
    data = tf.constant(train.data)
    stream = ShuffledStream(len(train.data), config.batch_size, seed=config.seed * 1000 + 4,
                            buffer_size=config.shuffle_buffer)
    draw = tf.function(lambda: tf.gather(data, stream.next_indices()), autograph=False)
    return {"source": "NumPy mixture (no files)", "batch": config.batch_size, "load": load,
            "step_bench": "slogan_synthetic_iteration", "call": draw, "mode": "tf.function"}


def slogan_cifar2(ctx) -> dict:
    from common.errors import UsageError
    from common.slogan.cifar2_config import Cifar2Config
    from common.slogan.cifar2_data import build_streams

    cfg = Cifar2Config()
    try:
        streams, *load = time_once(lambda: build_streams(cfg))
    except UsageError as err:
        raise Skip(str(err)) from None
    return {"source": "dataset cache (CIFAR-10 python batches)", "batch": cfg.batch_size, "load": load,
            "step_bench": "slogan_cifar2/train_step", "call": streams.train.next, "mode": "numpy+tf eager",
            "note": "load: CIFAR-2 built 4 times (train, test, 10k, 50k streams)"}


def glo_mnist(ctx) -> dict:
    import numpy as np

    from common.errors import UsageError
    from glo import data as glo_data
    from glo.config import TrainConfig

    cfg = TrainConfig()
    try:
        (info, source), *load = time_once(lambda: _glo_source(glo_data, "MNIST"))
    except UsageError as err:
        raise Skip(f"{err} (python download.py --datasets MNIST builds datasets/mnist)") from None
    ctx["close"].append(source.close)
    stream = glo_data.BatchStream(len(info.train_ids), cfg.batch_size, seed=0)
    train_ids = np.asarray(info.train_ids)
    counter = iter(range(10**9))
    return {"source": f"HDF5 {info.path.relative_to(ROOT) if info.path.is_relative_to(ROOT) else info.path}",
            "batch": cfg.batch_size, "load": load, "step_bench": "glo_train_step_mnist", "mode": "numpy (h5py)",
            "call": lambda: source.images(train_ids[stream.positions(next(counter))]),
            "note": "first epoch (read from the file); later epochs come from the image cache"}


def _glo_source(glo_data, name):
    info = glo_data.describe(name)
    return info, glo_data.DataFile(info, writable=False, cache_images=True)


def congan_cifar32_jpeg(ctx) -> dict:
    from congan.config import Framework2Config
    from congan.data import EpochBatches, load_images

    folder = ctx["jpeg"].path()
    workers = {f.name: f.default for f in dataclasses.fields(Framework2Config)}["workers"]
    images, *load = time_once(lambda: load_images("folder", folder, 32, 0, workers))
    batches = EpochBatches(images, 64, seed=0)
    counter = iter(range(10**9))

    def draw():
        index = next(counter)
        return batches.batch(index // batches.num_batches, index % batches.num_batches)

    return {"source": f"JPEG folder ({len(images)} files, {workers} decode threads)", "batch": 64,
            "load": load, "extract_s": ctx["jpeg"].extract_s, "step_bench": "congan_f2_train_step_cifar32",
            "call": draw, "mode": "numpy (PIL)", "note": "step consumes (1 + 2 D_iters) batches per iteration"}


def selfcond_cifar_jpeg(ctx) -> dict:
    from selfcond.config import load_config
    from selfcond.data import Loader, build_dataset

    archive = ctx["data_dir"] / JPEG_ARCHIVE
    if not archive.is_file():
        raise Skip(f"no {archive} (pass --data_dir)")
    config = load_config("configs/cifar/selfcondgan.yaml")
    batch = int(config["training"]["batch_size"])
    dataset, *load = time_once(lambda: build_dataset(config, source=archive))
    loader = Loader(dataset, batch, seed=0)
    counter = iter(range(10**9))
    return {"source": f"JPEG archive {JPEG_ARCHIVE} ({len(dataset)} train images)", "batch": batch,
            "load": load, "step_bench": "selfcond_train_step_cifar", "mode": "numpy (PIL)",
            "call": lambda: loader.batch(next(counter))}


def selfcond_stacked_mnist(ctx) -> dict:
    from selfcond.config import load_config
    from selfcond.data import Loader, build_dataset

    npz = ctx["data_dir"] / MNIST_NPZ
    if not npz.is_file():
        raise Skip(f"no {npz} (pass --data_dir)")
    config = load_config("configs/stacked_mnist/selfcondgan.yaml")
    batch = int(config["training"]["batch_size"])
    dataset, *load = time_once(lambda: build_dataset(config, source=npz, seed=0))
    loader = Loader(dataset, batch, seed=0)
    counter = iter(range(10**9))
    return {"source": f"{MNIST_NPZ} -> Stacked MNIST ({len(dataset)} triples)", "batch": batch, "load": load,
            "step_bench": "selfcond_train_step_stacked_mnist", "mode": "numpy",
            "call": lambda: loader.batch(next(counter))}


def tfdata_jpeg_folder(ctx) -> dict:
    from common.data_selfcond import selfcond_image_dataset

    folder = ctx["jpeg"].path()
    dataset, *load = time_once(
        lambda: iter(selfcond_image_dataset(str(folder / "train"), img_size=32, batch_size=64, repeat=True)))
    return {"source": "JPEG folder, decoded every epoch", "batch": 64, "load": load, "mode": "tf.data",
            "call": lambda: next(dataset), "note": "common.data_pipelines.image_dataset; no trainer uses it by default"}


PIPELINES = {f.__name__: f for f in (slogan_synthetic, slogan_cifar2, glo_mnist, congan_cifar32_jpeg,
                                     selfcond_cifar_jpeg, selfcond_stacked_mnist, tfdata_jpeg_folder)}


def measure(name: str, ctx: dict) -> dict:
    """Build pipeline ``name`` and time its batches; the record (``skipped`` set when its data is missing)."""
    record = {"bench": f"input/{name}", "kind": "input"}
    reset_peak_rss()
    try:
        built = PIPELINES[name](ctx)
    except Skip as why:
        return {**record, "mode": "", "skipped": str(why)}
    call = built.pop("call")
    timing = time_calls(call, warmup=2, repeats=5, calls_per_repeat=20)
    load_s, load_cpu_s = built.pop("load")
    record.update(built, load_s=round(load_s, 2), load_cpu_s=round(load_cpu_s, 2))
    if record.get("extract_s") is not None:
        record["extract_s"] = round(record["extract_s"], 2)
    record.update(examples_per_sec=round(timing["steps_per_sec"] * built["batch"], 1),
                  batches_per_sec=timing["steps_per_sec"], first_batch_s=timing["compile_s"],
                  cpu_ms_per_batch=timing["cpu_ms_per_step"], peak_rss_mb=round(peak_rss_mb(), 1))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", default=",".join(PIPELINES), help=f"comma-separated subset of "
                        f"{','.join(PIPELINES)}")
    parser.add_argument("--data_dir", default=DEFAULT_DATA_DIR, help="folder with mnist.npz and cifar10_jpg.tar.gz")
    args = parser.parse_args()
    names = [n.strip() for n in args.pipelines.split(",") if n.strip()]
    unknown = [n for n in names if n not in PIPELINES]
    if unknown:
        parser.error(f"--pipelines: unknown {unknown}; expected a subset of {','.join(PIPELINES)}")
    info = machine()
    ctx = {"data_dir": Path(args.data_dir), "jpeg": JpegFolder(Path(args.data_dir)), "close": []}
    try:
        for name in names:
            emit({**measure(name, ctx), "machine": info})
    finally:
        for close in ctx["close"]:
            close()


if __name__ == "__main__":
    main()
