"""The embedded DNS server of a user-defined network.

``python -m dockyard.network.dns ROOT NETWORK_ID``: one process per user network,
started with the network and stopped with it, listening on the network's
gateway address, port 53 (UDP). It answers A queries for the names, aliases and
short IDs of the endpoints on its network from the database (the names the engine gave each endpoint), and passes any
other question to the host's nameservers. Containers on the network get the
gateway as their nameserver (Docker uses 127.0.0.11 inside each container's
namespace, which needs a resolver per container or a daemon in every one).
"""

from __future__ import annotations

import os
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["answer", "ensure", "stop"]

_TTL = 600


def _pid_path(root: str, network_id: str) -> str:
    return os.path.join(root, "network", f"dns-{network_id[:12]}.pid")


def _running(root: str, network_id: str) -> int:
    try:
        with open(_pid_path(root, network_id)) as f:
            pid = int(f.read())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        if b"dockyard.network.dns" in cmdline and network_id.encode() in cmdline:
            return pid
    except (OSError, ValueError):
        pass
    return 0


def ensure(root: str, net: dict[str, Any]) -> None:
    """Start the network's server unless it runs; return once it answers."""
    if _running(root, net["id"]):
        return
    import subprocess
    import time

    os.makedirs(os.path.join(root, "network"), exist_ok=True)
    from dockyard.linux.nsthread import at_home

    # forked where the bridges are: a rootless user's network namespace, or here
    proc = at_home(lambda: subprocess.Popen([sys.executable, "-m", "dockyard.network.dns", root, net["id"]],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, start_new_session=True))  # fmt: skip
    # The server closes its stderr once it listens (or writes why it cannot).
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    deadline = time.monotonic() + 10
    while not _running(root, net["id"]) and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.005)
    if not _running(root, net["id"]):
        from dockyard.errors import DockyardError

        raise DockyardError(
            f"DNS server of network {net['name']} did not start: {err or 'no reason given'}"
        )


def stop(root: str, network_id: str) -> None:
    pid = _running(root, network_id)
    if pid:
        import signal

        os.kill(pid, signal.SIGTERM)
    try:
        os.unlink(_pid_path(root, network_id))
    except FileNotFoundError:
        pass


def _question(packet: bytes) -> tuple[str, int, int, int]:
    """(name, type, class, offset after the question) of a query's first question."""
    labels = []
    pos = 12
    while True:
        length = packet[pos]
        if length == 0:
            pos += 1
            break
        if length & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(packet[pos + 1 : pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length
    qtype, qclass = struct.unpack_from("!HH", packet, pos)
    return ".".join(labels).lower(), qtype, qclass, pos + 4


def answer(packet: bytes, lookup: Any) -> bytes | None:
    """The reply to ``packet``, with ``lookup(name)`` -> addresses (None: not ours)."""
    if len(packet) < 12:
        return None
    qid, flags, qdcount = struct.unpack_from("!HHH", packet)
    if flags & 0x8000 or qdcount != 1:
        return None
    try:
        name, qtype, qclass, end = _question(packet)
    except (IndexError, ValueError, struct.error):
        return struct.pack("!HHHHHH", qid, 0x8001 | (flags & 0x0100), 0, 0, 0, 0)  # FORMERR
    addresses = lookup(name)
    if addresses is None:
        return None
    question = packet[12:end]
    records = b""
    count = 0
    if qtype in (1, 255) and qclass == 1:
        for addr in addresses:
            records += (
                b"\xc0\x0c"
                + struct.pack("!HHIH", 1, 1, _TTL, 4)
                + bytes(int(x) for x in addr.split("."))
            )
            count += 1
    reply_flags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080  # QR, AA, RD as asked, RA
    return struct.pack("!HHHHHH", qid, reply_flags, 1, count, 0, 0) + question + records


def _upstreams() -> list[str]:
    out = []
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver" and not parts[1].startswith("127."):
                    out.append(parts[1])
    except OSError:
        pass
    return out


def serve(root: str, network_id: str) -> None:
    import _socket
    import select

    from dockyard import _json as json
    from dockyard.metadata import Database

    db = Database(root)
    row = db.query("SELECT gateway FROM networks WHERE id = ?", (network_id,))
    if not row:
        raise SystemExit(f"no network {network_id}")
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    sock.bind((row[0]["gateway"], 53))
    with open(_pid_path(root, network_id) + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(_pid_path(root, network_id) + ".tmp", _pid_path(root, network_id))
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # tells ensure() that we listen

    def lookup(name: str, client_ip: str) -> list[str] | None:
        """The addresses of ``name`` on the networks the asking endpoint is on (Docker's
        rule: a container resolves every container it shares a user network with), this
        network's first."""
        name = name.rstrip(".")
        rows = db.query(
            "SELECT e.ip, e.dns_names, e.network_id FROM endpoints e JOIN networks n ON n.id = e.network_id "
            "WHERE e.ip != '' AND n.name != 'bridge' AND (e.network_id = ? OR e.network_id IN "
            "(SELECT mine.network_id FROM endpoints mine WHERE mine.container_id IN "
            "(SELECT asker.container_id FROM endpoints asker WHERE asker.network_id = ? AND asker.ip = ?)))",
            (network_id, network_id, client_ip))  # fmt: skip
        found = sorted((r["network_id"] != network_id, r["ip"]) for r in rows
                       if name in (n.lower() for n in json.loads(r["dns_names"])))  # fmt: skip
        return [ip for _other, ip in found] or None

    upstream = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    servers = _upstreams()
    pending: dict[int, tuple[Any, int]] = {}
    while True:
        ready, _, _ = select.select([sock, upstream], [], [])
        if sock in ready:
            packet, client = sock.recvfrom(4096)
            reply = answer(packet, lambda name, asker=client[0]: lookup(name, asker))
            if reply is not None:
                sock.sendto(reply, client)
            elif servers and len(packet) >= 2:
                qid = struct.unpack_from("!H", packet)[0]
                pending[qid] = (client, qid)
                upstream.sendto(packet, (servers[0], 53))
            else:
                qid, flags = struct.unpack_from("!HH", packet) if len(packet) >= 4 else (0, 0)
                servfail = 0x8000 | 0x0080 | 2 | (flags & 0x0100)
                sock.sendto(struct.pack("!HHHHHH", qid, servfail, 1, 0, 0, 0) + packet[12:], client)
        if upstream in ready:
            packet, _ = upstream.recvfrom(4096)
            if len(packet) >= 2:
                qid = struct.unpack_from("!H", packet)[0]
                if qid in pending:
                    client, _ = pending.pop(qid)
                    sock.sendto(packet, client)


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        serve(sys.argv[1], sys.argv[2])
    except Exception as err:
        sys.stderr.write(f"{err}\n")
        sys.exit(1)
