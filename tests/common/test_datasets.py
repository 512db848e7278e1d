"""download.py's builds (glo.md §9 checks 1-7, 9-10), the cache readers and every --source kind, offline."""

import dataclasses
import gzip
import hashlib
import io
import pickle
import tarfile

import h5py
import numpy as np
import pytest
from PIL import Image

import download
from common import data_formats, data_glo, datasets, downloads
from common.errors import UsageError
from tests.fixtures_http import (
    cifar_rows,
    http_server_fixture,  # noqa: F401 (registers the fixture "http_server")
    make_cifar10_tarball,
    make_mnist_files,
    make_svhn_mats,
    pattern_images,
)

FAST = downloads.RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02, timeout=3)


@pytest.fixture
def official(http_server, monkeypatch, in_tmp):
    """Serve tiny official-format files under /m/ and make their MD5s the official ones."""
    files = {**make_mnist_files(20, 10), **make_svhn_mats(6, 4), datasets.CIFAR_ARCHIVE: make_cifar10_tarball(4, 4)}
    for name, data in files.items():
        http_server.add(f"/m/{name}", data)
    patched = {name: dataclasses.replace(spec, resources=tuple(
        dataclasses.replace(r, md5=hashlib.md5(files[r.filename]).hexdigest(), sha256=None) for r in spec.resources))
        for name, spec in datasets.OFFICIAL.items()}
    monkeypatch.setattr(datasets, "OFFICIAL", patched)
    monkeypatch.setattr(downloads, "DEFAULT_POLICY", FAST)
    monkeypatch.delenv(datasets.CACHE_ENV, raising=False)
    monkeypatch.delenv(datasets.MIRROR_ENV, raising=False)
    return http_server


def build(server, *argv):
    args = download.build_parser().parse_args([*argv, "--mirror", server.url("/m/"), "--no_progress"])
    return download.run(args)


def read_h5(folder):
    with h5py.File(folder / "data.hdf5", "r") as h5:
        images = np.stack([h5[str(i)]["image"][()] for i in range(len(h5))])
        codes = np.stack([h5[str(i)]["code"][()] for i in range(len(h5))])
        dtypes = (h5["0"]["image"].dtype, h5["0"]["code"].dtype)
    return images, codes, dtypes, (folder / "id.txt").read_text()


def test_mnist_build_layout_and_cache(official, in_tmp):
    build(official, "--datasets", "MNIST", "--dimension", "7")
    images, codes, dtypes, ids = read_h5(in_tmp / "datasets" / "mnist")
    expected = np.concatenate([pattern_images(20, (28, 28)), pattern_images(10, (28, 28), offset=20)])[..., None]
    np.testing.assert_array_equal(images, expected)  # train first, then test
    assert dtypes == (np.uint8, np.float64) and codes.shape == (30, 7)
    assert ids == "".join(f"{i}\n" for i in range(30))
    assert sorted(p.name for p in (in_tmp / "datasets" / "mnist").iterdir()) == ["data.hdf5", "id.txt"]
    (x, y), (xt, yt) = datasets.load_mnist()
    assert x.shape == (20, 28, 28) and xt.shape == (10, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, np.arange(20) % 10)


def test_pca_codes_are_unit_norm_exact_svd_scores(official, in_tmp):
    build(official, "--datasets", "MNIST", "--distribution", "PCA", "--dimension", "5")
    images, codes, _, _ = read_h5(in_tmp / "datasets" / "mnist")
    np.testing.assert_allclose(np.linalg.norm(codes, axis=1), 1.0, atol=1e-6)
    x = images.reshape(30, -1) / 255.0
    x = x - x.mean(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    reference = (u[:, :5] * s[:5]) / np.linalg.norm(u[:, :5] * s[:5], axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs(codes), np.abs(reference), atol=1e-6)
    signs = np.sign(codes[0] * reference[0])
    np.testing.assert_allclose(codes, reference * signs, atol=1e-6)


def test_uniform_and_gaussian_codes(official, in_tmp):
    build(official, "--datasets", "MNIST", "--dimension", "400", "--seed", "3")
    _, uniform, _, _ = read_h5(in_tmp / "datasets" / "mnist")
    assert uniform.min() >= -1 and uniform.max() < 1 and uniform.size >= 10_000
    assert abs(uniform.mean()) < 0.05 and abs(uniform.var() - 1 / 3) < 0.03
    assert not np.allclose(np.linalg.norm(uniform, axis=1), 1)
    np.random.seed(3)  # --seed seeds the legacy global RNG; the draw is one vector per id in id order
    np.testing.assert_array_equal(uniform, np.stack([np.random.random(400) * 2 - 1 for _ in range(30)]))

    gaussian = data_glo.initial_codes(np.zeros((30, 4)), "Gaussian", 400, np.random.RandomState(0))
    assert abs(gaussian.mean()) < 0.05 and abs(gaussian.std() - 1) < 0.05
    assert not np.allclose(np.linalg.norm(gaussian, axis=1), 1)
    np.testing.assert_array_equal(gaussian, np.random.RandomState(0).randn(30, 400))


def test_svhn_build_and_reader(official, in_tmp):
    build(official, "--datasets", "SVHN", "--dimension", "3")
    images, _, dtypes, _ = read_h5(in_tmp / "datasets" / "svhn")
    mats = make_svhn_mats(6, 4)
    import scipy.io

    x_train = scipy.io.loadmat(io.BytesIO(mats["train_32x32.mat"]))["X"]
    x_test = scipy.io.loadmat(io.BytesIO(mats["test_32x32.mat"]))["X"]
    for i in range(6):
        np.testing.assert_array_equal(images[i], x_train[:, :, :, i])
    np.testing.assert_array_equal(images[6 + 1], x_test[:, :, :, 1])
    assert images.shape == (10, 32, 32, 3) and dtypes[0] == np.uint8
    assert not list((in_tmp / "datasets" / "svhn").glob("*.mat"))
    (x, y), (xt, yt) = datasets.load_svhn()
    assert x.shape == (6, 32, 32, 3) and y.dtype == np.uint8 and y.tolist() == [1, 2, 3, 4, 5, 6]
    assert yt.tolist() == [7, 8, 9, 0]  # the file's 10 is the digit 0


def test_cifar_build_is_transposed_and_reader_is_keras_layout(official, in_tmp):
    build(official, "--datasets", "CIFAR10", "--dimension", "3")
    images, _, _, _ = read_h5(in_tmp / "datasets" / "cifar10")
    rows = cifar_rows(24)  # 5 train batches of 4, then the test batch
    a, b, ch = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), indexing="ij")
    for i in (0, 5, 19, 20, 23):
        np.testing.assert_array_equal(images[i], rows[i][ch * 1024 + b * 32 + a])
        np.testing.assert_array_equal(images[i], rows[i].reshape((32, 32, 3), order="F"))
    assert sorted(p.name for p in (in_tmp / "datasets" / "cifar10").iterdir()) == ["data.hdf5", "id.txt"]
    (x, y), (xt, yt) = datasets.load_cifar10()
    assert x.shape == (20, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (20, 1) and y.dtype == np.uint8
    np.testing.assert_array_equal(x[3], rows[3].reshape(3, 32, 32).transpose(1, 2, 0))
    np.testing.assert_array_equal(yt[:, 0], np.arange(20, 24) % 10)
    assert datasets.cifar10_class_names()[6] == "frog"


def test_second_run_does_no_work(official, in_tmp, capsys):
    build(official, "--datasets", "MNIST", "CIFAR10", "--dimension", "3")
    before = (in_tmp / "datasets" / "mnist" / "data.hdf5").stat().st_mtime_ns
    count = len(official.requests)
    capsys.readouterr()
    build(official, "--datasets", "MNIST", "CIFAR10", "--dimension", "3")
    assert len(official.requests) == count  # no URL opened
    assert capsys.readouterr().out.splitlines() == ["MNIST was downloaded.", "CIFAR was downloaded."]
    assert (in_tmp / "datasets" / "mnist" / "data.hdf5").stat().st_mtime_ns == before


def test_leftovers_of_a_killed_run_are_finished(official, in_tmp):
    cache = in_tmp / "datasets" / ".cache" / "mnist"
    cache.mkdir(parents=True)
    data = make_mnist_files(20, 10)["train-images-idx3-ubyte.gz"]
    (cache / "train-images-idx3-ubyte.gz.part").write_bytes(data[:300])
    (in_tmp / "datasets" / "mnist").mkdir()
    (in_tmp / "datasets" / "mnist" / ".data.hdf5.tmp").write_bytes(b"half an h5 file")
    build(official, "--datasets", "MNIST", "--dimension", "2")
    assert ("/m/train-images-idx3-ubyte.gz", "bytes=300-") in [(r.path, r.range) for r in official.requests]
    assert (cache / "train-images-idx3-ubyte.gz").read_bytes() == data
    assert read_h5(in_tmp / "datasets" / "mnist")[0].shape == (30, 28, 28, 1)
    assert not list(in_tmp.rglob("*.tmp")) and not list(in_tmp.rglob("*.part"))


def test_404_and_bad_checksum_exit_2_and_leave_nothing(official, in_tmp, capsys):
    with pytest.raises(SystemExit) as exit_info:
        download.main(["--datasets", "MNIST", "--mirror", official.url("/nowhere/"), "--no_progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: could not download train-images-idx3-ubyte.gz") and "HTTP 404" in err[-1]
    assert not (in_tmp / "datasets").exists()

    official.add("/bad/train-images-idx3-ubyte.gz", b"\x1f\x8b not the file")
    with pytest.raises(SystemExit):
        download.main(["--datasets", "MNIST", "--mirror", official.url("/bad/"), "--no_progress"])
    assert "checksum mismatch" in capsys.readouterr().err
    assert (in_tmp / "datasets" / ".cache" / "mnist" / "train-images-idx3-ubyte.gz.bad").exists()
    assert not (in_tmp / "datasets" / "mnist").exists()


def test_missing_datasets_flag_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        download.main([])
    assert exit_info.value.code == 2 and "--datasets" in capsys.readouterr().err


def test_usage_errors_for_bad_flag_combinations(in_tmp):
    parse = download.build_parser().parse_args
    for argv, match in ((["--datasets", "faces"], "needs --source"),
                        (["--datasets", "MNIST", "SVHN", "--source", "x"], "exactly one dataset"),
                        (["--datasets", "MNIST", "--source", "nope.npz"], "no such file"),
                        (["--datasets", "MNIST", "--image_size", "8"], "only for your own")):
        with pytest.raises(UsageError, match=match):
            download.run(parse(argv))


def test_reader_without_cache_names_the_command(tmp_path):
    with pytest.raises(UsageError, match=r"download\.py --datasets CIFAR10 --cache_only"):
        datasets.load_cifar10(cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ --source


def write_image_folder(root, splits=(("train", 3), ("test", 2)), classes=("a", "b"), size=(32, 32), mode="RGB"):
    """PNG files root/<split>/<class>/<k>.png; pixel value = 20·class + 5·k (+50 in test, +1 in green)."""
    for split, per_class in splits:
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                value = np.full((*size, 3), 20 * c + 5 * k + (50 if split == "test" else 0), np.uint8)
                value[..., 1] += 1
                Image.fromarray(value[..., 0] if mode == "L" else value).save(root / split / name / f"{k}.png")


def test_source_keras_npz_and_idx_folder(in_tmp):
    rng = np.random.RandomState(0)
    arrays = {"x_train": rng.randint(0, 256, (12, 28, 28), dtype=np.uint8), "y_train": np.arange(12) % 10,
              "x_test": rng.randint(0, 256, (3, 28, 28), dtype=np.uint8), "y_test": np.arange(3)}
    np.savez(in_tmp / "mnist.npz", **arrays)
    download.main(["--datasets", "MNIST", "--source", "mnist.npz", "--dimension", "2", "--no_progress"])
    images, _, _, _ = read_h5(in_tmp / "datasets" / "mnist")
    np.testing.assert_array_equal(images[..., 0], np.concatenate([arrays["x_train"], arrays["x_test"]]))
    (x, y), _ = datasets.load_mnist()
    np.testing.assert_array_equal(y, arrays["y_train"])

    idx = in_tmp / "idx"
    idx.mkdir()
    for name, data in make_mnist_files(5, 2).items():
        if "images" in name:  # raw (not gzipped), and no label files
            (idx / name[:-3]).write_bytes(gzip.decompress(data))
    download.main(["--datasets", "MNIST", "--source", "idx", "--cache_dir", "c2", "--cache_only", "--no_progress"])
    (x, _), _ = datasets.load_mnist("c2", with_labels=False)
    np.testing.assert_array_equal(x, pattern_images(5, (28, 28)))
    with pytest.raises(UsageError, match="labels are missing"):
        datasets.load_mnist("c2")


@pytest.mark.parametrize("bytes_keys", [True, False])
def test_source_official_cifar_archive_and_batch_folder(in_tmp, bytes_keys):
    (in_tmp / "cifar-10-python.tar.gz").write_bytes(make_cifar10_tarball(2, 3, bytes_keys=bytes_keys))
    download.main(["--datasets", "CIFAR10", "--source", "cifar-10-python.tar.gz", "--cache_only", "--no_progress"])
    (x, y), (xt, yt) = datasets.load_cifar10()
    np.testing.assert_array_equal(data_formats.images_to_cifar_rows(np.concatenate([x, xt])), cifar_rows(13))
    batches = in_tmp / "datasets" / ".cache" / "cifar10" / "cifar-10-batches-py"
    download.main(["--datasets", "CIFAR10", "--source", str(batches), "--cache_dir", "c2", "--cache_only",
                   "--no_progress"])
    np.testing.assert_array_equal(datasets.load_cifar10("c2")[1][0], xt)


@pytest.mark.parametrize("as_tar", [False, True])
def test_source_image_folder_writes_cifar_python_batches(in_tmp, as_tar):
    classes = tuple(f"{k}_{name}" for k, name in enumerate(data_formats.CIFAR10_CLASSES))
    write_image_folder(in_tmp / "jpg" / "cifar10", classes=classes)
    source = in_tmp / "jpg" / "cifar10"
    if as_tar:
        source = in_tmp / "cifar.tar.gz"
        with tarfile.open(source, "w:gz") as tar:
            tar.add(in_tmp / "jpg" / "cifar10", arcname="cifar10")
    download.main(["--datasets", "CIFAR10", "--source", str(source), "--dimension", "2", "--no_progress"])
    (x, y), (xt, yt) = datasets.load_cifar10()
    assert x.shape == (30, 32, 32, 3) and xt.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(y[:, 0], np.repeat(np.arange(10), 3))
    assert x[4, 0, 0].tolist() == [25, 26, 25] and xt[3, 5, 5].tolist() == [75, 76, 75]  # class 1, k = 1
    assert datasets.cifar10_class_names() == classes
    batch_dir = in_tmp / "datasets" / ".cache" / "cifar10" / "cifar-10-batches-py"
    with open(batch_dir / "data_batch_1", "rb") as handle:  # Keras reads the batches with encoding="bytes"
        assert set(pickle.load(handle, encoding="bytes")) >= {b"data", b"labels"}
    assert read_h5(in_tmp / "datasets" / "cifar10")[0].shape == (50, 32, 32, 3)


def test_source_svhn_mats_and_own_dataset(in_tmp):
    (in_tmp / "svhn").mkdir()
    for name, data in make_svhn_mats(3, 2).items():
        (in_tmp / "svhn" / name).write_bytes(data)
    download.main(["--datasets", "SVHN", "--source", "svhn", "--dimension", "2", "--no_progress"])
    assert read_h5(in_tmp / "datasets" / "svhn")[0].shape == (5, 32, 32, 3)

    write_image_folder(in_tmp / "faces", splits=(("train", 2),), size=(12, 20), mode="L")
    download.main(["--datasets", "my_faces", "--source", "faces", "--image_size", "8", "--distribution", "PCA",
                   "--dimension", "2", "--no_progress"])
    images, codes, _, ids = read_h5(in_tmp / "datasets" / "my_faces")
    assert images.shape == (4, 8, 8, 1) and ids.split() == ["0", "1", "2", "3"]
    with data_glo.GloData("my_faces", num_train=3) as data:  # found by name, no code edit
        assert data.data_info == (8, 8, 1, 2) and len(data.test_ids) == 1


def test_source_image_folder_with_mixed_sizes_needs_image_size(in_tmp):
    write_image_folder(in_tmp / "f", splits=(("train", 1),), size=(8, 8))
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(in_tmp / "f" / "train" / "a" / "odd.png")
    with pytest.raises(UsageError, match="--image_size"):
        download.run(download.build_parser().parse_args(["--datasets", "own", "--source", "f", "--no_progress"]))


def test_bad_files_raise_usage_errors_naming_them(tmp_path):
    (tmp_path / "x.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 8))
    with pytest.raises(UsageError, match=r"x\.gz: IDX header"):
        data_formats.read_idx(tmp_path / "x.gz")
    (tmp_path / "batch").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="batch: not a CIFAR-10 python batch"):
        data_formats.read_cifar_batch(tmp_path / "batch")
    (tmp_path / "t.mat").write_bytes(b"garbage")
    with pytest.raises(UsageError, match=r"t\.mat"):
        data_formats.read_svhn_mat(tmp_path / "t.mat")


# ---------------------------------------------------------------------------------------- GLO h5 reader


def test_split_shuffle_matches_the_original():
    train, test = data_glo.split_ids([str(i) for i in range(100)], 90)
    assert train[:5] == ["8", "70", "82", "28", "63"] and len(test) == 10
    for total, num_train, first_train, first_test in ((70000, 60000, "21971", "32623"), (99289, 73257, "56465", None),
                                                      (60000, 50000, "29561", None)):
        train, test = data_glo.split_ids([str(i) for i in range(total)], num_train)
        assert train[0] == first_train and (first_test is None or test[0] == first_test)
    assert data_glo.default_num_train("MNIST", 70000) == 60000
    assert data_glo.default_num_train("MNIST", 70) == 60 and data_glo.default_num_train("CIFAR10", 60) == 50
    assert data_glo.default_num_train("", 10) == 9 and data_glo.default_num_train("", 5) == 4


def test_glo_reader_get_set_and_data_hy(tmp_path):
    folder = tmp_path / "datasets" / "mine"
    images = pattern_images(6, (4, 4, 1))
    data_glo.write_glo_h5(folder, images, np.arange(18, dtype=np.float64).reshape(6, 3), progress=False)
    (folder / "data.hdf5").rename(folder / "data.hy")  # the README's file name
    with data_glo.GloData(str(folder), num_train=4) as data:
        image, code = data.get_data("2")
        np.testing.assert_allclose(image, images[2] / 255 * 2 - 1, atol=1e-6)
        assert image.dtype == np.float32 and code.dtype == np.float32 and code.tolist() == [6, 7, 8]
        assert data.set_data("2", np.ones(3)) and not data.set_data("2", np.zeros(3))  # write-once
        assert data.get_data("2")[1].tolist() == [1, 1, 1]
        batch_images, batch_codes = data.get_batch(["0", "2"])
        assert batch_images.shape == (2, 4, 4, 1) and batch_codes[1].tolist() == [1, 1, 1]
    with data_glo.GloData(str(folder), code_update_mode="every_step") as data:
        assert data.set_data("2", np.zeros(3)) and data.get_data("2")[1].tolist() == [0, 0, 0]
    with pytest.raises(UsageError, match="--dataset nothing"):
        data_glo.GloData("nothing", root=tmp_path / "datasets")


def test_id_batches_cover_each_epoch():
    stream = data_glo.id_batches([str(i) for i in range(10)], 4, np.random.RandomState(0))
    batches = [next(stream) for _ in range(5)]
    assert all(len(b) == 4 for b in batches)
    flat = sum(batches, [])
    assert sorted(flat[:10]) == sorted(str(i) for i in range(10)) == sorted(flat[10:20])
