"""``system check``: find (and with ``repair``, remove) what a crash left in the store.

Looks for: temp files of interrupted writes, half-made or half-removed
snapshots, interrupted unpacks and loads, blobs nothing references, layer
rows whose snapshot or blob is gone, images whose config or manifest is
gone, and (``verify``) blobs whose content no longer matches their name and
unpacked layers that no longer hold what their blob says (``layer_check``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from dockyard.image.store import ImageStore

__all__ = ["Finding", "check"]


@dataclass(frozen=True)
class Finding:
    kind: str
    what: str
    repairable: bool = True  # what ``repair`` fixes; a corrupt blob needs pulling again

    def __str__(self) -> str:
        return f"{self.kind}: {self.what}"


def check(store: ImageStore, repair: bool = False, verify: bool = False) -> list[Finding]:
    """Everything wrong with the store; fixed as well when ``repair``. ``verify`` re-hashes blobs."""
    found: list[Finding] = []
    ingest = os.path.join(store.content.root, "ingest")
    for name in sorted(os.listdir(ingest)):
        found.append(Finding("interrupted write", os.path.join(ingest, name)))
        if repair:
            os.unlink(os.path.join(ingest, name))
    for name in sorted(os.listdir(store.root)):
        if name.startswith("load-"):
            found.append(Finding("interrupted load", os.path.join(store.root, name)))
            if repair:
                shutil.rmtree(os.path.join(store.root, name), ignore_errors=True)
    from dockyard.fsutil import remove_tree, stale_scratch_dirs

    for path in stale_scratch_dirs(os.path.join(store.root, "tmp")):
        found.append(Finding("interrupted build context", path))
        if repair:
            remove_tree(path, ignore_errors=True)
    snaps = store.snapshots
    for kind in ("committed", "active"):
        base = os.path.join(snaps.root, kind)
        for name in sorted(os.listdir(base)):
            path = os.path.join(base, name)
            if (
                ".tmp-" in name
                or ".removing-" in name
                or not os.path.exists(os.path.join(path, "name"))
            ):
                found.append(Finding("half-made snapshot", path))
                if repair:
                    shutil.rmtree(path, ignore_errors=True)
    for info in list(snaps.list()):
        if info.kind == "active" and info.name.startswith("unpack-"):
            found.append(Finding("interrupted unpack", info.name))
            if repair:
                snaps.remove(info.name)
    links = os.path.join(snaps.root, "l")
    for name in sorted(os.listdir(links)):
        if not os.path.exists(os.path.join(links, name)):
            found.append(Finding("dangling snapshot link", os.path.join(links, name)))
            if repair:
                os.unlink(os.path.join(links, name))
    images = {r["id"]: r for r in store.db.query("SELECT id, manifest_digest FROM images")}
    for image_id, row in images.items():
        if not store.content.exists(image_id) or not store.content.exists(row["manifest_digest"]):
            found.append(Finding("image without its config or manifest", image_id))
            if repair:
                with store.db.tx() as c:
                    c.execute("DELETE FROM images WHERE id = ?", (image_id,))
    for row in store.db.query("SELECT chain_id, blob_digest FROM layers"):
        if not snaps.exists(row["chain_id"]) or not store.content.exists(row["blob_digest"]):
            found.append(Finding("layer record without its files", row["chain_id"]))
            if repair:
                with store.db.tx() as c:
                    users = [r[0] for r in c.execute("SELECT image_id FROM image_layers WHERE chain_id = ?",
                                                     (row["chain_id"],))]  # fmt: skip
                    for image_id in users:
                        c.execute("DELETE FROM images WHERE id = ?", (image_id,))
    if repair:
        store.prune_layers()
    referenced = set(images) | {r["manifest_digest"] for r in images.values()}
    referenced |= {r["blob_digest"] for r in store.db.query("SELECT blob_digest FROM layers")}
    referenced |= {r[0] for r in store.db.query("SELECT digest FROM compressed_blobs")}
    corrupt = set()
    for digest in sorted(store.content.digests()):
        if digest not in referenced:
            found.append(Finding("unreferenced blob", digest))
            if repair:
                store.content.delete(digest)
        elif verify and not store.content.verify(digest):
            found.append(
                Finding("corrupt blob (pull or load its image again)", digest, repairable=False)
            )
            corrupt.add(digest)
    if verify:
        found += _verify_layers(store, repair, corrupt)
    return found


def _verify_layers(store: ImageStore, repair: bool, corrupt: set[str]) -> list[Finding]:
    """Each unpacked layer against its (sound) blob; re-unpacked from it with ``repair``."""
    from dockyard.image.layer_check import layer_problem, reunpack

    found = []
    for row in store.db.query("SELECT chain_id FROM layers ORDER BY chain_id"):
        layer = store.layer(row["chain_id"])
        if layer.blob_digest in corrupt or not store.snapshots.exists(layer.chain_id):
            continue
        problem = layer_problem(store, layer)
        if problem is None:
            continue
        fixable = store.snapshots.apply_mode == "overlay"  # a copy snapshot holds its parents too
        found.append(
            Finding("layer differs from its blob", f"{layer.chain_id}: {problem}", fixable)
        )
        if repair and fixable:
            reunpack(store, layer)
    return found
