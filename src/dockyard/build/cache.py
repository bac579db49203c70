"""The build cache's upkeep: ``builder prune``."""

from __future__ import annotations

import os

from dockyard.fsutil import remove_tree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["prune"]


def prune(engine: Any) -> tuple[list[str], int]:
    """Forget every cached step, delete the images only the cache held (untagged, used by no
    container and by no other image as parent), and empty the RUN cache mounts; (cache keys
    removed, bytes freed)."""
    store = engine.images
    rows = engine.db.query("SELECT key, image_id FROM build_cache")
    before = store.disk_usage()
    cached = {r["image_id"] for r in rows}
    with engine.db.tx() as c:
        c.execute("DELETE FROM build_cache")
    used = {r[0] for r in engine.db.query("SELECT image_id FROM containers")}
    removed_any = True
    while removed_any:  # children first: a parent is deletable once its children are gone
        removed_any = False
        parents = {
            r[0] for r in engine.db.query("SELECT parent FROM images WHERE parent IS NOT NULL")
        }
        for image_id in sorted(cached):
            if store.tags_of(image_id) or image_id in used or image_id in parents:
                continue
            try:
                store.delete_image(image_id)
            except Exception:
                continue
            cached.discard(image_id)
            removed_any = True
    store.prune_layers()
    mounts = os.path.join(engine.root, "build-cache")
    if os.path.isdir(mounts):
        remove_tree(mounts, ignore_errors=True)
    return [r["key"][7:19] for r in rows], max(before - store.disk_usage(), 0)
