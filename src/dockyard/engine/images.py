"""Image operations with Docker's rules, for every face of the engine (CLI, API).

``remove`` is ``docker rmi`` / ``DELETE /images/{name}`` (moby's ``ImageDelete``):

- by name: that reference is untagged; when it was the last tag of its repository, the
  repository's digest references (``repo@sha256:...``, which a pull records) go with it;
  when no reference is left, the image is deleted;
- by ID: every reference goes and the image is deleted; an image with tags in several
  repositories needs ``force``;
- an image a container uses is not deleted: a running one refuses even with ``force``,
  a stopped one refuses without it (and with it, the names go but the image stays).

The result is Docker's list of ``{"Untagged": ref}`` and ``{"Deleted": id}``.
"""

from __future__ import annotations

from dockyard.errors import Conflict
from dockyard.filters import Filters
from dockyard.image import reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.engine.containers import Engine
    from dockyard.image.store import ImageStore

__all__ = ["history", "inspect", "is_id_reference", "prune", "remove"]

_PRUNE_FILTERS = ("label", "label!")


def is_id_reference(name: str) -> bool:
    hexpart = name.removeprefix("sha256:")
    return 0 < len(hexpart) <= 64 and all(c in "0123456789abcdef" for c in hexpart)


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _repository(ref: str) -> str:
    """``reg/team/box`` of ``reg/team/box:1`` or ``reg/team/box@sha256:...``."""
    if "@" in ref:
        return ref.split("@", 1)[0]
    head, sep, tail = ref.rpartition(":")
    return head if sep and "/" not in tail else ref


def _single_reference(tags: list[str], digests: list[str]) -> bool:
    """moby's isSingleReference: at most one tag, and digest references only of its
    repository (or of one repository, without a tag)."""
    if len(tags) + len(digests) <= 1:
        return True
    if len(tags) > 1:
        return False
    repos = {_repository(d) for d in digests}
    single = _repository(tags[0]) if tags else _repository(digests[0])
    return repos == {single}


def remove(
    engine: Engine, name: str, force: bool = False, prune_parents: bool = True
) -> list[dict[str, str]]:
    """Remove image reference ``name`` (or the image, by ID), as ``docker rmi``: once the
    image goes, so do its untagged parents that nothing else uses (unless ``prune_parents``
    is false: the API's ``noprune``)."""
    store = engine.images
    image_id = store.resolve(name)
    tags = store.tags_of(image_id)
    users = engine.users_of_image(image_id)
    running = [u for u in users if u["status"] in ("running", "paused", "restarting")]
    by_id = is_id_reference(name) and _short(image_id).startswith(name.removeprefix("sha256:")[:12])
    # Docker refuses only when this rmi would delete the image, not when it just untags.
    would_delete = by_id or len(tags) <= 1
    if running and would_delete:
        raise Conflict(f"conflict: unable to delete {_short(image_id)} (cannot be forced) - image is "
                       f"being used by running container {running[0]['id'][:12]}")  # fmt: skip
    if users and would_delete and not force:
        raise Conflict(f'conflict: unable to remove repository reference "{name}" (must force) - container '
                       f"{users[0]['id'][:12]} is using its referenced image {_short(image_id)}")  # fmt: skip
    out: list[dict[str, Any]] = []
    if by_id:
        if not force and not _single_reference(tags, store.digests_of(image_id)):
            raise Conflict(f"conflict: unable to delete {_short(image_id)} (must be forced) - "
                           "image is referenced in multiple repositories")  # fmt: skip
        for ref in [*tags, *store.digests_of(image_id)]:
            out.append({"Untagged": store.untag(ref)})
    else:
        gone = store.untag(name)
        out.append({"Untagged": gone})
        repo = _repository(gone)
        if "@" not in gone and not any(_repository(t) == repo for t in store.tags_of(image_id)):
            for ref in store.digests_of(image_id):
                if _repository(ref) == repo:
                    out.append({"Untagged": store.untag(ref)})
        if store.tags_of(image_id) or store.digests_of(image_id):
            return out
    if users:
        return out  # forced: the names go, the image stays for its stopped containers
    parent = _parent(store, image_id)
    store.delete_image(image_id)
    out.append({"Deleted": image_id})
    while prune_parents and parent and _unused_untagged(engine, parent):
        above = _parent(store, parent)
        store.delete_image(parent)
        out.append({"Deleted": parent})
        parent = above
    return out


def _parent(store: ImageStore, image_id: str) -> str | None:
    rows = store.db.query("SELECT parent FROM images WHERE id = ?", (image_id,))
    return rows[0]["parent"] if rows and rows[0]["parent"] else None


def _unused_untagged(engine: Engine, image_id: str) -> bool:
    """An image nothing names, no container uses and no other image has as its parent."""
    store = engine.images
    if not store.db.query("SELECT 1 FROM images WHERE id = ?", (image_id,)):
        return False
    if store.tags_of(image_id) or store.digests_of(image_id) or engine.users_of_image(image_id):
        return False
    return not store.db.query("SELECT 1 FROM images WHERE parent = ? LIMIT 1", (image_id,))


def prune(
    store: ImageStore, all_: bool, filters: Filters | None = None
) -> tuple[list[dict[str, str]], int]:
    """Remove dangling images (all unused ones with ``all_``): Docker's ImageDeleteResponseItem
    records (``{"Untagged": ref}``, ``{"Deleted": id}``), and the bytes freed on disk."""
    from dockyard.engine import listing

    before = store.disk_usage()
    lines = []
    flt = (filters or Filters()).check(_PRUNE_FILTERS)
    in_use = {r[0] for r in store.db.query("SELECT DISTINCT image_id FROM containers")}
    targets = [r["id"] for r in store.images()] if all_ else store.dangling()
    for image_id in [t for t in targets if t not in in_use]:  # an image a container has stays
        if flt and not listing.images(store, flt, ids=[image_id]):
            continue
        for t in store.tags_of(image_id) + store.digests_of(image_id):
            lines.append({"Untagged": store.untag(t)})
        store.delete_image(image_id)
        lines.append({"Deleted": image_id})
    return lines, max(before - store.disk_usage(), 0)


def inspect(store: ImageStore, image_id: str) -> dict[str, Any]:
    """Docker's ImageInspect object for an image."""
    cfg = store.config(image_id)
    row = store.db.query("SELECT * FROM images WHERE id = ?", (image_id,))[0]
    tags = store.tags_of(image_id)
    layers = store.layers(image_id)
    return {
        "Id": image_id,
        "RepoTags": [reference.parse(t).familiar() for t in tags],
        "RepoDigests": [reference.parse(d).familiar() for d in store.digests_of(image_id)],
        "Parent": row["parent"] or "",
        "Comment": next((h.get("comment", "") for h in reversed(cfg.get("history") or [])), ""),
        "Created": cfg.get("created", ""),
        "Container": cfg.get("container", ""),
        "DockerVersion": cfg.get("docker_version", ""),
        "Author": cfg.get("author", ""),
        "Config": cfg.get("config") or {},
        "Architecture": cfg.get("architecture", ""),
        "Variant": cfg.get("variant", ""),
        "Os": cfg.get("os", ""),
        "Size": row["size"],
        "VirtualSize": row["size"],
        "GraphDriver": {
            "Name": store.snapshotter_name,
            "Data": {
                "LowerDir": ":".join(
                    store.snapshots.fs(layer.chain_id) for layer in reversed(layers)
                )
            },
        },
        "RootFS": {"Type": "layers", "Layers": [layer.diff_id for layer in layers]},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


def history(store: ImageStore, image_id: str) -> list[dict[str, Any]]:
    """Docker's image history (``GET /images/{name}/history``), newest first: the image's
    own ID on the top entry, ``<missing>`` below (layers made elsewhere have no image)."""
    from dockyard.clock import parse_time

    cfg = store.config(image_id)
    layers = store.layers(image_id)
    tags = [reference.parse(t).familiar() for t in store.tags_of(image_id)]
    items = []
    layer_i = 0
    for entry in cfg.get("history") or []:
        size = 0
        if not entry.get("empty_layer"):
            size = layers[layer_i].size if layer_i < len(layers) else 0
            layer_i += 1
        items.append({"Id": "<missing>", "Created": int(parse_time(entry.get("created", ""))),
                      "CreatedBy": entry.get("created_by", ""), "Tags": None, "Size": size,
                      "Comment": entry.get("comment", "")})  # fmt: skip
    items.reverse()
    if items:
        items[0].update({"Id": image_id, "Tags": tags or None})
    return items
