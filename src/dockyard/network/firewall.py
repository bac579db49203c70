"""dockyard's nftables table: masquerading, published ports, isolation between networks.

The whole table is written from the database each time it must change, in one
``nft -f`` transaction (create, flush by delete, re-create): what the kernel
holds is always exactly what the database says, a crash cannot leave half a
change, and re-running it after a reboot restores everything. A lock file
serialises writers, so a parallel start cannot apply a view older than its own.

One table per engine root (``dockyard`` for the default root), so that two
engines on a host, or the tests' engines, never touch each other's rules. No
table exists while no network of the engine has a bridge.

Where only iptables exists (or ``DOCKYARD_FIREWALL=iptables``), the same rules
go into chains of the engine's own (``DY-<hash>-PORTS``, ``-POST``, ``-FWD``),
rewritten with ``iptables-restore --noflush`` and reached by one jump each from
the built-in chains; they and the jumps go when the last network goes.
"""

from __future__ import annotations

import os

from dockyard.errors import DockyardError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["FirewallError", "backend", "render", "render_iptables", "sync", "table_name"]


class FirewallError(DockyardError):
    pass


def table_name(root: str) -> str:
    if os.path.realpath(root) == "/var/lib/dockyard":
        return "dockyard"
    import zlib

    return f"dockyard_{zlib.crc32(os.path.realpath(root).encode()):08x}"


def _tool(name: str) -> str | None:
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return None


def backend() -> str:
    """ "nftables" or "iptables": DOCKYARD_FIREWALL if set, else nft when installed."""
    wanted = os.environ.get("DOCKYARD_FIREWALL", "")
    if wanted not in ("", "nftables", "iptables"):
        raise FirewallError(f"DOCKYARD_FIREWALL={wanted}: want nftables or iptables")
    if wanted != "iptables" and _tool("nft"):
        return "nftables"
    if wanted != "nftables" and _tool("iptables-restore"):
        return "iptables"
    raise FirewallError(
        "bridge networking needs nftables' nft or iptables (Debian: apt-get install nftables)"
    )


def _nft() -> str:
    nft = _tool("nft")
    if nft is None:
        raise FirewallError(
            "bridge networking needs nftables' nft command (Debian: apt-get install nftables)"
        )
    return nft


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
        if backend() == "iptables":
            _sync_iptables(table_name(root), networks, ports)
            return
        script = render(table_name(root), networks, ports)
        proc = subprocess.run([_nft(), "-f", "-"], input=script.encode(), capture_output=True)
        if proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip().splitlines()
            raise FirewallError(f"nft: {message[0] if message else 'failed'}")


def _chains(table: str) -> dict[str, str]:
    import zlib

    tag = f"{zlib.crc32(table.encode()):08X}"
    return {"ports": f"DY-{tag}-PORTS", "post": f"DY-{tag}-POST", "fwd": f"DY-{tag}-FWD"}


def render_iptables(table: str, networks: list[dict[str, Any]], ports: list[dict[str, Any]]) -> str:
    """iptables-restore input (for --noflush) filling the engine's chains."""
    ch = _chains(table)
    bridges = [n["bridge"] for n in networks]
    nat = [f":{ch['ports']} - [0:0]", f":{ch['post']} - [0:0]"]
    for p in ports:
        match = f"-d {p['host_ip']}/32 " if p["host_ip"] not in ("", "0.0.0.0") else ""
        nat.append(f"-A {ch['ports']} {match}-p {p['proto']} -m {p['proto']} --dport {p['host_port']} "
                   f"-j DNAT --to-destination {p['ip']}:{p['container_port']}")  # fmt: skip
    filt = [f":{ch['fwd']} - [0:0]", f"-A {ch['fwd']} -m conntrack --ctstate DNAT -j ACCEPT"]
    for n in networks:
        br, subnet = n["bridge"], n["subnet"]
        nat.append(
            f"-A {ch['post']} -s 127.0.0.0/8 -o {br} -m conntrack --ctstate DNAT -j MASQUERADE"
        )
        nat.append(f"-A {ch['post']} -s {subnet} -o {br} -m conntrack --ctstate DNAT -j MASQUERADE")
        if not n["internal"]:
            nat.append(f"-A {ch['post']} -s {subnet} ! -o {br} -j MASQUERADE")
            filt += [
                f"-A {ch['fwd']} -i {br} -o {other} -j DROP" for other in bridges if other != br
            ]
        else:
            filt += [
                f"-A {ch['fwd']} -i {br} ! -o {br} -j DROP",
                f"-A {ch['fwd']} -o {br} ! -i {br} -j DROP",
            ]
    return "*nat\n" + "\n".join(nat) + "\nCOMMIT\n*filter\n" + "\n".join(filt) + "\nCOMMIT\n"


def _jumps(table: str) -> list[tuple[str, list[str]]]:
    ch = _chains(table)
    local = ["-m", "addrtype", "--dst-type", "LOCAL"]
    return [("nat", ["PREROUTING", *local, "-j", ch["ports"]]), ("nat", ["OUTPUT", *local, "-j", ch["ports"]]),
            ("nat", ["POSTROUTING", "-j", ch["post"]]), ("filter", ["FORWARD", "-j", ch["fwd"]])]  # fmt: skip


def _sync_iptables(table: str, networks: list[dict[str, Any]], ports: list[dict[str, Any]]) -> None:
    import subprocess

    iptables = _tool("iptables") or "iptables"

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([iptables, "-w", *args], capture_output=True)

    if not networks:
        for tbl, rule in _jumps(table):
            while run("-t", tbl, "-D", *rule).returncode == 0:
                pass
        for tbl, chain in (("nat", "ports"), ("nat", "post"), ("filter", "fwd")):
            run("-t", tbl, "-F", _chains(table)[chain])
            run("-t", tbl, "-X", _chains(table)[chain])
        return
    proc = subprocess.run([_tool("iptables-restore") or "iptables-restore", "-w", "--noflush"],
                          input=render_iptables(table, networks, ports).encode(), capture_output=True)  # fmt: skip
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        raise FirewallError(f"iptables-restore: {message[0] if message else 'failed'}")
    for tbl, rule in _jumps(table):
        if run("-t", tbl, "-C", *rule).returncode != 0:
            insert = run("-t", tbl, "-I", *rule[:1], "1", *rule[1:])
            if insert.returncode != 0:
                raise FirewallError(f"iptables: {insert.stderr.decode(errors='replace').strip()}")


def present(root: str) -> tuple[bool, str]:
    """Whether the engine's rules are in the kernel, and what they are called."""
    import subprocess

    table = table_name(root)
    if backend() == "iptables":
        post = _chains(table)["post"]
        proc = subprocess.run([_tool("iptables") or "iptables", "-w", "-t", "nat", "-C", "POSTROUTING", "-j", post],
                              capture_output=True)  # fmt: skip
        return proc.returncode == 0, f"iptables chains {post[:-5]}-*"
    proc = subprocess.run([_nft(), "list", "table", "ip", table], capture_output=True)
    return proc.returncode == 0, f"nftables table {table}"
