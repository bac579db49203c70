"""System-wide calls as Docker offers them: ``info`` (``GET /info``), the build cache's
prune, and ``system prune``'s sequence."""

from __future__ import annotations

import os
import platform

from dockyard.engine import states
from dockyard.errors import NotFound
from dockyard.fsutil import remove_tree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.engine.containers import Engine

__all__ = ["df", "disk_usage", "info", "prune", "prune_build_cache"]


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            return next((line.split("=", 1)[1].strip().strip('"') for line in f
                         if line.startswith("PRETTY_NAME=")), "Linux")  # fmt: skip
    except OSError:
        return "Linux"


def info(engine: Engine) -> dict[str, Any]:
    """Docker's SystemInfo for this engine and host."""
    from dockyard import __version__
    from dockyard.runtime import cgroups

    states = [r["status"] for r in engine.list(all_=True)]
    with open("/proc/meminfo") as f:
        total_kib = int(f.readline().split()[1])
    out = {
        "ID": "", "Containers": len(states), "ContainersRunning": states.count("running"),
        "ContainersPaused": states.count("paused"),
        "ContainersStopped": len(states) - states.count("running") - states.count("paused"),
        "Images": sum(1 for _ in engine.images.images()), "ServerVersion": __version__,
        "Driver": engine.images.snapshotter_name, "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2" if cgroups.detect() == "v2" else "1", "KernelVersion": platform.release(),
        "OperatingSystem": _os_name(), "OSType": "linux", "Architecture": platform.machine(),
        "NCPU": os.cpu_count() or 1, "MemTotal": total_kib * 1024, "Name": platform.node(),
        "DockerRootDir": engine.root, "DefaultRuntime": "dockyard-runtime",
        "Runtimes": {"dockyard-runtime": {}, "runc": {"path": "runc"}, "crun": {"path": "crun"}},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
    }  # fmt: skip
    from dockyard import rootless

    if rootless.active():
        out["SecurityOptions"].append("name=rootless")
        out["Rootless"] = rootless.describe(engine.images.snapshotter_name)
        out["CgroupDriver"] = "none"
    return out


def prune_build_cache(engine: Engine) -> tuple[list[str], int]:
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
            except Exception:  # one image that will not go must not keep the rest
                continue
            cached.discard(image_id)
            removed_any = True
    store.prune_layers()
    mounts = os.path.join(engine.root, "build-cache")
    if os.path.isdir(mounts):
        remove_tree(mounts, ignore_errors=True)
    return [r["key"][7:19] for r in rows], max(before - store.disk_usage(), 0)


def prune(
    engine: Engine, all_images: bool, volumes: bool
) -> tuple[list[tuple[str, list[str]]], int]:
    """``system prune``: stopped containers, unused networks, (anonymous volumes,) the build
    cache, then dangling (or all unused) images; ([(section title, removed items)], bytes freed),
    titled as the docker CLI prints them."""
    from dockyard.engine.images import prune as prune_images

    sections = [("Deleted Containers", engine.prune()),
                ("Deleted Networks", engine.networks.prune())]  # fmt: skip
    freed = 0
    if volumes:
        gone, size = engine.volumes.prune(False)
        sections.append(("Deleted Volumes", gone))
        freed += size
    removed, size = prune_build_cache(engine)  # before the images: the cache holds some
    freed += size
    records, size = prune_images(engine.images, all_images)
    lines = [f"{kind.lower()}: {value}" for r in records for kind, value in r.items()]
    sections += [("Deleted Images", lines), ("Deleted build cache objects", removed)]
    return sections, freed + size


def disk_usage(engine: Engine) -> dict[str, dict[str, int]]:
    """``system df``: per kind, total/active counts and bytes on disk, and what prune frees.

    Measured on disk (each inode once): images are their blobs and unpacked
    layers, containers their writable layers and logs, volumes their data.
    """
    from dockyard.image.store import du

    store = engine.images
    containers = engine.list(all_=True)
    used_images = {c["image_id"] for c in containers}
    seen: set[tuple[int, int]] = set()
    used_bytes = 0
    for image_id in used_images:
        try:
            layers = store.layers(image_id)
        except NotFound:
            continue
        row = store.db.query("SELECT manifest_digest FROM images WHERE id = ?", (image_id,))
        for digest in [
            image_id,
            *[r["manifest_digest"] for r in row],
            *[lay.blob_digest for lay in layers],
        ]:
            if store.content.exists(digest):
                used_bytes += _file_bytes(store.content.path(digest), seen)
        for layer in layers:
            used_bytes += du(store.snapshots.fs(layer.chain_id), seen)
    image_bytes = used_bytes + du(store.content.root, seen)
    for info in store.snapshots.list():
        if info.kind == "committed":
            image_bytes += du(store.snapshots.fs(info.name), seen)
    images = store.db.query("SELECT COUNT(*) FROM images")[0][0]
    ctr_total = ctr_free = 0
    for c in containers:
        cdir = engine.cdir(c["id"])
        # its own files (logs, config), not the mounted rootfs inside the same directory
        size = sum(os.lstat(os.path.join(cdir, n)).st_blocks * 512 for n in os.listdir(cdir)
                   if os.path.isfile(os.path.join(cdir, n))) if os.path.isdir(cdir) else 0  # fmt: skip
        if store.snapshots.exists(c["id"]):
            size += du(store.snapshots.fs(c["id"]))
        ctr_total += size
        if c["status"] not in states.LIVE:
            ctr_free += size
    vol_total = vol_free = vol_active = 0
    vols = engine.volumes.list()
    for v in vols:
        size = du(engine.volumes.path(v["name"]))
        vol_total += size
        if engine.volumes.users(v["name"]):
            vol_active += 1
        else:
            vol_free += size
    return {
        "Images": {"total": images, "active": len(used_images), "size": image_bytes,
                   "reclaimable": image_bytes - used_bytes},
        "Containers": {"total": len(containers), "size": ctr_total, "reclaimable": ctr_free,
                       "active": sum(c["status"] in ("running", "paused") for c in containers)},
        "Local Volumes": {"total": len(vols), "active": vol_active, "size": vol_total, "reclaimable": vol_free},
        "Build Cache": {"total": 0, "active": 0, "size": 0, "reclaimable": 0},
    }  # fmt: skip


def _file_bytes(path: str, seen: set[tuple[int, int]]) -> int:
    st = os.lstat(path)
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return 0
    seen.add(key)
    return st.st_blocks * 512


def df(engine: Engine) -> dict[str, Any]:
    """Docker's DiskUsage (``GET /system/df``): the figures of ``disk_usage`` per object."""
    from dockyard.engine import listing
    from dockyard.image.store import du

    store = engine.images
    usage = disk_usage(engine)
    recs = engine.list(all_=True)
    images = []
    for row, tags in listing.images(store, None, all_=True):
        users = sum(1 for r in recs if r["image_id"] == row["id"])
        summary = listing.image_summary(store, row, tags, users)
        summary["SharedSize"] = 0  # the docker CLI counts an image in use only when it is known
        images.append(summary)
    containers = []
    for rec, summary in zip(recs, listing.container_summaries(engine, recs), strict=True):
        size = du(store.snapshots.fs(rec["id"])) if store.snapshots.exists(rec["id"]) else 0
        image = store.db.query("SELECT size FROM images WHERE id = ?", (rec["image_id"],))
        summary.update(SizeRw=size, SizeRootFs=size + (image[0]["size"] if image else 0))
        containers.append(summary)
    volumes = []
    for vol in engine.volumes.list():
        item = engine.volumes.inspect(vol["name"])
        item["UsageData"] = {"Size": du(engine.volumes.path(vol["name"])),
                             "RefCount": len(engine.volumes.users(vol["name"]))}  # fmt: skip
        volumes.append(item)
    return {"LayersSize": usage["Images"]["size"], "Images": images, "Containers": containers,
            "Volumes": volumes, "BuildCache": []}  # fmt: skip
