"""What ``ps``, ``images``, ``volume ls`` and ``network ls`` select, with Docker's filters.

Every face asks here: the CLI parses ``--filter`` into :class:`dockyard.filters.Filters`,
the API server reads its ``filters`` parameter into the same object. The keys each list
accepts are Docker's (dockerd refuses others in one line, and so does this).
"""

from __future__ import annotations

import time

from dockyard import _json as json
from dockyard.engine import states
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.filters import Filters
from dockyard.image import reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.engine.containers import Engine
    from dockyard.image.store import ImageStore

__all__ = [
    "CONTAINER_FILTERS",
    "IMAGE_FILTERS",
    "NETWORK_FILTERS",
    "VOLUME_FILTERS",
    "container_summaries",
    "container_summary",
    "containers",
    "image_summary",
    "images",
    "networks",
    "reference_matches",
    "status_text",
    "volumes",
]  # fmt: skip

CONTAINER_FILTERS = ("ancestor", "before", "exited", "health", "id", "label", "label!", "name",
                     "network", "since", "status", "volume")  # fmt: skip
IMAGE_FILTERS = ("before", "dangling", "label", "label!", "reference", "since")
VOLUME_FILTERS = ("dangling", "driver", "label", "label!", "name")
NETWORK_FILTERS = ("dangling", "driver", "id", "label", "label!", "name", "scope", "type")

_HEALTH = ("starting", "healthy", "unhealthy", "none")
_PREDEFINED_NETWORKS = ("bridge", "host", "none")


def _filters(filters: Filters | None, allowed: tuple[str, ...]) -> Filters:
    return (filters or Filters()).check(allowed)


def containers(engine: Engine, all_: bool = False, filters: Filters | None = None,
               limit: int = -1) -> list[dict[str, Any]]:  # fmt: skip
    """Container records, newest first, as ``docker ps``: running ones unless ``all_``, a
    ``limit`` or a ``status`` filter asks for others (moby's rules)."""
    flt = _filters(filters, CONTAINER_FILTERS)
    for value in flt.get("status"):
        if value not in states.STATUSES:
            raise InvalidArgument(f"invalid filter 'status={value}'")
    for value in flt.get("health"):
        if value not in _HEALTH:
            raise InvalidArgument(f"invalid filter 'health={value}'")
    for value in flt.get("exited"):
        if not value.lstrip("-").isdigit():
            raise InvalidArgument(f"invalid filter 'exited={value}'")
    ancestors = {
        v: _image_id(engine, v) for v in flt.get("ancestor")
    }  # resolved once, not per container
    everything = engine.list(True)
    bounds = {key: _container_bound(engine, flt.get(key)) for key in ("before", "since")}
    show_all = all_ or limit > 0 or "status" in flt or any(bounds.values())
    out = []
    for rec in everything:
        if not show_all and rec["status"] not in ("running", "paused", "restarting"):
            continue
        if bounds["before"] and not rec["created"] < bounds["before"]["created"]:
            continue
        if bounds["since"] and not rec["created"] > bounds["since"]["created"]:
            continue
        if _container_matches(engine, flt, rec, ancestors):
            out.append(rec)
    return out[:limit] if limit > 0 else out


def _container_bound(engine: Engine, refs: list[str]) -> dict[str, Any] | None:
    if not refs:
        return None
    return engine.record(engine.lookup(refs[-1]))


def _container_matches(
    engine: Engine, flt: Filters, rec: dict[str, Any], ancestors: dict[str, str | None]
) -> bool:
    if not flt:
        return True
    cid, name = rec["id"], rec["name"]
    labels = rec["config"].get("Labels") or {}
    health = (json.loads(rec["health"]).get("Status") if rec.get("health") else None) or "none"
    return (
        flt.match("id", cid.startswith)
        and (flt.name("name", name) or flt.name("name", "/" + name))
        and flt.labels(labels)
        and flt.match("status", lambda v: rec["status"] == v)
        and flt.match("exited", lambda v: rec["status"] == "exited" and rec["exit_code"] == int(v))
        and flt.match("health", lambda v: health == v)
        and flt.match("ancestor", lambda v: _ancestor(rec, v, ancestors[v]))
        and flt.match("network", lambda v: _on_network(engine, cid, v))
        and flt.match("volume", lambda v: _uses_volume(engine, rec, v))
    )


def _image_id(engine: Engine, name: str) -> str | None:
    """The image a name (``busybox``, ``busybox:latest``, an ID prefix) means now."""
    try:
        return engine.images.resolve(name)
    except DockyardError:  # not a reference, or no such image: nothing descends from it
        return None


def _ancestor(rec: dict[str, Any], value: str, image_id: str | None) -> bool:
    return (rec["image_ref"] == value or rec["image_id"] == image_id or rec["image_id"].startswith(value)
            or rec["image_id"].removeprefix("sha256:").startswith(value))  # fmt: skip


def _on_network(engine: Engine, cid: str, value: str) -> bool:
    rows = engine.db.query(
        "SELECT n.id, n.name FROM endpoints e JOIN networks n ON n.id = e.network_id"
        " WHERE e.container_id = ?", (cid,))  # fmt: skip
    return any(r["name"] == value or r["id"].startswith(value) for r in rows)


def _uses_volume(engine: Engine, rec: dict[str, Any], value: str) -> bool:
    named = engine.db.query(
        "SELECT 1 FROM container_volumes WHERE container_id = ? AND volume = ?", (rec["id"], value)
    )
    if named:
        return True
    binds = rec["host_config"].get("Binds") or []
    return any(b.split(":")[1:2] == [value] or b.split(":")[0] == value for b in binds)


def reference_matches(tags: list[str], pattern: str) -> list[str]:
    """The tags whose familiar name, with or without its tag, matches ``pattern``."""
    import fnmatch  # only a reference filter needs it (it imports re)

    out = []
    for t in tags:
        ref = reference.parse(t)
        if fnmatch.fnmatchcase(ref.familiar(), pattern) or fnmatch.fnmatchcase(
            ref.familiar_name, pattern
        ):
            out.append(t)
    return out


def images(store: ImageStore, filters: Filters | None = None, all_: bool = False,
           ids: list[str] | None = None) -> list[tuple[Any, list[str]]]:  # fmt: skip
    """(image row, the tags to show) for each image ``docker images`` lists: intermediate
    images only with ``all_``; ``ids`` limits the candidates (prune's)."""
    flt = _filters(filters, IMAGE_FILTERS)
    dangling = flt.bool_value("dangling")
    rows = list(store.images())
    parents = {r["parent"] for r in rows if r["parent"]}
    by_id = {r["id"]: r for r in rows}
    bounds = {
        key: [by_id[store.resolve(v)]["created"] for v in flt.get(key)]
        for key in ("before", "since")
    }
    out = []
    for row in rows:
        if ids is not None and row["id"] not in ids:
            continue
        tags = store.tags_of(row["id"])
        if ids is None and not all_ and not tags and row["id"] in parents:
            continue  # an intermediate image, which Docker hides
        if dangling is not None and (not tags) != dangling:
            continue
        if any(not row["created"] < b for b in bounds["before"]):
            continue
        if any(not row["created"] > b for b in bounds["since"]):
            continue
        labelled = "label" in flt or "label!" in flt
        if labelled and not flt.labels((store.config(row["id"]).get("config") or {}).get("Labels")):
            continue
        if "reference" in flt:
            tags = [t for t in tags if any(reference_matches([t], p) for p in flt.get("reference"))]
            if not tags:
                continue
        out.append((row, tags))
    return out


def volumes(engine: Engine, filters: Filters | None = None) -> list[dict[str, Any]]:
    """Volume rows, by name, as ``docker volume ls``."""
    flt = _filters(filters, VOLUME_FILTERS)
    dangling = flt.bool_value("dangling")
    vols = engine.volumes
    out = []
    for row in vols.list():
        if dangling is not None and (not vols.users(row["name"])) != dangling:
            continue
        if not (flt.name("name", row["name"]) and flt.match("driver", lambda v, r=row: r["driver"] == v)
                and flt.labels(json.loads(row["labels"]))):  # fmt: skip
            continue
        out.append(row)
    return out


def networks(engine: Engine, filters: Filters | None = None) -> list[dict[str, Any]]:
    """Network records, by name, as ``docker network ls``."""
    flt = _filters(filters, NETWORK_FILTERS)
    for value in flt.get("type"):
        if value not in ("custom", "builtin"):
            raise InvalidArgument(f"invalid filter 'type={value}'")
    dangling = flt.bool_value("dangling")
    store = engine.networks
    out = []
    for net in store.list():
        builtin = net["name"] in _PREDEFINED_NETWORKS
        if dangling is not None and (builtin or bool(store.users(net["id"]))) == dangling:
            continue
        if not (flt.name("name", net["name"]) and flt.match("id", net["id"].startswith)
                and flt.match("driver", lambda v, n=net: n["driver"] == v)
                and flt.match("scope", lambda v: v == "local")
                and flt.match("type", lambda v, b=builtin: (v == "builtin") == b)
                and flt.labels(net["labels"])):  # fmt: skip
            continue
        out.append(net)
    return sorted(out, key=lambda n: n["name"])


def status_text(rec: dict[str, Any], now: float | None = None) -> str:
    """Docker's human status: ``Up 3 minutes (healthy)``, ``Exited (0) 2 seconds ago``."""
    from dockyard.clock import parse_time
    from dockyard.units import human_duration

    now = time.time() if now is None else now
    status = rec["status"]
    if status == "running":
        health = json.loads(rec["health"])["Status"] if rec.get("health") else ""
        suffix = {"starting": " (health: starting)", "healthy": " (healthy)",
                  "unhealthy": " (unhealthy)"}  # fmt: skip
        return "Up " + human_duration(now - parse_time(rec["started_at"])) + suffix.get(health, "")
    if status == "paused":
        return "Up " + human_duration(now - parse_time(rec["started_at"])) + " (Paused)"
    if status in ("restarting", "exited"):
        ago = human_duration(now - parse_time(rec["finished_at"]))
        return f"{status.capitalize()} ({rec['exit_code']}) {ago} ago"
    return status.capitalize()


def container_summaries(engine: Engine, recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Docker's ContainerSummary of each record, their networking read in one go."""
    from dockyard.engine.networking import prefetch

    fetched = prefetch(engine, [r["id"] for r in recs])
    return [container_summary(engine, rec, fetched) for rec in recs]


def container_summary(
    engine: Engine, rec: dict[str, Any], prefetched: Any = None
) -> dict[str, Any]:
    """Docker's ContainerSummary (``GET /containers/json``) of one record."""
    from dockyard.clock import parse_time
    from dockyard.engine.inspect import mount_points
    from dockyard.engine.networking import settings

    cfg, host = rec["config"], rec["host_config"]
    net = settings(engine, rec["id"], rec, prefetched)
    ports = []
    for key, bindings in net["Ports"].items():
        number, _, proto = key.partition("/")
        if not bindings:
            ports.append({"PrivatePort": int(number), "Type": proto})
        for b in bindings or []:
            ports.append({"IP": b["HostIp"], "PrivatePort": int(number),
                          "PublicPort": int(b["HostPort"]), "Type": proto})  # fmt: skip
    return {
        "Id": rec["id"], "Names": ["/" + rec["name"]], "Image": rec["image_ref"],
        "ImageID": rec["image_id"],
        "Command": " ".join(list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])),
        "Created": int(parse_time(rec["created"])), "Ports": ports, "Labels": cfg.get("Labels") or {},
        "State": rec["status"], "Status": status_text(rec),
        "HostConfig": {"NetworkMode": host.get("NetworkMode") or "default"},
        "NetworkSettings": {"Networks": net["Networks"]}, "Mounts": mount_points(host),
    }  # fmt: skip


def image_summary(
    store: ImageStore, row: Any, tags: list[str], containers: int = -1
) -> dict[str, Any]:
    """Docker's ImageSummary (``GET /images/json``) of one image row."""
    from dockyard.clock import parse_time
    from dockyard.image import reference

    cfg = store.config(row["id"]).get("config") or {}
    return {
        "Id": row["id"], "ParentId": row["parent"] or "",
        "RepoTags": [reference.parse(t).familiar() for t in tags],
        "RepoDigests": [reference.parse(d).familiar() for d in store.digests_of(row["id"])],
        "Created": int(parse_time(row["created"])), "Size": row["size"], "VirtualSize": row["size"],
        "SharedSize": -1, "Labels": cfg.get("Labels") or {}, "Containers": containers,
    }  # fmt: skip
