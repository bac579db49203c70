"""A container's networking, as the engine asks ``network.endpoints`` for it.

The engine owns what a container is: its record's HostConfig (network mode, port
bindings, ExtraHosts, Dns), its name and ID (the names its endpoints answer to), its
directory (hosts, resolv.conf) and its process (the namespace's path). This module turns
those into the explicit values ``network.endpoints`` works on, so nothing under
``network/`` reads a container record or the containers table.
"""

from __future__ import annotations

from dockyard import _json as json
from dockyard.engine import states
from dockyard.errors import Conflict, NotFound
from dockyard.network import endpoints
from dockyard.network.endpoints import is_own_namespace, network_mode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.engine.containers import Engine

__all__ = [
    "admit",
    "check",
    "connect",
    "disconnect",
    "dns_names",
    "netns_for",
    "plumb",
    "ports_text",
    "prepare",
    "record",
    "release",
    "rename",
    "settings",
    "withdraw",
]


def dns_names(cid: str, name: str) -> list[str]:
    """The names a container's endpoints answer to besides their aliases: its name and short
    ID, as Docker's embedded DNS."""
    return [name, cid[:12]]


def record(c: Any, engine: Engine, cid: str, name: str, host: dict[str, Any],
           endpoints_cfg: dict[str, Any]) -> None:  # fmt: skip
    """At create, in its transaction: the endpoint on the network mode's network, then one
    on each other network NetworkingConfig.EndpointsConfig names (API 1.44: a container
    may be created on several networks at once, as Compose does)."""
    mode = network_mode(host)

    def add(network: str, cfg: dict[str, Any]) -> None:
        endpoints.record(c, engine.networks, cid, network, name, dns_names(cid, name),
                         list((cfg or {}).get("Aliases") or []),
                         ((cfg or {}).get("IPAMConfig") or {}).get("IPv4Address") or "")  # fmt: skip

    if not is_own_namespace(mode):  # no endpoint (aliases or an address are refused there)
        add(mode, next(iter(endpoints_cfg.values()), {}) if endpoints_cfg else {})
        return
    net = engine.networks.get(mode)
    primary = next((k for k in endpoints_cfg if k in (net["name"], net["id"], mode)), None)
    if primary is None and len(endpoints_cfg) == 1:
        primary = next(iter(endpoints_cfg))  # its one config, under another spelling ("default")
    add(mode, endpoints_cfg.get(primary) or {} if primary else {})
    for key, cfg in endpoints_cfg.items():
        if key != primary:
            add(key, cfg)


def _bindings(host: dict[str, Any], config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(container port/proto, host ip, host port or "") to publish, from HostConfig's
    PortBindings and, with PublishAllPorts, Config's ExposedPorts."""
    out = []
    for port, binds in (host.get("PortBindings") or {}).items():
        for b in binds or [{}]:
            out.append((port, b.get("HostIp") or "", b.get("HostPort") or ""))
    if host.get("PublishAllPorts"):
        bound = {p for p, _, _ in out}
        out += [(p, "", "") for p in sorted(config.get("ExposedPorts") or {}) if p not in bound]
    return out


def prepare(engine: Engine, cid: str) -> list[dict[str, Any]]:
    """At start, before the runtime creates the namespace: addresses and host ports, then
    the container's hosts and resolv.conf."""
    rec = engine.record(cid)
    host, config = rec["host_config"], rec["config"]
    mode = network_mode(host)
    bindings = _bindings(host, config) if is_own_namespace(mode) else []
    eps = endpoints.allocate(engine.networks, cid, rec["name"], bindings)
    shared = None
    if mode.startswith("container:"):
        shared = engine.cdir(engine.lookup(mode.split(":", 1)[1]))
    endpoints.write_files(engine.cdir(cid), eps, mode, config.get("Hostname") or cid[:12], host,
                          shared)  # fmt: skip
    return eps


def netns_for(engine: Engine, cid: str) -> str | None:
    """The OCI network namespace setting: None for a new one, "host" for none at all,
    or the path of the namespace to join (``--network container:NAME``)."""
    mode = network_mode(engine.record(cid)["host_config"])
    if mode == "host":
        return "host"
    if mode.startswith("container:"):
        other = engine.refresh(engine.lookup(mode.split(":", 1)[1]))
        if other["status"] not in ("running", "paused") or not other["pid"]:
            raise Conflict(
                f"cannot join network of a non running container: {mode.split(':', 1)[1]}"
            )
        return f"/proc/{other['pid']}/ns/net"
    return None


def plumb(engine: Engine, cid: str, pid: int, eps: list[dict[str, Any]]) -> None:
    """Once the runtime created the container (``pid``): its interfaces, its ports."""
    mode = network_mode(engine.record(cid)["host_config"])
    endpoints.plumb(engine.networks, cid, f"/proc/{pid}/ns/net", mode, eps)


def release(engine: Engine, cid: str) -> None:
    """Once ``cid``'s processes are gone: its addresses and ports back, its veths gone.

    The veths go with the network namespace, which the kernel frees in the background
    once the container's last process has ended; deleting one here first would wait for
    an RCU grace period (15-25 ms on every ``run --rm``). Only where another container
    lives on in that namespace (``--network container:``, a pod's members), or processes
    may outlive the container's init (``--pid host``), are they deleted here."""
    rec = engine.record(cid)
    held = (rec["host_config"].get("PidMode") or "") == "host" or any(
        network_mode(json.loads(r["host_config"]))
        in (f"container:{cid}", f"container:{rec['name']}")
        for r in engine.db.query(
            "SELECT c.host_config FROM containers c JOIN container_state s ON s.id = c.id "
            "WHERE s.status IN ('running', 'paused') AND c.id != ? AND c.host_config LIKE ?",
            (cid, '%"container:%'),
        )
    )
    endpoints.release(engine.networks, cid, unplug=held)


def settings(engine: Engine, cid: str, rec: dict[str, Any] | None = None,
             prefetched: Any = None) -> dict[str, Any]:  # fmt: skip
    """Docker's NetworkSettings for ``inspect`` (of ``rec`` when the caller has it, with what
    ``prefetch`` read for a listing)."""
    rec = rec if rec is not None else engine.record(cid)
    return endpoints.settings(engine.networks, cid, network_mode(rec["host_config"]),
                              rec["config"].get("ExposedPorts") or {}, rec["pid"], prefetched)  # fmt: skip


def prefetch(engine: Engine, cids: list[str]) -> Any:
    """Many containers' endpoints and ports in two queries, for ``settings``."""
    return endpoints.prefetch(engine.db, cids)


def ports_text(engine: Engine, cid: str) -> str:
    return endpoints.ports_text(
        engine.db, cid, engine.record(cid)["config"].get("ExposedPorts") or {}
    )


def rename(c: Any, cid: str, name: str) -> None:
    """In the rename's transaction: the names the container's endpoints answer to."""
    endpoints.rename(c, cid, name, dns_names(cid, name))


def publish(
    engine: Engine,
    cid: str,
    bindings: dict[str, list[dict[str, str]]],
    taking_from: str | None = None,
) -> None:
    """Publish ``bindings`` (HostConfig.PortBindings' shape) for running container ``cid``,
    taking over the host ports that container ``taking_from`` holds (a rollout's handover,
    see ``endpoints.publish``); ``cid``'s HostConfig records them, so a restart keeps them."""
    rec = engine.record(cid)
    flat = [(port, b.get("HostIp") or "", str(b.get("HostPort") or ""))
            for port, items in bindings.items() for b in items or [{}]]  # fmt: skip
    endpoints.publish(engine.networks, cid, rec["name"], flat, taking_from)
    host = dict(rec["host_config"])
    merged = {k: list(v or []) for k, v in (host.get("PortBindings") or {}).items()}
    for port, items in bindings.items():
        merged.setdefault(port, []).extend(items or [])
    host["PortBindings"] = merged
    engine.set_host_config(cid, host)


def withdraw(engine: Engine, cid: str) -> None:
    """Take the container out of its networks' DNS (its addresses stay until it stops): a
    rollout does this before it stops an old replica, so that names only lead to ones
    that still answer."""
    with engine.db.tx() as c:
        c.execute("UPDATE endpoints SET dns_names = '[]' WHERE container_id = ?", (cid,))


def admit(engine: Engine, cid: str) -> None:
    """Put the container (back) in its networks' DNS under its names and aliases."""
    name = engine.record(cid)["name"]
    with engine.db.tx() as c:
        endpoints.rename(c, cid, name, dns_names(cid, name))


def connect(engine: Engine, network: str, container: str, aliases: list[str], ip: str = "") -> None:
    """``network connect``: record the endpoint; plumb it now if the container runs."""
    cid = engine.lookup(container)
    rec = engine.refresh(cid)
    mode = network_mode(rec["host_config"])
    if not is_own_namespace(mode):
        raise Conflict(
            "container sharing network namespace with another container or host cannot be "
            f"connected to any other network ({rec['name']} uses --network {mode})"
        )
    running = rec["status"] in ("running", "paused") and rec["pid"]
    net = endpoints.attach(engine.networks, cid, rec["name"], dns_names(cid, rec["name"]), network,
                           aliases, ip, f"/proc/{rec['pid']}/ns/net" if running else None)  # fmt: skip
    engine.db.emit("network", "connect", net["id"], container=cid, name=net["name"], type="bridge")


def disconnect(engine: Engine, network: str, container: str, force: bool = False) -> None:
    cid = engine.lookup(container)
    net = endpoints.detach(engine.networks, cid, network, force)
    if net is not None:
        engine.db.emit(
            "network", "disconnect", net["id"], container=cid, name=net["name"], type="bridge"
        )


def check(engine: Engine, repair: bool = False) -> list[tuple[str, str]]:
    """``system check``'s networking findings (and repairs)."""

    def live(cid: str) -> bool:
        try:
            return engine.refresh(cid)["status"] in states.LIVE
        except NotFound:  # a record gone meanwhile holds nothing that runs
            return False

    return endpoints.check(engine.networks, live, repair)
