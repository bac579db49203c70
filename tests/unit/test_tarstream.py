"""The lean tar reader reads what tarfile writes, in every format layers use."""

from __future__ import annotations

import io
import tarfile

import pytest

from dockyard.snapshot.tarstream import TarFormatError, TarReader


def build(fmt: int, entries: list[tuple[str, bytes, dict]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data, attrs in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for key, value in attrs.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def read_all(raw: bytes) -> list[tuple[str, bytes, object]]:
    reader = TarReader(io.BytesIO(raw))
    out = []
    for entry in reader:
        data = b""
        while chunk := reader.read(7):  # small reads cross block boundaries
            data += chunk
        out.append((entry.name, data, entry))
    return out


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_formats_round_trip(fmt: int) -> None:
    long = "deep/" * 30 + "name.txt"  # over 100 bytes: prefix, GNU longname or PAX path
    entries = [("a.txt", b"hello", {"uid": 1000, "gid": 2000, "mode": 0o4755, "mtime": 1234567890}),
               (long, b"x" * 1000, {}), ("link", b"", {"type": tarfile.SYMTYPE, "linkname": "a.txt"})]  # fmt: skip
    if fmt == tarfile.USTAR_FORMAT:
        entries[1] = ("deep/" * 18 + "name.txt", b"x" * 1000, {})  # ustar splits into prefix/name
    got = read_all(build(fmt, entries))
    assert [g[0] for g in got] == [e[0] for e in entries]
    assert got[0][1] == b"hello" and got[1][1] == b"x" * 1000
    first = got[0][2]
    assert (first.uid, first.gid, first.mode, first.mtime) == (1000, 2000, 0o4755, 1234567890)
    assert got[2][2].linkname == "a.txt" and got[2][2].type == b"2"


def test_pax_xattrs_and_big_ids() -> None:
    raw = build(
        tarfile.PAX_FORMAT,
        [("f", b"1", {"uid": 10_000_000, "pax_headers": {"SCHILY.xattr.user.k": "v"}})],
    )
    [(_name, _data, entry)] = read_all(raw)
    assert entry.uid == 10_000_000 and entry.xattrs == {"user.k": b"v"}


def test_gnu_base256_numbers() -> None:
    raw = build(
        tarfile.GNU_FORMAT, [("f", b"", {"uid": 3_000_000_000})]
    )  # too big for 7 octal digits
    assert read_all(raw)[0][2].uid == 3_000_000_000


def test_unread_data_is_skipped() -> None:
    raw = build(tarfile.PAX_FORMAT, [("a", b"1" * 5000, {}), ("b", b"2", {})])
    assert [e.name for e in TarReader(io.BytesIO(raw))] == ["a", "b"]


def test_corruption_and_truncation_are_errors() -> None:
    raw = bytearray(build(tarfile.PAX_FORMAT, [("a", b"data" * 500, {})]))
    bad = bytes(raw[:10]) + b"X" + bytes(raw[11:])
    with pytest.raises(TarFormatError, match="checksum"):
        read_all(bad)
    with pytest.raises(TarFormatError, match="truncated"):
        read_all(bytes(raw[:1200]))
