"""PyTorch checkpoints without PyTorch, the original-key importer, SimSiam loading, data readers (spec §9: 18, 20)."""

import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest
from PIL import Image

from common.errors import UsageError
from common.seeding import set_seed
from congan.config import tiny_framework2
from congan.data import EpochBatches, load_images, read_cifar10_train, subset_indices, to_signed
from congan.framework2 import build_networks
from congan.simsiam import SimSiam, load_simsiam
from congan.torch_io import export_state_dict, import_state_dict, load_state_dict, load_torch_file

# --- a writer of the torch.save zip format, for the tests only (torch is not installed) ---------------------


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


@contextlib.contextmanager
def _fake_torch_modules():
    """Stand-ins for ``torch.FloatStorage`` and ``torch._utils._rebuild_tensor_v2`` so pickle can name them."""
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only referenced by name
        raise AssertionError

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    storage_cls = type("FloatStorage", (), {"__module__": "torch"})
    torch_mod.FloatStorage, torch_mod._utils = storage_cls, utils_mod
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
    sys.modules["torch"], sys.modules["torch._utils"] = torch_mod, utils_mod
    try:
        yield storage_cls, _rebuild_tensor_v2
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _pickle_with_storages(obj, legacy):
    """Pickle ``obj`` as torch.save does: arrays become ``_rebuild_tensor_v2(storage, ...)`` calls whose storages
    are persistent ids (zip: 5 fields; legacy: 6, the last the view metadata None). Returns (bytes, storages)."""
    storages = []
    with _fake_torch_modules() as (storage_cls, rebuild):

        class Pickler(pickle.Pickler):
            def persistent_id(self, item):
                if isinstance(item, _Storage):
                    pid = ("storage", storage_cls, item.key, "cpu", item.array.size)
                    return pid + (None,) if legacy else pid
                return None

            def reducer_override(self, item):
                if isinstance(item, np.ndarray):
                    base = np.ascontiguousarray(item.T).astype("<f4") if item.ndim == 2 else \
                        np.ascontiguousarray(item).astype("<f4")
                    storage = _Storage(str(len(storages)), base)
                    storages.append(storage)
                    # 2-D tensors are written as transposed views (non-contiguous strides), like t().
                    stride = (1, item.shape[0]) if item.ndim == 2 else \
                        tuple(int(s) // 4 for s in np.ascontiguousarray(item).strides)
                    return rebuild, (storage, 0, tuple(item.shape), stride, False, collections.OrderedDict())
                return NotImplemented

        buffer = io.BytesIO()
        Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue(), storages


def write_torch_zip(path, obj, prefix="checkpoint_0099"):
    """Write ``obj`` (dicts, numbers, strings and float32 arrays) like ``torch.save`` (zip format, torch >= 1.6)."""
    data, storages = _pickle_with_storages(obj, legacy=False)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{prefix}/data.pkl", data)
        archive.writestr(f"{prefix}/byteorder", "little")
        for storage in storages:
            archive.writestr(f"{prefix}/data/{storage.key}", storage.array.tobytes())
        archive.writestr(f"{prefix}/version", "3\n")


def write_torch_legacy(path, obj):
    """Write ``obj`` like ``torch.save`` before PyTorch 1.6: the magic number, the protocol version and the system
    info as three pickles, the object pickle, the pickled list of storage keys, then for every storage its element
    count (int64 little endian) and raw bytes."""
    data, storages = _pickle_with_storages(obj, legacy=True)
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
        f.write(data)
        pickle.dump([storage.key for storage in storages], f, protocol=2)
        for storage in storages:
            f.write(struct.pack("<q", storage.array.size))
            f.write(storage.array.tobytes())


def test_torch_zip_reader_on_a_written_file(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    obj = {"epoch": 100, "arch": "resnet50", "state_dict": collections.OrderedDict(
        [("module.w", a), ("module.b", np.array([1.5, -2.0], np.float32))])}
    path = tmp_path / "checkpoint_0099.pth.tar"
    write_torch_zip(path, obj)
    loaded = load_torch_file(path)
    assert loaded["epoch"] == 100 and loaded["arch"] == "resnet50"
    np.testing.assert_array_equal(loaded["state_dict"]["module.w"], a)
    state = load_state_dict(path)  # unwraps state_dict and drops "module."
    assert sorted(state) == ["b", "w"]
    assert "torch._utils" not in sys.modules or hasattr(sys.modules["torch._utils"], "__file__")  # stand-ins gone


def test_torch_legacy_reader_on_a_written_file(tmp_path):
    """The pre-1.6 format (published checkpoints such as SimSiam's .pth.tar) is read by the same loader."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    obj = {"epoch": 100, "arch": "resnet50", "state_dict": collections.OrderedDict(
        [("module.w", a), ("module.b", np.array([1.5, -2.0], np.float32))])}
    path = tmp_path / "checkpoint_0099.pth.tar"
    write_torch_legacy(path, obj)
    assert not zipfile.is_zipfile(path)
    loaded = load_torch_file(path)
    assert loaded["epoch"] == 100 and loaded["arch"] == "resnet50"
    np.testing.assert_array_equal(loaded["state_dict"]["module.w"], a)  # transposed storage, strides (1, 2)
    state = load_state_dict(path)
    assert sorted(state) == ["b", "w"] and state["b"].tolist() == [1.5, -2.0]


def test_torch_reader_refuses_other_globals(tmp_path):
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(print, protocol=2))
    with pytest.raises(UsageError, match=r"refusing to load __builtin__.print \(only tensors and containers"):
        load_torch_file(path)
    (tmp_path / "junk.pth").write_bytes(b"\x80\x02not a checkpoint")
    with pytest.raises(UsageError, match="cannot read it as a PyTorch checkpoint"):
        load_torch_file(tmp_path / "junk.pth")
    with pytest.raises(UsageError, match="no such checkpoint file"):
        load_torch_file(tmp_path / "missing.pth")


@pytest.fixture(scope="module")
def tiny_nets():
    set_seed(0)
    cfg = tiny_framework2()
    simsiam = SimSiam("tiny", 64, 16).build_for(32)
    return build_networks(cfg, simsiam.encoder, 64), cfg, simsiam


def test_original_checkpoint_keys_import_and_round_trip(tmp_path, tiny_nets):
    nets, cfg, simsiam = tiny_nets
    state = export_state_dict(nets.gan)
    assert len(state) == 135 - 7  # 135 keys at 32 px in PyTorch, 7 of them num_batches_tracked (one per CBN)
    nf = 2 * cfg.num_features
    assert state["D.model.0.conv1.parametrizations.weight.original"].shape == (nf, 3, 3, 3)
    np.testing.assert_array_equal(state["D.model.0.conv1.parametrizations.weight.original"],
                                  state["D.model.0.model.0.parametrizations.weight.original"])
    assert state["D.model.1.bypass.0.parametrizations.weight.0._v"].shape == (nf,)
    assert state["D.fc.parametrizations.weight.original"].shape == (1, nf)
    assert state["G.dense.weight"].shape == (4 * 4 * nf, nets.T.output_dim)
    assert state["G.block3.bn2.embed.weight"].shape == (2 * nf, 64)
    assert "G.bn.bn.running_var" in state and "G.block4.conv1.weight" not in state
    full = dict(state)
    for key in [k for k in state if k.endswith("running_mean")]:
        full[key.replace("running_mean", "num_batches_tracked")] = np.array(7, np.int64)
    assert len(full) == 135
    np.savez(tmp_path / "model.npz", **full)

    fresh = build_networks(cfg, simsiam.encoder, 64)
    before = [v.numpy().copy() for v in fresh.gan.weights]
    count = import_state_dict(fresh.gan, load_state_dict(tmp_path / "model.npz"))
    assert count == len(nets.G.weights) + len(nets.D.weights)  # every variable set exactly once
    for a, b, old in zip(nets.gan.weights, fresh.gan.weights, before):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert a.shape == old.shape
    again = export_state_dict(fresh.gan)
    assert all(np.array_equal(again[k], state[k]) for k in state)

    bad = dict(full)
    bad["D.model.0.model.2.parametrizations.weight.original"] = bad[
        "D.model.0.model.2.parametrizations.weight.original"] + 1.0
    with pytest.raises(UsageError, match="duplicate entries"):
        import_state_dict(fresh.gan, bad)
    del full["G.dense.bias"]
    with pytest.raises(UsageError, match="missing 1"):
        import_state_dict(fresh.gan, full)


def test_q_and_latent_transform_keys(tiny_nets):
    nets, cfg, _ = tiny_nets
    assert sorted(export_state_dict(nets.Q)) == ["0.weight", "1.bias", "1.weight"]
    assert sorted(export_state_dict(nets.T)) == ["transform.bias", "transform.weight"]


def test_simsiam_loader_reads_official_layout(tmp_path):
    source = SimSiam("tiny", 64, 16).build_for(32)
    state = {f"module.{k}": v for k, v in export_state_dict(source).items()}
    assert "module.encoder.fc.6.bias" in state and "module.encoder.fc.7.running_var" in state
    assert "module.encoder.fc.7.weight" not in state and "module.predictor.3.bias" in state
    write_torch_zip(tmp_path / "pretrained.tar", {"epoch": 100, "arch": "tiny", "state_dict": state})
    write_torch_legacy(tmp_path / "legacy.pth.tar", {"epoch": 100, "arch": "tiny", "state_dict": state})
    for name in ("pretrained.tar", "legacy.pth.tar"):
        loaded = load_simsiam(str(tmp_path / name), "tiny", 64, 16, 32)
        for a, b in zip(source.weights, loaded.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    with pytest.raises(UsageError, match="do not match"):
        load_simsiam(str(tmp_path / "pretrained.tar"), "resnet18_cifar", 64, 16, 32)


def _write_cifar(root, n_per_batch=4):
    root.mkdir()
    rng = np.random.RandomState(0)
    for i in range(1, 6):
        rows = rng.randint(0, 256, (n_per_batch, 3072)).astype(np.uint8)
        with open(root / f"data_batch_{i}", "wb") as handle:
            pickle.dump({b"data": rows, b"labels": list(range(n_per_batch))}, handle)
    return rows


def test_cifar_pickle_reader(tmp_path):
    last_rows = _write_cifar(tmp_path / "cifar-10-batches-py")
    images = read_cifar10_train(tmp_path)
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[-1, :, :, 0], last_rows[-1, :1024].reshape(32, 32))
    x = to_signed(images).numpy()
    assert x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
    assert load_images("cifar10", tmp_path, 64, subset=5).shape == (5, 64, 64, 3)


def test_tiny_imagenet_folder_reader_and_loader(tmp_path):
    rng = np.random.RandomState(0)
    for wnid in ("n02", "n01"):
        folder = tmp_path / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for k in range(5):
            mode = "L" if k == 0 else "RGB"
            shape = (64, 64) if mode == "L" else (64, 64, 3)
            Image.fromarray(rng.randint(0, 256, shape).astype(np.uint8), mode).save(folder / f"{wnid}_{k}.JPEG")
        (tmp_path / "train" / wnid / f"{wnid}_boxes.txt").write_text("labels are dropped\n")
    images = load_images("tiny_imagenet", tmp_path, 64)
    assert images.shape == (10, 64, 64, 3) and images.dtype == np.uint8
    assert np.all(images[0, ..., 0] == images[0, ..., 1])  # grayscale file became RGB (n01 sorts first)
    loader = EpochBatches(images, 4, seed=3)
    assert loader.num_batches == 2  # drop_last
    np.testing.assert_array_equal(loader.batch(1, 0), EpochBatches(images, 4, seed=3).batch(1, 0))
    assert not np.array_equal(loader.batch(0, 0), loader.batch(1, 0))
    assert list(subset_indices(10, 4)) == [0, 2, 5, 7]


def test_horizontal_flip_in_about_half_the_samples():
    images = np.zeros((1000, 2, 2, 3), np.uint8)
    images[:, :, 0] = 255  # left column white: a flip moves it to the right
    loader = EpochBatches(images, 1000, seed=0)
    flipped = int((loader.batch(0, 0)[:, 0, 0, 0] == 0).sum())
    assert 450 < flipped < 550
    assert flipped == int((EpochBatches(images, 1000, seed=0).batch(0, 0)[:, 0, 0, 0] == 0).sum())


def test_export_and_load_of_the_three_files(tmp_path, tiny_nets):
    from congan.checkpoints import export_original, load_weights_folder

    nets, cfg, simsiam = tiny_nets
    paths = export_original(tmp_path, nets)
    assert sorted(p.name for p in paths.values()) == ["Q.npz", "latent_transform.npz", "model.npz"]
    fresh = build_networks(cfg, simsiam.encoder, 64)
    used = load_weights_folder(tmp_path, fresh)
    assert used["model"].name == "model.npz"
    for a, b in zip(nets.gan.weights + nets.T.weights + nets.Q.weights,
                    fresh.gan.weights + fresh.T.weights + fresh.Q.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(UsageError, match="no Q"):
        load_weights_folder(_only(tmp_path), fresh)


def _only(folder):
    """A copy of ``folder`` without the Q file."""
    import shutil

    target = folder / "partial"
    target.mkdir()
    for name in ("model.npz", "latent_transform.npz"):
        shutil.copy(folder / name, target / name)
    return target
