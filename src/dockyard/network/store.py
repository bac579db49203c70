"""Networks as Docker shows them: the predefined ``bridge``, ``host`` and ``none``, and
user-defined bridge networks, each with its own Linux bridge, subnet and DNS server.

The default bridge's device (``dockyard0`` for the default root) is made when
the first container needs it and stays, as docker0 does; ``network prune``
also removes it while no container uses it. A user network's bridge lives as
long as the network.
"""

from __future__ import annotations

import os

from dockyard import _json as json
from dockyard.busy import changing
from dockyard.clock import now_rfc3339
from dockyard.errors import Conflict, InvalidArgument, NetworkNotFound
from dockyard.network import ipam

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.metadata import Database

__all__ = ["PREDEFINED", "NetworkStore"]

PREDEFINED = ("bridge", "host", "none")
_DEFAULT_SUBNET = "172.30.0.0/16"
_USER_POOL = "172.31.0.0/16"


class NetworkStore:
    def __init__(self, root: str, db: Database) -> None:
        self.root = root
        self.db = db
        self.default_root = os.path.realpath(root) == "/var/lib/dockyard"
        self._predefined_ids: dict[str, str] = {}

    # -- records

    def _ensure_predefined(self) -> None:
        if (
            len(self.db.query("SELECT 1 FROM networks WHERE name IN ('bridge', 'host', 'none')"))
            == 3
        ):
            return
        if self.default_root:
            bridge = os.environ.get("DOCKYARD_BRIDGE") or "dockyard0"
        else:
            import zlib

            bridge = (
                os.environ.get("DOCKYARD_BRIDGE")
                or f"dy0{zlib.crc32(os.path.realpath(self.root).encode()):08x}"
            )
        subnet = os.environ.get("DOCKYARD_BRIDGE_SUBNET") or (
            _DEFAULT_SUBNET if self.default_root else ""
        )
        if not subnet:
            subnet = self._free_subnet(_USER_POOL, extra_taken=[])
        net = ipam.Subnet(subnet)
        with self.db.tx() as c:
            rows = [("bridge", "bridge", bridge, str(net), net.first_host()), ("host", "host", "", "", ""),
                    ("none", "null", "", "", "")]  # fmt: skip
            for name, driver, br, sub, gw in rows:
                c.execute("INSERT OR IGNORE INTO networks (id, name, driver, bridge, subnet, gateway, created) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)", (os.urandom(32).hex(), name, driver, br, sub, gw, now_rfc3339()))  # fmt: skip

    def get(self, ref: str) -> dict[str, Any]:
        """A network by name, full ID or unique ID prefix."""
        self._ensure_predefined()
        rows = self.db.query("SELECT * FROM networks WHERE name = ? OR id = ?", (ref, ref))
        if not rows and len(ref) >= 1 and all(ch in "0123456789abcdef" for ch in ref):
            rows = self.db.query("SELECT * FROM networks WHERE id LIKE ?", (ref + "%",))
            if len(rows) > 1:
                raise Conflict(
                    f"network {ref} is ambiguous ({len(rows)} matches found based on ID prefix)"
                )
        if not rows:
            raise NetworkNotFound(f"network {ref} not found")
        row = dict(rows[0])
        row["labels"] = json.loads(row["labels"])
        return row

    def predefined_id(self, name: str) -> str:
        """The ID of ``host`` or ``none``: read once per store, as those records are never
        removed (an inspect or a listing spends no query on them)."""
        found = self._predefined_ids.get(name)
        if found is None:
            found = self._predefined_ids[name] = self.get(name)["id"]
        return found

    def list(self) -> list[dict[str, Any]]:
        self._ensure_predefined()
        return [
            self.get(r["id"])
            for r in self.db.query("SELECT id FROM networks ORDER BY created, name")
        ]

    def users(self, network_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.query(
            "SELECT container_id AS id, name, ip, mac FROM endpoints "
            "WHERE network_id = ? ORDER BY name", (network_id,))]  # fmt: skip

    def _free_subnet(self, pool: str, extra_taken: list[str]) -> str:
        space = ipam.Subnet(pool)
        taken = [
            ipam.Subnet(r["subnet"])
            for r in self.db.query("SELECT subnet FROM networks WHERE subnet != ''")
        ]
        taken += [ipam.Subnet(s) for s in extra_taken]
        for value in range(space.network, space.broadcast, 256):
            candidate = ipam.Subnet(f"{ipam.int_to_ip(value)}/24")
            if (
                not any(candidate.overlaps(t) for t in taken)
                and ipam.route_conflict(candidate) is None
            ):
                return str(candidate)
        raise Conflict(f"could not find an available, non-overlapping IPv4 address pool in {pool}")

    @changing(lambda self, *_: self.root)
    def create(self, name: str, subnet: str | None = None, gateway: str | None = None,
               internal: bool = False, labels: dict[str, str] | None = None, driver: str = "bridge") -> str:  # fmt: skip
        self._ensure_predefined()
        if driver != "bridge":
            raise InvalidArgument(
                f'plugin "{driver}" not found: dockyard has the bridge driver only'
            )
        if not name or not name[0].isalnum() or not all(ch.isalnum() or ch in "_.-" for ch in name):
            raise InvalidArgument(
                f'invalid network name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed'
            )
        if self.db.query("SELECT 1 FROM networks WHERE name = ?", (name,)):
            raise Conflict(f"network with name {name} already exists")
        if subnet:
            net = ipam.Subnet(subnet)
            for other in self.db.query("SELECT name, subnet FROM networks WHERE subnet != ''"):
                if net.overlaps(ipam.Subnet(other["subnet"])):
                    raise Conflict(f"invalid pool request: Pool overlaps with other one on this address space "
                                   f"({other['subnet']}, network {other['name']})")  # fmt: skip
            clash = ipam.route_conflict(net)
            if clash:
                raise Conflict(f"subnet {net} overlaps the host's route {clash}")
        else:
            net = ipam.Subnet(self._free_subnet(_USER_POOL, []))
        gw = gateway or net.first_host()
        if not net.contains(gw) or ipam.ip_to_int(gw) in (net.network, net.broadcast):
            raise InvalidArgument(f"gateway {gw} is not a host address of subnet {net}")
        nid = os.urandom(32).hex()
        bridge = f"dy-{nid[:12]}"
        with self.db.tx() as c:
            c.execute("INSERT INTO networks (id, name, driver, bridge, subnet, gateway, internal, labels, created) "
                      "VALUES (?, ?, 'bridge', ?, ?, ?, ?, ?, ?)",
                      (nid, name, bridge, str(net), gw, int(internal), json.dumps(labels or {}), now_rfc3339()))  # fmt: skip
        try:
            self.bring_up(self.get(nid))
        except BaseException:
            self._drop(self.get(nid))
            raise
        self.db.emit("network", "create", nid, name=name, type="bridge")
        return nid

    # -- devices, firewall, DNS

    def claim_subnet(self, net: dict[str, Any]) -> dict[str, Any]:
        """``net`` fit to be brought up where its bridge is missing: its subnet must not be
        routed to another interface of the host (another engine's bridge, a VPN) by now.
        The default bridge, while none of its addresses is held, moves to a free subnet
        (as dockerd picks another pool for docker0); another network fails in one line
        naming the holder."""
        from dockyard.linux.netlink import Netlink

        if not net["subnet"]:
            return net
        with Netlink() as nl:
            if net["bridge"] in nl.links():
                return net
        clash = ipam.route_conflict(ipam.Subnet(net["subnet"]), ignore_interface=net["bridge"])
        if clash is None:
            return net
        held = self.db.query(
            "SELECT 1 FROM endpoints WHERE network_id = ? AND ip != '' LIMIT 1", (net["id"],)
        )
        if net["name"] != "bridge" or held or os.environ.get("DOCKYARD_BRIDGE_SUBNET"):
            raise Conflict(
                f"network {net['name']}: subnet {net['subnet']} is taken by the host's route {clash}"
            )
        fresh = ipam.Subnet(self._free_subnet(_USER_POOL, []))
        with self.db.tx() as c:
            c.execute("UPDATE networks SET subnet = ?, gateway = ?, next_ip = 0 WHERE id = ? AND subnet = ?",
                      (str(fresh), fresh.first_host(), net["id"], net["subnet"]))  # fmt: skip
        return self.get(net["id"])

    def overlaps(self) -> list[str]:
        """Bridges of this engine whose subnet another interface's route also covers."""
        out = []
        for net in self.active():
            clash = ipam.route_conflict(ipam.Subnet(net["subnet"]), ignore_interface=net["bridge"])
            if clash:
                out.append(f"subnet {net['subnet']} of network {net['name']} ({net['bridge']}) overlaps "
                           f"the host's route {clash}")  # fmt: skip
        return out

    def bring_up(self, net: dict[str, Any]) -> None:
        """The network's bridge, its firewall rules, and (user networks) its DNS server."""
        from dockyard.network import plumbing

        made = plumbing.ensure_bridge(
            net["bridge"], net["gateway"], ipam.Subnet(net["subnet"]).prefix
        )
        if made:
            self.sync_firewall(forward=True)
        if net["name"] != "bridge":
            from dockyard.network import dns

            dns.ensure(self.root, net)

    def active(self) -> list[dict[str, Any]]:
        """Bridge networks whose device exists."""
        from dockyard.linux.netlink import Netlink

        with Netlink() as nl:
            present = nl.links()
        return [dict(r) for r in self.db.query("SELECT * FROM networks WHERE driver = 'bridge'")
                if r["bridge"] in present]  # fmt: skip

    def sync_firewall(self, forward: bool = False) -> None:
        """The engine's firewall rules from the database; ``forward``: the set of bridges
        changed, so the accept chain in iptables' FORWARD is rewritten too."""
        from dockyard.network import firewall

        def build() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            ports = [dict(r) for r in self.db.query(
                "SELECT p.proto, p.container_port, p.host_ip, p.host_port, "
                "(SELECT e.ip FROM endpoints e JOIN networks n ON n.id = e.network_id "
                " WHERE e.container_id = p.container_id AND e.ip != '' AND n.driver = 'bridge' "
                " ORDER BY e.rowid LIMIT 1) AS ip FROM published_ports p")]  # fmt: skip
            return self.active(), [p for p in ports if p["ip"]]

        firewall.sync(self.root, build, forward=forward)

    def _drop(self, net: dict[str, Any]) -> None:
        from dockyard.network import dns, plumbing

        dns.stop(self.root, net["id"])
        plumbing.remove_bridge(net["bridge"])
        with self.db.tx() as c:
            c.execute("DELETE FROM networks WHERE id = ?", (net["id"],))
        self.sync_firewall(forward=True)

    @changing(lambda self, *_: self.root)
    def remove(self, ref: str) -> str:
        net = self.get(ref)
        if net["name"] in PREDEFINED:
            raise Conflict(f"{net['name']} is a pre-defined network and cannot be removed")
        users = self.users(net["id"])
        if users:
            names = ", ".join(u["name"] for u in users)
            raise Conflict(f"error while removing network: network {net['name']} id {net['id']} has active "
                           f"endpoints (containers: {names})")  # fmt: skip
        self._drop(net)
        self.db.emit("network", "destroy", net["id"], name=net["name"], type="bridge")
        return net["name"]

    @changing(lambda self, *_: self.root)
    def prune(self) -> list[str]:
        """User networks no container uses; and the default bridge's device while unused."""
        gone = []
        for net in self.list():
            if net["name"] in PREDEFINED or self.users(net["id"]):
                continue
            gone.append(self.remove(net["id"]))
        default = self.get("bridge")
        if not self.users(default["id"]):
            from dockyard.network import plumbing

            if plumbing.remove_bridge(default["bridge"]):
                self.sync_firewall(forward=True)
        return gone

    # -- Docker's NetworkResource

    def inspect(self, ref: str) -> dict[str, Any]:
        net = self.get(ref)
        prefix = ipam.Subnet(net["subnet"]).prefix if net["subnet"] else 0
        containers = {
            u["id"]: {"Name": u["name"], "EndpointID": endpoint_id(u["id"], net["id"]), "MacAddress": u["mac"],
                      "IPv4Address": f"{u['ip']}/{prefix}" if u["ip"] else "", "IPv6Address": ""}
            for u in self.users(net["id"])
        }  # fmt: skip
        return {
            "Name": net["name"],
            "Id": net["id"],
            "Created": net["created"],
            "Scope": "local",
            "Driver": net["driver"],
            "EnableIPv6": False,
            "IPAM": {
                "Driver": "default",
                "Options": {},
                "Config": [{"Subnet": net["subnet"], "Gateway": net["gateway"]}]
                if net["subnet"]
                else [],
            },
            "Internal": bool(net["internal"]),
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": containers,
            "Options": {"com.docker.network.bridge.name": net["bridge"]} if net["bridge"] else {},
            "Labels": net["labels"],
        }


def endpoint_id(cid: str, nid: str) -> str:
    """A stable 64-hex endpoint ID for a container on a network."""
    import zlib

    return f"{zlib.crc32((cid + nid).encode()):08x}" + cid[:24] + nid[:32]
