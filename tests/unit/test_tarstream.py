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


def test_writer_writes_what_tarfile_writes(tmp_path) -> None:
    """The writer's own ustar headers, its fallback to tarfile and its data copying give the
    bytes tarfile gives, member for member: layer digests do not depend on which path ran."""
    from dockyard.snapshot.tarstream import BLK, CHR, DIR, FIFO, LNK, REG, SYM, TarWriter

    sizes = {"empty": 0, "one": 1, "block": 512, "odd": 1000, "big": (1 << 20) * 2 + 3}
    members: list[dict] = []
    for name, size in sizes.items():
        path = tmp_path / name
        path.write_bytes(bytes(i % 251 for i in range(size)))
        members.append({"name": f"files/{name}", "type": REG, "size": size, "source": str(path)})
    members += [
        {"name": "files", "type": DIR, "mode": 0o755, "mtime": 1700000000},
        {"name": "d" * 99, "type": DIR},  # 100 with its slash: still a plain header
        {"name": "d" * 100, "type": DIR},  # 101: a PAX path record
        {"name": "déjà", "type": REG, "uid": 1000, "gid": 1000},
        {"name": "sym", "type": SYM, "linkname": "l" * 101},
        {"name": "hard", "type": LNK, "linkname": "files/one"},
        {"name": "null", "type": CHR, "mode": 0o666, "devmajor": 1, "devminor": 3},
        {"name": "blk", "type": BLK, "devmajor": 8, "devminor": 0},
        {"name": "fifo", "type": FIFO, "mode": 0o600},
        {"name": "big-ids", "type": REG, "uid": 8**7, "gid": 70000},
        {"name": "xattr", "type": REG, "pax": {"SCHILY.xattr.user.k": "v"}},
        {"name": "setuid", "type": REG, "mode": 0o4755, "mtime": 8**11 - 1},
    ]
    ours = io.BytesIO()
    writer = TarWriter(ours)
    theirs = io.BytesIO()
    with tarfile.open(fileobj=theirs, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            writer.add(**m)
            info = tarfile.TarInfo(m["name"])
            info.type, info.uname, info.gname = m["type"], "", ""
            for key in ("mode", "uid", "gid", "size", "mtime", "linkname", "devmajor", "devminor"):
                if key in m:
                    setattr(info, key, m[key])
            info.pax_headers = m.get("pax", {})
            if "source" in m:
                with open(m["source"], "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    writer.close()
    assert ours.getvalue() == theirs.getvalue()
    assert [e.name for e in TarReader(io.BytesIO(ours.getvalue()))][:3] == [
        "files/empty",
        "files/one",
        "files/block",
    ]


def test_writer_refuses_a_file_that_shrank(tmp_path) -> None:
    from dockyard.snapshot.tarstream import REG, TarWriter

    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    with pytest.raises(OSError, match="shrank"):
        TarWriter(io.BytesIO()).add("f", REG, size=2 << 20, source=str(path))
