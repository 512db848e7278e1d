"""DiffAugment of SLOGAN's SimCLR branch against NumPy references with fixed draws (spec §3.4, §10 item 6)."""

import numpy as np
import pytest
import tensorflow as tf

from common.slogan import diffaugment as da


def _images(batch=3, size=32, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)


def _np_shift(image, t_h, t_w):
    """out[i, j] = image[i + t_h, j + t_w] inside the image, else 0 (a loop, no tricks)."""
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    for i in range(h):
        for j in range(w):
            if 0 <= i + t_h < h and 0 <= j + t_w < w:
                out[i, j] = image[i + t_h, j + t_w]
    return out


@pytest.mark.parametrize("shift", [(0, 0), (4, -4), (-4, 4), (1, -3), (-2, 0)])
def test_translation_is_a_zero_filled_shift(shift):
    x = _images(2)
    shifts = tf.constant([shift, (-shift[0], shift[1])], tf.int32)
    out = da.translate(tf.constant(x), shifts).numpy()
    np.testing.assert_array_equal(out[0], _np_shift(x[0], *shift))
    np.testing.assert_array_equal(out[1], _np_shift(x[1], -shift[0], shift[1]))


def test_color_formulas():
    x = _images(3)
    u = np.array([0.0, 0.3, 0.99], np.float32)
    bright = da.adjust_brightness(tf.constant(x), tf.constant(u)).numpy()
    np.testing.assert_allclose(bright, x + (u - 0.5)[:, None, None, None], atol=1e-6)
    sat = da.adjust_saturation(tf.constant(x), tf.constant(u)).numpy()
    pixel_mean = x.mean(axis=3, keepdims=True)
    np.testing.assert_allclose(sat, (x - pixel_mean) * 2 * u[:, None, None, None] + pixel_mean, atol=1e-6)
    con = da.adjust_contrast(tf.constant(x), tf.constant(u)).numpy()
    image_mean = x.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(con, (x - image_mean) * (u[:, None, None, None] + 0.5) + image_mean, atol=1e-6)


@pytest.mark.parametrize("centre", [(0, 0), (16, 16), (32, 32), (5, 27), (31, 8)])
def test_cutout_zeroes_exactly_the_clipped_window(centre):
    x = _images(1) + 3.0  # no pixel is 0 before the cutout
    out = da.cut_out(tf.constant(x), tf.constant([centre], tf.int32)).numpy()[0]
    expected = x[0].copy()
    rows = slice(max(centre[0] - 8, 0), min(centre[0] + 8, 32))
    cols = slice(max(centre[1] - 8, 0), min(centre[1] + 8, 32))
    expected[rows, cols] = 0
    np.testing.assert_array_equal(out, expected)
    zero_rows = np.flatnonzero((out == 0).any(axis=(1, 2)))
    assert len(zero_rows) == rows.stop - rows.start


def test_draws_cover_the_original_ranges():
    draws = da.draw(tf.random.Generator.from_seed(0), 4000)
    shift, centre = draws.shift.numpy(), draws.cutout_centre.numpy()
    assert shift.min() == -4 and shift.max() == 4  # int(32·0.125 + 0.5) = 4, both ends included
    assert centre.min() == 0 and centre.max() == 32  # U{0..32}
    for u in (draws.brightness, draws.saturation, draws.contrast):
        assert 0.0 <= u.numpy().min() and u.numpy().max() < 1.0
    assert da.max_shift(32) == 4 and da.cutout_size(32) == 16


def test_full_policy_matches_composition_and_keeps_the_shape():
    x = _images(4)
    draws = da.draw(tf.random.Generator.from_seed(1), 4)
    out = da.diff_augment(tf.constant(x), draws).numpy()
    assert out.shape == x.shape
    ref = np.stack([_np_shift(x[b], *draws.shift.numpy()[b]) for b in range(4)])
    b_, s_, c_ = (d.numpy()[:, None, None, None] for d in (draws.brightness, draws.saturation, draws.contrast))
    ref = ref + (b_ - 0.5)
    ref = (ref - ref.mean(3, keepdims=True)) * 2 * s_ + ref.mean(3, keepdims=True)
    ref = (ref - ref.mean((1, 2, 3), keepdims=True)) * (c_ + 0.5) + ref.mean((1, 2, 3), keepdims=True)
    for b, (o_h, o_w) in enumerate(draws.cutout_centre.numpy()):
        ref[b, max(o_h - 8, 0) : o_h + 8, max(o_w - 8, 0) : o_w + 8] = 0
    np.testing.assert_allclose(out, ref, atol=1e-5)
