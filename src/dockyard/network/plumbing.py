"""Links on the host and in containers: bridges, veth pairs, addresses, routes.

A container's interface is made directly inside its network namespace (the
veth peer is created there), then addressed from a netlink socket opened in
that namespace: no ``ip`` processes, no moving of links.
"""

from __future__ import annotations

import os

from dockyard.linux.netlink import Netlink, NetlinkError

__all__ = ["enable_forwarding", "ensure_bridge", "mac_for", "plug", "remove_bridge", "unplug"]


def _sysctl(path: str, value: str) -> None:
    """A /proc/sys/net setting of the engine's network namespace (the writing thread's)."""
    from dockyard.linux.nsthread import at_home

    def write() -> None:
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError:
            pass

    at_home(write)


def ensure_bridge(name: str, gateway: str, prefix: int) -> bool:
    """The bridge ``name`` with the gateway address, up; True if it had to be made."""
    with Netlink() as nl:
        try:
            index = nl.index(name)
            made = False
        except NetlinkError:
            try:
                index = nl.add_bridge(name)
            except NetlinkError as err:
                if err.errno != 17:  # EEXIST: a parallel start made it first
                    raise
                index = nl.index(name)
            made = True
        if (gateway, prefix) not in nl.addresses(index):
            try:
                nl.add_address(index, gateway, prefix)
            except NetlinkError as err:
                if err.errno != 17:
                    raise
        if _mac_source(name) != 3:  # NET_ADDR_SET
            # A bridge without an address of its own takes the lowest of its ports' and
            # changes it as ports come and go: the containers' ARP entry for the gateway
            # (their DNS server) then points nowhere until it expires. A fixed one, as
            # dockerd sets (02:42 and the gateway's address), never moves.
            nl.set_link(index, mac=bytes(int(x, 16) for x in mac_for(gateway).split(":")))
        nl.set_link(index, up=True)
    # Published ports on 127.0.0.1 are DNAT'ed to the container: the kernel must route
    # loopback-sourced packets out of the bridge (masqueraded there).
    _sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")
    enable_forwarding()
    return made


def _mac_source(name: str) -> int:
    """How the kernel assigned the link's MAC (``addr_assign_type``; 3: set by hand)."""
    try:
        with open(f"/sys/class/net/{name}/addr_assign_type") as f:
            return int(f.read())
    except (OSError, ValueError):
        return -1


def enable_forwarding() -> None:
    """IPv4 forwarding on, as dockerd turns it on: without it nothing leaves a bridge for
    another interface, and a published port reached through the gateway (hairpin) is
    dropped. Left on afterwards, as Docker leaves it."""
    from dockyard.linux.nsthread import at_home

    path = "/proc/sys/net/ipv4/ip_forward"

    def is_on() -> bool:
        try:
            with open(path) as f:
                return f.read(1) == "1"
        except OSError:
            return True

    if not at_home(is_on):
        _sysctl(path, "1")


def remove_bridge(name: str) -> bool:
    with Netlink() as nl:
        return nl.delete_link(name)


def mac_for(ip: str) -> str:
    """Docker's scheme: 02:42 and the IPv4 address, so a MAC never repeats on a network."""
    return "02:42:" + ":".join(f"{int(x):02x}" for x in ip.split("."))


def plug(netns: str, bridge: str, host_if: str, container_if: str, ip: str, prefix: int,
         gateway: str | None, mac: str) -> None:  # fmt: skip
    """A veth from ``bridge`` into the namespace at ``netns``: ``container_if`` there with
    ``ip``/``prefix`` and (if ``gateway``) the default route through it."""
    ns_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with Netlink() as nl:
            try:
                host_index = nl.add_veth(host_if, container_if, peer_netns_fd=ns_fd)
            except NetlinkError as err:
                if err.errno != 17:
                    raise
                # the same endpoint's previous veth, whose namespace the kernel is still
                # freeing (release leaves veths to go with their namespace)
                nl.delete_link(host_if)
                host_index = nl.add_veth(host_if, container_if, peer_netns_fd=ns_fd)
            nl.set_link(host_index, master=nl.index(bridge), up=True)
    finally:
        os.close(ns_fd)
    _sysctl(f"/sys/class/net/{host_if}/brport/hairpin_mode", "1")
    with Netlink(netns) as nl:
        index = nl.index(container_if)
        nl.set_link(index, mac=bytes(int(x, 16) for x in mac.split(":")))
        nl.add_address(index, ip, prefix)
        nl.set_link(index, up=True)
        nl.set_link(nl.index("lo"), up=True)
        if gateway:
            nl.add_default_route(gateway, index)


def loopback_up(netns: str) -> None:
    with Netlink(netns) as nl:
        nl.set_link(nl.index("lo"), up=True)


def unplug(host_if: str) -> None:
    """Remove the host end of a container's veth (the other end goes with it)."""
    with Netlink() as nl:
        nl.delete_link(host_if)
