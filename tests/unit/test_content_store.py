"""The content store: what lands, what is refused, and what a crash leaves."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os

import pytest

from dockyard.content import ContentStore, Descriptor, DigestMismatch
from dockyard.errors import InvalidArgument, NotFound


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_ingest_stores_by_digest_and_reads_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ContentStore(str(tmp_path))
    data = b"layer bytes" * 1000
    desc = store.ingest(data)
    assert desc == Descriptor(sha(data), len(data))
    assert store.read(desc.digest) == data
    assert os.path.exists(tmp_path / "blobs" / "sha256" / desc.digest[7:])
    assert store.verify(desc.digest)
    assert os.listdir(tmp_path / "ingest") == []


def test_streams_and_files_and_chunks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ContentStore(str(tmp_path))
    data = os.urandom(3 << 20)
    assert store.ingest(io.BytesIO(data), expected=sha(data), size=len(data)).size == len(data)
    assert store.ingest([data[:10], data[10:]]).digest == sha(data)
    assert sorted(store.digests()) == [sha(data)]


def test_wrong_digest_is_refused_and_leaves_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ContentStore(str(tmp_path))
    with pytest.raises(DigestMismatch, match="digest mismatch: expected sha256:0000"):
        store.ingest(b"evil", expected="sha256:" + "0" * 64)
    assert list(store.digests()) == []
    assert os.listdir(tmp_path / "ingest") == []


def test_truncated_or_oversized_content_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ContentStore(str(tmp_path))
    data = b"0123456789"
    with pytest.raises(DigestMismatch, match="expected 20 bytes, got 10"):
        store.ingest(data, expected=sha(data + data), size=20)
    with pytest.raises(DigestMismatch, match="larger than its expected size 5"):
        store.ingest(data, size=5)
    assert list(store.digests()) == []
    assert os.listdir(tmp_path / "ingest") == []


def test_existing_blob_is_not_read_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ContentStore(str(tmp_path))
    data = b"x" * 100
    store.ingest(data)

    class Exploding(io.BytesIO):
        def read(self, *a):  # type: ignore[no-untyped-def]
            raise AssertionError("should not be read")

    assert store.ingest(Exploding(), expected=sha(data), size=100).digest == sha(data)


def test_bad_digest_strings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ContentStore(str(tmp_path))
    for bad in ("sha256:../../etc/passwd", "md5:abc", "sha256:" + "A" * 64, ""):
        with pytest.raises(InvalidArgument):
            store.path(bad)
    with pytest.raises(NotFound, match="no such blob"):
        store.open("sha256:" + "1" * 64)


def test_interrupted_writer_leaves_no_blob(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ContentStore(str(tmp_path))
    w = store.writer()
    w.write(b"half a layer")
    # the process "dies" here: no commit, no abort
    assert list(store.digests()) == []
    assert store.clean_ingest() == 1
    assert os.listdir(tmp_path / "ingest") == []


def _write_same(root: str, data: bytes, n: int) -> str:
    store = ContentStore(root)
    digest = ""
    for _ in range(n):
        digest = store.ingest(data).digest
    return digest


def test_concurrent_writers_of_the_same_blob(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(1 << 20)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        digests = pool.starmap(_write_same, [(str(tmp_path), data, 10)] * 4)
    store = ContentStore(str(tmp_path))
    assert set(digests) == {sha(data)}
    assert list(store.digests()) == [sha(data)]
    assert store.read(sha(data)) == data
    assert os.listdir(tmp_path / "ingest") == []


def test_gc_removes_only_unreferenced(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ContentStore(str(tmp_path))
    keep = store.ingest(b"keep").digest
    drop = store.ingest(b"drop")
    removed = store.gc([keep])
    assert removed == [drop]
    assert store.exists(keep) and not store.exists(drop.digest)


def test_verify_detects_corruption(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ContentStore(str(tmp_path))
    d = store.ingest(b"original").digest
    with open(store.path(d), "wb") as f:
        f.write(b"tampered")
    assert not store.verify(d)


def test_direct_writes_fall_back_where_the_filesystem_refuses_them(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Some filesystems open O_DIRECT files but refuse the writes (EINVAL); the blob then goes
    through the page cache instead of failing. (The refusal cannot be produced on this host's
    filesystems, so the first write is made to fail.)"""
    import errno
    import os

    from dockyard.content import ContentStore

    store = ContentStore(str(tmp_path / "content"))
    real_write, calls = os.write, []

    def refusing_write(fd: int, data) -> int:  # type: ignore[no-untyped-def]
        calls.append(len(data))
        if len(calls) == 1:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", refusing_write)
    payload = os.urandom((5 << 20) + 7)
    with store.writer(direct=True) as w:
        w.write(payload)
        desc = w.commit()
    assert store.read(desc.digest) == payload and desc.size == len(payload)
    assert len(calls) >= 2
