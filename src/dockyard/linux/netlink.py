"""Just enough rtnetlink for container networking: links, addresses, routes.

Bridges, veth pairs (the peer made directly inside a container's network
namespace), moving links, addresses, the default route. Messages are packed
by hand on an ``AF_NETLINK`` socket: pyroute2 would do the same, but importing
it takes ~145 ms here, five times the whole network set-up of a container.

``Netlink(netns_path)`` opens its socket inside that namespace (for a moment
this process enters it); everything it then does happens there.
"""

from __future__ import annotations

import _socket
import os
import struct

__all__ = ["Netlink", "NetlinkError"]

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE = 24
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 1, 2, 4
NLM_F_ROOT, NLM_F_MATCH = 0x100, 0x200
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLA_F_NESTED = 0x8000

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
IFF_UP = 1
AF_INET = 2
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1

_HDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")


class NetlinkError(OSError):
    """The kernel refused a request; errno as OSError, plus what was asked."""


def _attr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def _nested(kind: int, *attrs: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(attrs))


def _name(value: str) -> bytes:
    return value.encode() + b"\0"


def _ip(addr: str) -> bytes:
    return _socket.inet_aton(addr)


def _attrs(data: bytes) -> dict[int, bytes]:
    out = {}
    pos = 0
    while pos + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, pos)
        if length < 4:
            break
        out[kind & ~NLA_F_NESTED] = data[pos + 4 : pos + length]
        pos += (length + 3) & ~3
    return out


def _rootless() -> bool:
    """A user namespace of its own (rootless): the host's network namespace, once left,
    cannot be joined again."""
    with open("/proc/self/uid_map", "rb") as f:
        return f.read().split()[:3] != [b"0", b"0", b"4294967295"]


class Netlink:
    """One rtnetlink socket, in this process's network namespace or in ``netns_path``'s."""

    def __init__(self, netns_path: str | None = None) -> None:
        if netns_path is None:
            from dockyard.linux.nsthread import at_home

            self.sock = at_home(self._open)  # the engine's bridges' namespace
        elif _rootless():
            from dockyard.linux.nsthread import run_in

            self.sock = run_in(netns_path, self._open)
        else:
            from dockyard.linux import syscalls as sc

            home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                sc.setns(target, sc.CLONE_NEWNET)
                try:
                    self.sock = self._open()  # a socket stays in the namespace it was made in
                finally:
                    sc.setns(home, sc.CLONE_NEWNET)
            finally:
                os.close(target)
                os.close(home)
        self.seq = 0

    @staticmethod
    def _open() -> _socket.socket:
        sock = _socket.socket(
            _socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        sock.bind((0, 0))
        return sock

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- transport

    def _request(self, kind: int, flags: int, body: bytes, what: str) -> list[tuple[int, bytes]]:
        """Send one request; the replies' (type, payload) until ACK or DONE."""
        self.seq += 1
        seq = self.seq
        self.sock.send(
            _HDR.pack(_HDR.size + len(body), kind, flags | NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body
        )
        replies: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(1 << 16)
            pos = 0
            while pos + _HDR.size <= len(data):
                length, mtype, _flags, mseq, _pid = _HDR.unpack_from(data, pos)
                payload = data[pos + _HDR.size : pos + length]
                pos += (length + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return replies
                if mtype == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", payload)
                    if err == 0:
                        if not flags & NLM_F_ROOT:
                            return replies
                        continue
                    raise NetlinkError(-err, f"{what}: {os.strerror(-err)}")
                replies.append((mtype, payload))

    # --- links

    def links(self) -> dict[str, int]:
        """Name -> ifindex of every link in the namespace."""
        out = {}
        for mtype, payload in self._request(RTM_GETLINK, NLM_F_ROOT | NLM_F_MATCH,
                                            _IFINFO.pack(0, 0, 0, 0, 0), "list links"):  # fmt: skip
            if mtype != RTM_NEWLINK:
                continue
            _family, _type, index, _flags, _change = _IFINFO.unpack_from(payload)
            name = _attrs(payload[_IFINFO.size :]).get(IFLA_IFNAME, b"").rstrip(b"\0").decode()
            out[name] = index
        return out

    def index(self, name: str) -> int:
        body = _IFINFO.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(name))
        for mtype, payload in self._request(RTM_GETLINK, 0, body, f"link {name}"):
            if mtype == RTM_NEWLINK:
                return _IFINFO.unpack_from(payload)[2]
        raise NetlinkError(19, f"link {name}: No such device")

    def exists(self, name: str) -> bool:
        try:
            self.index(name)
        except NetlinkError:
            return False
        return True

    def add_bridge(self, name: str, mtu: int = 0) -> int:
        attrs = _attr(IFLA_IFNAME, _name(name)) + _nested(
            IFLA_LINKINFO, _attr(IFLA_INFO_KIND, b"bridge")
        )
        if mtu:
            attrs += _attr(IFLA_MTU, struct.pack("=I", mtu))
        self._request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, _IFINFO.pack(0, 0, 0, 0, 0) + attrs,
                      f"create bridge {name}")  # fmt: skip
        return self.index(name)

    def add_veth(self, name: str, peer: str, peer_netns_fd: int = -1, mtu: int = 0) -> int:
        """A veth pair ``name`` (here) -- ``peer`` (in ``peer_netns_fd``'s namespace if given)."""
        peer_attrs = _attr(IFLA_IFNAME, _name(peer))
        if peer_netns_fd >= 0:
            peer_attrs += _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        if mtu:
            peer_attrs += _attr(IFLA_MTU, struct.pack("=I", mtu))
        info = _nested(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, b"veth"),
                       _nested(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, _IFINFO.pack(0, 0, 0, 0, 0) + peer_attrs)))  # fmt: skip
        attrs = _attr(IFLA_IFNAME, _name(name)) + info
        if mtu:
            attrs += _attr(IFLA_MTU, struct.pack("=I", mtu))
        self._request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, _IFINFO.pack(0, 0, 0, 0, 0) + attrs,
                      f"create veth {name}")  # fmt: skip
        return self.index(name)

    def set_link(self, index: int, up: bool | None = None, master: int | None = None,
                 name: str | None = None, mac: bytes | None = None) -> None:  # fmt: skip
        flags = change = 0
        if up is not None:
            flags, change = (IFF_UP if up else 0), IFF_UP
        attrs = b""
        if master is not None:
            attrs += _attr(IFLA_MASTER, struct.pack("=I", master))
        if name is not None:
            attrs += _attr(IFLA_IFNAME, _name(name))
        if mac is not None:
            attrs += _attr(IFLA_ADDRESS, mac)
        self._request(
            RTM_NEWLINK, 0, _IFINFO.pack(0, 0, index, flags, change) + attrs, f"set link {index}"
        )

    def delete_link(self, name: str) -> bool:
        """Remove a link; False if there was none by that name."""
        try:
            index = self.index(name)
        except NetlinkError:
            return False
        try:
            self._request(RTM_DELLINK, 0, _IFINFO.pack(0, 0, index, 0, 0), f"delete link {name}")
        except NetlinkError as err:
            if err.errno == 19:  # went away meanwhile (its namespace died)
                return False
            raise
        return True

    # --- addresses and routes

    def add_address(self, index: int, address: str, prefix: int) -> None:
        addr = _ip(address)
        host = int.from_bytes(addr, "big") | ((1 << (32 - prefix)) - 1) if prefix < 32 else 0
        attrs = _attr(IFA_LOCAL, addr) + _attr(IFA_ADDRESS, addr)
        if prefix < 31:
            attrs += _attr(IFA_BROADCAST, host.to_bytes(4, "big"))
        self._request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, _IFADDR.pack(AF_INET, prefix, 0, 0, index) + attrs,
                      f"add address {address}/{prefix}")  # fmt: skip

    def addresses(self, index: int) -> list[tuple[str, int]]:
        out = []
        for _mtype, payload in self._request(RTM_GETADDR, NLM_F_ROOT | NLM_F_MATCH,
                                            _IFADDR.pack(AF_INET, 0, 0, 0, 0), "list addresses"):  # fmt: skip
            family, prefix, _flags, _scope, ifindex = _IFADDR.unpack_from(payload)
            if family == AF_INET and ifindex == index:
                local = _attrs(payload[_IFADDR.size :]).get(IFA_LOCAL)
                if local:
                    out.append((_socket.inet_ntoa(local), prefix))
        return out

    def add_default_route(self, gateway: str, index: int) -> None:
        body = _RTMSG.pack(
            AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0
        )
        body += _attr(RTA_GATEWAY, _ip(gateway)) + _attr(RTA_OIF, struct.pack("=I", index))
        self._request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body, f"default route via {gateway}")
