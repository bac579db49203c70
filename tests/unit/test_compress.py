"""The push's gzip: any gunzip reads it, it depends on the input alone, and blocks that
would not shrink are stored, the others deflated."""

from __future__ import annotations

import gzip
import io
import random
import zlib

import pytest

from dockyard.content.compress import compress


def _gzip(data: bytes, threads: int | None = None) -> bytes:
    from dockyard.content.compress import gzip as pigz

    out: list[bytes] = []
    pigz(io.BytesIO(data), out.append, threads=threads)
    return b"".join(out)


_RANDOM = random.Random(7).randbytes(3 << 20)
_TEXT = b"".join(b"line %d of a layer that compresses well\n" % i for i in range(120000))


@pytest.mark.parametrize("data", [b"", b"x", _RANDOM[:70000], _RANDOM, _TEXT, _RANDOM + _TEXT + _RANDOM[:12345],
                                  (_TEXT[:(1 << 20) - 100] + _RANDOM)[: 5 << 20]])  # fmt: skip
def test_round_trip_and_one_output_whatever_the_threads(data: bytes) -> None:
    one = _gzip(data, threads=1)
    assert gzip.decompress(one) == data
    assert zlib.decompress(one, 31) == data  # one member, CRC and size right
    assert _gzip(data, threads=3) == one == _gzip(data)


def test_random_blocks_are_stored_and_text_deflated() -> None:
    stored = _gzip(_RANDOM)
    assert len(_RANDOM) < len(stored) < len(_RANDOM) * 1.001  # stored: a few bytes per 64 KiB
    assert len(_gzip(_TEXT)) < len(_TEXT) // 5
    # a MiB whose probes are random but which is text elsewhere is still right, if stored
    mixed = b"".join(_RANDOM[i : i + 4096] + _TEXT[i : i + 258048] for i in range(0, 4 << 20, 262144))
    assert gzip.decompress(_gzip(mixed)) == mixed


def test_unknown_kind_is_one_line() -> None:
    with pytest.raises(Exception, match="unknown compression 'lz4'"):
        compress("lz4", io.BytesIO(b""), lambda _b: None)


def test_zstd_round_trip() -> None:
    zstandard = pytest.importorskip("zstandard")
    out: list[bytes] = []
    compress("zstd", io.BytesIO(_TEXT), out.append)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(b"".join(out)) == _TEXT
