"""Per-cluster sample and real-image grids with a browsable page (the original's ``visualize_clusters.py``).

Into ``OUT/clusters/``: ``{i}_gen.png`` for every label i of G (20 samples, seeds 0..19, label fixed to i,
4 per row) and, with ``show_clusters``, ``{i}_real.png`` (the first 20 real training images the clusterer
puts in cluster i, for clusters with at least 20 members among the images of the first batches up to
10000 images). ``+lightbox.html`` shows them all: the original copies a static page that lists an
Apache directory index with scripts from CDNs; the port writes a self-contained page instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from common.images import save_grid, write_html_page
from selfcond.sampling import SeededSampler, load_run

NIMGS = 20
NROWS = 4  # images per row (torchvision's nrow)
REAL_IMAGE_LIMIT = 10000


def real_clusters(state, config: dict, nlabels: int, source=None, seed: int = 1) -> list[list[np.ndarray]]:
    """Real training images per inferred cluster, batch by batch until batch_index * B >= 10000."""
    from selfcond.data import Loader, build_dataset

    dataset = build_dataset({**config, "data": {**config["data"], "deterministic": False}}, source, seed)
    batch_size = int(config["training"]["batch_size"])
    loader = Loader(dataset, batch_size, seed, "eval")
    clusters: list[list[np.ndarray]] = [[] for _ in range(nlabels)]
    for batch_num in range(len(loader)):
        x, y = loader.batch(batch_num)
        for image, label in zip(x, state.clusterer.get_labels(tf.constant(x), tf.constant(y)).numpy()):
            clusters[int(label)].append(image)
        if batch_num * batch_size >= REAL_IMAGE_LIMIT:
            break
    return clusters


def visualize(config: dict, model_it=None, show_clusters: bool = False, source=None, seed=None) -> Path:
    """Write the grids and ``+lightbox.html``; returns the ``clusters`` folder."""
    state, it = load_run(config, model_it)
    out = Path(config["training"]["out_dir"]) / "clusters"
    out.mkdir(parents=True, exist_ok=True)
    print("Saving clusters/samples to", out)
    sampler = SeededSampler(state, seed)
    nlabels = int(config["generator"]["nlabels"])
    clusters = real_clusters(state, config, nlabels, source) if show_clusters else [None] * nlabels
    entries = []
    for i in range(nlabels):
        if clusters[i] is not None and len(clusters[i]) >= NIMGS:
            path = save_grid(out / f"{i}_real.png", np.stack(clusters[i][:NIMGS]), padding=2, cols=NROWS)
            entries.append((f"cluster {i}: real", path))
        generated = np.concatenate([sampler.conditional_sample(i, seed=s) for s in range(NIMGS)])
        path = save_grid(out / f"{i}_gen.png", generated, padding=2, cols=NROWS)
        entries.append((f"cluster {i}: generated", path))
    write_html_page(out / "+lightbox.html", f"{config['training']['out_dir']} at iteration {it}", entries)
    print("Clusters/samples can be visualized under", out)
    return out
