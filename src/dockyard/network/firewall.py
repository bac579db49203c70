"""dockyard's nftables table: masquerading, published ports, isolation between networks.

The whole table is written from the database each time it must change, in one
``nft -f`` transaction (create, flush by delete, re-create): what the kernel
holds is always exactly what the database says, a crash cannot leave half a
change, and re-running it after a reboot restores everything. A lock file
serialises writers, so a parallel start cannot apply a view older than its own.

One table per engine root (``dockyard`` for the default root), so that two
engines on a host, or the tests' engines, never touch each other's rules. No
table exists while no network of the engine has a bridge.
"""

from __future__ import annotations

import os

from dockyard.errors import DockyardError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["FirewallError", "render", "sync", "table_name"]


class FirewallError(DockyardError):
    pass


def table_name(root: str) -> str:
    if os.path.realpath(root) == "/var/lib/dockyard":
        return "dockyard"
    import zlib

    return f"dockyard_{zlib.crc32(os.path.realpath(root).encode()):08x}"


def _nft() -> str:
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        if os.access(os.path.join(d, "nft"), os.X_OK):
            return os.path.join(d, "nft")
    if any(os.access(os.path.join(d, "iptables"), os.X_OK) for d in ("/usr/sbin", "/sbin")):
        raise FirewallError("bridge networking needs nftables' nft command (Debian: apt-get install "
                            "nftables); only iptables is installed, which dockyard does not drive yet")  # fmt: skip
    raise FirewallError(
        "bridge networking needs nftables' nft command (Debian: apt-get install nftables)"
    )


def render(table: str, networks: list[dict[str, Any]], ports: list[dict[str, Any]]) -> str:
    """The nft script that makes ``table`` hold rules for ``networks`` (with their bridge up)
    and the published ``ports`` (container address, protocol, ports, host address)."""
    head = f"table ip {table} {{}}\ndelete table ip {table}\n"
    if not networks:
        return head
    bridges = [n["bridge"] for n in networks]
    lines = [f"table ip {table} {{"]
    lines.append("  chain ports {")
    for p in ports:
        match = f"ip daddr {p['host_ip']} " if p["host_ip"] not in ("", "0.0.0.0") else ""
        lines.append(
            f"    {match}{p['proto']} dport {p['host_port']} dnat to {p['ip']}:{p['container_port']}"
        )
    lines.append("  }")
    lines.append("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n"
                 "    fib daddr type local jump ports\n  }")  # fmt: skip
    lines.append("  chain output {\n    type nat hook output priority -100; policy accept;\n"
                 "    fib daddr type local jump ports\n  }")  # fmt: skip
    lines.append(
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;"
    )
    for n in networks:
        br, subnet = n["bridge"], n["subnet"]
        # published ports reached from the host's loopback or from a container (hairpin)
        lines.append(f'    ct status dnat ip saddr 127.0.0.0/8 oifname "{br}" masquerade')
        lines.append(f'    ct status dnat ip saddr {subnet} oifname "{br}" masquerade')
        if not n["internal"]:
            lines.append(f'    ip saddr {subnet} oifname != "{br}" masquerade')
    lines.append("  }")
    lines.append("  chain forward {\n    type filter hook forward priority filter; policy accept;")
    lines.append("    ct status dnat accept")
    for n in networks:
        br = n["bridge"]
        others = [b for b in bridges if b != br]
        if n["internal"]:
            lines.append(f'    iifname "{br}" oifname != "{br}" drop')
            lines.append(f'    oifname "{br}" iifname != "{br}" drop')
        elif others:
            names = ", ".join(f'"{b}"' for b in others)
            lines.append(f'    iifname "{br}" oifname {{ {names} }} drop')
    lines.append("  }")
    lines.append("}")
    return head + "\n".join(lines) + "\n"


def sync(root: str, build: Any) -> None:
    """Rewrite the engine's table from ``build()`` -> (networks, ports), under the lock."""
    import fcntl
    import subprocess

    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "network.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        networks, ports = build()
        script = render(table_name(root), networks, ports)
        proc = subprocess.run([_nft(), "-f", "-"], input=script.encode(), capture_output=True)
        if proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip().splitlines()
            raise FirewallError(f"nft: {message[0] if message else 'failed'}")
