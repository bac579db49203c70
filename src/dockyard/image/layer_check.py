"""``system check --verify`` for unpacked layers: does a layer's directory still hold what
its blob says, and, with ``--repair``, unpack it again from the blob.

Layer directories are never fsynced (no engine syncs them; the blobs are), so after a power
loss a file of a layer can be empty or missing while its blob is intact. This reads each
layer blob once and compares every member with the disk — type, mode, owner, size, the
content's hash, a link's target, whiteouts and opaque directories as overlay keeps them —
the last member of a path winning, as when it was unpacked.
"""

from __future__ import annotations

import hashlib
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.image.store import ImageStore, Layer

__all__ = ["layer_problem", "reunpack"]

_OPAQUE_XATTR = "trusted.overlay.opaque"


def _expected(store: ImageStore, layer: Layer) -> dict[str, tuple]:
    """path -> what the blob puts there: ("file", mode, uid, gid, size, sha256),
    ("dir", mode, uid, gid), ("link", target), ("hardlink", target), ("node", kind, major,
    minor), ("whiteout",), ("opaque",)."""
    from dockyard.snapshot import tarstream as ts
    from dockyard.snapshot.apply import OPAQUE, WHITEOUT_PREFIX, decompressed, normalise_name

    out: dict[str, tuple] = {}
    with store.content.open(layer.blob_digest) as f:
        reader = ts.TarReader(decompressed(f))
        for entry in reader:
            rel = normalise_name(entry.name)
            if not rel:
                continue
            parent, _, base = rel.rpartition("/")
            if base == OPAQUE:
                out[parent] = ("opaque",)
                continue
            if base.startswith(WHITEOUT_PREFIX):
                out[f"{parent}/{base[len(WHITEOUT_PREFIX) :]}".lstrip("/")] = ("whiteout",)
                continue
            mode = entry.mode & 0o7777
            if entry.type == ts.REG:
                h = hashlib.sha256()
                while chunk := reader.read(1 << 20):
                    h.update(chunk)
                out[rel] = ("file", mode, entry.uid, entry.gid, entry.size, h.hexdigest())
            elif entry.type == ts.DIR:
                was_opaque = out.get(rel) == ("opaque",)
                out[rel] = ("dir", mode, entry.uid, entry.gid, was_opaque)
            elif entry.type == ts.SYM:
                out[rel] = ("link", entry.linkname)
            elif entry.type == ts.LNK:
                out[rel] = ("hardlink", normalise_name(entry.linkname))
            elif entry.type in (ts.CHR, ts.BLK, ts.FIFO):
                out[rel] = ("node", entry.type, entry.devmajor, entry.devminor)
    return out


def layer_problem(store: ImageStore, layer: Layer) -> str | None:
    """The first way ``layer``'s directory differs from its blob, or None."""
    overlay = store.snapshots.apply_mode == "overlay"
    root = store.snapshots.fs(layer.chain_id)
    for rel, want in sorted(_expected(store, layer).items()):
        path = os.path.join(root, rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if want[0] == "whiteout" and not overlay:
                continue  # a copy snapshot deletes what a whiteout names
            return f"/{rel} is missing"
        kind = want[0]
        if kind == "whiteout":
            if overlay and not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0):
                return f"/{rel} should be a whiteout"
            if not overlay:
                return f"/{rel} should be gone"
        elif kind == "opaque" or (kind == "dir" and want[4]):
            if overlay and _xattr(path) != b"y":
                return f"/{rel} should be an opaque directory"
            if kind == "dir" and not stat.S_ISDIR(st.st_mode):
                return f"/{rel} should be a directory"
        elif kind == "file":
            if not stat.S_ISREG(st.st_mode):
                return f"/{rel} should be a regular file"
            if (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) != want[1:4]:
                return f"/{rel} has lost its mode or owner"
            if st.st_size != want[4] or _digest(path) != want[5]:
                return f"/{rel} does not hold what the layer's blob says ({st.st_size} of {want[4]} bytes)"
        elif kind == "dir":
            if not stat.S_ISDIR(st.st_mode):
                return f"/{rel} should be a directory"
        elif kind == "link":
            if not stat.S_ISLNK(st.st_mode) or os.readlink(path) != want[1]:
                return f"/{rel} should be a symlink to {want[1]}"
        elif kind == "hardlink":
            try:
                target = os.lstat(os.path.join(root, want[1]))
            except FileNotFoundError:
                return f"/{want[1]} is missing"
            if (target.st_dev, target.st_ino) != (st.st_dev, st.st_ino):
                return f"/{rel} should be a hard link to /{want[1]}"
        elif kind == "node" and not (
            stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode)
        ):
            return f"/{rel} should be a device or fifo"
    return None


def _xattr(path: str) -> bytes | None:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False)
    except OSError:
        return None


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def reunpack(store: ImageStore, layer: Layer) -> None:
    """Unpack ``layer`` again from its blob, in place of its directory (overlay snapshotter:
    a layer directory holds the layer's own changes only, so nothing below is needed)."""
    from dockyard.fsutil import remove_tree
    from dockyard.snapshot.apply import apply_layer

    if store.snapshots.apply_mode != "overlay":
        raise OSError(95, "re-unpacking a layer needs the overlay snapshotter")
    fs = store.snapshots.fs(layer.chain_id)
    fresh = f"{fs}.new-{os.urandom(4).hex()}"
    try:
        with store.content.open(layer.blob_digest) as f:
            apply_layer(f, fresh, mode="overlay")
        old = f"{fs}.old-{os.urandom(4).hex()}"
        os.rename(fs, old)
        os.rename(fresh, fs)
        remove_tree(old)
    finally:
        remove_tree(fresh, ignore_errors=True)
