"""The Inception graphs the originals used for FID and IS, loaded from their frozen TF1 GraphDefs.

Two graphs, both holding the 2015-12-05 Inception-v3 weights:

- ``"tfgan"``: ``inceptionv1_for_inception_score.pb`` in ``frozen_inception_v1_2015_12_05.tar.gz`` (TF-GAN;
  SLOGAN FID/IS, slogan §6.2; the Self-Conditioned GAN's paper IS, selfcond §7.3a). Images in [-1, 1] are
  resized to 299x299 with TF1's legacy ``resize_bilinear`` (no half-pixel centres) and fed at ``Mul:0``;
  features are ``pool_3:0`` (2048) and logits ``logits:0`` (1008).
- ``"ttur"``: ``classify_image_graph_def.pb`` in ``inception-2015-12-05.tgz`` (TTUR; SLOGAN ICFID §6.3,
  selfcond FID §7.2). Images in 0..255 at their own size are fed at ``ExpandDims:0``; the graph resizes and
  normalises itself; features are ``pool_3:0``. As in the originals only full batches are used.

Every extractor here takes images in [-1, 1], NHWC with 3 channels, and has ``features(images) -> [N, F]``
and ``logits(images) -> [N, C]``, the interface :mod:`common.evaluate` and the trainers expect (tests use
small stand-ins with the same two methods).

Downloads: the archive is fetched from its official URL into a cache folder by
:func:`common.downloads.fetch` (resumable ``.part`` file, retries, atomic rename), or taken from an
explicit path. We found no published checksum for either archive, so its SHA-256 is recorded beside it on
first download (``<archive>.sha256``) and every later load verifies it (trust on first use); pass
``sha256=`` / ``--inception_sha256`` to pin a known value. Loading is lazy: nothing is read or downloaded
before the first call.
"""

from __future__ import annotations

import dataclasses
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from common.downloads import DownloadError, Resource, RetryPolicy, fetch, file_digest
from common.errors import UsageError
from common.fileio import atomic_write_text

TF_INPUT = "images"  # name of the dynamic-batch placeholder mapped onto the graph's input
TF_SCOPE = "inception"


@dataclasses.dataclass(frozen=True)
class InceptionGraph:
    """Where a frozen Inception graph comes from and how to feed it.

    Attributes:
        key: short name (``"tfgan"`` / ``"ttur"``), recorded in metrics as ``inception-<key>``.
        url: official download URL of the archive.
        member: the GraphDef's file name inside the archive.
        input_tensor: the tensor replaced by our [N, H, W, 3] batch.
        feature_tensor: pooled features ([N, 1, 1, F], flattened to [N, F]).
        logits_tensor: class logits [N, C], or None.
        resize_to: side length we resize to before feeding (legacy bilinear), or None (graph resizes).
        pixel_range: what the input tensor expects: ``"-1..1"`` or ``"0..255"``.
        batch_size: the original's batch size.
        drop_remainder: the original ignores images beyond the last full batch.
        sha256: published checksum of the archive (None: not known, trust on first use).
        default_cache_dir: where the original kept the archive.
    """

    key: str
    url: str
    member: str
    input_tensor: str
    feature_tensor: str
    logits_tensor: str | None
    resize_to: int | None
    pixel_range: str
    batch_size: int
    drop_remainder: bool
    sha256: str | None
    default_cache_dir: str

    @property
    def archive_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


TFGAN_INCEPTION = InceptionGraph(
    key="tfgan",
    url="http://download.tensorflow.org/models/frozen_inception_v1_2015_12_05.tar.gz",
    member="inceptionv1_for_inception_score.pb",
    input_tensor="Mul:0",
    feature_tensor="pool_3:0",
    logits_tensor="logits:0",
    resize_to=299,
    pixel_range="-1..1",
    batch_size=64,
    drop_remainder=False,
    sha256=None,  # no published digest found; recorded on first download
    default_cache_dir=".",  # TF-GAN / SLOGAN: the working directory
)

TTUR_INCEPTION = InceptionGraph(
    key="ttur",
    url="http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz",
    member="classify_image_graph_def.pb",
    input_tensor="ExpandDims:0",
    feature_tensor="pool_3:0",
    logits_tensor=None,
    resize_to=None,
    pixel_range="0..255",
    batch_size=50,
    drop_remainder=True,
    sha256=None,  # no published digest found; recorded on first download
    default_cache_dir=tempfile.gettempdir(),  # TTUR / selfcond: the system temp folder
)

GRAPHS = {g.key: g for g in (TFGAN_INCEPTION, TTUR_INCEPTION)}


# --------------------------------------------------------------------------------------------------
# download, cache, checksum
# --------------------------------------------------------------------------------------------------


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _record(path: Path, digest: str) -> None:
    atomic_write_text(_sidecar(path), f"{digest}  {path.name}\n")


def verify_file(path: str | os.PathLike, sha256: str | None = None, *, record: bool = True) -> str:
    """Check ``path`` against ``sha256``, else against its recorded ``<path>.sha256`` (written now if absent).

    Raises:
        UsageError: the file's digest differs.
    """
    path = Path(path)
    got = file_digest(path, "sha256")
    side = _sidecar(path)
    expected = sha256.lower() if sha256 else None
    if expected is None and side.is_file():
        expected = side.read_text().split()[0].lower()
    if expected is not None and got != expected:
        raise UsageError(f"{path}: sha256 {got} does not match the expected {expected}; delete it to download again")
    if expected is None and record:
        _record(path, got)
    return got


def resolve_graph_file(
    graph: InceptionGraph,
    *,
    path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    url: str | None = None,
    sha256: str | None = None,
    policy: RetryPolicy | None = None,
) -> Path:
    """The local archive (or ``.pb``) of ``graph``: the explicit ``path``, else the cache, else a download.

    Downloads go through :func:`common.downloads.fetch` (``.part`` file, resume, retries, atomic rename).
    A checksum failure leaves nothing in the cache folder: the rejected transfer, which ``fetch`` moves
    aside to ``<archive>.bad``, is deleted here too, because the default folder of the TF-GAN graph is the
    working directory.

    Args:
        graph: which graph.
        path: an existing archive or ``.pb`` (``--inception_path``); checked against ``sha256`` if given.
        cache_dir: where downloads are kept (default: the original's location, ``graph.default_cache_dir``).
            An already extracted ``graph.member`` there is used as is.
        url: download from here instead of ``graph.url`` (a mirror, or a local test server).
        sha256: expected SHA-256 of the archive; default ``graph.sha256``, else trust on first use.
        policy: retries and socket timeout of the download (default: ``common.downloads``'s).

    Raises:
        UsageError: missing ``path``, failed download, or checksum mismatch.
    """
    expected = sha256 or graph.sha256
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"--inception_path {path}: no such file (expected {graph.archive_name} or {graph.member})")
        if expected:
            verify_file(path, expected, record=False)
        return path
    cache = Path(cache_dir if cache_dir is not None else graph.default_cache_dir)
    extracted = cache / graph.member
    if extracted.is_file():
        verify_file(extracted)
        return extracted
    archive = cache / graph.archive_name
    if archive.is_file():
        verify_file(archive, expected)
        return archive
    resource = Resource(filename=graph.archive_name, urls=(url or graph.url,), sha256=expected)
    try:
        fetched = fetch(resource, cache, policy=policy)
    except DownloadError as err:
        bad = archive.with_name(archive.name + ".bad")
        if bad.exists():
            bad.unlink()
        raise UsageError(
            f"{str(err).split('; check the network')[0]}; nothing was cached. Fetch "
            f"{graph.archive_name} elsewhere and pass --inception_path FILE"
        ) from err
    verify_file(fetched, expected)  # records the digest on first download (trust on first use)
    return fetched


def read_graph_def(path: str | os.PathLike, member: str):
    """Parse a ``tf.compat.v1.GraphDef`` from a ``.pb`` file or from ``member`` inside a tar archive."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    path = Path(path)
    try:
        if tarfile.is_tarfile(path):
            with tarfile.open(path, "r:*") as archive:
                names = [m for m in archive.getmembers() if m.isfile() and Path(m.name).name == member]
                if not names:
                    raise UsageError(f"{path}: the archive holds no {member}")
                data = archive.extractfile(names[0]).read()
        else:
            data = path.read_bytes()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise UsageError(f"{path}: cannot read it as a tar archive or a .pb ({err})") from err
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except DecodeError as err:
        raise UsageError(f"{path}: not a serialized GraphDef ({err})") from err
    return graph_def


def graph_function(graph_def, input_tensor: str, output_tensors: list[str], image_size: int | None = None):
    """A concrete TF2 function running a frozen TF1 graph from ``input_tensor`` to ``output_tensors``.

    The graph is imported inside ``tf.compat.v1.wrap_function`` with its input mapped onto a float32
    placeholder of shape [None, image_size, image_size, 3], so any batch size (and, with ``image_size``
    None as for the TTUR graph, any image size) can be fed; the result is pruned to the ops between that
    input and the outputs, which also drops the graphs' batch-1 tails (e.g. ``pool_3/_reshape``).
    """
    import tensorflow as tf

    def _import():
        images = tf.compat.v1.placeholder(tf.float32, [None, image_size, image_size, 3], name=TF_INPUT)
        tf.compat.v1.import_graph_def(graph_def, input_map={input_tensor: images}, name=TF_SCOPE)

    try:
        wrapped = tf.compat.v1.wrap_function(_import, [])
        graph = wrapped.graph
        outputs = [graph.get_tensor_by_name(f"{TF_SCOPE}/{name}") for name in output_tensors]
    except (ValueError, KeyError) as err:
        raise UsageError(f"the Inception graph lacks {input_tensor} or one of {output_tensors} ({err})") from err
    return wrapped.prune(graph.get_tensor_by_name(f"{TF_INPUT}:0"), outputs)


def legacy_resize_bilinear(images, size):
    """TF1 ``resize_bilinear`` (align_corners=False, half_pixel_centers=False): the originals' sampling.

    Differs from ``tf.image.resize(..., "bilinear")`` (half-pixel centres) by up to ~0.28 on a 4x4
    checkerboard resized to 7x7 (slogan check 27). Args: images [N, H, W, C]; size (h, w).
    """
    import tensorflow as tf

    return tf.raw_ops.ResizeBilinear(
        images=images, size=tf.constant(size, tf.int32), align_corners=False, half_pixel_centers=False
    )


# --------------------------------------------------------------------------------------------------
# the extractor
# --------------------------------------------------------------------------------------------------


class InceptionNet:
    """Lazy Inception feature/logit extractor over images in [-1, 1], [N, H, W, 3].

    Args:
        graph: :data:`TFGAN_INCEPTION` or :data:`TTUR_INCEPTION` (or their keys ``"tfgan"``, ``"ttur"``).
        path, cache_dir, url, sha256, policy: see :func:`resolve_graph_file`.
        batch_size: images per forward pass (default: the original's).
        drop_remainder: ignore images after the last full batch (default: as the original).
        graph_def: an already parsed GraphDef (skips the file lookup).
    """

    def __init__(
        self,
        graph: InceptionGraph | str = TFGAN_INCEPTION,
        *,
        path=None,
        cache_dir=None,
        url: str | None = None,
        sha256: str | None = None,
        policy: RetryPolicy | None = None,
        batch_size: int | None = None,
        drop_remainder: bool | None = None,
        graph_def=None,
    ):
        if isinstance(graph, str):
            if graph not in GRAPHS:
                raise UsageError(f"--features: unknown Inception graph {graph!r}; expected one of {sorted(GRAPHS)}")
            graph = GRAPHS[graph]
        self.graph = graph
        self.batch_size = int(batch_size or graph.batch_size)
        if self.batch_size < 1:
            raise UsageError(f"--batch_size must be >= 1, got {self.batch_size}")
        self.drop_remainder = graph.drop_remainder if drop_remainder is None else bool(drop_remainder)
        self._source = dict(path=path, cache_dir=cache_dir, url=url, sha256=sha256, policy=policy)
        self._graph_def = graph_def
        self._run = None

    @property
    def name(self) -> str:
        """Recorded with every metric: which network made the numbers."""
        return f"inception-{self.graph.key}"

    @property
    def has_logits(self) -> bool:
        return self.graph.logits_tensor is not None

    def _build(self):
        import tensorflow as tf

        if self._graph_def is None:
            file = resolve_graph_file(self.graph, **self._source)
            self._graph_def = read_graph_def(file, self.graph.member)
        outputs = [self.graph.feature_tensor] + ([self.graph.logits_tensor] if self.has_logits else [])
        net = graph_function(self._graph_def, self.graph.input_tensor, outputs, self.graph.resize_to)
        graph = self.graph

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def run(batch):
            if graph.resize_to is not None:
                batch = legacy_resize_bilinear(batch, (graph.resize_to, graph.resize_to))
            if graph.pixel_range == "0..255":
                batch = (batch + 1.0) * (255.0 / 2.0)  # SLOGAN ICFID: (x + 1) * 255 / 2
            return [tf.reshape(out, [tf.shape(out)[0], -1]) for out in net(batch)]

        return run

    def features_and_logits(self, images) -> tuple[np.ndarray, np.ndarray | None]:
        """Pooled features [N', F] and logits [N', C] (None for the TTUR graph) in one pass.

        N' = N, or the largest multiple of the batch size when ``drop_remainder``.
        """
        images = _check_images(images)
        n = len(images)
        if self.drop_remainder:
            n = (n // self.batch_size) * self.batch_size
            if n == 0:
                raise UsageError(f"images: {len(images)} images is fewer than one batch of {self.batch_size}")
        if self._run is None:
            self._run = self._build()
        feats, logits = [], []
        for start in range(0, n, self.batch_size):
            outs = self._run(np.asarray(images[start : min(start + self.batch_size, n)], dtype=np.float32))
            feats.append(outs[0].numpy())
            if self.has_logits:
                logits.append(outs[1].numpy())
        return np.concatenate(feats), (np.concatenate(logits) if self.has_logits else None)

    def features(self, images) -> np.ndarray:
        """``feature_fn``: images [N, H, W, 3] in [-1, 1] -> pool_3 activations [N', 2048] float32."""
        return self.features_and_logits(images)[0]

    def logits(self, images) -> np.ndarray:
        """``logits_fn``: images [N, H, W, 3] in [-1, 1] -> logits [N', 1008] (TF-GAN graph only)."""
        if not self.has_logits:
            raise UsageError(f"{self.name} has no logits; Inception Score needs the 'tfgan' graph")
        return self.features_and_logits(images)[1]


def load_inception(which: str = "tfgan", **kwargs) -> InceptionNet:
    """``InceptionNet(GRAPHS[which], **kwargs)``; nothing is loaded before the first call."""
    return InceptionNet(which, **kwargs)


def _check_images(images) -> np.ndarray:
    shape = np.shape(images)
    if len(shape) != 4 or shape[-1] != 3:
        raise UsageError(f"images: expected an [N, H, W, 3] array in [-1, 1], got shape {shape}")
    return images
