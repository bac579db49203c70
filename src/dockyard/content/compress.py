"""Layer compression for pushes: gzip on every core, or zstd.

gzip is written as pigz writes it: the input is cut into 1 MiB blocks, each deflated on
its own thread with the 32 KiB before it as the dictionary and ended by a sync flush (the
last one by the final block), so the pieces join into one deflate stream any gunzip reads.
zlib lets go of the interpreter while it compresses, so the blocks really run at once.
A block that would not shrink (already compressed or random data, as the benchmark's),
judged by deflating four 4 KiB pieces of it, is stored rather than deflated, as
klauspost's deflate in skopeo does: deflating it would cost ~44 MB/s here and save
nothing. The output depends only on the input, never on
the number of threads, so a layer compressed twice has one digest.
"""

from __future__ import annotations

import os
import struct
import zlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

__all__ = ["COMPRESSIONS", "compress"]

COMPRESSIONS = ("gzip", "zstd")
_BLOCK = 1 << 20
_WINDOW = 32 << 10
_PROBES = 4  # pieces of a block tried before deflating it, spread over it
_PROBE = 4 << 10
_STORED_MAX = 0xFFFF  # the most one stored deflate block holds
_LEVEL = 1  # pigz -1 / Go's BestSpeed: pushes are about time, and the layer is kept
# magic, deflate, no flags, mtime 0 (reproducible), fastest, OS unknown
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"
_SYNC_FLUSH = b"\x00\x00\x00\xff\xff"  # an empty stored block: what Z_SYNC_FLUSH ends with


def _shrinks(block: bytes) -> bool:
    """Whether deflating ``block`` would save anything, judged by a few pieces of it: 16 KiB
    deflated instead of the whole MiB (at ~44 MB/s, trying random data cost more than the
    upload)."""
    step = max(len(block) // _PROBES, 1)
    sample = b"".join(block[i : i + _PROBE] for i in range(0, len(block), step))
    return len(zlib.compress(sample, _LEVEL)) < len(sample) * 0.95


def _stored(block: bytes, last: bool) -> bytes:
    """``block`` as stored deflate blocks, byte-aligned as after a sync flush (which it ends
    with unless ``last``): what zlib's level 0 makes, without its copies."""
    out = []
    for at in range(0, len(block), _STORED_MAX) or [0]:
        part = block[at : at + _STORED_MAX]
        final = last and at + _STORED_MAX >= len(block)
        out.append(struct.pack("<BHH", 1 if final else 0, len(part), 0xFFFF ^ len(part)))
        out.append(part)
    if not last:
        out.append(_SYNC_FLUSH)
    return b"".join(out)


def _deflate(block: bytes, zdict: bytes, last: bool) -> bytes:
    if not block or not _shrinks(block):
        return _stored(block, last)
    if zdict:
        c = zlib.compressobj(_LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict)
    else:
        c = zlib.compressobj(_LEVEL, zlib.DEFLATED, -15)
    return c.compress(block) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def _read_full(src: BinaryIO, n: int) -> bytes:
    parts = []
    while n:
        chunk = src.read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def gzip(src: BinaryIO, write: Callable[[bytes], object], threads: int | None = None) -> None:
    """``src`` as one gzip member into ``write``, its blocks deflated in parallel."""
    from collections import deque

    from dockyard.threads import Workers

    threads = threads or os.cpu_count() or 1
    write(_GZIP_HEADER)
    crc = size = 0
    with Workers(threads) as pool:
        pending: deque = deque()  # type: ignore[type-arg]
        tail = b""
        block = _read_full(src, _BLOCK)
        while True:
            following = _read_full(src, _BLOCK) if block else b""
            last = not following
            crc = zlib.crc32(block, crc)
            size += len(block)
            pending.append(pool.submit(_deflate, block, tail, last))
            while len(pending) > 2 * threads:
                write(pending.popleft().result())
            if last:
                break
            tail = block[-_WINDOW:]
            block = following
        while pending:
            write(pending.popleft().result())
    write(struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF))


def zstd(src: BinaryIO, write: Callable[[bytes], object], threads: int | None = None) -> None:
    """``src`` as a zstd frame into ``write`` (level 3, zstd's own worker threads)."""
    import zstandard

    class _Sink:
        def write(self, data: bytes) -> int:
            write(bytes(data))
            return len(data)

    cctx = zstandard.ZstdCompressor(level=3, threads=threads or -1, write_content_size=False)
    with cctx.stream_writer(_Sink(), closefd=False) as out:
        while chunk := src.read(_BLOCK):
            out.write(chunk)


def compress(kind: str, src: BinaryIO, write: Callable[[bytes], object]) -> None:
    """``src`` compressed with ``kind`` (gzip or zstd) into ``write``."""
    if kind == "gzip":
        gzip(src, write)
    elif kind == "zstd":
        zstd(src, write)
    else:
        from dockyard.errors import InvalidArgument

        raise InvalidArgument(f"unknown compression {kind!r}: want gzip or zstd")
