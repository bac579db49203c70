"""A lean streaming tar reader for layer unpacking, and a writer for layer tars.

``tarfile`` spends most of an unpack parsing headers into objects; layers have
many small files, so this reader parses just what unpacking needs: ustar and
GNU headers, GNU long names and links, PAX records (path, linkpath, size,
uid, gid, mtime, xattrs) and base-256 numbers. Checksums are verified, so a
corrupt or truncated layer is an error, not garbage on disk.

The writer exists for the same reason in the other direction: ``tarfile``
builds an object, a dictionary and a PAX check per member and copies data in
small pieces. ``TarWriter`` builds the plain ustar header of an ordinary member
itself (ASCII names that fit, numbers that fit, no xattrs) and asks ``tarfile``
for the rest, so that its output is the bytes ``tarfile`` would write in PAX
format (a unit test holds it to that).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

__all__ = ["Entry", "TarFormatError", "TarReader", "TarWriter"]

BLOCK = 512
REG, AREG, LNK, SYM, CHR, BLK, DIR, FIFO, CONT = (
    b"0",
    b"\0",
    b"1",
    b"2",
    b"3",
    b"4",
    b"5",
    b"6",
    b"7",
)


class TarFormatError(Exception):
    pass


class Entry:
    """One tar member, as much of it as unpacking needs."""

    __slots__ = ("devmajor", "devminor", "gid", "linkname", "mode", "mtime", "name", "size", "type", "uid",
                 "xattrs")  # fmt: skip

    def __init__(self, name: str, type: bytes, mode: int, uid: int, gid: int, size: int, mtime: float,
                 linkname: str, devmajor: int, devminor: int) -> None:  # fmt: skip
        self.name, self.type, self.mode, self.uid, self.gid = name, type, mode, uid, gid
        self.size, self.mtime, self.linkname = size, mtime, linkname
        self.devmajor, self.devminor = devmajor, devminor
        self.xattrs: dict[str, bytes] = {}


def _num(field_: bytes) -> int:
    if field_[:1] and field_[0] & 0x80:  # base-256, for values octal cannot hold
        value = int.from_bytes(field_[1:], "big")
        if field_[0] & 0x40:
            value -= 1 << (8 * (len(field_) - 1) + 6)
        return value
    text = field_.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarFormatError(f"bad number in header: {field_!r}") from None


def _str(field_: bytes) -> str:
    return field_.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax(data: bytes) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarFormatError("bad PAX record") from None
        record = data[space + 1 : pos + length - 1]  # without the trailing newline
        key, _, value = record.partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos += length
        if length <= 0:
            raise TarFormatError("bad PAX record length")
    return records


class TarReader:
    """Iterate entries of a tar stream; read each regular file's data before the next entry."""

    def __init__(self, stream: BinaryIO) -> None:
        self._s = stream
        # file data read with read1 where the stream has it: what it holds already, handed
        # on without being cut to the size asked for (and so copied)
        self._read_data = getattr(stream, "read1", stream.read)
        self._pending = 0  # data bytes (padded) of the current entry not read yet
        self._left = 0  # data bytes of the current entry the caller may still read

    def _read_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self._s.read(n - len(out))
            if not chunk:
                raise TarFormatError("unexpected end of data (truncated layer)")
            out += chunk
        return bytes(out)

    def _skip_pending(self) -> None:
        while self._pending:
            chunk = self._s.read(min(self._pending, 1 << 20))
            if not chunk:
                raise TarFormatError("unexpected end of data (truncated layer)")
            self._pending -= len(chunk)
        self._left = 0

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of the current entry's data; b"" at its end."""
        n = min(n, self._left)
        if n <= 0:
            return b""
        data = self._read_data(n)
        if not data:
            raise TarFormatError("unexpected end of data (truncated layer)")
        self._left -= len(data)
        self._pending -= len(data)
        return data

    def _data(self, size: int) -> bytes:
        data = self._read_exact(size)
        pad = -size % BLOCK
        if pad:
            self._read_exact(pad)
        return data

    def __iter__(self) -> Iterator[Entry]:
        pax: dict[str, bytes] = {}
        long_name = long_link = None
        while True:
            self._skip_pending()
            header = self._s.read(BLOCK)
            if not header:
                return  # end of stream without the zero blocks: tolerated, as GNU tar does
            if len(header) < BLOCK:
                header += self._read_exact(BLOCK - len(header))
            if header == b"\0" * BLOCK:
                return
            stored = _num(header[148:156])
            computed = sum(header[:148]) + 8 * 32 + sum(header[156:])
            if stored != computed:
                raise TarFormatError("header checksum mismatch (not a tar, or corrupt)")
            kind = header[156:157]
            size = _num(header[124:136])
            if kind in (b"x", b"g"):
                records = _pax(self._data(size))
                if kind == b"x":
                    pax.update(records)
                continue
            if kind == b"L":
                long_name = self._data(size).rstrip(b"\0").decode("utf-8", "surrogateescape")
                continue
            if kind == b"K":
                long_link = self._data(size).rstrip(b"\0").decode("utf-8", "surrogateescape")
                continue
            name = _str(header[0:100])
            if header[257:263] in (b"ustar\x00", b"ustar ") and header[257:262] == b"ustar":
                prefix = _str(header[345:500]) if header[257:263] == b"ustar\x00" else ""
                if prefix:
                    name = f"{prefix}/{name}"
            linkname = _str(header[157:257])
            entry = Entry(
                name=long_name or name,
                type=REG if kind in (AREG, CONT) else kind,
                mode=_num(header[100:108]),
                uid=_num(header[108:116]),
                gid=_num(header[116:124]),
                size=size,
                mtime=float(_num(header[136:148])),
                linkname=long_link or linkname,
                devmajor=_num(header[329:337]),
                devminor=_num(header[337:345]),
            )
            if pax:
                if "path" in pax:
                    entry.name = pax["path"].decode("utf-8", "surrogateescape")
                if "linkpath" in pax:
                    entry.linkname = pax["linkpath"].decode("utf-8", "surrogateescape")
                for key, attr in (("size", "size"), ("uid", "uid"), ("gid", "gid")):
                    if key in pax:
                        setattr(entry, attr, int(pax[key]))
                if "mtime" in pax:
                    entry.mtime = float(pax["mtime"])
                entry.xattrs = {
                    k[len("SCHILY.xattr.") :]: v
                    for k, v in pax.items()
                    if k.startswith("SCHILY.xattr.")
                }
            pax, long_name, long_link = {}, None, None
            # Only regular files carry data in layers (hardlinks and the rest have size 0).
            data_size = entry.size if entry.type == REG else 0
            if entry.type != REG and entry.size and kind not in (LNK, SYM, CHR, BLK, DIR, FIFO):
                data_size = entry.size
            self._pending = data_size + (-data_size % BLOCK)
            self._left = data_size if entry.type == REG else 0
            yield entry


_RECORD = 20 * BLOCK  # tarfile pads the end of an archive to whole records
_MAX8, _MAX12 = 8**7, 8**11
_EMPTY_DEV = b"\0" * 16


class TarWriter:
    """Writes members to ``out`` (anything with ``write``), as ``tarfile`` would in PAX format."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._offset = 0

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._offset += len(data)

    def add(self, name: str, type: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0,
            size: int = 0, mtime: int = 0, linkname: str = "", devmajor: int = 0, devminor: int = 0,
            pax: dict[str, str] | None = None, source: str | int | None = None) -> None:  # fmt: skip
        """One member; a regular file's ``size`` bytes are read from the file ``source`` (a
        path, or a descriptor the caller keeps)."""
        if type == DIR and not name.endswith("/"):
            name += "/"
        header = None
        if (not pax and len(name) <= 100 and len(linkname) <= 100 and name.isascii()
                and linkname.isascii() and 0 <= uid < _MAX8 and 0 <= gid < _MAX8
                and 0 <= size < _MAX12 and 0 <= mtime < _MAX12):  # fmt: skip
            header = _ustar(name, type, mode, uid, gid, size, mtime, linkname, devmajor, devminor)
        else:
            header = _tarfile_header(name, type, mode, uid, gid, size, mtime, linkname, devmajor,
                                     devminor, pax or {})  # fmt: skip
        if type != REG or not size:
            self._write(header)
            return
        assert source is not None, "a regular file with data needs its source"
        with open(source, "rb", buffering=0, closefd=not isinstance(source, int)) as f:
            data = f.read(size)
            if len(data) == size:  # the common, small case: one write for the member
                self._write(header + data + b"\0" * (-size % BLOCK))
                return
            self._write(header)
            left = size - len(data)
            while data:
                self._write(data)
                if not left:
                    break
                data = f.read(min(left, 1 << 20))
                left -= len(data)
            if left:
                raise OSError(f"{source}: file shrank while being archived")
            self._write(b"\0" * (-size % BLOCK))

    def close(self) -> None:
        """The end-of-archive blocks and the padding to a whole record."""
        self._write(b"\0" * (2 * BLOCK))
        self._write(b"\0" * (-self._offset % _RECORD))


def _octal(value: int, digits: int) -> bytes:
    return b"%0*o\0" % (digits - 1, value)


def _ustar(name: str, type: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
           linkname: str, devmajor: int, devminor: int) -> bytes:  # fmt: skip
    devices = (_octal(devmajor, 8) + _octal(devminor, 8)) if type in (CHR, BLK) else _EMPTY_DEV
    head = b"".join((
        name.encode().ljust(100, b"\0"), _octal(mode & 0o7777, 8), _octal(uid, 8), _octal(gid, 8),
        _octal(size, 12), _octal(mtime, 12), b"        ", type, linkname.encode().ljust(100, b"\0"),
        b"ustar\x0000", b"\0" * 64, devices,
    )).ljust(BLOCK, b"\0")  # fmt: skip
    return head[:148] + b"%06o\0 " % sum(head) + head[156:]


def _tarfile_header(name: str, type: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
                    linkname: str, devmajor: int, devminor: int, pax: dict[str, str]) -> bytes:  # fmt: skip
    import tarfile

    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = type, mode, uid, gid
    info.size, info.mtime, info.linkname = size, mtime, linkname
    info.uname = info.gname = ""
    info.devmajor, info.devminor = devmajor, devminor
    info.pax_headers = pax
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
