"""Networking as a Docker user meets it: the default bridge, published ports, user networks
with DNS, network modes, and nothing left behind.

Traffic goes only to loopback and to the bridges and containers these tests create.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import Dy, engine_for_module

pytestmark = pytest.mark.root

WEB = (
    "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"
)


@pytest.fixture(scope="module")
def dy(tmp_path_factory):  # type: ignore[no-untyped-def]
    yield from engine_for_module(tmp_path_factory, "net")


def _get(url: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _bridge(dy: Dy, network: str = "bridge") -> dict:
    return json.loads(dy("network", "inspect", network).stdout)[0]


def _nft_table(dy: Dy) -> str:
    from dockyard.network.firewall import table_name

    proc = subprocess.run(
        ["nft", "list", "table", "ip", table_name(dy.root)], capture_output=True, text=True
    )
    return proc.stdout if proc.returncode == 0 else ""


def test_default_bridge_gives_address_route_and_files(dy: Dy) -> None:
    out = dy("run", "--rm", "--name", "addr1", "busybox", "sh", "-c",
             "ip -o -4 addr show eth0; ip route; cat /etc/hosts /etc/resolv.conf; hostname").stdout  # fmt: skip
    net = _bridge(dy)
    subnet = net["IPAM"]["Config"][0]["Subnet"]
    gateway = net["IPAM"]["Config"][0]["Gateway"]
    from dockyard.network.ipam import Subnet

    address = out.split("inet ", 1)[1].split("/", 1)[0]
    assert Subnet(subnet).contains(address) and address != gateway
    assert f"default via {gateway} dev eth0" in out
    hostname = out.strip().splitlines()[-1]
    assert f"{address}\t{hostname}" in out  # /etc/hosts names the container's own address
    assert net["Options"]["com.docker.network.bridge.name"] in os.listdir("/sys/class/net")


def test_inspect_shows_the_address_the_container_has(dy: Dy) -> None:
    cid = dy("run", "-d", "busybox", "sleep", "60").stdout.strip()
    try:
        settings = dy.record(cid)["NetworkSettings"]
        inside = dy("exec", cid, "ip", "-o", "-4", "addr", "show", "eth0").stdout
        assert f"inet {settings['IPAddress']}/{settings['IPPrefixLen']}" in inside
        assert settings["Networks"]["bridge"]["IPAddress"] == settings["IPAddress"]
        assert (
            settings["MacAddress"] in dy("exec", cid, "cat", "/sys/class/net/eth0/address").stdout
        )
    finally:
        dy("rm", "-f", cid)


def test_twenty_parallel_runs_get_distinct_addresses(dy: Dy) -> None:
    with ThreadPoolExecutor(20) as pool:
        ids = [f.result().stdout.strip() for f in
               [pool.submit(dy, "run", "-d", "busybox", "sleep", "60") for _ in range(20)]]  # fmt: skip
    try:
        addresses = [dy.record(cid)["NetworkSettings"]["IPAddress"] for cid in ids]
        assert len(set(addresses)) == 20 and all(addresses)
        # and the kernel agrees: each container has the address the engine recorded
        for cid, address in zip(ids[:5], addresses[:5], strict=True):
            assert (
                f"inet {address}/"
                in dy("exec", cid, "ip", "-o", "-4", "addr", "show", "eth0").stdout
            )
    finally:
        dy("rm", "-f", *ids)
    assert not _bridge(dy)["Containers"]  # every address went back


def test_published_port_answers_on_loopback_and_by_hairpin(dy: Dy) -> None:
    dy(
        "run",
        "-d",
        "--name",
        "web",
        "-h",
        "web",
        "-p",
        "127.0.0.1:18231:80",
        "busybox",
        "sh",
        "-c",
        WEB,
    )
    try:
        assert _get("http://127.0.0.1:18231/") == "hello-from-web\n"
        assert dy("port", "web").stdout == "80/tcp -> 127.0.0.1:18231\n"
        assert dy("port", "web", "80/tcp").stdout == "127.0.0.1:18231\n"
        assert "127.0.0.1:18231->80/tcp" in dy("ps").stdout
        # from another container, through the published port on the bridge's gateway (hairpin)
        gateway = _bridge(dy)["IPAM"]["Config"][0]["Gateway"]
        dy("run", "-d", "--name", "web2", "-p", "18232:80", "busybox", "sh", "-c", WEB)
        got = dy("run", "--rm", "busybox", "sh", "-c",
                 f"for i in $(seq 50); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {gateway} 18232 | grep hello-from- && exit 0; sleep 0.1; done; exit 1").stdout  # fmt: skip
        assert got.startswith("hello-from-")
        assert "dport 18231" in _nft_table(dy)
    finally:
        dy("rm", "-f", "web", "web2")
    assert "dport 18231" not in _nft_table(dy)  # removing the container removed its rules
    with pytest.raises(OSError):
        urllib.request.urlopen("http://127.0.0.1:18231/", timeout=1)


def test_random_ports_and_publish_all(dy: Dy) -> None:
    cid = dy(
        "run", "-d", "-p", "80", "--expose", "8080", "-P", "busybox", "sh", "-c", WEB
    ).stdout.strip()
    try:
        ports = dy.record(cid)["NetworkSettings"]["Ports"]
        assert set(ports) == {"80/tcp", "8080/tcp"}
        host_port = int(ports["80/tcp"][0]["HostPort"])
        assert 49153 <= host_port <= 65535
        assert int(ports["8080/tcp"][0]["HostPort"]) != host_port
        assert _get(f"http://127.0.0.1:{host_port}/").startswith("hello-from-")
    finally:
        dy("rm", "-f", cid)


def test_port_conflicts_name_the_holder(dy: Dy) -> None:
    dy("run", "-d", "--name", "holder", "-p", "18240:80", "busybox", "sleep", "60")
    try:
        proc = dy("run", "--rm", "-p", "18240:80", "busybox", "true", ok=False)
        assert proc.returncode == 125
        assert "18240" in proc.stderr and "port is already allocated" in proc.stderr
        assert "holder" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    finally:
        dy("rm", "-f", "holder")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 18241))
    listener.listen()
    try:
        proc = dy("run", "--rm", "-p", "127.0.0.1:18241:80", "busybox", "true", ok=False)
        assert proc.returncode == 125
        assert f"process {os.getpid()}" in proc.stderr  # this test's own process holds it
    finally:
        listener.close()
    assert not dy("ps", "-aq").stdout.strip()


def test_user_network_names_aliases_and_isolation(dy: Dy) -> None:
    dy("network", "create", "--label", "tier=back", "backend")
    dy("network", "create", "--subnet", "10.213.77.0/24", "frontend")
    try:
        dy("run", "-d", "--name", "db", "--network", "backend", "--network-alias", "database",
           "busybox", "sleep", "60")  # fmt: skip
        db_ip = dy.record("db")["NetworkSettings"]["Networks"]["backend"]["IPAddress"]
        out = dy("run", "--rm", "--network", "backend", "busybox", "sh", "-c",
                 "nslookup db; nslookup database; ping -c1 -W2 db").stdout  # fmt: skip
        assert out.count(f"Address: {db_ip}") == 2 and "1 packets received" in out
        # another network cannot reach it, not even by address
        proc = dy(
            "run", "--rm", "--network", "frontend", "busybox", "ping", "-c1", "-W1", db_ip, ok=False
        )
        assert proc.returncode != 0 and "0 packets received" in proc.stdout
        front = _bridge(dy, "frontend")
        assert front["IPAM"]["Config"] == [{"Subnet": "10.213.77.0/24", "Gateway": "10.213.77.1"}]
        assert _bridge(dy, "backend")["Labels"] == {"tier": "back"}
        assert next(iter(_bridge(dy, "backend")["Containers"].values()))["Name"] == "db"
        listing = dy("network", "ls").stdout
        assert "backend" in listing and "frontend" in listing and "NETWORK ID" in listing
        # the names an endpoint answers to follow a rename (the engine records them)
        dy("rename", "db", "store")
        out = dy("run", "--rm", "--network", "backend", "busybox", "sh", "-c",
                 "nslookup store; nslookup db || echo no-db").stdout  # fmt: skip
        assert f"Address: {db_ip}" in out and "no-db" in out
        rec = dy.record("store")
        names = rec["NetworkSettings"]["Networks"]["backend"]["DNSNames"]
        assert names == ["store", rec["Id"][:12], "database"]
        assert next(iter(_bridge(dy, "backend")["Containers"].values()))["Name"] == "store"
    finally:
        dy("rm", "-f", "db", "store", ok=False)
        dy("network", "rm", "backend", "frontend")
    assert "backend" not in dy("network", "ls").stdout
    assert not [p for p in _processes_with(dy.root) if "dockyard.network.dns" in p]


def _processes_with(text: str) -> list[str]:
    out = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if text in line]


def test_fixed_address_and_connect_disconnect(dy: Dy) -> None:
    dy("network", "create", "--subnet", "10.213.78.0/24", "fixed")
    dy("network", "create", "--subnet", "10.213.79.0/24", "extra")
    try:
        dy(
            "run",
            "-d",
            "--name",
            "pinned",
            "--network",
            "fixed",
            "--ip",
            "10.213.78.50",
            "busybox",
            "sleep",
            "60",
        )
        assert "inet 10.213.78.50/24" in dy("exec", "pinned", "ip", "-o", "-4", "addr").stdout
        proc = dy(
            "run", "--rm", "--network", "fixed", "--ip", "10.213.78.50", "busybox", "true", ok=False
        )
        assert proc.returncode == 125 and "10.213.78.50" in proc.stderr and "pinned" in proc.stderr
        dy("network", "connect", "--alias", "second", "extra", "pinned")
        addrs = dy("exec", "pinned", "ip", "-o", "-4", "addr").stdout
        assert "eth1" in addrs and "10.213.79." in addrs
        out = dy("run", "--rm", "--network", "extra", "busybox", "nslookup", "second").stdout
        assert "10.213.79." in out
        refused = dy("network", "rm", "extra", ok=False)
        assert refused.returncode != 0 and "pinned" in refused.stderr
        dy("network", "disconnect", "extra", "pinned")
        assert "eth1" not in dy("exec", "pinned", "ip", "-o", "-4", "addr").stdout
    finally:
        dy("rm", "-f", "pinned")
        dy("network", "rm", "fixed", "extra")


def test_network_modes(dy: Dy) -> None:
    links = dy("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net").stdout.split()
    assert links == ["lo"]
    up = dy(
        "run", "--rm", "--network", "none", "busybox", "cat", "/sys/class/net/lo/operstate"
    ).stdout
    assert up.strip() in ("unknown", "up")
    host_links = sorted(os.listdir("/sys/class/net"))
    seen = dy("run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net").stdout.split()
    assert sorted(seen) == host_links
    assert (
        dy("run", "--rm", "--network", "host", "busybox", "hostname").stdout.strip()
        == os.uname().nodename
    )
    dy("run", "-d", "--name", "owner", "busybox", "sleep", "60")
    try:
        owner_ip = dy.record("owner")["NetworkSettings"]["IPAddress"]
        shared = dy(
            "run", "--rm", "--network", "container:owner", "busybox", "ip", "-o", "-4", "addr"
        ).stdout
        assert f"inet {owner_ip}/" in shared
    finally:
        dy("rm", "-f", "owner")
    proc = dy("run", "--rm", "--network", "host", "-p", "80:80", "busybox", "true", ok=False)
    assert proc.returncode == 125 and "conflicting options" in proc.stderr


def test_add_host_and_dns_flags(dy: Dy) -> None:
    out = dy("run", "--rm", "--add-host", "db.local:10.1.2.3", "--dns", "10.9.9.9", "--dns-search", "corp.example",
             "busybox", "cat", "/etc/hosts", "/etc/resolv.conf").stdout  # fmt: skip
    assert "10.1.2.3\tdb.local" in out
    assert "nameserver 10.9.9.9" in out and "search corp.example" in out


def test_internal_network_has_no_way_out(dy: Dy) -> None:
    dy("network", "create", "--internal", "--subnet", "10.213.80.0/24", "sealed")
    try:
        dy("run", "-d", "--name", "inside", "--network", "sealed", "busybox", "sleep", "60")
        rules = _nft_table(dy)
        assert "ip saddr 10.213.80.0/24 oifname" not in rules.replace(
            'oifname "dy', "X"
        )  # no masquerade out
        bridge = _bridge(dy, "sealed")["Options"]["com.docker.network.bridge.name"]
        assert f'iifname "{bridge}" oifname != "{bridge}" drop' in rules
        assert _bridge(dy, "sealed")["Internal"] is True
    finally:
        dy("rm", "-f", "inside")
        dy("network", "rm", "sealed")


def test_predefined_networks_cannot_be_removed(dy: Dy) -> None:
    proc = dy("network", "rm", "bridge", ok=False)
    assert proc.returncode != 0 and "pre-defined network" in proc.stderr
    proc = dy("network", "create", "bridge", ok=False)
    assert "already exists" in proc.stderr


def test_repair_restores_dns_and_firewall(dy: Dy) -> None:
    from dockyard.network.firewall import table_name

    dy("network", "create", "--subnet", "10.213.81.0/24", "mended")
    try:
        dy("run", "-d", "--name", "served", "--network", "mended", "-p", "127.0.0.1:18250:80", "busybox",
           "sh", "-c", WEB)  # fmt: skip
        assert _get("http://127.0.0.1:18250/").startswith("hello-from-")
        for line in _processes_with(dy.root):
            if "dockyard.network.dns" in line:
                subprocess.run(["pkill", "-f", f"dockyard.network.dns {dy.root}"], check=False)
        subprocess.run(["nft", "delete", "table", "ip", table_name(dy.root)], check=True)
        proc = dy("system", "check", ok=False)
        assert proc.returncode == 1
        assert "DNS server of network mended is not running" in proc.stdout
        assert "is missing" in proc.stdout
        dy("system", "check", "--repair")
        assert _get("http://127.0.0.1:18250/").startswith("hello-from-")
        out = dy("run", "--rm", "--network", "mended", "busybox", "nslookup", "served").stdout
        assert "10.213.81." in out
    finally:
        dy("rm", "-f", "served")
        dy("network", "rm", "mended")


def test_network_events(dy: Dy) -> None:
    since = str(time.time() - 1)
    dy("network", "create", "--subnet", "10.213.82.0/24", "evnet")
    dy("run", "-d", "--name", "evc", "busybox", "sleep", "60")
    try:
        dy("network", "connect", "evnet", "evc")
        dy("network", "disconnect", "evnet", "evc")
    finally:
        dy("rm", "-f", "evc")
        dy("network", "rm", "evnet")
    out = dy(
        "events", "--since", since, "--until", str(time.time() + 1), "--filter", "type=network"
    ).stdout
    actions = [line.split()[2] for line in out.splitlines() if "name=evnet" in line]
    assert actions == ["create", "connect", "disconnect", "destroy"]
    assert "name=evnet" in out


def test_iptables_backend_where_only_iptables_is_wanted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The same published port and masquerade through iptables chains of the engine's own."""
    tables_before = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    env = {**os.environ, "DOCKYARD_FIREWALL": "iptables"}
    d = Dy(str(tmp_path / "root"))
    d("image", "bootstrap", "busybox", env=env)
    try:
        d(
            "run",
            "-d",
            "--name",
            "ipt",
            "-p",
            "127.0.0.1:18260:80",
            "busybox",
            "sh",
            "-c",
            WEB,
            env=env,
        )
        assert _get("http://127.0.0.1:18260/").startswith("hello-from-")
        nat = subprocess.run(
            ["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True
        ).stdout
        assert "--dport 18260 -j DNAT" in nat and "MASQUERADE" in nat
        assert d("system", "check", env=env).stdout == "no problems found\n"
    finally:
        d("rm", "-f", "ipt", env=env)
        d("network", "prune", "-f", env=env)
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert "DY-" not in rules  # our chains and jumps went with the last network
    # iptables-nft leaves its (now empty) tables; they were not there before this test
    for table in ("ip nat", "ip filter"):
        if f"table {table}" not in tables_before:
            subprocess.run(["nft", "delete", "table", *table.split()], check=False)


@pytest.fixture
def forward_drop():  # type: ignore[no-untyped-def]
    """iptables' FORWARD policy DROP and bridge netfilter on, as on a host where dockerd
    runs; put back as it was afterwards."""
    nf = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    had_nf = None
    if os.path.exists(nf):
        with open(nf) as f:
            had_nf = f.read().strip()
    had_table = (
        subprocess.run(["nft", "list", "table", "ip", "filter"], capture_output=True).returncode
        == 0
    )
    before = subprocess.run(
        ["iptables", "-w", "-S", "FORWARD"], capture_output=True, text=True
    ).stdout
    subprocess.run(["iptables", "-w", "-P", "FORWARD", "DROP"], check=True)
    if had_nf is not None:
        with open(nf, "w") as f:
            f.write("1")
    try:
        yield
    finally:
        policy = "DROP" if "-P FORWARD DROP" in before else "ACCEPT"
        subprocess.run(["iptables", "-w", "-P", "FORWARD", policy], check=True)
        if had_nf is not None:
            with open(nf, "w") as f:
                f.write(had_nf)
        if not had_table:
            subprocess.run(["nft", "delete", "table", "ip", "filter"], check=False)


def _reach(dy: Dy, network: str, host: str, port: int) -> bool:
    proc = dy("run", "--rm", "--network", network, "busybox", "sh", "-c",
              f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} {port} | grep -q hello-from-", ok=False)  # fmt: skip
    return proc.returncode == 0


def test_networking_beside_an_engine_that_drops_forwarding(dy: Dy, forward_drop: None) -> None:
    """Containers of one network reach each other, and a published port answers by hairpin,
    while another engine's FORWARD policy is DROP; its flushing our rule is repaired."""
    dy("network", "create", "--subnet", "10.213.83.0/24", "guarded")
    try:
        dy(
            "run",
            "-d",
            "--name",
            "guard-web",
            "--network",
            "guarded",
            "-p",
            "18260:80",
            "busybox",
            "sh",
            "-c",
            WEB,
        )
        gateway = "10.213.83.1"
        assert _reach(dy, "guarded", "guard-web", 80)  # container to container, bridged
        assert _reach(dy, "guarded", gateway, 18260)  # the published port through the gateway
        subprocess.run(
            ["iptables", "-w", "-F", "FORWARD"], check=True
        )  # the other engine's restart
        assert not _reach(dy, "guarded", "guard-web", 80)
        proc = dy("system", "check", ok=False)
        assert proc.returncode == 1 and "FORWARD are missing" in proc.stdout
        dy("system", "check", "--repair")
        assert _reach(dy, "guarded", "guard-web", 80)
        assert dy("system", "check").stdout == "no problems found\n"
    finally:
        dy("rm", "-f", "guard-web")
        dy("network", "rm", "guarded")


@pytest.fixture
def squatter():  # type: ignore[no-untyped-def]
    """A link of the host's (as another engine's bridge would be) holding a route; gone after."""
    made: list[str] = []

    def take(subnet: str) -> str:
        name = f"dysq{len(made)}"
        gateway = subnet.rsplit(".", 1)[0] + ".1/" + subnet.split("/")[1]
        subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
        made.append(name)
        subprocess.run(["ip", "addr", "add", gateway, "dev", name], check=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        return name

    yield take
    for name in made:
        subprocess.run(["ip", "link", "del", name], check=False)


def test_a_recreated_bridge_never_shares_a_subnet(dy: Dy, squatter) -> None:  # type: ignore[no-untyped-def]
    """After the idle default bridge went, another holder took its subnet: the default bridge
    moves to a free one; a user network refuses in one line naming the holder; and
    ``system check`` reports a bridge whose subnet is routed elsewhere too."""
    dy("run", "--rm", "busybox", "true")  # the default bridge exists, with its subnet
    old = _bridge(dy)["IPAM"]["Config"][0]["Subnet"]
    dy("network", "prune", "-f")  # idle: its device goes
    holder = squatter(old)
    out = dy("run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    new = _bridge(dy)["IPAM"]["Config"][0]["Subnet"]
    assert new != old and new.rsplit(".", 1)[0] in out
    dy("network", "prune", "-f")
    proc = dy("network", "create", "--subnet", old, "clash", ok=False)
    assert proc.returncode == 1 and holder in proc.stderr and len(proc.stderr.splitlines()) == 1
    dy("network", "create", "--subnet", "10.213.84.0/24", "later")
    try:
        squatter("10.213.84.0/25")  # someone routes part of it while it is up
        proc = dy("system", "check", ok=False)
        assert proc.returncode == 1
        assert "network overlap: subnet 10.213.84.0/24 of network later" in proc.stdout
        assert "dysq1" in proc.stdout
    finally:
        dy("network", "rm", "later")
