"""New images from a container's snapshot (``commit``) and from a rootfs tarball (``import``)."""

from __future__ import annotations

import copy
import os
import tempfile
from typing import BinaryIO

from dockyard.busy import changing
from dockyard.clock import now_rfc3339
from dockyard.image.changes import apply_changes
from dockyard.image.store import ImageStore
from dockyard.platforms import host_arch
from dockyard.snapshot.diff import changes, changes_compare, write_layer

__all__ = ["commit_snapshot", "diff_snapshot", "export_snapshot", "import_rootfs"]


def _layer_source(store: ImageStore, key: str, parent_chain: str | None, out: BinaryIO,
                  exclude: frozenset[str]) -> None:  # fmt: skip
    fs = store.snapshots.fs(key)
    if store.snapshots.apply_mode == "overlay":
        write_layer(fs, out, exclude=exclude)
    else:
        lower = (
            store.snapshots.fs(parent_chain) if parent_chain else tempfile.mkdtemp(dir=store.root)
        )
        try:
            write_layer(fs, out, lower=lower, exclude=exclude)
        finally:
            if not parent_chain:
                os.rmdir(lower)


def diff_snapshot(
    store: ImageStore, key: str, image_id: str, exclude: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """``docker diff``: (A|C|D, path) of snapshot ``key`` against the image it was made from.

    ``exclude`` names paths the engine made as mount points (Docker keeps those in
    an init layer, so they never show up as the container's changes)."""
    layers = store.layers(image_id)
    fs = store.snapshots.fs(key)
    if store.snapshots.apply_mode == "overlay":
        return changes(
            fs, [store.snapshots.fs(layer.chain_id) for layer in reversed(layers)], exclude
        )
    return changes_compare(store.snapshots.fs(layers[-1].chain_id), fs, exclude)


@changing(lambda store, *_: store.root)
def commit_snapshot(store: ImageStore, key: str, image_id: str, *, comment: str = "", author: str = "",
                    changes_: list[str] | None = None, created_by: str = "", ref: str | None = None,
                    exclude: frozenset[str] = frozenset(), adopt: bool = False) -> str:  # fmt: skip
    """An image of ``image_id`` plus what snapshot ``key`` changed in it; tagged ``ref`` if given.

    ``adopt``: the (unmounted) snapshot becomes the new layer itself instead of being unpacked
    again from the layer tar; it must hold nothing that ``exclude`` would leave out."""
    parent_cfg = store.config(image_id)
    layers = store.layers(image_id)
    parent = layers[-1] if layers else None
    if adopt and (not exclude or _drop_placeholders(store, key, layers, exclude)):
        # the tar goes straight into the content store (hashed as it is written), and the
        # snapshot on disk becomes the layer
        with store.content.writer() as w:
            _layer_source(store, key, parent.chain_id if parent else None, w, exclude)  # type: ignore[arg-type]
            desc = w.commit()
        layer = store.adopt_layer(parent, desc, key)
    else:
        with tempfile.TemporaryFile(dir=store.root) as tmp:
            _layer_source(store, key, parent.chain_id if parent else None, tmp, exclude)
            tmp.seek(0)
            layer = store.add_layer(parent, tmp)
    created = now_rfc3339()
    cfg = copy.deepcopy(parent_cfg)
    cfg["created"] = created
    if author:
        cfg["author"] = author
    cfg["config"] = apply_changes(cfg.get("config") or {}, changes_ or [])
    cfg.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"] = [
        *[layer_.diff_id for layer_ in layers],
        layer.diff_id,
    ]
    entry = {"created": created, "created_by": created_by}
    if author:
        entry["author"] = author
    if comment:
        entry["comment"] = comment
    cfg["history"] = [*(cfg.get("history") or []), entry]
    new_id = store.create_image(cfg, [*layers, layer], parent=image_id)
    if ref:
        store.tag(new_id, ref)
    return new_id


def _drop_placeholders(store: ImageStore, key: str, layers: list, exclude: frozenset[str]) -> bool:
    """Before an overlay snapshot becomes a layer, remove what the runtime made only as mount
    targets (``exclude`` paths no lower layer has), so that the layer on disk holds what its
    tar holds. False where that cannot be told apart (the copy snapshotter): adopt nothing."""
    if store.snapshots.apply_mode != "overlay":
        return False
    upper = store.snapshots.fs(key)
    lowers = [store.snapshots.fs(layer.chain_id) for layer in layers]
    for path in sorted(exclude, key=len, reverse=True):
        rel = path.lstrip("/")
        here = os.path.join(upper, rel)
        if not os.path.lexists(here) or any(
            os.path.lexists(os.path.join(lower, rel)) for lower in lowers
        ):
            continue
        try:
            if os.path.isdir(here) and not os.path.islink(here):
                os.rmdir(here)
            else:
                os.unlink(here)
        except OSError:
            return False  # not an empty placeholder: the container wrote there
    return True


@changing(lambda store, *_: store.root)
def import_rootfs(store: ImageStore, tarball: BinaryIO, *, ref: str | None = None, message: str = "",
                  changes_: list[str] | None = None, source: str = "-") -> str:  # fmt: skip
    """``docker import``: a one-layer image from a root filesystem tarball (plain, gzip or zstd)."""
    layer = store.add_layer(None, tarball)
    created = now_rfc3339()
    cfg = {
        "architecture": host_arch(),
        "os": "linux",
        "created": created,
        "config": apply_changes({}, changes_ or []),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": created, "comment": message or f"Imported from {source}"}],
    }
    image_id = store.create_image(cfg, [layer])
    if ref:
        store.tag(image_id, ref)
    return image_id


def export_snapshot(store: ImageStore, key: str, out: BinaryIO) -> int:
    """``docker export``: the snapshot's whole file tree (its image's layers and its own
    changes, flattened) as one plain tar. Returns the number of entries."""
    from dockyard.snapshot.diff import write_tree

    target = tempfile.mkdtemp(prefix="export-", dir=store.root)
    try:
        store.snapshots.mount(key, target, readonly=True)
        try:
            return write_tree(target, out)
        finally:
            from dockyard.snapshot.snapshotter import unmount

            unmount(target)
    finally:
        os.rmdir(target)
