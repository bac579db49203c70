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

Another engine on the host (dockerd sets the FORWARD policy to DROP) would drop the
traffic of dockyard's bridges in its own chains, and with bridge netfilter on that is
even traffic between two containers of one network: an accept in dockyard's table
cannot overrule a drop in another. So the forward path of iptables (legacy or nft,
whichever ``iptables`` is) gets an accept chain of the engine's own, ``DY-<hash>-OK``,
jumped to first from FORWARD: what comes from or goes to the engine's bridges is let
through there, and dockyard's own table still drops what must not pass (between
networks, out of internal ones). It is rewritten whenever a bridge comes or goes, and
``system check --repair`` puts it back after the other engine flushed its chains.
"""

from __future__ import annotations

import os

from dockyard.errors import DockyardError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "FirewallError",
    "backend",
    "forward_accept_present",
    "render",
    "render_forward_accept",
    "render_iptables",
    "sync",
    "sync_forward_accept",
    "table_name",
]


class FirewallError(DockyardError):
    pass


def engine_netns() -> str | None:
    from dockyard.linux.nsthread import engine_netns

    return engine_netns()


def _run(argv: list[str], **kw: Any) -> Any:
    """``subprocess.run`` in the engine's network namespace (a rootless user's own)."""
    import subprocess

    from dockyard.linux.nsthread import at_home

    return at_home(lambda: subprocess.run(argv, **kw))


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


def sync(root: str, build: Any, forward: bool = False) -> None:
    """Rewrite the engine's table from ``build()`` -> (networks, ports), under the lock;
    with ``forward`` (the set of bridges changed) the accept chain in iptables' FORWARD too."""
    import fcntl

    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "network.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        networks, ports = build()
        if engine_netns() is not None:
            # a rootless user's: the rules stay in the user's namespace, and the host's
            # side of each port is the user's forwarder
            from dockyard import rootless
            from dockyard.rootless import ports as forwarder

            forwarder.reconcile(rootless.run_dir(), ports)
        if backend() == "iptables":
            _sync_iptables(table_name(root), networks, ports)
            if forward:  # after: the filter table may be there only from now on
                sync_forward_accept(table_name(root), networks)
            return
        if forward:
            sync_forward_accept(table_name(root), networks)
        script = render(table_name(root), networks, ports)
        proc = _run([_nft(), "-f", "-"], input=script.encode(), capture_output=True)
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

    iptables = _tool("iptables") or "iptables"

    def run(*args: str) -> Any:
        return _run([iptables, "-w", *args], capture_output=True)

    if not networks:
        for tbl, rule in _jumps(table):
            while run("-t", tbl, "-D", *rule).returncode == 0:
                pass
        for tbl, chain in (("nat", "ports"), ("nat", "post"), ("filter", "fwd")):
            run("-t", tbl, "-F", _chains(table)[chain])
            run("-t", tbl, "-X", _chains(table)[chain])
        return
    proc = _run([_tool("iptables-restore") or "iptables-restore", "-w", "--noflush"],
                          input=render_iptables(table, networks, ports).encode(), capture_output=True)  # fmt: skip
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        raise FirewallError(f"iptables-restore: {message[0] if message else 'failed'}")
    for tbl, rule in _jumps(table):
        if run("-t", tbl, "-C", *rule).returncode != 0:
            insert = run("-t", tbl, "-I", *rule[:1], "1", *rule[1:])
            if insert.returncode != 0:
                raise FirewallError(f"iptables: {insert.stderr.decode(errors='replace').strip()}")


def _accept_chain(table: str) -> str:
    return _chains(table)["fwd"][:-3] + "OK"


def render_forward_accept(table: str, networks: list[dict[str, Any]]) -> str:
    """iptables-restore input (for --noflush) for the engine's accept chain."""
    chain = _accept_chain(table)
    lines = [f":{chain} - [0:0]"]
    for n in networks:
        br = n["bridge"]
        if n["internal"]:
            lines.append(f"-A {chain} -i {br} -o {br} -j ACCEPT")
            continue
        lines += [f"-A {chain} -i {br} -j ACCEPT",
                  f"-A {chain} -o {br} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT"]  # fmt: skip
    return "*filter\n" + "\n".join(lines) + "\nCOMMIT\n"


def sync_forward_accept(table: str, networks: list[dict[str, Any]]) -> None:
    """The accept chain for ``networks``' bridges, jumped to first from FORWARD; gone with the
    last network. Nothing where iptables is not installed (nothing else can drop there)."""

    iptables, restore = _tool("iptables"), _tool("iptables-restore")
    if iptables is None or restore is None or not _filter_forward_exists(iptables):
        return  # no FORWARD chain of iptables' own, nothing there to drop (nor to clean)
    chain = _accept_chain(table)

    def run(*args: str) -> Any:
        return _run([iptables, "-w", "-t", "filter", *args], capture_output=True)

    if not networks:
        while run("-D", "FORWARD", "-j", chain).returncode == 0:
            pass
        run("-F", chain)
        run("-X", chain)
        return
    proc = _run([restore, "-w", "--noflush"], input=render_forward_accept(table, networks).encode(),
                          capture_output=True)  # fmt: skip
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        raise FirewallError(f"iptables-restore: {message[0] if message else 'failed'}")
    if run("-C", "FORWARD", "-j", chain).returncode != 0:
        insert = run("-I", "FORWARD", "1", "-j", chain)
        if insert.returncode != 0:
            raise FirewallError(f"iptables: {insert.stderr.decode(errors='replace').strip()}")


def _filter_forward_exists(iptables: str) -> bool:
    """Whether iptables' filter table has a FORWARD chain: made by another engine or a
    firewall; never made here (an empty one would outlive dockyard's networks)."""

    version = _run([iptables, "-V"], capture_output=True).stdout.decode(errors="replace")
    if "nf_tables" in version:
        nft = _tool("nft")
        return nft is not None and _run([nft, "list", "chain", "ip", "filter", "FORWARD"],
                                                  capture_output=True).returncode == 0  # fmt: skip
    try:
        with open("/proc/net/ip_tables_names") as f:
            return "filter" in f.read().split()
    except OSError:
        return False


def forward_accept_present(root: str) -> bool:
    """Whether FORWARD still jumps to the engine's accept chain (True where iptables has no
    FORWARD chain: nothing there drops)."""

    iptables = _tool("iptables")
    if iptables is None or not _filter_forward_exists(iptables):
        return True
    chain = _accept_chain(table_name(root))
    return _run([iptables, "-w", "-t", "filter", "-C", "FORWARD", "-j", chain],
                          capture_output=True).returncode == 0  # fmt: skip


def present(root: str) -> tuple[bool, str]:
    """Whether the engine's rules are in the kernel, and what they are called."""

    table = table_name(root)
    if backend() == "iptables":
        post = _chains(table)["post"]
        proc = _run([_tool("iptables") or "iptables", "-w", "-t", "nat", "-C", "POSTROUTING", "-j", post],
                              capture_output=True)  # fmt: skip
        return proc.returncode == 0, f"iptables chains {post[:-5]}-*"
    proc = _run([_nft(), "list", "table", "ip", table], capture_output=True)
    return proc.returncode == 0, f"nftables table {table}"
