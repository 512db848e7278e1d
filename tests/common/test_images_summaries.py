"""Image grids, GIFs, HTML pages, TensorBoard rescaling and metrics.jsonl."""

import json

import numpy as np
from PIL import Image

from common.images import make_grid, save_gif, save_grid, to_uint8, write_html_page
from common.summaries import Logbook, read_metrics, tf1_image_scale


def test_grid_row_and_column_major():
    images = np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1)
    row = make_grid(images, rows=2, cols=3)[..., 0]
    col = make_grid(images, rows=2, cols=3, column_major=True)[..., 0]
    np.testing.assert_array_equal(row, [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(col, [[0, 2, 4], [1, 3, 5]])


def test_grid_padding_and_shape():
    grid = make_grid(np.ones((5, 4, 3, 3), np.uint8), padding=1)
    assert grid.shape == (2 * (4 + 1) + 1, 3 * (3 + 1) + 1, 3)  # 5 images: 3 columns, 2 rows
    assert grid[0].max() == 0 and grid[1, 1].max() == 1


def test_to_uint8_maps_minus_one_to_zero_and_one_to_255():
    np.testing.assert_array_equal(to_uint8(np.array([-1.0, 0.0, 1.0, 3.0])), [0, 128, 255, 255])


def test_tf1_image_scale_rules():
    positive = tf1_image_scale(np.array([0.0, 2.0, 4.0]).reshape(1, 1, 3, 1))
    np.testing.assert_allclose(positive.ravel() * 255, [0, 128, 255])  # 127.5 rounds to even
    signed = tf1_image_scale(np.array([-2.0, 0.0, 1.0]).reshape(1, 1, 3, 1))
    np.testing.assert_allclose(signed.ravel() * 255.0, [1, 128, 192])  # 0 -> 128, |2| -> 128 - 127
    two = tf1_image_scale(np.stack([np.full((1, 2, 1), 1.0), np.full((1, 2, 1), 4.0)]))
    np.testing.assert_allclose(two.max(axis=(1, 2, 3)), [1.0, 1.0])  # each image on its own


def test_png_gif_and_html(tmp_path):
    frames = [save_grid(tmp_path / f"f{i}.png", np.full((4, 8, 8, 3), i / 2 - 0.5, np.float32)) for i in range(3)]
    assert Image.open(frames[0]).size == (16, 16)
    gif = save_gif(tmp_path / "train.gif", frames)
    with Image.open(gif) as image:
        assert image.n_frames == 3
    page = write_html_page(tmp_path / "index.html", "grids", [("first", frames[0])])
    assert 'src="f0.png"' in page.read_text()


def test_logbook_writes_events_and_jsonl(tmp_path):
    book = Logbook(tmp_path)
    book.scalars(3, {"loss/d": 1.5})
    book.images(3, {"samples": np.zeros((2, 4, 4, 3))})
    book.record(3, {"nmi": 0.5, "pi": np.array([0.25, 0.75])})
    book.close()
    assert list(tmp_path.glob("events.out.tfevents.*"))
    assert read_metrics(tmp_path) == [{"step": 3, "nmi": 0.5, "pi": [0.25, 0.75]}]
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 4, "nm')  # a torn line from a crash is skipped
    assert len(read_metrics(tmp_path)) == 1
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["step"] == 3
