"""Generators trained by this project, loaded from their run folders (``generator=glo|slogan|selfcond|congan``).

The protocol: a loader ``load(run_dir, checkpoint, **options) -> Source`` rebuilds the paper's Keras
generator with that paper's own code, restores its weights from the run folder's checkpoint and returns a
:class:`Source`: the latent size, a latent sampler driven by a ``np.random.RandomState`` (the paper's own
prior, e.g. SLOGAN's learned Gaussian mixture or GLO's Gaussian fitted to the learned codes), and the
forward pass as named stages, so LatentCLR can stop at any of them. :class:`ProjectGenerator` turns a Source
into the LatentCLR generator interface. Adding a paper means adding one loader to :data:`LOADERS`.
A Source with an ``n_latent`` above 1 (ConGAN's per-layer representations) also takes a list of latents.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from common.errors import UsageError
from latentclr.generators.base import Generator, draw_seed


class Source:
    """A generator as named stages: ``forward`` applies them in order and can stop after any.

    Args:
        latent_dim: S.
        stages: ``[(name, fn)]``; fn maps the previous stage's output (the latent [B, S] for the first) on,
            or, with ``chained=False``, the latent itself.
        sample: ``sample(rng, n) -> [n, S]`` float32 latents of the paper's prior.
        output_range: range of the last stage's images (mapped to [0, 1] for the grids).
        image_context: images of a batch-statistics generator are rendered in a batch padded to this many
            rows with fixed latents (as GLO's own evaler does); 0 renders the batch as given.
    """

    def __init__(self, latent_dim: int, stages: Sequence[tuple[str, Callable]], sample: Callable,
                 output_range=(-1.0, 1.0), image_context: int = 0, chained: bool = True):
        self.latent_dim, self.stages, self.sample = int(latent_dim), list(stages), sample
        self.output_range, self.image_context, self.chained = tuple(output_range), int(image_context), chained
        self.n_latent = 1  # per-layer latents a list given to ``forward`` may hold (see StagedSource)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.stages]

    def forward(self, z, stop_at: str | None = None):
        if stop_at is not None and stop_at not in self.names:
            raise UsageError(f"generator.feature_layer={stop_at!r}: the layers are {', '.join(self.names)}")
        if not self.chained:  # every stage maps the latent itself
            return dict(self.stages)[stop_at or self.names[-1]](z)
        x = z
        for name, fn in self.stages:
            x = fn(x)
            if name == stop_at:
                return x
        return x


class ProjectGenerator(Generator):
    """The LatentCLR interface over a :class:`Source` loaded from a run folder of this project.

    Args:
        paper: key of :data:`LOADERS` (``glo``, ``slogan``).
        run_dir: the paper's run folder.
        checkpoint: a checkpoint prefix inside it (default: the newest).
        feature_layer: one of the Source's stage names.
        class_name: a label for the run folder name; for SLOGAN an int selects one mixture component.
        **options: passed to the loader (e.g. GLO's ``sample_mode``).
    """

    def __init__(self, paper: str, run_dir: str, feature_layer: str, checkpoint: str | None = None,
                 class_name=None, device=None, **options):
        super().__init__(feature_layer)
        if paper not in LOADERS:
            raise UsageError(f"generator.paper must be one of {sorted(LOADERS)}, got {paper!r}")
        if not run_dir or str(run_dir) == "???":
            raise UsageError(f"generator.run_dir: give the {paper} run folder to load the generator from")
        self.source = LOADERS[paper](Path(str(run_dir)).expanduser(), checkpoint, class_name=class_name, **options)
        self.latent_dim = self.source.latent_dim
        self.class_name = class_name
        self._context = None
        if self.source.image_context:
            self._context = tf.constant(self.source.sample(np.random.RandomState(0), self.source.image_context))

    def n_latent(self) -> int:
        return int(getattr(self.source, "n_latent", 1))

    def sample_latent(self, batch_size: int, seed: int | None = None) -> np.ndarray:
        if seed is None:
            seed = draw_seed()
        return np.asarray(self.source.sample(np.random.RandomState(seed), batch_size), np.float32)

    def partial_forward(self, z, layer_name: str):
        if isinstance(z, (list, tuple)) and self.n_latent() == 1:
            raise UsageError("feed_layers needs a generator with per-layer latents; this one has n_latent = 1")
        return self.source.forward(z, layer_name)

    def __call__(self, z):
        n = tf.shape(z[0] if isinstance(z, (list, tuple)) else z)[0]
        if self._context is not None:
            z = tf.concat([z, self._context], axis=0)
        out = self.source.forward(z)[:n]
        lo, hi = self.source.output_range
        return (out - lo) / (hi - lo)


def _checkpoint_prefix(run_dir: Path, checkpoint: str | None) -> str:
    if checkpoint:
        prefix = Path(str(checkpoint))
        if not prefix.is_absolute() and not Path(str(prefix) + ".index").exists():
            prefix = run_dir / prefix
        if not Path(str(prefix) + ".index").exists():
            raise UsageError(f"generator.checkpoint={checkpoint}: no checkpoint {prefix}.index")
        return str(prefix)
    if not run_dir.is_dir():
        raise UsageError(f"generator.run_dir={run_dir}: no such folder")
    latest = tf.train.latest_checkpoint(str(run_dir))
    if latest is None:
        raise UsageError(f"generator.run_dir={run_dir}: no checkpoint in it (train the generator first)")
    return latest


def _run_config(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    if not path.is_file():
        raise UsageError(f"generator.run_dir={run_dir}: no config.json (not a run folder of this project)")
    return json.loads(path.read_text())


def _restore(prefix: str, **objects) -> None:
    status = tf.train.Checkpoint(**objects).read(prefix)
    status.expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        raise UsageError(f"{prefix}: the checkpoint does not hold this generator ({str(err).splitlines()[0][:160]})"
                         ) from err


# ---------------------------------------------------------------------------------------------------
# GLO (glo/): generator + learned codes


GLO_IMAGE_SHAPES = {"MNIST": (28, 28, 1), "SVHN": (32, 32, 3), "CIFAR10": (32, 32, 3)}
GLO_SAMPLE_MODES = ("full_cov", "row_norm")


def load_glo(run_dir: Path, checkpoint: str | None, class_name=None, sample_mode: str = "full_cov",
             image_shape=None, image_context: int = 16, **unused) -> Source:
    """GLO's generator (``glo.models``) from ``train_dir/<run>``.

    Latents: ``full_cov`` (the GLO paper's sampling) draws from a full-covariance Gaussian fitted to the
    learned codes of the checkpoint (rows that were updated); ``row_norm`` draws N(0, I) projected onto the
    unit sphere, where GLO keeps its codes. GLO's BatchNorm always uses the statistics of the batch it is
    given (kept from the original), so features depend on the batch: the trainer feeds the edited codes
    direction by direction (B rows, as the unedited batch), and images are rendered in a batch padded to
    ``image_context`` rows (GLO's batch size) with fixed codes.
    """
    from glo.models import build_generator

    prefix = _checkpoint_prefix(run_dir, checkpoint)
    cfg = _run_config(run_dir)
    reader = tf.train.load_checkpoint(prefix)
    codes = reader.get_tensor("codes/table/.ATTRIBUTES/VARIABLE_VALUE")
    written = reader.get_tensor("codes/written/.ATTRIBUTES/VARIABLE_VALUE")
    latent_dim = int(codes.shape[1])
    dataset = cfg.get("dataset")
    shape = tuple(image_shape) if image_shape is not None else GLO_IMAGE_SHAPES.get(dataset)
    if shape is None:
        raise UsageError(f"GLO dataset {dataset!r}: give generator.image_shape=[h,w,c]")
    generator = build_generator(latent_dim, shape, dataset if dataset in GLO_IMAGE_SHAPES else None)
    _restore(prefix, generator=generator)
    if sample_mode not in GLO_SAMPLE_MODES:
        raise UsageError(f"generator.sample_mode must be one of {GLO_SAMPLE_MODES}, got {sample_mode!r}")
    learned = codes[written.astype(bool)] if written.any() else codes
    mean, cov = learned.mean(axis=0), np.cov(learned, rowvar=False)

    def sample(rng, n):
        if sample_mode == "full_cov":
            return rng.multivariate_normal(mean, np.atleast_2d(cov), size=n).astype(np.float32)
        z = rng.standard_normal((n, latent_dim))
        return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)

    from glo.models import legacy_resize_bilinear

    stages = [("input", lambda z: tf.reshape(z, [-1, 1, 1, latent_dim]))]
    for k, block in enumerate(generator.blocks):
        stages.append((block.name, block))
        if k < len(generator.norms):
            norm = generator.norms[k]
            stages.append((norm.name, lambda x, norm=norm: norm(x, training=True)))
    h, w, _ = generator.image_shape
    stages.append(("output", lambda x: x if (x.shape[1], x.shape[2]) == (h, w) else legacy_resize_bilinear(x, (h, w))))
    return Source(latent_dim, stages, sample, (-1.0, 1.0), image_context)


# ---------------------------------------------------------------------------------------------------
# SLOGAN CIFAR-2 (common/slogan/): ResNet generator + Gaussian-mixture prior


def load_slogan(run_dir: Path, checkpoint: str | None, class_name=None, **unused) -> Source:
    """SLOGAN's CIFAR-2 generator from ``logs/cifar2/<r>/<run>`` with its learned mixture prior q(z).

    Latents come from q(z) (component drawn with probabilities pi); an integer ``class_name`` samples one
    mixture component (SLOGAN's attribute clusters). BatchNorm runs on its moving statistics (inference).
    Stages: ``dense`` (4x4), ``up1`` (8x8), ``up2`` (16x16), ``up3`` (32x32), ``output`` (tanh image); they come
    from the model's ``stages()``, which runs all Up blocks (a feature layer before ``up3`` costs the full pass).
    """
    from common.slogan.prior import GaussianMixturePrior
    from common.slogan.resnet import build_generator

    prefix = _checkpoint_prefix(run_dir, checkpoint)
    cfg = _run_config(run_dir)
    latent_dim, channels, clusters = int(cfg.get("latent_dim", 128)), int(cfg.get("channels", 128)), int(
        cfg.get("num_cluster", 2))
    generator = build_generator(latent_dim, channels)
    mixture = GaussianMixturePrior(clusters, latent_dim)
    _restore(prefix, generator=generator, prior=mixture)
    pi = mixture.pi.numpy().astype(np.float64)
    means, chols = mixture.means().numpy(), np.linalg.cholesky(mixture.covariances().numpy().astype(np.float64))
    component = None
    if class_name is not None and str(class_name).lstrip("-").isdigit():
        component = int(class_name)
        if not 0 <= component < clusters:
            raise UsageError(f"generator.class_name={class_name}: SLOGAN component must be in 0..{clusters - 1}")

    def sample(rng, n):
        comps = np.full(n, component) if component is not None else rng.choice(clusters, size=n, p=pi / pi.sum())
        eps = rng.standard_normal((n, latent_dim))
        return (means[comps] + np.einsum("nij,nj->ni", chols[comps], eps)).astype(np.float32)

    # Only the model's public API: stages() gives the maps after the dense layer and each Up block.
    stages = [(name, (lambda z, i=i: generator.stages(z, training=False)[i]))
              for i, name in enumerate(("dense", "up1", "up2", "up3"))]
    stages.append(("output", lambda z: generator(z, training=False)))
    return Source(latent_dim, stages, sample, chained=False)


# ---------------------------------------------------------------------------------------------------
# Self-Conditioned GAN (selfcond/): conditional generator G(z, y) of one cluster


class TappedSource(Source):
    """A subclassed Keras generator seen through its sub-layers: the feature of layer ``name`` is captured
    while the whole model runs (its ``call`` is wrapped for that pass only), so any layer can be the feature
    layer without knowing the model's internals. Names are Keras layer names, dotted for nested layers."""

    def __init__(self, latent_dim: int, model, run: Callable, sample: Callable, output_range=(-1.0, 1.0)):
        self.layers = dict(_named_layers(model))
        super().__init__(latent_dim, [(name, None) for name in self.layers] + [("output", run)], sample,
                         output_range)
        self.run = run

    def forward(self, z, stop_at: str | None = None):
        if stop_at is None or stop_at == "output":
            return self.run(z)
        if stop_at not in self.layers:
            raise UsageError(f"generator.feature_layer={stop_at!r}: the layers are {', '.join(self.names)}")
        layer, captured = self.layers[stop_at], []
        inner = layer.call

        def tap(*args, **kwargs):
            out = inner(*args, **kwargs)
            captured.append(out)
            return out

        layer.call = tap
        try:
            self.run(z)
        finally:
            del layer.call  # back to the class's method
        return captured[0]


def _named_layers(model, prefix: str = ""):
    for layer in getattr(model, "layers", []):
        name = prefix + layer.name
        yield name, layer
        yield from _named_layers(layer, name + ".")


def load_selfcond(run_dir: Path, checkpoint: str | None, class_name=None, use_ema: bool = True,
                  **unused) -> Source:
    """The Self-Conditioned GAN generator of ``selfcond/train.py``'s output folder, for one cluster.

    The generator is conditioned on a cluster index y; LatentCLR edits z only, so y is held fixed:
    ``class_name`` (an int, default 0). The EMA generator (``generator_test``) is used when the run kept one
    (``take_model_average``), as the original's samples. Latents: the config's ``z_dist`` (gauss / uniform).
    Feature layers: the generator's Keras layer names (e.g. ``fc``, ``conv1`` .. ``conv3``, ``bn1``, ...).
    """
    from selfcond.models import build_generator

    saved = _run_config(run_dir)
    config = saved.get("config", saved)
    prefix = _checkpoint_prefix(run_dir, checkpoint or str(run_dir / "chkpts" / "model"))
    name = "generator_test" if use_ema and config["training"].get("take_model_average") else "generator"
    generator = build_generator(config, name)
    _restore(prefix, **{name: generator})
    nlabels = int(config["generator"]["nlabels"])
    label = int(class_name) if class_name is not None and str(class_name).isdigit() else 0
    if not 0 <= label < nlabels:
        raise UsageError(f"generator.class_name={class_name}: the cluster index must be in 0..{nlabels - 1}")
    kind, dim = config["z_dist"]["type"], int(config["z_dist"]["dim"])

    def sample(rng, n):
        if kind == "uniform":
            return rng.uniform(-1.0, 1.0, (n, dim)).astype(np.float32)
        return rng.standard_normal((n, dim)).astype(np.float32)

    def run(z):
        return generator(z, tf.fill(tf.shape(z)[:1], label), training=False)

    return TappedSource(dim, generator, run, sample)


def load_congan(run_dir: Path, checkpoint: str | None, class_name=None, **options) -> Source:
    """ConGAN (``congan/train.py``, either framework): see :mod:`latentclr.generators.congan_run`."""
    from latentclr.generators.congan_run import load_congan as load

    return load(run_dir, checkpoint, class_name=class_name, **options)


LOADERS: dict[str, Callable[..., Source]] = {"glo": load_glo, "slogan": load_slogan, "selfcond": load_selfcond,
                                             "congan": load_congan}
