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

from dockyard.image.forensics import FileInfo, layer_entries
from dockyard.snapshot.apply import normalise_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.image.store import ImageStore, Layer

__all__ = ["layer_problem", "reunpack"]



def _expected(store: ImageStore, layer: Layer) -> tuple[dict[str, FileInfo | None], set[str]]:
    """What the blob puts at each path (None: a whiteout), the last entry of a path winning,
    and the directories it makes opaque."""
    files: dict[str, FileInfo | None] = {}
    opaque: set[str] = set()
    for path, info, is_opaque in layer_entries(store, layer.blob_digest):
        if is_opaque:
            opaque.add(path)
        else:
            files[path] = info
    return files, opaque


def layer_problem(store: ImageStore, layer: Layer) -> str | None:
    """The first way ``layer``'s directory differs from its blob, or None."""
    overlay = store.snapshots.apply_mode == "overlay"
    root = store.snapshots.fs(layer.chain_id)
    files, opaque = _expected(store, layer)
    for rel in sorted(opaque):
        if overlay and _xattr(os.path.join(root, rel)) != b"y":
            return f"/{rel} should be an opaque directory"
    for rel, want in sorted(files.items()):
        path = os.path.join(root, rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if want is None and not overlay:
                continue  # a copy snapshot deletes what a whiteout names
            return f"/{rel} is missing"
        problem = _differs(root, rel, st, want, overlay)
        if problem:
            return problem
    return None


def _differs(
    root: str, rel: str, st: os.stat_result, want: FileInfo | None, overlay: bool
) -> str | None:
    if want is None:
        if not overlay:
            return f"/{rel} should be gone"
        return (
            None if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 else f"/{rel} should be a whiteout"
        )
    path = os.path.join(root, rel)
    if want.kind == "file":
        if not stat.S_ISREG(st.st_mode):
            return f"/{rel} should be a regular file"
        if (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) != (
            want.mode & 0o7777,
            want.uid,
            want.gid,
        ):
            return f"/{rel} has lost its mode or owner"
        if st.st_size != want.size or "sha256:" + _digest(path) != want.digest:
            return f"/{rel} does not hold what the layer's blob says ({st.st_size} of {want.size} bytes)"
    elif want.kind == "dir" and not stat.S_ISDIR(st.st_mode):
        return f"/{rel} should be a directory"
    elif want.kind == "symlink" and (
        not stat.S_ISLNK(st.st_mode) or os.readlink(path) != want.target
    ):
        return f"/{rel} should be a symlink to {want.target}"
    elif want.kind == "hardlink":
        target = normalise_name(want.target)
        try:
            other = os.lstat(os.path.join(root, target))
        except FileNotFoundError:
            return f"/{target} is missing"
        if (other.st_dev, other.st_ino) != (st.st_dev, st.st_ino):
            return f"/{rel} should be a hard link to /{target}"
    elif want.kind in ("char", "block", "fifo") and not (
        stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode)
    ):
        return f"/{rel} should be a device or fifo"
    return None


def _xattr(path: str) -> bytes | None:
    try:
        from dockyard.snapshot.apply import overlay_xattrs

        return os.getxattr(path, overlay_xattrs() + "opaque", follow_symlinks=False)
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
