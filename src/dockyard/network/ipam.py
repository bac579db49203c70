"""IPv4 subnets and address allocation.

Addresses are handed out from a per-network cursor that moves forward, so a
released address is the last to be given again (no stale ARP or DNS answer
points a client at a new container); the database's unique index on
(network, ip) makes two containers with one address impossible, also when
twenty ``run``s allocate at once. Plain integer arithmetic: ``ipaddress``
costs every command 4 ms of import here.
"""

from __future__ import annotations

import _socket

from dockyard.errors import Conflict, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3

__all__ = ["Subnet", "allocate", "host_routes", "route_conflict"]


def ip_to_int(text: str) -> int:
    try:
        return int.from_bytes(_socket.inet_aton(text), "big") if text.count(".") == 3 else -1
    except OSError:
        return -1


def int_to_ip(value: int) -> str:
    return _socket.inet_ntoa(value.to_bytes(4, "big"))


class Subnet:
    """``10.1.2.0/24``: network address, prefix, and the usable range."""

    def __init__(self, cidr: str) -> None:
        address, slash, prefix = cidr.partition("/")
        value = ip_to_int(address)
        if not slash or value < 0 or not prefix.isdigit() or not 8 <= int(prefix) <= 30:
            raise InvalidArgument(
                f"invalid subnet {cidr!r}: want an IPv4 CIDR such as 10.1.0.0/24 (/8 to /30)"
            )
        self.prefix = int(prefix)
        self.mask = (0xFFFFFFFF << (32 - self.prefix)) & 0xFFFFFFFF
        self.network = value & self.mask
        self.broadcast = self.network | (~self.mask & 0xFFFFFFFF)

    def __str__(self) -> str:
        return f"{int_to_ip(self.network)}/{self.prefix}"

    def contains(self, address: str) -> bool:
        value = ip_to_int(address)
        return value >= 0 and value & self.mask == self.network

    def first_host(self) -> str:
        return int_to_ip(self.network + 1)

    def overlaps(self, other: Subnet) -> bool:
        mask = self.mask & other.mask
        return self.network & mask == other.network & mask


def host_routes() -> list[tuple[str, int, int]]:
    """(interface, network, mask) of each IPv4 route of the host but the default."""
    from dockyard.linux.nsthread import at_home

    def read() -> list[tuple[str, int, int]]:
        out = []
        try:  # thread-self: /proc/net is the namespace of the process's first thread
            with open("/proc/thread-self/net/route") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    mask = int.from_bytes(int(fields[7], 16).to_bytes(4, "little"), "big")
                    if mask:
                        dest = int.from_bytes(int(fields[1], 16).to_bytes(4, "little"), "big")
                        out.append((fields[0], dest, mask))
        except (OSError, StopIteration):
            pass
        return out

    return at_home(read)


def route_conflict(subnet: Subnet, ignore_interface: str = "") -> str | None:
    """The host route ``subnet`` would collide with, as ``10.0.0.0/8 on eth0``, or None."""
    for iface, dest, mask in host_routes():
        if iface == ignore_interface:
            continue
        common = subnet.mask & mask
        if subnet.network & common == dest & common:
            return f"{int_to_ip(dest)}/{bin(mask).count('1')} on {iface}"
    return None


def allocate(c: sqlite3.Connection, network_id: str, requested: str = "") -> str:
    """An address on ``network_id`` for an endpoint, inside the caller's transaction."""
    row = c.execute(
        "SELECT subnet, gateway, next_ip FROM networks WHERE id = ?", (network_id,)
    ).fetchone()
    subnet = Subnet(row["subnet"])
    used = {
        r[0]
        for r in c.execute(
            "SELECT ip FROM endpoints WHERE network_id = ? AND ip != ''", (network_id,)
        )
    }
    used.add(row["gateway"])
    if requested:
        if not subnet.contains(requested):
            raise InvalidArgument(f"no configured subnet contains IP address {requested}")
        if requested in used:
            holder = c.execute("SELECT name FROM endpoints WHERE network_id = ? AND ip = ?",
                               (network_id, requested)).fetchone()  # fmt: skip
            who = f" by container {holder[0]}" if holder else " by the network's gateway"
            raise Conflict(f"Address already in use: {requested} is taken{who}")
        return requested
    first, last = subnet.network + 1, subnet.broadcast - 1
    start = row["next_ip"] if first <= row["next_ip"] <= last else first
    size = last - first + 1
    for step in range(size):
        value = first + (start - first + step) % size
        candidate = int_to_ip(value)
        if candidate not in used:
            c.execute("UPDATE networks SET next_ip = ? WHERE id = ?", (value + 1, network_id))
            return candidate
    raise Conflict(f"no available IPv4 addresses on network {network_id[:12]} ({subnet})")
