"""Layer compression for pushes: gzip on every core, or zstd.

gzip is written as pigz writes it: the input is cut into 1 MiB blocks, each deflated on
its own thread with the 32 KiB before it as the dictionary and ended by a sync flush (the
last one by the final block), so the pieces join into one deflate stream any gunzip reads.
zlib lets go of the interpreter while it compresses, so the blocks really run at once.
A block that does not shrink (already compressed or random data, as the benchmark's) is
stored rather than deflated, as klauspost's deflate in skopeo does: deflating it would
cost ~44 MB/s here and save nothing. The output depends only on the input, never on
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
_SAMPLE = 64 << 10
_LEVEL = 1  # pigz -1 / Go's BestSpeed: pushes are about time, and the layer is kept
# magic, deflate, no flags, mtime 0 (reproducible), fastest, OS unknown
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"


def _deflate(block: bytes, zdict: bytes, last: bool) -> bytes:
    sample = block[:_SAMPLE]
    level = _LEVEL if sample and len(zlib.compress(sample, _LEVEL)) < len(sample) * 0.95 else 0
    if zdict:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict)
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -15)
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
