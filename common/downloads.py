"""Fetching dataset archives over HTTP(S): mirrors in order, checksums, resumable partial files, retries.

One call, :func:`fetch`, brings one :class:`Resource` (a file name, the URLs that serve it and its official
checksum) into a directory:

- the URLs are tried in order (the original first, then mirrors, because e.g. ``yann.lecun.com`` no longer
  serves MNIST); a URL that answers 4xx is skipped at once, a network error or 5xx is retried with bounded
  exponential backoff (:class:`RetryPolicy`);
- bytes go to ``<name>.part``; a retry or a later run resumes it with an HTTP ``Range`` request;
- a complete file is checked against its MD5/SHA-256. A mismatch moves it aside to ``<name>.bad`` and the
  next URL is tried, so a bad file is never used;
- only a verified file is renamed (``os.replace``, atomic) to its final name. A final name on disk therefore
  always means "verified", and :func:`fetch` returns at once when it exists;
- when every URL fails, :class:`DownloadError` (a ``UsageError``: one line, exit status 2) names the file and
  the last error, and suggests ``--source``.

``file://`` URLs and plain local paths are accepted as sources too (a mirror directory).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import logging
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from common.errors import UsageError

log = logging.getLogger("datasets")

USER_AGENT = "latent-gans-tf2-download/1.0 (+python urllib)"
# HTTP statuses worth retrying on the same URL; every other 4xx moves on to the next URL at once.
_TRANSIENT_STATUS = frozenset({408, 425, 429})


class DownloadError(UsageError):
    """No source could deliver a file with the expected checksum."""


@dataclasses.dataclass(frozen=True)
class Resource:
    """One file to fetch.

    Attributes:
        filename: name of the file on disk (and the last path element of each URL).
        urls: full URLs tried in order.
        md5: expected hex MD5 of the complete file, or None.
        sha256: expected hex SHA-256, or None. With neither, any complete transfer is accepted.
    """

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None

    def with_bases(self, bases: Sequence[str]) -> Resource:
        """The same file served by other base URLs or directories: ``<base>/<filename>`` for each base."""
        return dataclasses.replace(self, urls=tuple(join_url(base, self.filename) for base in bases))


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one URL.

    Attributes:
        attempts: transfers tried per URL (the first plus retries); each retry resumes the partial file.
        backoff: seconds slept before the first retry, doubled before each further one.
        max_backoff: cap of one sleep.
        timeout: socket timeout in seconds for connecting and for each read.
        chunk_size: bytes read per call.
    """

    attempts: int = 4
    backoff: float = 2.0
    max_backoff: float = 30.0
    timeout: float = 60.0
    chunk_size: int = 1 << 20


DEFAULT_POLICY = RetryPolicy()


class _Transient(Exception):
    """Worth retrying the same URL (connection refused or reset, timeout, 5xx, short read)."""


class _Permanent(Exception):
    """This URL will not deliver the file (4xx, missing local file); try the next one."""


def join_url(base: str, filename: str) -> str:
    """``base`` + ``/`` + ``filename`` for URLs and local directories alike."""
    return base.rstrip("/") + "/" + filename


def file_digest(path: str | os.PathLike, algorithm: str = "md5", chunk_size: int = 1 << 22) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def checksum_problem(path: str | os.PathLike, resource: Resource) -> str | None:
    """None when ``path`` matches every checksum the resource has, else a one-line description."""
    for algorithm, expected in (("md5", resource.md5), ("sha256", resource.sha256)):
        if expected:
            actual = file_digest(path, algorithm)
            if actual != expected.lower():
                return f"{algorithm} {actual} != expected {expected}"
    return None


def fetch(
    resource: Resource,
    directory: str | os.PathLike,
    *,
    policy: RetryPolicy | None = None,
    progress: bool = True,
) -> Path:
    """Bring ``resource`` into ``directory`` and return the path of the verified file.

    Returns at once if ``directory/<filename>`` exists (only verified files ever get that name). A
    ``<filename>.part`` left by an interrupted run is resumed.

    Raises:
        DownloadError: every URL failed; the message names the file and the last error. A partial file with
            at least one byte is kept for the next run to resume; nothing else is left behind.
    """
    policy = policy or DEFAULT_POLICY  # looked up at call time, so tests can monkeypatch the module default
    directory = Path(directory)
    target = directory / resource.filename
    if target.exists():
        return target
    part = target.with_name(target.name + ".part")
    errors: list[str] = []
    for index, url in enumerate(resource.urls):
        if index:
            log.warning("%s: trying the next source %s", resource.filename, url)
        fresh_retry = True
        while True:
            try:
                resumed = _fetch_with_retries(url, part, policy, progress)
            except _Permanent as err:
                errors.append(f"{url}: {err}")
                log.warning("%s: %s failed: %s", resource.filename, url, err)
                break
            problem = checksum_problem(part, resource)
            if problem is None:
                os.replace(part, target)
                return target
            if resumed and fresh_retry:
                # The bytes kept from an earlier transfer may be the bad ones: start this URL once from zero.
                log.warning("%s: checksum mismatch after resuming (%s); downloading again from the start",
                            resource.filename, problem)
                part.unlink()
                fresh_retry = False
                continue
            bad = target.with_name(target.name + ".bad")
            os.replace(part, bad)
            errors.append(f"{url}: checksum mismatch ({problem})")
            log.warning("%s from %s failed its checksum (%s); moved aside to %s", resource.filename, url, problem, bad)
            break
    if part.exists() and part.stat().st_size == 0:
        part.unlink()
    last = errors[-1] if errors else "no source given"
    raise DownloadError(
        f"could not download {resource.filename} from any of {len(resource.urls)} source(s) (last: {last}); "
        "check the network or pass --source with a local copy"
    )


def _fetch_with_retries(url: str, part: Path, policy: RetryPolicy, progress: bool) -> bool:
    """Transfer ``url`` into ``part`` with retries; returns whether the final transfer resumed old bytes."""
    last: Exception | None = None
    for attempt in range(max(1, policy.attempts)):
        if attempt:
            delay = min(policy.backoff * 2 ** (attempt - 1), policy.max_backoff)
            log.warning("%s: %s; retry %d of %d in %.1f s", part.name[:-5], last, attempt, policy.attempts - 1, delay)
            time.sleep(delay)
        try:
            return _transfer(url, part, policy, progress)
        except _Transient as err:
            last = err
    raise _Permanent(f"gave up after {policy.attempts} attempt(s): {last}")


def _local_path(url: str) -> Path | None:
    """The filesystem path of a ``file://`` URL or a scheme-less path; None for network URLs."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if "://" not in url:
        return Path(url)
    return None


def _transfer(url: str, part: Path, policy: RetryPolicy, progress: bool) -> bool:
    """One attempt: append to (206) or rewrite (200) ``part``. Returns True if it kept earlier bytes."""
    local = _local_path(url)
    if local is not None:
        if not local.is_file():
            raise _Permanent(f"no such file {local}")
        part.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, part)
        return False
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=policy.timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return True  # nothing after `offset`: the partial file is probably whole; the checksum decides
        if err.code >= 500 or err.code in _TRANSIENT_STATUS:
            raise _Transient(f"HTTP {err.code} {err.reason}") from None
        raise _Permanent(f"HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise _Transient(_reason(err)) from None
    with response:
        resumed = offset > 0 and response.status == 206 and _range_start(response) == offset
        if not resumed:
            offset = 0  # the server ignored the Range request (or sent another range): start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        written = offset
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[:-5],
                   file=sys.stderr, disable=not progress, mininterval=0.5, leave=False)
        try:
            part.parent.mkdir(parents=True, exist_ok=True)  # created only once a server answers
            with open(part, "ab" if resumed else "wb") as handle:
                while True:
                    # read1: return what has arrived (up to chunk_size) instead of waiting for a full chunk, so
                    # the partial file keeps up with the network when the process is killed.
                    chunk = response.read1(policy.chunk_size)
                    if not chunk:
                        break
                    handle.write(chunk)
                    handle.flush()
                    written += len(chunk)
                    bar.update(len(chunk))
                handle.flush()
                os.fsync(handle.fileno())
        except (http.client.HTTPException, OSError) as err:
            raise _Transient(f"connection lost after {written} bytes ({_reason(err)})") from None
        finally:
            bar.close()
    if total is not None and written < total:
        raise _Transient(f"connection closed after {written} of {total} bytes")
    return resumed


def _range_start(response) -> int | None:
    """First byte position of a ``Content-Range: bytes a-b/n`` header, or None."""
    value = response.headers.get("Content-Range", "")
    if not value.startswith("bytes "):
        return None
    start = value[6:].split("-", 1)[0].strip()
    return int(start) if start.isdigit() else None


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None)
    text = str(reason if reason is not None else err) or type(err).__name__
    return text.splitlines()[0]
