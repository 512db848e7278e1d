"""ConGAN generators (``congan/``) from their run folders, for LatentCLR (``generator=congan``).

Both frameworks are rebuilt with ConGAN's own code (``congan.evaluation.read_run_config``,
``congan.framework2.build_networks``, ``congan.framework1.build_state``) and restored from the run's newest
``model-<iteration>`` checkpoint, a given prefix, or the result weight files. Only this folder is written to;
``congan/`` is read.

Framework 2 (the conditional SN-ResNet / SN-DCGAN G(T(r, n), r)):
- latent (``latent_space: joint``, the default for a representation-conditioned run): z = [r ; n],
  S = repr_dim + noise_dim; r is drawn like ConGAN's samplers (``sample_repr``, default the run's
  training-time source: ``real`` r = E(x) + repr_noise e on training images x, ``lerp`` / ``slerp`` of two
  such (``slerp`` only as ConGAN's fixed slerp, ``fix_slerp``: the notebook's gives NaN), ``gaussian`` /
  ``prior_gaussian`` N(0, I), ``uniform`` U(-1, 1), ``prior_uniform`` 0.01 U(0, 1)) and
  n ~ N(0, I) as ConGAN draws its noise. ``latent_space: noise`` edits n only and holds r fixed (one draw of
  the sampler with ``fixed_repr_seed``); it is the default for runs whose G ignores r (``--conditioning none*``).
  SimSiam's BatchNorm uses batch statistics by default (``simsiam_bn_mode``), so the images are encoded in
  batches of the run's batch size (padded with further random images), as ConGAN's evaluation encodes them.
- stages (feature layers, forward stops there): ``latent_transform`` (T(r, n)), then for the SN-ResNet
  ``dense`` (4x4 map), ``block1`` .. ``block4``, ``bn`` (after its ReLU), ``final``, ``output`` (tanh image);
  for the SN-DCGAN ``conv1``, ``bn1`` (after its ReLU), ..., ``final_conv``, ``output``.
- per-layer latents (``feed_layers``, joint space only): latent 0 feeds T (hence the dense / first conv
  layer); latent j >= 1 conditions the j-th up-block's CBNs (SN-ResNet; the last index the final CBN) or
  the j-th CBN (SN-DCGAN). ``n_latent`` = blocks + 2 (SN-ResNet) or convs + 1 (SN-DCGAN).

Framework 1 (a GAN in SimSiam space, images through the autoencoder's decoder):
- latent z ~ N(0, I_latent_dim), as ConGAN draws it;
- stages: ``G.bn1``, ``G.bn4``, ... ``G.bn16`` (each Linear-BN-LeakyReLU), ``G`` (the unit-norm fake
  representation s), ``repr_proj``, ``decoder.bn0`` ... (each ConvT-BN-ReLU), ``output`` (tanh image);
- images: decoder([repr_proj(s) ; ctx_proj(ctx_encoder(x_ctx))]) with one context image x_ctx held fixed
  (training image ``context_image``, or the mean colour when null), in inference mode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from common.errors import UsageError
from latentclr.generators.project import Source, _checkpoint_prefix, _restore

REPR_SOURCES = ("real", "lerp", "slerp", "gaussian", "uniform", "prior_gaussian", "prior_uniform")
LATENT_SPACES = ("joint", "noise")
NEEDS_IMAGES = ("real", "lerp", "slerp")


class StagedSource(Source):
    """A Source whose forward is one function ``run(z, stop_at)`` over named stages, with per-layer latents.

    Args:
        names: the stage names in forward order (the last one is ``output``).
        run: ``run(zs, stop_at)``: zs is a list of ``n_latent`` [B, S] latents.
        n_latent: how many per-layer latents ``forward`` accepts as a list.
    """

    def __init__(self, latent_dim, names, run, sample, n_latent: int = 1):
        super().__init__(latent_dim, [(name, None) for name in names], sample)
        self.run, self.n_latent = run, int(n_latent)

    def forward(self, z, stop_at: str | None = None):
        if stop_at is not None and stop_at not in self.names:
            raise UsageError(f"generator.feature_layer={stop_at!r}: the layers are {', '.join(self.names)}")
        if isinstance(z, (list, tuple)):
            if len(z) != self.n_latent:
                raise UsageError(f"expected {self.n_latent} latents (one per layer), got {len(z)}")
            zs = list(z)
        else:
            zs = [z] * self.n_latent
        return self.run(zs, stop_at or "output")


# ---------------------------------------------------------------------------------------------------
# run folder


def _read_config(run_dir: Path):
    from congan.evaluation import read_run_config

    if not (run_dir / "config.json").is_file():
        raise UsageError(f"generator.run_dir={run_dir}: no config.json (not a congan/train.py run folder)")
    return read_run_config(run_dir)


def _weights_source(run_dir: Path, checkpoint: str | None) -> tuple[str, str]:
    """('ckpt', prefix) for a tf.train checkpoint, ('folder', path) / ('file', path) for result weights."""
    if checkpoint:
        path = Path(str(checkpoint))
        if not path.is_absolute() and not path.exists() and (run_dir / path).exists():
            path = run_dir / path
        if path.is_dir():
            return "folder", str(path)
        if str(path).endswith(".weights.h5"):
            if not path.is_file():
                raise UsageError(f"generator.checkpoint={checkpoint}: no such file")
            return "file", str(path)
    return "ckpt", _checkpoint_prefix(run_dir, checkpoint)


class ImagePool:
    """The run's training images (uint8 [N, S, S, 3]), read once on first use with ConGAN's reader."""

    def __init__(self, cfg, data_dir: str | None):
        self.cfg, self.data_dir = cfg, data_dir or cfg.data_dir
        self._images = None

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            from congan.data import load_images

            try:
                self._images = load_images(self.cfg.dataset, self.data_dir, self.cfg.image_size, self.cfg.subset,
                                           self.cfg.workers)
            except (UsageError, OSError) as err:
                raise UsageError(f"generator.data_dir={self.data_dir}: the run's {self.cfg.dataset} training images "
                                 f"cannot be read ({str(err).splitlines()[0][:200]}); give generator.data_dir, or "
                                 "use generator.sample_repr=gaussian") from err
            if len(self._images) == 0:
                raise UsageError(f"generator.data_dir={self.data_dir}: no training images found")
        return self._images


# ---------------------------------------------------------------------------------------------------
# Framework 2


class ReprSampler:
    """Representations r [n, repr_dim] drawn with a ``np.random.RandomState`` like ConGAN's samplers."""

    def __init__(self, method: str, cfg, encoder, pool: ImagePool, repr_dim: int, encode_batch: int):
        self.method, self.cfg, self.encoder, self.pool = method, cfg, encoder, pool
        self.repr_dim, self.encode_batch = int(repr_dim), max(2, int(encode_batch))
        self.bn_batch = getattr(cfg, "simsiam_bn_mode", "batch") == "batch"

    def _encode(self, rng, n: int) -> np.ndarray:
        """E(x) + repr_noise e for n random training images, encoded in batches of ``encode_batch``
        (filled up with further random images, since SimSiam's BN uses the batch's statistics)."""
        from congan.data import to_signed

        images = self.pool.images
        batch = min(self.encode_batch, len(images))
        count = int(np.ceil(n / batch)) * batch
        index = rng.randint(len(images), size=count)
        out = []
        for start in range(0, count, batch):
            x = to_signed(tf.constant(images[index[start:start + batch]]))
            out.append(self.encoder(x, training=self.bn_batch).numpy())
        r = np.concatenate(out)[:n].astype(np.float64)
        return r + self.cfg.repr_noise * rng.standard_normal(r.shape)

    def __call__(self, rng, n: int) -> np.ndarray:
        m, d = self.method, self.repr_dim
        if m in ("gaussian", "prior_gaussian"):
            return rng.standard_normal((n, d)).astype(np.float32)
        if m == "uniform":
            return rng.uniform(-1.0, 1.0, (n, d)).astype(np.float32)
        if m == "prior_uniform":
            return (0.01 * rng.uniform(0.0, 1.0, (n, d))).astype(np.float32)
        if m == "real":
            return self._encode(rng, n).astype(np.float32)
        from congan.sampling import lerp, slerp

        r1, r2 = self._encode(rng, n).astype(np.float32), self._encode(rng, n).astype(np.float32)
        t = tf.constant(rng.uniform(0.0, 1.0, n).astype(np.float32))
        if m == "lerp":
            return lerp(tf.constant(r1), tf.constant(r2), t).numpy()
        return slerp(tf.constant(r1), tf.constant(r2), t, fix=True).numpy()  # load_framework2 refuses the NaN one


def load_framework2(run_dir: Path, cfg, checkpoint, class_name=None, sample_repr=None, latent_space=None,
                    data_dir=None, encode_batch=None, fixed_repr_seed: int = 0, fix_slerp=None, **unused) -> Source:
    from congan import framework2
    from congan.simsiam import SimSiam

    kind, where = _weights_source(run_dir, checkpoint)
    repr_dim = int(cfg.repr_dim or cfg.dim)
    if kind == "folder":
        from congan.checkpoints import load_weights_folder
        from congan.runs import simsiam_for

        simsiam = simsiam_for(cfg)  # the result files hold no SimSiam: the run's --simsiam_path
        nets = framework2.build_networks(cfg, simsiam.encoder, repr_dim)
        load_weights_folder(where, nets, flag="generator.checkpoint")
    elif kind == "file":
        raise UsageError(f"generator.checkpoint={checkpoint}: a Framework-2 run loads a checkpoint prefix or the "
                         "results folder (model / latent_transform / Q weights)")
    else:
        simsiam = SimSiam(cfg.simsiam_arch, cfg.dim, cfg.pred_dim, name="simsiam").build_for(cfg.image_size)
        nets = framework2.build_networks(cfg, simsiam.encoder, repr_dim)
        _restore(where, G=nets.G, T=nets.T, simsiam=simsiam)
    G, T = nets.G, nets.T

    method = sample_repr or cfg.sample_repr
    if method not in REPR_SOURCES:
        raise UsageError(f"generator.sample_repr must be one of {REPR_SOURCES} (null: the run's), got {method!r}")
    if method == "slerp" and not (getattr(cfg, "fix_slerp", False) if fix_slerp is None else fix_slerp):
        raise UsageError("generator.sample_repr=slerp: the notebook's slerp (the run's default, --fix_slerp off) "
                         "gives NaN representations; set generator.fix_slerp=true, or sample_repr=lerp / real")
    space = latent_space or ("joint" if cfg.conditioning == "repr" else "noise")
    if space not in LATENT_SPACES:
        raise UsageError(f"generator.latent_space must be one of {LATENT_SPACES} (null: by the run), got {space!r}")
    pool = ImagePool(cfg, data_dir)
    if method in NEEDS_IMAGES:
        pool.images  # noqa: B018 - read now, so that a missing dataset fails before training starts
    draw_r = ReprSampler(method, cfg, nets.E, pool, repr_dim, encode_batch or cfg.batch_size)
    noise_dim = int(T.noise_dim)

    resnet = hasattr(G, "blocks")
    if resnet:
        names = ["latent_transform", "dense"] + [b.name for b in G.blocks] + ["bn", "final", "output"]
        n_cond = len(G.blocks) + 1
    else:
        names = ["latent_transform"]
        for conv, bn in zip(G.convs, G.bns):
            names += [conv.name, bn.name]
        names += ["final_conv", "output"]
        n_cond = len(G.convs)

    if space == "joint":
        latent_dim, n_latent = repr_dim + noise_dim, 1 + n_cond

        def sample(rng, n):
            r = draw_r(rng, n)
            return np.concatenate([r, rng.standard_normal((n, noise_dim)).astype(np.float32)], axis=1)

        def split(zs):
            rs = [z[:, :repr_dim] for z in zs]
            return rs, zs[0][:, repr_dim:]
    else:
        latent_dim, n_latent = noise_dim, 1
        fixed_r = tf.constant(draw_r(np.random.RandomState(int(fixed_repr_seed)), 1))

        def sample(rng, n):
            return rng.standard_normal((n, noise_dim)).astype(np.float32)

        def split(zs):
            return [tf.tile(fixed_r, (tf.shape(zs[0])[0], 1))] * (1 + n_cond), zs[0]

    def run(zs, stop_at):
        rs, noise = split(zs)
        if G.conditioning == "none":  # ConGAN's G feeds its CBNs zeros in this mode
            rs = [tf.zeros_like(r) for r in rs]
        h = T(rs[0], noise)
        if stop_at == "latent_transform":
            return h
        if resnet:
            h = tf.transpose(tf.reshape(G.dense(h), (-1, G.nf, 4, 4)), (0, 2, 3, 1))  # PyTorch's (C, 4, 4) view
            if stop_at == "dense":
                return h
            for j, block in enumerate(G.blocks, start=1):
                h = block(h, rs[j], training=False)
                if stop_at == block.name:
                    return h
            h = tf.nn.relu(G.bn(h, rs[n_cond], training=False))
            if stop_at == "bn":
                return h
            h = G.final(h)
            if stop_at == "final":
                return h
        else:
            h = tf.reshape(h, (-1, 1, 1, G.z_dim))
            for j, (conv, bn) in enumerate(zip(G.convs, G.bns), start=1):
                h = conv(h)
                if stop_at == conv.name:
                    return h
                h = tf.nn.relu(bn(h, rs[j], training=False))
                if stop_at == bn.name:
                    return h
            h = G.final_conv(h)
            if stop_at == "final_conv":
                return h
        return tf.tanh(h)

    source = StagedSource(latent_dim, names, run, sample, n_latent)
    source.networks, source.latent_space, source.sample_repr = nets, space, method
    return source


# ---------------------------------------------------------------------------------------------------
# Framework 1


def load_framework1(run_dir: Path, cfg, checkpoint, class_name=None, data_dir=None, context_image=0,
                    **unused) -> Source:
    from common.seeding import make_generator
    from congan import framework1
    from congan.data import to_imagenet

    kind, where = _weights_source(run_dir, checkpoint)
    repr_dim = int(cfg.repr_dim or cfg.dim)
    state = framework1.build_state(cfg, None, repr_dim, make_generator(0))
    m = state.model
    if kind == "ckpt":
        _restore(where, model=m)
    elif kind == "file":
        try:
            m.load_weights(where)
        except (ValueError, OSError) as err:
            raise UsageError(f"generator.checkpoint={where}: does not fit this run ({str(err)[:200]})") from err
    else:
        raise UsageError(f"generator.checkpoint={checkpoint}: a Framework-1 run loads a checkpoint prefix or a "
                         "results/checkpoint_<epoch>.weights.h5 file")

    if context_image is None:
        x_ctx = tf.zeros((1, cfg.image_size, cfg.image_size, 3))  # the mean colour in ImageNet space
    else:
        images = ImagePool(cfg, data_dir).images
        index = int(context_image)
        if not 0 <= index < len(images):
            raise UsageError(f"generator.context_image={context_image}: the run has {len(images)} training images")
        x_ctx = to_imagenet(tf.constant(images[index:index + 1]))
    ctx = m.ctx_proj(m.ctx_encoder(x_ctx, training=False))  # [1, 256], fixed

    g_names = [f"G.{bn.name}" for bn in m.G.bns[:-1]] + ["G"]
    d_names = [f"decoder.{bn.name}" for bn in m.decoder.bns]
    names = g_names + ["repr_proj"] + d_names + ["output"]
    latent_dim = int(cfg.latent_dim)

    def sample(rng, n):
        return rng.standard_normal((n, latent_dim)).astype(np.float32)

    def run(zs, stop_at):
        h = zs[0]
        for i, (lin, bn) in enumerate(zip(m.G.linears, m.G.bns)):
            h = bn(lin(h), training=False)
            if i < len(m.G.bns) - 1:
                h = tf.nn.leaky_relu(h, alpha=0.2)
                if stop_at == g_names[i]:
                    return h
        from congan.layers import l2_normalize

        h = l2_normalize(h, axis=1)
        if stop_at == "G":
            return h
        h = m.repr_proj(h)
        if stop_at == "repr_proj":
            return h
        h = tf.reshape(tf.concat([h, tf.tile(ctx, (tf.shape(h)[0], 1))], axis=1), (-1, 1, 1, m.decoder.num_latents))
        for name, conv, bn in zip(d_names, m.decoder.convs, m.decoder.bns):
            h = tf.nn.relu(bn(conv(h), training=False))
            if stop_at == name:
                return h
        return tf.tanh(m.decoder.out(h))

    source = StagedSource(latent_dim, names, run, sample, 1)
    source.model = m
    return source


def load_congan(run_dir: Path, checkpoint: str | None, class_name=None, **options) -> Source:
    """A ConGAN run folder of either framework (read from its ``config.json``)."""
    if not run_dir.is_dir():
        raise UsageError(f"generator.run_dir={run_dir}: no such folder")
    cfg = _read_config(run_dir)
    if cfg.framework == 2:
        return load_framework2(run_dir, cfg, checkpoint, class_name, **options)
    return load_framework1(run_dir, cfg, checkpoint, class_name, **options)
