"""Layer forensics without extra tools: what each layer adds, changes, deletes and wastes,
and what differs between two images, file by file.

Both read the layer blobs (not the unpacked snapshots), so they work the same
for every snapshotter and see exactly what a registry would ship.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass, field
from typing import Any

from dockyard.image.store import ImageStore
from dockyard.snapshot.apply import OPAQUE, WHITEOUT_PREFIX, decompressed, normalise_name

__all__ = ["FileInfo", "LayerReport", "image_diff", "image_files", "layer_reports"]


@dataclass(frozen=True)
class FileInfo:
    kind: str  # file, dir, symlink, hardlink, char, block, fifo
    size: int
    mode: int
    uid: int
    gid: int
    target: str  # symlink or hardlink target
    digest: str  # sha256 of a regular file's content, else ""


@dataclass
class LayerReport:
    diff_id: str
    size: int
    created_by: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    wasted: int = 0  # bytes of lower files this layer overwrites or deletes

    def as_json(self) -> dict[str, Any]:
        return {"DiffID": self.diff_id, "Size": self.size, "CreatedBy": self.created_by,
                "Added": self.added, "Changed": self.changed, "Deleted": self.deleted,
                "WastedBytes": self.wasted}  # fmt: skip


_KINDS = {
    tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo",
}  # fmt: skip


def layer_entries(store: ImageStore, blob: str):  # type: ignore[no-untyped-def]
    """(path, FileInfo | None for a whiteout, is_opaque) of each entry of a layer blob."""
    with store.content.open(blob) as raw, tarfile.open(fileobj=decompressed(raw), mode="r|") as tar:  # type: ignore[arg-type]
        for member in tar:
            rel = normalise_name(member.name)
            if not rel:
                continue
            parent, _, base = rel.rpartition("/")
            if base == OPAQUE:
                yield parent, None, True
                continue
            if base.startswith(WHITEOUT_PREFIX):
                yield f"{parent}/{base[len(WHITEOUT_PREFIX) :]}".lstrip("/"), None, False
                continue
            digest = ""
            if member.isreg():
                f = tar.extractfile(member)
                h = hashlib.sha256()
                while f is not None and (chunk := f.read(1 << 20)):
                    h.update(chunk)
                digest = "sha256:" + h.hexdigest()
            kind = _KINDS.get(member.type, "other")
            yield (
                rel,
                FileInfo(
                    kind, member.size, member.mode, member.uid, member.gid, member.linkname, digest
                ),
                False,
            )


def _remove_under(files: dict[str, FileInfo], path: str, keep_self: bool) -> int:
    """Drop ``path`` (unless keep_self) and everything below it; return the bytes dropped."""
    prefix = path + "/" if path else ""
    gone = [
        p for p in files if (p.startswith(prefix) and p != path) or (p == path and not keep_self)
    ]
    freed = sum(files[p].size for p in gone if files[p].kind == "file")
    for p in gone:
        del files[p]
    return freed


def layer_reports(store: ImageStore, image_id: str) -> list[LayerReport]:
    """One report per layer, bottom first."""
    cfg = store.config(image_id)
    history = [
        h.get("created_by", "") for h in cfg.get("history") or [] if not h.get("empty_layer")
    ]
    files: dict[str, FileInfo] = {}
    reports = []
    for i, layer in enumerate(store.layers(image_id)):
        rep = LayerReport(layer.diff_id, layer.size, history[i] if i < len(history) else "")
        for path, info, opaque in layer_entries(store, layer.blob_digest):
            if opaque:
                rep.wasted += _remove_under(files, path, keep_self=True)
                continue
            if info is None:
                if path in files or any(p.startswith(path + "/") for p in files):
                    rep.deleted.append("/" + path)
                rep.wasted += _remove_under(files, path, keep_self=False)
                continue
            old = files.get(path)
            if old is None:
                rep.added.append("/" + path)
            elif not (old.kind == "dir" and info.kind == "dir"):
                # a directory listed again (as parent of a change) is not a change itself
                rep.changed.append("/" + path)
                if old.kind == "file":
                    rep.wasted += old.size
            files[path] = info
        reports.append(rep)
    return reports


def image_files(store: ImageStore, image_id: str) -> dict[str, FileInfo]:
    """The image's final file tree, from its layers."""
    files: dict[str, FileInfo] = {}
    for layer in store.layers(image_id):
        for path, info, opaque in layer_entries(store, layer.blob_digest):
            if opaque:
                _remove_under(files, path, keep_self=True)
            elif info is None:
                _remove_under(files, path, keep_self=False)
            else:
                files[path] = info
    return files


def image_diff(store: ImageStore, first: str, second: str) -> list[tuple[str, str]]:
    """(A|C|D, /path) taking ``first`` to ``second``; directories count when their metadata changed."""
    a, b = image_files(store, first), image_files(store, second)
    out = []
    for path in sorted(set(a) | set(b)):
        if path not in a:
            out.append(("A", "/" + path))
        elif path not in b:
            out.append(("D", "/" + path))
        elif a[path] != b[path]:
            out.append(("C", "/" + path))
    return out
