"""A container's place on its networks: recorded at create, plumbed at each start, released
at each exit.

- ``record`` (create, ``network connect``): which networks, aliases, asked-for address.
- ``prepare`` (start, before the runtime creates the container): addresses and
  host ports allocated in one transaction; /etc/hosts and /etc/resolv.conf written.
- ``plumb`` (start, once the container's namespaces exist): bridges on demand, a
  veth per network, the default route; firewall rewritten if ports are published.
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
    from typing import Any

__all__ = [
    "connect_running",
    "netns_for",
    "network_mode",
    "parse_publish",
    "plumb",
    "ports_text",
    "prepare",
    "record",
    "release",
    "settings",
]

_EPHEMERAL = (49153, 65535)


def network_mode(host: dict[str, Any]) -> str:
    mode = host.get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode


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


def record(c: sqlite3.Connection, store: NetworkStore, cid: str, host: dict[str, Any],
           aliases: list[str], ip: str = "", network: str | None = None) -> None:  # fmt: skip
    """Endpoints for ``cid`` on its network mode's network (or on ``network``), in ``c``'s transaction."""
    mode = network or network_mode(host)
    if mode in ("host", "none") or mode.startswith("container:"):
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
        "SELECT 1 FROM endpoints WHERE container_id = ? AND network_id = ?", (cid, net["id"])
    )
    if exists.fetchone():
        raise Conflict(f"endpoint with name {cid[:12]} already exists in network {net['name']}")
    c.execute("INSERT INTO endpoints (container_id, network_id, aliases, requested_ip) VALUES (?, ?, ?, ?)",
              (cid, net["id"], json.dumps(list(aliases)), ip))  # fmt: skip


def _endpoints(db: Any, cid: str) -> list[dict[str, Any]]:
    return [dict(r) for r in db.query(
        "SELECT e.rowid AS rowid, e.*, n.name AS network, n.bridge, n.subnet, n.gateway, n.internal "
        "FROM endpoints e JOIN networks n ON n.id = e.network_id WHERE e.container_id = ? ORDER BY e.rowid",
        (cid,))]  # fmt: skip


def _host_if(cid: str, network_id: str) -> str:
    import zlib

    return f"dy{zlib.crc32((cid + network_id).encode()):08x}"


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


def _bindings(host: dict[str, Any], config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(container port/proto, host ip, host port or "") to publish."""
    out = []
    for port, binds in (host.get("PortBindings") or {}).items():
        for b in binds or [{}]:
            out.append((port, b.get("HostIp") or "", b.get("HostPort") or ""))
    if host.get("PublishAllPorts"):
        bound = {p for p, _, _ in out}
        out += [(p, "", "") for p in sorted(config.get("ExposedPorts") or {}) if p not in bound]
    return out


def prepare(engine: Any, cid: str) -> list[dict[str, Any]]:
    """Allocate the container's addresses and host ports; write its hosts and resolv.conf."""
    rec = engine.record(cid)
    host, config = rec["host_config"], rec["config"]
    store: NetworkStore = engine.networks
    store.get("bridge")  # the predefined networks exist before any endpoint refers to them
    mode = network_mode(host)
    wanted = (
        _bindings(host, config)
        if mode not in ("host", "none") and not mode.startswith("container:")
        else []
    )
    pending = engine.db.query(
        "SELECT network_id FROM endpoints WHERE container_id = ? AND ip = ''", (cid,)
    )
    for ep in pending:  # a bridge to be made must not take a subnet the host routes elsewhere
        store.claim_subnet(store.get(ep["network_id"]))
    with engine.db.tx() as c:
        for ep in c.execute("SELECT network_id, requested_ip FROM endpoints WHERE container_id = ? "
                            "AND ip = '' ORDER BY rowid", (cid,)).fetchall():  # fmt: skip
            ip = ipam.allocate(c, ep["network_id"], ep["requested_ip"])
            c.execute("UPDATE endpoints SET ip = ?, mac = ?, host_if = ? WHERE container_id = ? AND network_id = ?",
                      (ip, _mac(ip), _host_if(cid, ep["network_id"]), cid, ep["network_id"]))  # fmt: skip
        c.execute("DELETE FROM published_ports WHERE container_id = ?", (cid,))
        for port, host_ip, host_port in wanted:
            number, _, proto = port.partition("/")
            proto = proto or "tcp"
            _publish(c, cid, proto, int(number), host_ip, int(host_port) if host_port else 0)
    eps = _endpoints(engine.db, cid)
    _write_files(engine, cid, rec, eps, mode)
    return eps


def _mac(ip: str) -> str:
    from dockyard.network.plumbing import mac_for

    return mac_for(ip)


def _publish(
    c: sqlite3.Connection, cid: str, proto: str, port: int, host_ip: str, host_port: int
) -> None:
    def holder_of(number: int) -> str | None:
        rows = c.execute("SELECT p.container_id, c.name FROM published_ports p JOIN containers c "
                         "ON c.id = p.container_id WHERE p.proto = ? AND p.host_port = ? AND "
                         "(p.host_ip = ? OR p.host_ip = '' OR ? = '')", (proto, number, host_ip, host_ip)).fetchall()  # fmt: skip
        if rows:
            return f"container {rows[0]['name']} ({rows[0]['container_id'][:12]})"
        return _port_holder(proto, host_ip, number)

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
    c.execute(
        "INSERT INTO published_ports VALUES (?, ?, ?, ?, ?)", (cid, proto, port, host_ip, host_port)
    )


def _host_resolv() -> list[str]:
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    # the host's own loopback resolvers cannot be reached from the container's namespace
    return [ln for ln in lines if not (ln.split()[:1] == ["nameserver"] and ln.split()[1:2] and
                                       ln.split()[1].startswith(("127.", "::1")))]  # fmt: skip


def _write_files(
    engine: Any, cid: str, rec: dict[str, Any], eps: list[dict[str, Any]], mode: str
) -> None:
    host, config = rec["host_config"], rec["config"]
    cdir = engine.cdir(cid)
    hostname = config.get("Hostname") or cid[:12]
    if mode.startswith("container:"):
        other = engine.lookup(mode.split(":", 1)[1])
        for name in ("hosts", "resolv.conf", "hostname"):
            with open(os.path.join(engine.cdir(other), name)) as src:
                text = src.read()
            _rewrite(os.path.join(cdir, name), text)
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
    _rewrite(os.path.join(cdir, "hosts"), "\n".join(lines) + "\n")
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
    _rewrite(os.path.join(cdir, "resolv.conf"), "\n".join(resolv) + "\n")


def _rewrite(path: str, text: str) -> None:
    # in place: a running container has the file bind-mounted, by inode
    with open(path, "r+" if os.path.exists(path) else "w") as f:
        f.write(text)
        f.truncate()


def netns_for(engine: Any, cid: str) -> str | None:
    """The OCI network namespace setting: None for a new one, "host" for none at all,
    or the path of the namespace to join (``--network container:NAME``)."""
    mode = network_mode(engine.record(cid)["host_config"])
    if mode == "host":
        return "host"
    if mode.startswith("container:"):
        other = engine.lookup(mode.split(":", 1)[1])
        rec = engine.refresh(other)
        if rec["status"] not in ("running", "paused") or not rec["pid"]:
            raise Conflict(
                f"cannot join network of a non running container: {mode.split(':', 1)[1]}"
            )
        return f"/proc/{rec['pid']}/ns/net"
    return None


def plumb(engine: Any, cid: str, pid: int, eps: list[dict[str, Any]]) -> None:
    """Give the created container (``pid``) its interfaces; then publish its ports."""
    from dockyard.network import plumbing

    netns = f"/proc/{pid}/ns/net"
    mode = network_mode(engine.record(cid)["host_config"])
    if mode in ("host",) or mode.startswith("container:"):
        return
    if not eps:
        plumbing.loopback_up(netns)
        return
    store: NetworkStore = engine.networks
    for n, ep in enumerate(eps):
        store.bring_up(store.get(ep["network_id"]))  # after a reboot, or a DNS server's death
        plumbing.plug(netns, ep["bridge"], ep["host_if"], f"eth{n}", ep["ip"], ipam.Subnet(ep["subnet"]).prefix,
                      ep["gateway"] if n == 0 else None, ep["mac"])  # fmt: skip
    if engine.db.query("SELECT 1 FROM published_ports WHERE container_id = ? LIMIT 1", (cid,)):
        store.sync_firewall()


def connect_running(engine: Any, cid: str, pid: int, network_id: str) -> None:
    """``network connect`` of a running container: address and interface now."""
    from dockyard.network import plumbing

    with engine.db.tx() as c:
        ep = c.execute("SELECT requested_ip FROM endpoints WHERE container_id = ? AND network_id = ?",
                       (cid, network_id)).fetchone()  # fmt: skip
        ip = ipam.allocate(c, network_id, ep["requested_ip"])
        c.execute("UPDATE endpoints SET ip = ?, mac = ?, host_if = ? WHERE container_id = ? AND network_id = ?",
                  (ip, _mac(ip), _host_if(cid, network_id), cid, network_id))  # fmt: skip
    eps = _endpoints(engine.db, cid)
    n = next(i for i, e in enumerate(eps) if e["network_id"] == network_id)
    ep = eps[n]
    engine.networks.bring_up(engine.networks.get(network_id))
    plumbing.plug(f"/proc/{pid}/ns/net", ep["bridge"], ep["host_if"], f"eth{n}", ep["ip"],
                  ipam.Subnet(ep["subnet"]).prefix, None, ep["mac"])  # fmt: skip


def release(engine: Any, cid: str, network_id: str | None = None) -> None:
    """Remove the container's veths (all, or the one on ``network_id``); return addresses
    and host ports."""
    from dockyard.network import plumbing

    eps = [
        e for e in _endpoints(engine.db, cid) if network_id in (None, e["network_id"]) and e["ip"]
    ]
    ports = engine.db.query("SELECT 1 FROM published_ports WHERE container_id = ? LIMIT 1", (cid,))
    if not eps and not ports:
        return
    for ep in eps:
        if ep["host_if"]:
            try:
                plumbing.unplug(ep["host_if"])
            except OSError:
                pass
    had_ports = False
    with engine.db.tx() as c:
        for ep in eps:
            c.execute("UPDATE endpoints SET ip = '', mac = '', host_if = '' WHERE container_id = ? "
                      "AND network_id = ?", (cid, ep["network_id"]))  # fmt: skip
        if network_id is None:
            had_ports = bool(
                c.execute("DELETE FROM published_ports WHERE container_id = ?", (cid,)).rowcount
            )
    if had_ports:
        engine.networks.sync_firewall()


def settings(engine: Any, cid: str) -> dict[str, Any]:
    """Docker's NetworkSettings for ``inspect``."""
    eps = _endpoints(engine.db, cid)
    ports: dict[str, Any] = {}
    rec = engine.record(cid)
    for p in sorted(rec["config"].get("ExposedPorts") or {}):
        ports[p] = None
    for r in engine.db.query(
        "SELECT * FROM published_ports WHERE container_id = ? ORDER BY rowid", (cid,)
    ):
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
            "EndpointID": endpoint_id(cid, ep["network_id"]) if ep["ip"] else "",
            "Gateway": ep["gateway"] if ep["ip"] else "",
            "IPAddress": ep["ip"],
            "IPPrefixLen": prefix,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "MacAddress": ep["mac"],
        }
    mode = network_mode(rec["host_config"])
    if mode in ("host", "none"):
        net = engine.networks.get(mode)
        networks[mode] = {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": net["id"],
                          "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                          "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "MacAddress": ""}  # fmt: skip
    default = networks.get("bridge") or {}
    return {
        "Bridge": "",
        "SandboxID": "",
        "HairpinMode": False,
        "Ports": ports,
        "SandboxKey": f"/proc/{rec['pid']}/ns/net" if rec["pid"] else "",
        "Gateway": default.get("Gateway", ""),
        "IPAddress": default.get("IPAddress", ""),
        "IPPrefixLen": default.get("IPPrefixLen", 0),
        "MacAddress": default.get("MacAddress", ""),
        "Networks": networks,
    }


def ports_text(engine: Any, cid: str) -> str:
    """``ps``'s PORTS column: ``0.0.0.0:8080->80/tcp, 53/udp``."""
    rows = engine.db.query(
        "SELECT * FROM published_ports WHERE container_id = ? ORDER BY rowid", (cid,)
    )
    out = [
        f"{r['host_ip'] or '0.0.0.0'}:{r['host_port']}->{r['container_port']}/{r['proto']}"
        for r in rows
    ]
    published = {f"{r['container_port']}/{r['proto']}" for r in rows}
    exposed = engine.record(cid)["config"].get("ExposedPorts") or {}
    out += [p for p in sorted(exposed) if p not in published]
    return ", ".join(out)


def connect(engine: Any, network: str, container: str, aliases: list[str], ip: str = "") -> None:
    """``network connect``: record the endpoint; plumb it now if the container runs."""
    cid = engine.lookup(container)
    rec = engine.refresh(cid)
    mode = network_mode(rec["host_config"])
    if mode in ("host", "none") or mode.startswith("container:"):
        raise Conflict(
            "container sharing network namespace with another container or host cannot be "
            f"connected to any other network ({rec['name']} uses --network {mode})"
        )
    net = engine.networks.get(network)
    with engine.db.tx() as c:
        record(c, engine.networks, cid, rec["host_config"], aliases, ip, network=net["id"])
    if rec["status"] in ("running", "paused") and rec["pid"]:
        try:
            connect_running(engine, cid, rec["pid"], net["id"])
        except BaseException:
            release(engine, cid, net["id"])
            with engine.db.tx() as c:
                c.execute(
                    "DELETE FROM endpoints WHERE container_id = ? AND network_id = ?",
                    (cid, net["id"]),
                )
            raise
    engine.db.emit("network", "connect", net["id"], container=cid, name=net["name"], type="bridge")


def disconnect(engine: Any, network: str, container: str, force: bool = False) -> None:
    cid = engine.lookup(container)
    net = engine.networks.get(network)
    if not engine.db.query(
        "SELECT 1 FROM endpoints WHERE container_id = ? AND network_id = ?", (cid, net["id"])
    ):
        if force:
            return
        raise Conflict(f"container {cid[:12]} is not connected to network {net['name']}")
    release(engine, cid, net["id"])
    with engine.db.tx() as c:
        c.execute(
            "DELETE FROM endpoints WHERE container_id = ? AND network_id = ?", (cid, net["id"])
        )
    engine.db.emit(
        "network", "disconnect", net["id"], container=cid, name=net["name"], type="bridge"
    )


def check(engine: Any, repair: bool = False) -> list[tuple[str, str]]:
    """What networking lacks or holds after a reboot or a crash, as (kind, what); fixed as
    well when ``repair``: bridges and DNS servers of user networks, the default bridge while
    containers use it, the firewall table, addresses held by containers that do not run."""
    from dockyard.linux.netlink import Netlink
    from dockyard.network import dns, firewall

    store: NetworkStore = engine.networks
    findings = []
    with Netlink() as nl:
        present = nl.links()
    running = set()
    for row in engine.db.query("SELECT DISTINCT container_id FROM endpoints WHERE ip != ''"):
        rec = engine.refresh(row[0])
        if rec["status"] in ("running", "paused", "restarting"):
            running.add(row[0])
        else:
            findings.append(
                ("network address", f"held by container {rec['name']}, which does not run")
            )
            if repair:
                release(engine, row[0])
    for net in store.list():
        if net["driver"] != "bridge":
            continue
        users = store.users(net["id"])
        needed = net["name"] != "bridge" or any(u["id"] in running for u in users)
        if needed and net["bridge"] not in present:
            findings.append(
                ("network bridge", f"{net['bridge']} of network {net['name']} is missing")
            )
        if net["name"] != "bridge" and not dns._running(engine.root, net["id"]):
            findings.append(
                ("network DNS", f"the DNS server of network {net['name']} is not running")
            )
        if repair and needed:
            store.bring_up(net)
    findings += [("network overlap", what) for what in store.overlaps()]
    if store.active():
        ok, what = firewall.present(engine.root)
        if not ok:
            findings.append(("firewall", f"{what} is missing"))
        if not firewall.forward_accept_present(engine.root):
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
