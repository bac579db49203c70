"""Endpoints: a namespace's place on networks, recorded at create, plumbed at each start,
released at each exit. Everything here works on explicit values — an endpoint's ID (the
container ID the engine gives), its name and the DNS names it answers to, a network mode,
port bindings, a network namespace's path; the engine (``engine.networking``) reads them
from its container records. Nothing here knows what a container is.

- ``record`` (create, ``network connect``): which networks, names, aliases, asked-for address.
- ``allocate`` (start, before the runtime creates the namespace): addresses and host
  ports in one transaction; ``write_files`` then writes hosts and resolv.conf.
- ``plumb`` (start, once the namespace exists): bridges on demand, a veth per network,
  the default route; firewall rewritten if ports are published.
- ``release`` (exit, stop, removal): veths removed, addresses and ports returned.
"""

from __future__ import annotations

import os

from dockyard import _json as json
from dockyard.errors import Conflict, InvalidArgument
from dockyard.network import ipam
from dockyard.network.store import NetworkStore, endpoint_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable
    from typing import Any

    from dockyard.metadata import Database

__all__ = [
    "allocate",
    "attach",
    "check",
    "detach",
    "is_own_namespace",
    "network_mode",
    "parse_publish",
    "plumb",
    "ports_text",
    "record",
    "release",
    "rename",
    "settings",
    "write_files",
]

_EPHEMERAL = (49153, 65535)


def network_mode(host: dict[str, Any]) -> str:
    mode = host.get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode


def is_own_namespace(mode: str) -> bool:
    """Whether a network mode gives the container a namespace of its own, with endpoints."""
    return mode not in ("host", "none") and not mode.startswith("container:")


def parse_publish(spec: str) -> list[tuple[str, str, str, str]]:
    """Docker's ``-p``: ``[IP:][HOSTPORT:]PORT[/PROTO]`` and equal-length ranges ->
    [(container_port/proto, host_ip, host_port or "")]."""
    rest, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    parts = rest.rsplit(":", 2)
    host_ip, host_ports, ports = "", "", parts[-1]
    if len(parts) == 2:
        host_ports = parts[0]
    elif len(parts) == 3:
        host_ip, host_ports = parts[0].strip("[]"), parts[1]
    if host_ip and ipam.ip_to_int(host_ip) < 0:
        raise InvalidArgument(f"invalid IP address: {host_ip}")

    def span(text: str) -> list[int]:
        first, dash, last = text.partition("-")
        try:
            lo, hi = int(first), int(last) if dash else int(first)
        except ValueError:
            raise InvalidArgument(f"invalid containerPort: {text}" if text is ports else
                                  f"invalid hostPort: {text}") from None  # fmt: skip
        if not 0 < lo <= hi <= 65535:
            raise InvalidArgument(f"invalid port range: {text}")
        return list(range(lo, hi + 1))

    inner = span(ports)
    outer: list[int | None] = list(span(host_ports)) if host_ports else [None] * len(inner)
    if len(outer) != len(inner):
        if len(inner) == 1:  # one container port, a range of host ports: any free one of them
            raise InvalidArgument("a range of host ports for one container port is not supported")
        raise InvalidArgument(f"invalid ranges specified for container and host Ports: {spec}")
    return [
        (f"{i}/{proto}", host_ip, str(o) if o else "") for i, o in zip(inner, outer, strict=True)
    ]


def record(c: sqlite3.Connection, store: NetworkStore, eid: str, mode: str, name: str,
           dns_names: list[str], aliases: list[str], ip: str = "") -> None:  # fmt: skip
    """Endpoint ``eid`` on network ``mode`` (a network's name or ID, or host, none,
    container:X: no endpoint), named ``name`` and answering DNS for ``dns_names`` and the
    aliases, in ``c``'s transaction."""
    if not is_own_namespace(mode):
        if aliases or ip:
            raise InvalidArgument(
                "network-scoped aliases and --ip are only supported for user-defined networks"
            )
        return
    net = store.get(mode)
    if net["driver"] != "bridge":
        raise InvalidArgument(
            f"container cannot be connected to network {net['name']} (driver {net['driver']})"
        )
    if net["name"] == "bridge" and (aliases or ip):
        raise InvalidArgument(
            "network-scoped aliases and --ip are only supported for user-defined networks"
        )
    if ip and not ipam.Subnet(net["subnet"]).contains(ip):
        raise InvalidArgument(f"no configured subnet contains IP address {ip}")
    exists = c.execute(
        "SELECT 1 FROM endpoints WHERE container_id = ? AND network_id = ?", (eid, net["id"])
    )
    if exists.fetchone():
        raise Conflict(f"endpoint with name {name} already exists in network {net['name']}")
    c.execute("INSERT INTO endpoints (container_id, network_id, aliases, requested_ip, name, dns_names) "
              "VALUES (?, ?, ?, ?, ?, ?)",
              (eid, net["id"], json.dumps(list(aliases)), ip, name, json.dumps([*dns_names, *aliases])))  # fmt: skip


def rename(c: sqlite3.Connection, eid: str, name: str, dns_names: list[str]) -> None:
    """New names for every endpoint of ``eid`` (its aliases kept), in ``c``'s transaction."""
    for row in c.execute("SELECT network_id, aliases FROM endpoints WHERE container_id = ?",
                         (eid,)).fetchall():  # fmt: skip
        c.execute("UPDATE endpoints SET name = ?, dns_names = ? WHERE container_id = ? AND network_id = ?",
                  (name, json.dumps([*dns_names, *json.loads(row["aliases"])]), eid, row["network_id"]))  # fmt: skip
    c.execute("UPDATE published_ports SET name = ? WHERE container_id = ?", (name, eid))


def _endpoints(db: Database, eid: str) -> list[dict[str, Any]]:
    return [dict(r) for r in db.query(
        "SELECT e.rowid AS rowid, e.*, n.name AS network, n.bridge, n.subnet, n.gateway, n.internal "
        "FROM endpoints e JOIN networks n ON n.id = e.network_id WHERE e.container_id = ? ORDER BY e.rowid",
        (eid,))]  # fmt: skip


def _host_if(eid: str, network_id: str) -> str:
    import zlib

    return f"dy{zlib.crc32((eid + network_id).encode()):08x}"


def _port_holder(proto: str, host_ip: str, port: int) -> str | None:
    """None if the port can be bound; else who holds it (a process, if one can be found)."""
    import _socket

    kind = _socket.SOCK_STREAM if proto == "tcp" else _socket.SOCK_DGRAM
    sock = _socket.socket(_socket.AF_INET, kind)
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        sock.bind((host_ip or "0.0.0.0", port))
        return None
    except OSError:
        return _socket_owner(proto, port) or "another process of the host"
    finally:
        sock.close()


def _socket_owner(proto: str, port: int) -> str | None:
    inodes = set()
    for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    with open(f"/proc/{pid}/comm") as f:
                        return f"process {pid} ({f.read().strip()})"
        except OSError:
            continue
    return None


def allocate(store: NetworkStore, eid: str, name: str,
             bindings: list[tuple[str, str, str]]) -> list[dict[str, Any]]:  # fmt: skip
    """Addresses for ``eid``'s endpoints and host ports for ``bindings`` ((container
    port/proto, host IP, host port or "") as HostConfig.PortBindings lists them), in one
    transaction; the endpoints, in order."""
    db = store.db
    store.get("bridge")  # the predefined networks exist before any endpoint refers to them
    pending = db.query(
        "SELECT network_id FROM endpoints WHERE container_id = ? AND ip = ''", (eid,)
    )
    for ep in pending:  # a bridge to be made must not take a subnet the host routes elsewhere
        store.claim_subnet(store.get(ep["network_id"]))
    with db.tx() as c:
        for ep in c.execute("SELECT network_id, requested_ip FROM endpoints WHERE container_id = ? "
                            "AND ip = '' ORDER BY rowid", (eid,)).fetchall():  # fmt: skip
            ip = ipam.allocate(c, ep["network_id"], ep["requested_ip"])
            c.execute("UPDATE endpoints SET ip = ?, mac = ?, host_if = ? WHERE container_id = ? AND network_id = ?",
                      (ip, _mac(ip), _host_if(eid, ep["network_id"]), eid, ep["network_id"]))  # fmt: skip
        c.execute("DELETE FROM published_ports WHERE container_id = ?", (eid,))
        for port, host_ip, host_port in bindings:
            number, _, proto = port.partition("/")
            proto = proto or "tcp"
            _publish(c, eid, name, proto, int(number), host_ip, int(host_port) if host_port else 0)
    return _endpoints(db, eid)


def publish(
    store: NetworkStore,
    eid: str,
    name: str,
    bindings: list[tuple[str, str, str]],
    taking_from: str | None = None,
) -> None:
    """Publish more host ports for ``eid`` (``bindings`` as ``allocate`` takes them) while it
    runs. Ports ``taking_from`` holds pass to ``eid`` in the same transaction, and the
    firewall is rewritten in one go: new connections reach ``eid`` from then on, while
    those already made finish on the other (conntrack keeps their translation)."""
    with store.db.tx() as c:
        for port, host_ip, host_port in bindings:
            number, _, proto = port.partition("/")
            proto = proto or "tcp"
            if taking_from and host_port:
                c.execute("DELETE FROM published_ports WHERE container_id = ? AND proto = ? AND host_port = ? "
                          "AND host_ip = ?", (taking_from, proto, int(host_port), host_ip))  # fmt: skip
            _publish(c, eid, name, proto, int(number), host_ip, int(host_port) if host_port else 0)
    store.sync_firewall()


def _mac(ip: str) -> str:
    from dockyard.network.plumbing import mac_for

    return mac_for(ip)


def _unprivileged_start() -> int:
    """The first host port a rootless user may listen on; 0 as root."""
    from dockyard.linux.nsthread import engine_netns

    if engine_netns() is None:
        return 0
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1024


def _publish(c: sqlite3.Connection, eid: str, name: str, proto: str, port: int, host_ip: str,
             host_port: int) -> None:  # fmt: skip
    def holder_of(number: int) -> str | None:
        rows = c.execute("SELECT container_id, name FROM published_ports WHERE proto = ? AND host_port = ? "
                         "AND (host_ip = ? OR host_ip = '' OR ? = '')", (proto, number, host_ip, host_ip)).fetchall()  # fmt: skip
        if rows:
            return f"container {rows[0]['name']} ({rows[0]['container_id'][:12]})"
        return _port_holder(proto, host_ip, number)

    if host_port and host_port < _unprivileged_start():
        raise InvalidArgument(f"cannot expose privileged port {host_port} without root: ports below "
                              f"{_unprivileged_start()} need net.ipv4.ip_unprivileged_port_start={host_port} "
                              "on the host (rootless)")  # fmt: skip
    if host_port:
        holder = holder_of(host_port)
        if holder:
            raise Conflict(f"Bind for {host_ip or '0.0.0.0'}:{host_port} failed: port is already allocated "
                           f"(held by {holder})")  # fmt: skip
    else:
        lo, hi = _EPHEMERAL
        start = lo + int.from_bytes(os.urandom(2), "big") % (hi - lo + 1)
        for step in range(hi - lo + 1):
            candidate = lo + (start - lo + step) % (hi - lo + 1)
            if holder_of(candidate) is None:
                host_port = candidate
                break
        else:
            raise Conflict(f"no free host port for {port}/{proto} in {lo}-{hi}")
    c.execute("INSERT INTO published_ports (container_id, proto, container_port, host_ip, host_port, name) "
              "VALUES (?, ?, ?, ?, ?, ?)", (eid, proto, port, host_ip, host_port, name))  # fmt: skip


def _host_resolv() -> list[str]:
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    # the host's own loopback resolvers cannot be reached from the container's namespace
    kept = [ln for ln in lines if not (ln.split()[:1] == ["nameserver"] and ln.split()[1:2] and
                                       ln.split()[1].startswith(("127.", "::1")))]  # fmt: skip
    from dockyard.linux.nsthread import engine_netns

    if (
        engine_netns() is not None
        and len(kept) < len(lines)
        and not any(ln.startswith("nameserver") for ln in kept)
    ):
        kept.append("nameserver 10.0.2.3")  # slirp4netns's, which asks the host's resolvers
    return kept


def write_files(directory: str, eps: list[dict[str, Any]], mode: str, hostname: str,
                host: dict[str, Any], shared_from: str | None = None) -> None:  # fmt: skip
    """``hosts`` and ``resolv.conf`` in ``directory`` for these endpoints, with HostConfig's
    ExtraHosts, Dns and DnsSearch; copies of ``shared_from``'s (a namespace joined)."""
    if shared_from is not None:
        for name in ("hosts", "resolv.conf", "hostname"):
            with open(os.path.join(shared_from, name)) as src:
                text = src.read()
            _rewrite(os.path.join(directory, name), text)
        return
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
             "ff02::2\tip6-allrouters"]  # fmt: skip
    if mode == "host":
        try:
            with open("/etc/hosts") as f:
                lines = f.read().splitlines()
        except OSError:
            pass
    for entry in host.get("ExtraHosts") or []:
        name, _, addr = entry.partition(":")
        if addr == "host-gateway":
            addr = eps[0]["gateway"] if eps else "127.0.0.1"
        lines.append(f"{addr}\t{name}")
    if eps:
        lines.append(f"{eps[0]['ip']}\t{hostname}")
    elif mode != "host":
        lines.append(f"127.0.1.1\t{hostname}")
    _rewrite(os.path.join(directory, "hosts"), "\n".join(lines) + "\n")
    resolv = _host_resolv()
    user_net = next((e for e in eps if e["network"] != "bridge"), None)
    if user_net:
        resolv = [ln for ln in resolv if not ln.startswith("nameserver")]
        resolv += [f"nameserver {user_net['gateway']}", "options ndots:0"]
    if host.get("Dns"):
        resolv = [ln for ln in resolv if not ln.startswith("nameserver")] + [
            f"nameserver {d}" for d in host["Dns"]
        ]
    if host.get("DnsSearch"):
        resolv = [ln for ln in resolv if not ln.startswith("search")] + [
            "search " + " ".join(host["DnsSearch"])
        ]
    _rewrite(os.path.join(directory, "resolv.conf"), "\n".join(resolv) + "\n")


def _rewrite(path: str, text: str) -> None:
    # in place: a running container has the file bind-mounted, by inode
    with open(path, "r+" if os.path.exists(path) else "w") as f:
        f.write(text)
        f.truncate()


def plumb(store: NetworkStore, eid: str, netns: str, mode: str, eps: list[dict[str, Any]]) -> None:
    """Give the namespace at ``netns`` its interfaces; then publish its ports."""
    from dockyard.network import plumbing

    if mode == "host" or mode.startswith("container:"):
        return
    if not eps:
        plumbing.loopback_up(netns)
        return
    for n, ep in enumerate(eps):
        store.bring_up(store.get(ep["network_id"]))  # after a reboot, or a DNS server's death
        plumbing.plug(netns, ep["bridge"], ep["host_if"], f"eth{n}", ep["ip"], ipam.Subnet(ep["subnet"]).prefix,
                      ep["gateway"] if n == 0 else None, ep["mac"])  # fmt: skip
    if store.db.query("SELECT 1 FROM published_ports WHERE container_id = ? LIMIT 1", (eid,)):
        store.sync_firewall()


def _plug_now(store: NetworkStore, eid: str, netns: str, network_id: str) -> None:
    """An endpoint recorded on a namespace that exists: address and interface now."""
    from dockyard.network import plumbing

    with store.db.tx() as c:
        ep = c.execute("SELECT requested_ip FROM endpoints WHERE container_id = ? AND network_id = ?",
                       (eid, network_id)).fetchone()  # fmt: skip
        ip = ipam.allocate(c, network_id, ep["requested_ip"])
        c.execute("UPDATE endpoints SET ip = ?, mac = ?, host_if = ? WHERE container_id = ? AND network_id = ?",
                  (ip, _mac(ip), _host_if(eid, network_id), eid, network_id))  # fmt: skip
    eps = _endpoints(store.db, eid)
    n = next(i for i, e in enumerate(eps) if e["network_id"] == network_id)
    ep = eps[n]
    store.bring_up(store.get(network_id))
    plumbing.plug(netns, ep["bridge"], ep["host_if"], f"eth{n}", ep["ip"],
                  ipam.Subnet(ep["subnet"]).prefix, None, ep["mac"])  # fmt: skip


def release(
    store: NetworkStore, eid: str, network_id: str | None = None, unplug: bool = True
) -> None:
    """Remove ``eid``'s veths (all, or the one on ``network_id``); return addresses and
    host ports. ``unplug=False``: the veths are left to go with their namespace."""
    from dockyard.network import plumbing

    db = store.db
    eps = [e for e in _endpoints(db, eid) if network_id in (None, e["network_id"]) and e["ip"]]
    ports = db.query("SELECT 1 FROM published_ports WHERE container_id = ? LIMIT 1", (eid,))
    if not eps and not ports:
        return
    for ep in eps:
        if ep["host_if"] and unplug:
            try:
                plumbing.unplug(ep["host_if"])
            except OSError:
                pass
    had_ports = False
    with db.tx() as c:
        for ep in eps:
            c.execute("UPDATE endpoints SET ip = '', mac = '', host_if = '' WHERE container_id = ? "
                      "AND network_id = ?", (eid, ep["network_id"]))  # fmt: skip
        if network_id is None:
            had_ports = bool(
                c.execute("DELETE FROM published_ports WHERE container_id = ?", (eid,)).rowcount
            )
    if had_ports:
        store.sync_firewall()


def prefetch(
    db: Database, eids: list[str]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[Any]]]:
    """The endpoints and published ports of many at once (a listing's two queries instead
    of several per entry): ({eid: endpoints}, {eid: port rows}), for ``settings``."""
    eps: dict[str, list[dict[str, Any]]] = {e: [] for e in eids}
    ports: dict[str, list[Any]] = {e: [] for e in eids}
    if not eids:
        return eps, ports
    marks = ", ".join("?" * len(eids))
    for r in db.query(
        "SELECT e.rowid AS rowid, e.*, n.name AS network, n.bridge, n.subnet, n.gateway, n.internal "
        f"FROM endpoints e JOIN networks n ON n.id = e.network_id WHERE e.container_id IN ({marks}) "
        "ORDER BY e.rowid", tuple(eids)):  # fmt: skip
        eps[r["container_id"]].append(dict(r))
    for r in db.query(f"SELECT * FROM published_ports WHERE container_id IN ({marks}) ORDER BY rowid",
                      tuple(eids)):  # fmt: skip
        ports[r["container_id"]].append(r)
    return eps, ports


def settings(store: NetworkStore, eid: str, mode: str, exposed: dict[str, Any], pid: int,
             prefetched: tuple[dict[str, Any], dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """Docker's NetworkSettings for ``inspect``: ``exposed`` is Config.ExposedPorts, ``pid``
    the namespace's process (0: none runs); ``prefetched`` what ``prefetch`` read."""
    eps_by_id, ports_by_id = prefetched or prefetch(store.db, [eid])
    eps = eps_by_id[eid]
    ports: dict[str, Any] = {}
    for p in sorted(exposed):
        ports[p] = None
    for r in ports_by_id[eid]:
        ports.setdefault(f"{r['container_port']}/{r['proto']}", None)
        key = f"{r['container_port']}/{r['proto']}"
        ports[key] = (ports[key] or []) + [
            {"HostIp": r["host_ip"] or "0.0.0.0", "HostPort": str(r["host_port"])}
        ]
    networks = {}
    for ep in eps:
        prefix = ipam.Subnet(ep["subnet"]).prefix if ep["ip"] else 0
        networks[ep["network"]] = {
            "IPAMConfig": {"IPv4Address": ep["requested_ip"]} if ep["requested_ip"] else None,
            "Links": None,
            "Aliases": json.loads(ep["aliases"]) or None,
            "NetworkID": ep["network_id"],
            "EndpointID": endpoint_id(eid, ep["network_id"]) if ep["ip"] else "",
            "Gateway": ep["gateway"] if ep["ip"] else "",
            "IPAddress": ep["ip"],
            "IPPrefixLen": prefix,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "MacAddress": ep["mac"],
            "DNSNames": json.loads(ep["dns_names"]) or None,
        }
    if mode in ("host", "none"):
        net_id = store.predefined_id(mode)
        networks[mode] = {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": net_id,
                          "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                          "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "MacAddress": ""}  # fmt: skip
    default = networks.get("bridge") or {}
    return {
        "Bridge": "",
        "SandboxID": "",
        "HairpinMode": False,
        "Ports": ports,
        "SandboxKey": f"/proc/{pid}/ns/net" if pid else "",
        "Gateway": default.get("Gateway", ""),
        "IPAddress": default.get("IPAddress", ""),
        "IPPrefixLen": default.get("IPPrefixLen", 0),
        "MacAddress": default.get("MacAddress", ""),
        "Networks": networks,
    }


def ports_text(db: Database, eid: str, exposed: dict[str, Any]) -> str:
    """``ps``'s PORTS column: ``0.0.0.0:8080->80/tcp, 53/udp``."""
    rows = db.query("SELECT * FROM published_ports WHERE container_id = ? ORDER BY rowid", (eid,))
    out = [
        f"{r['host_ip'] or '0.0.0.0'}:{r['host_port']}->{r['container_port']}/{r['proto']}"
        for r in rows
    ]
    published = {f"{r['container_port']}/{r['proto']}" for r in rows}
    out += [p for p in sorted(exposed) if p not in published]
    return ", ".join(out)


def attach(store: NetworkStore, eid: str, name: str, dns_names: list[str], network: str,
           aliases: list[str], ip: str = "", netns: str | None = None) -> dict[str, Any]:  # fmt: skip
    """``network connect``: record the endpoint; plumb it now into ``netns`` if given (the
    namespace runs). The network's record."""
    net = store.get(network)
    with store.db.tx() as c:
        record(c, store, eid, net["id"], name, dns_names, aliases, ip)
    if netns is not None:
        try:
            _plug_now(store, eid, netns, net["id"])
        except BaseException:
            release(store, eid, net["id"])
            with store.db.tx() as c:
                c.execute(
                    "DELETE FROM endpoints WHERE container_id = ? AND network_id = ?",
                    (eid, net["id"]),
                )
            raise
    return net


def detach(
    store: NetworkStore, eid: str, network: str, force: bool = False
) -> dict[str, Any] | None:
    """``network disconnect``: the network's record, or None where ``force`` found nothing."""
    net = store.get(network)
    if not store.db.query(
        "SELECT 1 FROM endpoints WHERE container_id = ? AND network_id = ?", (eid, net["id"])
    ):
        if force:
            return None
        raise Conflict(f"container {eid[:12]} is not connected to network {net['name']}")
    release(store, eid, net["id"])
    with store.db.tx() as c:
        c.execute(
            "DELETE FROM endpoints WHERE container_id = ? AND network_id = ?", (eid, net["id"])
        )
    return net


def check(
    store: NetworkStore, live: Callable[[str], bool], repair: bool = False
) -> list[tuple[str, str]]:
    """What networking lacks or holds after a reboot or a crash, as (kind, what); fixed as
    well when ``repair``: bridges and DNS servers of user networks, the default bridge while
    endpoints use it, the firewall table, addresses held by endpoints whose namespace is gone
    (``live(eid)`` says whether it still runs)."""
    from dockyard.linux.netlink import Netlink
    from dockyard.network import dns, firewall

    findings = []
    with Netlink() as nl:
        present = nl.links()
    running = set()
    for row in store.db.query("SELECT DISTINCT container_id, name FROM endpoints WHERE ip != ''"):
        if live(row[0]):
            running.add(row[0])
        else:
            findings.append(("network address", f"held by container {row[1]}, which does not run"))
            if repair:
                release(store, row[0])
    for net in store.list():
        if net["driver"] != "bridge":
            continue
        users = store.users(net["id"])
        needed = net["name"] != "bridge" or any(u["id"] in running for u in users)
        if needed and net["bridge"] not in present:
            findings.append(
                ("network bridge", f"{net['bridge']} of network {net['name']} is missing")
            )
        if net["name"] != "bridge" and not dns._running(store.root, net["id"]):
            findings.append(
                ("network DNS", f"the DNS server of network {net['name']} is not running")
            )
        if repair and needed:
            store.bring_up(net)
    findings += [("network overlap", what) for what in store.overlaps()]
    if store.active():
        ok, what = firewall.present(store.root)
        if not ok:
            findings.append(("firewall", f"{what} is missing"))
        if not firewall.forward_accept_present(store.root):
            findings.append(
                (
                    "firewall",
                    "the accept rules of the engine's bridges in iptables' FORWARD are missing",
                )
            )
    if repair:
        try:
            store.sync_firewall(forward=True)
        except firewall.FirewallError:
            if store.active():
                raise
    return findings
