"""common/downloads.py against a local HTTP server: checksums, mirrors, resume, retries, clear failures."""

import hashlib

import pytest

from common.downloads import DownloadError, Resource, RetryPolicy, checksum_problem, fetch
from common.errors import UsageError
from tests.fixtures_http import (
    dead_url,
    http_server_fixture,  # noqa: F401 (registers the fixture "http_server")
)

FAST = RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02, timeout=3, chunk_size=64)
DATA = bytes(range(256)) * 8  # 2048 bytes
MD5 = hashlib.md5(DATA).hexdigest()


def resource(*urls, md5=MD5, sha256=None):
    return Resource("file.bin", tuple(urls), md5=md5, sha256=sha256)


def files_in(path):
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def test_fetch_verifies_and_renames_atomically(http_server, tmp_path):
    url = http_server.add("/a/file.bin", DATA)
    sha = hashlib.sha256(DATA).hexdigest()
    path = fetch(resource(url, sha256=sha), tmp_path / "cache", policy=FAST, progress=False)
    assert path.read_bytes() == DATA
    assert files_in(tmp_path / "cache") == ["file.bin"]
    # A final name means "verified": a second call opens no URL.
    count = len(http_server.requests)
    assert fetch(resource(url), tmp_path / "cache", policy=FAST, progress=False) == path
    assert len(http_server.requests) == count


def test_checksum_mismatch_is_moved_aside_and_next_mirror_used(http_server, tmp_path):
    bad = http_server.add("/bad/file.bin", b"<html>moved</html>")
    good = http_server.add("/good/file.bin", DATA)
    path = fetch(resource(bad, good), tmp_path, policy=FAST, progress=False)
    assert path.read_bytes() == DATA
    assert (tmp_path / "file.bin.bad").read_bytes() == b"<html>moved</html>"
    assert checksum_problem(tmp_path / "file.bin.bad", resource()) is not None


def test_all_sources_bad_raise_a_usage_error_and_leave_no_final_file(http_server, tmp_path):
    url = http_server.add("/bad/file.bin", b"not it")
    with pytest.raises(DownloadError, match=r"file\.bin.*checksum mismatch.*--source"):
        fetch(resource(url), tmp_path, policy=FAST, progress=False)
    assert not (tmp_path / "file.bin").exists()
    assert issubclass(DownloadError, UsageError)


def test_interrupted_transfer_resumes_with_a_range_request(http_server, tmp_path):
    url = http_server.add("/f/file.bin", DATA, cut_after=700, cuts=1)
    path = fetch(resource(url), tmp_path, policy=FAST, progress=False)
    assert path.read_bytes() == DATA
    assert [r.range for r in http_server.requested("file.bin")] == [None, "bytes=700-"]


def test_partial_file_of_an_earlier_run_is_resumed(http_server, tmp_path):
    url = http_server.add("/f/file.bin", DATA)
    (tmp_path / "file.bin.part").write_bytes(DATA[:1000])
    assert fetch(resource(url), tmp_path, policy=FAST, progress=False).read_bytes() == DATA
    assert [r.range for r in http_server.requests] == ["bytes=1000-"]
    assert files_in(tmp_path) == ["file.bin"]


def test_server_ignoring_range_restarts_from_zero(http_server, tmp_path):
    url = http_server.add("/f/file.bin", DATA, honor_range=False)
    (tmp_path / "file.bin.part").write_bytes(b"x" * 500)
    assert fetch(resource(url), tmp_path, policy=FAST, progress=False).read_bytes() == DATA


def test_corrupt_partial_file_is_downloaded_again_from_scratch(http_server, tmp_path):
    url = http_server.add("/f/file.bin", DATA)
    (tmp_path / "file.bin.part").write_bytes(b"y" * 1000)  # wrong bytes kept from an earlier mirror
    assert fetch(resource(url), tmp_path, policy=FAST, progress=False).read_bytes() == DATA
    assert [r.range for r in http_server.requests] == ["bytes=1000-", None]


def test_complete_partial_file_gets_416_and_is_verified(http_server, tmp_path):
    url = http_server.add("/f/file.bin", DATA)
    (tmp_path / "file.bin.part").write_bytes(DATA)
    assert fetch(resource(url), tmp_path, policy=FAST, progress=False).read_bytes() == DATA


def test_404_moves_on_without_retrying(http_server, tmp_path):
    good = http_server.add("/good/file.bin", DATA)
    missing = http_server.url("/missing/file.bin")
    assert fetch(resource(missing, good), tmp_path, policy=FAST, progress=False).read_bytes() == DATA
    assert len(http_server.requested("/missing/file.bin")) == 1


def test_5xx_is_retried_then_given_up(http_server, tmp_path):
    url = http_server.add("/f/file.bin", DATA, status=503)
    with pytest.raises(DownloadError, match="503"):
        fetch(resource(url), tmp_path / "c", policy=FAST, progress=False)
    assert len(http_server.requests) == FAST.attempts
    assert not (tmp_path / "c").exists()


def test_dead_server_gives_a_clear_error_and_writes_nothing(tmp_path):
    with pytest.raises(DownloadError, match=r"could not download file\.bin from any of 1 source.*refused"):
        fetch(resource(dead_url("/file.bin")), tmp_path / "c", policy=FAST, progress=False)
    assert not (tmp_path / "c").exists()


def test_local_directory_and_file_url_sources(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "file.bin").write_bytes(DATA)
    assert fetch(resource(str(tmp_path / "nowhere" / "file.bin"), str(mirror / "file.bin")), tmp_path / "a",
                 policy=FAST, progress=False).read_bytes() == DATA
    assert fetch(resource((mirror / "file.bin").as_uri()), tmp_path / "b", policy=FAST,
                 progress=False).read_bytes() == DATA
    assert Resource("file.bin", ()).with_bases([str(mirror), "http://h/x/"]).urls == (
        f"{mirror}/file.bin", "http://h/x/file.bin")
