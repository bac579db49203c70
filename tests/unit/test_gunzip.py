"""Layers' gzip, inflated with zlib's own CRC check, or (for blobs whose digest is checked)
as raw deflate with the members' headers and lengths read here: both must give the same
bytes, for every member layout, and refuse what is cut or wrong."""

from __future__ import annotations

import gzip
import io
import os
import zlib

import pytest

from dockyard.snapshot.apply import decompressed


def _members(*parts: bytes, name: bool = False, extra: bool = False) -> bytes:
    out = b""
    for n, part in enumerate(parts):
        if name or extra:
            flags = (8 if name else 0) | (4 if extra else 0)
            head = b"\x1f\x8b\x08" + bytes([flags]) + bytes(6)
            if extra:
                head += (5).to_bytes(2, "little") + b"xxxxx"
            if name:
                head += f"member{n}.tar".encode() + b"\0"
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            body = c.compress(part) + c.flush()
            trailer = zlib.crc32(part).to_bytes(4, "little") + (len(part) & 0xFFFFFFFF).to_bytes(
                4, "little"
            )
            out += head + body + trailer
        else:
            out += gzip.compress(part, mtime=0)
    return out


class _Trickle(io.RawIOBase):
    """Hands out at most ``step`` bytes per read: headers and trailers split across reads."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        out = self.data[self.pos : self.pos + min(len(b), self.step)]
        b[: len(out)] = out
        self.pos += len(out)
        return len(out)


def _read_all(data: bytes, verified: bool, step: int | None = None) -> bytes:
    raw = io.BufferedReader(_Trickle(data, step)) if step else io.BytesIO(data)
    return decompressed(raw, verified=verified).read()  # type: ignore[arg-type]


@pytest.mark.parametrize("step", [None, 3, 7, 4096])
@pytest.mark.parametrize("layout", ["one", "many", "named", "extra", "padded"])
def test_both_ways_give_the_same_bytes(layout: str, step: int | None) -> None:
    # three bytes at a time only small members: such reads are slow in Python (and a peek
    # must see the two bytes of gzip's magic)
    big = os.urandom(3 << 20) if step != 3 else os.urandom(3000)
    parts = [big, b"small", b"", os.urandom(70000 if step != 3 else 700)]
    data, want = {
        "one": (_members(big), big),
        "many": (_members(*parts), b"".join(parts)),
        "named": (_members(*parts, name=True), b"".join(parts)),
        "extra": (_members(*parts, name=True, extra=True), b"".join(parts)),
        "padded": (_members(*parts) + bytes(1024), b"".join(parts)),
    }[layout]
    assert _read_all(data, verified=False, step=step) == want
    assert _read_all(data, verified=True, step=step) == want


def test_cut_or_wrong_streams_are_refused_both_ways() -> None:
    good = _members(os.urandom(200000), b"tail")
    for bad in (good[:-3], good[:-9], good[:5]):
        for verified in (False, True):
            with pytest.raises((EOFError, OSError)):
                _read_all(bad, verified)
    wrong_length = good[:-4] + (12345).to_bytes(4, "little")
    with pytest.raises(OSError, match="length"):
        _read_all(wrong_length, verified=True)
    with pytest.raises(OSError):
        _read_all(good + b"garbage", verified=True)
    # the CRC is what the unverified path checks and the verified one leaves to the digest
    wrong_crc = bytearray(good)
    wrong_crc[-8] ^= 1
    with pytest.raises(OSError):
        _read_all(bytes(wrong_crc), verified=False)


@pytest.mark.parametrize("verified", [False, True])
def test_reads_of_any_size_mixed_with_read1_give_the_same_bytes(verified: bool) -> None:
    """The tar reader's mix: exact reads (headers) and read1 (file data, as much as is
    inflated already): the same bytes in the same order, the whole stream."""
    parts = [os.urandom(3 << 20), b"small", os.urandom(70000)]
    want = b"".join(parts)
    stream = decompressed(io.BytesIO(_members(*parts)), verified=verified)
    got, sizes = [], [512, 1 << 20, 7, 3 << 20, 100000]
    for i in range(10000):
        n = sizes[i % len(sizes)]
        chunk = stream.read1(n) if i % 2 else stream.read(n)  # type: ignore[attr-defined]
        if not chunk:
            break
        assert len(chunk) <= n
        got.append(chunk)
    assert b"".join(got) == want
    whole = decompressed(io.BytesIO(_members(*parts)), verified=verified)
    first = whole.read1(1 << 30)  # type: ignore[attr-defined]
    assert 0 < len(first) <= 1 << 20  # what one inflate gave, not the stream
