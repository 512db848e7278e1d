"""The papers' data checks: SLOGAN (slogan.md §10 checks 2-5), Self-Conditioned GAN (selfcond.md §11 checks
21-23) and ConGAN (congan.md check 18), on small generated data."""

import random

import numpy as np
import pytest
from PIL import Image

from common import data_selfcond, data_slogan, datasets
from common.data_pipelines import image_dataset
from tests.fixtures_http import make_cifar10_tarball, make_mnist_files

# ------------------------------------------------------------------------------------------------ SLOGAN


def test_slogan_synthetic_counts_scaling_and_components():
    mix = data_slogan.make_slogan_synthetic(np.random.RandomState(0))
    assert mix.points.shape == (80000, 2) and mix.points.dtype == np.float32 and mix.labels.shape == (80000, 8)
    component = mix.labels.argmax(1)
    assert np.bincount(component).tolist() == [5000, 15000] * 4
    assert mix.points.min(0).tolist() == [-1.0, -1.0] and mix.points.max(0).tolist() == [1.0, 1.0]
    for c in range(8):
        raw = mix.raw[component == c]
        np.testing.assert_allclose(raw.mean(0), data_slogan.SYNTHETIC_MEANS[c], atol=0.01)
        np.testing.assert_allclose(raw.std(0), 0.1, atol=0.005)
    np.testing.assert_array_equal(mix.scaler_min, mix.raw.min(0))
    # The first draw is component 0's 5000 points, in that order, from the legacy RNG.
    first = np.random.RandomState(0).multivariate_normal([2, 0], 0.01 * np.eye(2), 5000)
    np.testing.assert_array_equal(np.sort(mix.raw[component == 0], 0), np.sort(first, 0))


def test_slogan_synthetic_two_builds_differ_and_the_sequence_repeats():
    np.random.seed(0)
    train, evaluation = data_slogan.make_slogan_synthetic(), data_slogan.make_slogan_synthetic()
    assert not np.array_equal(train.points, evaluation.points)
    np.random.seed(0)
    again = data_slogan.make_slogan_synthetic()
    np.testing.assert_array_equal(again.points, train.points)
    np.testing.assert_array_equal(data_slogan.make_slogan_synthetic().labels, evaluation.labels)


def fake_cifar():
    """6000 airplanes (class 0) and 6000 frogs (class 6) among other classes; pixels encode the image index."""
    labels = np.concatenate([np.zeros(5000), np.full(5000, 6), np.full(400, 1),
                             np.zeros(1000), np.full(1000, 6), np.full(300, 3)]).astype(np.uint8)
    index = np.arange(len(labels))
    images = np.zeros((len(labels), 32, 32, 3), np.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1], images[:, 5, 7, 2] = index % 256, index // 256, 255
    split = 10400
    return (images[:split], labels[:split, None]), (images[split:], labels[split:, None])


EXPECTED_CIFAR2 = {1: (666, 6000), 2: (1500, 6000), 3: (2571, 6000), 4: (4000, 6000), 5: (6000, 6000),
                   6: (6000, 4000), 7: (6000, 2571), 8: (6000, 1500), 9: (6000, 666)}


def test_cifar2_counts_labels_pixels_for_every_ratio():
    data = fake_cifar()
    all_labels = np.concatenate([data[0][1], data[1][1]])[:, 0]
    for ratio, (planes, frogs) in EXPECTED_CIFAR2.items():
        images, labels = data_slogan.make_cifar2(ratio, 3, load_cifar10=lambda: data,
                                                 rng=np.random.RandomState(ratio))
        assert labels.shape == (planes + frogs, 3) and labels.dtype == np.float64
        assert labels.sum(0).tolist() == [planes, frogs, 0]
        assert images.dtype == np.float32 and images.shape == (planes + frogs, 32, 32, 3)
        np.testing.assert_array_equal(images[:, 5, 7, 2], 255 / 256)  # uint8 / 256, not / 255
        source = np.rint(images[:, 0, 0, 0] * 256).astype(int) + 256 * np.rint(images[:, 0, 0, 1] * 256).astype(int)
        assert len(set(source)) == len(source)  # no duplicates within one build
        np.testing.assert_array_equal(np.where(all_labels[source] == 6, 1, 0), labels.argmax(1))  # 0 plane, 1 frog
        assert data_slogan.cifar2_counts(ratio) == (planes, frogs)


def test_cifar2_uses_the_legacy_rng_in_the_original_order():
    data = fake_cifar()
    images, _ = data_slogan.make_cifar2(3, 2, load_cifar10=lambda: data, rng=np.random.RandomState(7))
    all_labels = np.concatenate([data[0][1], data[1][1]])[:, 0]
    kept = np.where((all_labels == 0) | (all_labels == 6))[0]
    rng = np.random.RandomState(7)
    perm = np.arange(len(kept))
    rng.shuffle(perm)
    order = kept[perm]
    planes = np.where(all_labels[order] == 0)[0]
    order = np.delete(order, rng.choice(planes, size=len(planes) - 2571, replace=False))
    source = np.rint(images[:, 0, 0, 0] * 256).astype(int) + 256 * np.rint(images[:, 0, 0, 1] * 256).astype(int)
    np.testing.assert_array_equal(source, order)


def test_cifar2_needs_two_clusters():
    with pytest.raises(Exception, match="--num_cluster 1"):
        data_slogan.make_cifar2(3, 1, load_cifar10=fake_cifar)


def test_slogan_real_augmentation():
    rng = np.random.RandomState(0)
    x = (rng.randint(0, 256, (64, 8, 8, 3)) / 256.0).astype(np.float32)
    out = data_slogan.slogan_augment(x, [3, 4]).numpy()
    assert out.min() >= -1 and out.max() < 1
    noise_kept = out - (2 * x - 1)
    noise_flipped = out - (2 * x[:, :, ::-1] - 1)
    kept = np.all((noise_kept >= -1e-6) & (noise_kept < 2 / 256 + 1e-6), axis=(1, 2, 3))
    flipped = np.all((noise_flipped >= -1e-6) & (noise_flipped < 2 / 256 + 1e-6), axis=(1, 2, 3))
    assert np.all(kept | flipped) and 10 < kept.sum() < 54
    np.testing.assert_array_equal(out, data_slogan.slogan_augment(x, [3, 4]).numpy())  # seeded

    stream = data_slogan.cifar2_stream(x, np.eye(2)[np.arange(64) % 2], 16, seed=1)
    images, labels = next(iter(stream))
    assert images.shape == (16, 8, 8, 3) and labels.shape == (16, 2)
    assert -1 <= float(images.numpy().min()) and float(images.numpy().max()) < 1


# ------------------------------------------------------------------------------------ Self-Conditioned GAN


def half_images(n, size=(32, 32)):
    """uint8 images whose left half is dark (value i mod 51) and right half bright (205 + i mod 51)."""
    images = np.zeros((n, *size, 3), np.uint8)
    images[:, :, : size[1] // 2] = (np.arange(n) % 51)[:, None, None, None]
    images[:, :, size[1] // 2:] = (205 + np.arange(n) % 51)[:, None, None, None]
    return images


def test_selfcond_cifar_pipeline_flip_noise_and_determinism():
    images = half_images(200)
    ds = data_selfcond.selfcond_image_dataset(images, np.arange(200) % 10, img_size=32, batch_size=50, seed=1)
    batches = list(ds)
    assert len(batches) == 4 and batches[0][0].shape == (50, 32, 32, 3) and batches[0][1].dtype.name == "int32"
    x = np.concatenate([b[0].numpy() for b in batches])
    assert x.min() >= -1 and x.max() < 1 + 1 / 128 and x.max() > 1 - 1 / 128
    flipped = x[:, 0, 0, 0] > 0  # the bright half is on the left
    assert 70 < flipped.sum() < 130
    again = next(iter(data_selfcond.selfcond_image_dataset(images, None, img_size=32, batch_size=50, seed=1)))
    np.testing.assert_array_equal(again[0].numpy(), batches[0][0].numpy())

    exact = next(iter(data_selfcond.selfcond_image_dataset(images, None, img_size=32, batch_size=200,
                                                           deterministic=True, seed=1)))[0].numpy()
    grid = np.rint((exact + 1) * 127.5)
    np.testing.assert_array_equal(exact, (grid / 127.5 - 1).astype(np.float32))
    assert np.all(exact[:, 0, 0, 0] < 0)  # no flip


def test_image_folder_labels_follow_sorted_class_folders_and_resize(tmp_path):
    for k, name in enumerate(("airplane", "automobile", "bird")):
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.fromarray(np.full((40, 48, 3), 10 * k, np.uint8)).save(tmp_path / "train" / name / "0.png")
    ds = image_dataset(tmp_path / "train", batch_size=3, image_size=32, shuffle=False)
    images, labels = next(iter(ds))
    assert images.shape == (3, 32, 32, 3) and labels.numpy().tolist() == [0, 1, 2]
    np.testing.assert_allclose(images.numpy()[:, 0, 0, 0], np.array([0, 10, 20]) / 127.5 - 1, atol=1e-6)


def test_stacked_mnist_from_a_tiny_idx_file(tmp_path):
    cache = tmp_path / "mnist"
    cache.mkdir()
    for name, data in make_mnist_files(60, 10).items():
        (cache / name).write_bytes(data)
    stacked = data_selfcond.load_stacked_mnist(tmp_path, py_rng=random.Random(0))
    assert len(stacked) == 100000 and stacked.digits.shape == (60, 32, 32)
    assert stacked.triples.min() >= 0 and stacked.triples.max() == 59
    y = np.arange(60) % 10
    t = stacked.triples
    np.testing.assert_array_equal(stacked.labels, 100 * y[t[:, 0]] + 10 * y[t[:, 1]] + y[t[:, 2]])
    reference = random.Random(0)
    assert [reference.randint(0, 59) for _ in range(6)] == t[:2].reshape(-1).tolist()
    ds = data_selfcond.stacked_mnist_dataset(stacked, 8, shuffle=False)
    images, labels = next(iter(ds))
    assert images.shape == (8, 32, 32, 3) and images.numpy().min() >= -1 and images.numpy().max() <= 1
    np.testing.assert_array_equal(images.numpy(), stacked.images(np.arange(8)))  # no flip, no noise
    np.testing.assert_array_equal(images.numpy()[3, :, :, 1], stacked.digits[t[3, 1]] / np.float32(127.5) - 1)
    assert labels.numpy().tolist() == stacked.labels[:8].tolist()


def test_2d_ring_and_grid_mixtures():
    np.testing.assert_allclose(data_selfcond.ring_means()[:3], [[0, 2], [np.sqrt(2), np.sqrt(2)], [2, 0]], atol=1e-12)
    assert data_selfcond.grid_means()[5 * 1 + 3].tolist() == [-2, 2]
    points, labels = data_selfcond.ring_mixture(100000, np_rng=np.random.RandomState(0), py_rng=random.Random(0))
    residual = points - data_selfcond.ring_means()[labels]
    assert np.all(np.abs(residual.std(0) / 0.01 - 1) < 0.05)
    points, labels = data_selfcond.grid_mixture(100000, np_rng=np.random.RandomState(0), py_rng=random.Random(0))
    assert set(labels.tolist()) == set(range(25))
    residual = points - data_selfcond.grid_means()[labels]
    assert np.all(np.abs(residual.std(0) / 0.05 - 1) < 0.05)


def test_2d_mixtures_consume_the_generators_like_the_original():
    np_rng, py_rng = np.random.RandomState(5), random.Random(5)
    counts = np_rng.multinomial(50, [1 / 8] * 8)
    order = [k for k in range(8) for _ in range(counts[k])]
    py_rng.shuffle(order)
    means = data_selfcond.ring_means()
    expected = np.array([np_rng.multivariate_normal(means[k], [[1e-4, 0], [0, 1e-4]]) for k in order])
    points, labels = data_selfcond.ring_mixture(50, np_rng=np.random.RandomState(5), py_rng=random.Random(5))
    assert labels.tolist() == order
    np.testing.assert_allclose(points, expected, rtol=0, atol=1e-15)

    np_rng, py_rng = np.random.RandomState(6), random.Random(6)
    cells = [(py_rng.randint(0, 4), py_rng.randint(0, 4)) for _ in range(30)]
    expected = np.array([np_rng.multivariate_normal([2 * i - 4, 2 * j - 4], [[0.0025, 0], [0, 0.0025]])
                         for i, j in cells])
    points, labels = data_selfcond.grid_mixture(30, np_rng=np.random.RandomState(6), py_rng=random.Random(6))
    assert labels.tolist() == [5 * i + j for i, j in cells]
    np.testing.assert_allclose(points, expected, rtol=0, atol=1e-15)


# ------------------------------------------------------------------------------------------------- ConGAN


def test_congan_cifar_pickles_and_tiny_imagenet_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(datasets.CACHE_ENV, raising=False)
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(make_cifar10_tarball(4, 2))
    datasets.extract_cifar_archive(tmp_path / "cache" / "cifar10", archive=archive)
    (x_train, _), _ = datasets.load_cifar10(tmp_path / "cache")
    batches = list(image_dataset(x_train, batch_size=3, flip=True, seed=0, with_labels=False))
    assert len(batches) == 20 // 3 and all(b.shape == (3, 32, 32, 3) for b in batches)  # drop_last
    values = np.concatenate([b.numpy() for b in batches])
    assert values.dtype == np.float32 and values.min() >= -1 and values.max() <= 1

    for wnid in ("n01443537", "n01629819"):
        folder = tmp_path / "tiny" / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for j in range(50):
            Image.fromarray(half_images(1, (64, 64))[0]).save(folder / f"{wnid}_{j}.JPEG", quality=95)
    batches = list(image_dataset(tmp_path / "tiny" / "train", batch_size=16, flip=True, seed=3, with_labels=False))
    assert len(batches) == 6 and batches[0].shape == (16, 64, 64, 3)
    x = np.concatenate([b.numpy() for b in batches])
    assert x.min() >= -1 and x.max() <= 1
    assert 28 < (x[:, 10, 5, 0] > 0).sum() < 68  # about half flipped (bright half moved to the left)
