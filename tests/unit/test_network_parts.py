"""Networking's pure parts: port specs, subnets and allocation, firewall rules, DNS answers."""

from __future__ import annotations

import sqlite3
import struct

import pytest

from dockyard.errors import Conflict, InvalidArgument
from dockyard.network import dns, firewall, ipam
from dockyard.network.endpoints import parse_publish


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", [("80/tcp", "", "")]),
        ("8080:80", [("80/tcp", "", "8080")]),
        ("127.0.0.1:8080:80/udp", [("80/udp", "127.0.0.1", "8080")]),
        ("127.0.0.1::80", [("80/tcp", "127.0.0.1", "")]),
        ("8000-8001:80-81", [("80/tcp", "", "8000"), ("81/tcp", "", "8001")]),
    ],
)
def test_publish_specs_as_docker_reads_them(
    spec: str, expected: list[tuple[str, str, str]]
) -> None:
    assert parse_publish(spec) == expected


@pytest.mark.parametrize(
    "spec", ["80/icmp", "x:80", "1.2.3:80:80", "0", "70000", "8000-8002:80-81"]
)
def test_bad_publish_specs_are_refused(spec: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_publish(spec)


def test_subnet_arithmetic() -> None:
    net = ipam.Subnet("10.1.2.77/24")
    assert str(net) == "10.1.2.0/24" and net.first_host() == "10.1.2.1"
    assert net.contains("10.1.2.254") and not net.contains("10.1.3.1")
    assert net.overlaps(ipam.Subnet("10.1.0.0/16")) and not net.overlaps(ipam.Subnet("10.1.3.0/24"))
    with pytest.raises(InvalidArgument):
        ipam.Subnet("10.1.2.0")


def _db() -> sqlite3.Connection:
    c = sqlite3.connect(":memory:")
    c.row_factory = sqlite3.Row
    c.execute("CREATE TABLE networks (id TEXT, subnet TEXT, gateway TEXT, next_ip INTEGER)")
    c.execute(
        "CREATE TABLE endpoints (network_id TEXT, ip TEXT, container_id TEXT, name TEXT DEFAULT '')"
    )
    c.execute("INSERT INTO networks VALUES ('n', '10.9.0.0/29', '10.9.0.1', 0)")
    return c


def test_allocation_moves_forward_and_skips_what_is_taken() -> None:
    c = _db()
    got = []
    for i in range(5):
        ip = ipam.allocate(c, "n")
        c.execute("INSERT INTO endpoints VALUES ('n', ?, ?, '')", (ip, f"c{i}"))
        got.append(ip)
    assert got == ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"]  # never the gateway
    with pytest.raises(Conflict, match="no available IPv4 addresses"):
        ipam.allocate(c, "n")
    c.execute("DELETE FROM endpoints WHERE ip = '10.9.0.3'")
    assert ipam.allocate(c, "n") == "10.9.0.3"  # the only free one, once the cursor wraps


def test_asked_for_address_conflict_names_the_holder() -> None:
    c = _db()
    c.execute("INSERT INTO endpoints VALUES ('n', '10.9.0.4', 'c1', 'web')")
    with pytest.raises(Conflict, match=r"10\.9\.0\.4 is taken by container web"):
        ipam.allocate(c, "n", "10.9.0.4")
    with pytest.raises(InvalidArgument):
        ipam.allocate(c, "n", "10.10.0.4")
    assert ipam.allocate(c, "n", "10.9.0.5") == "10.9.0.5"


NETS = [{"bridge": "br-a", "subnet": "10.1.0.0/24", "internal": 0},
        {"bridge": "br-b", "subnet": "10.2.0.0/24", "internal": 1}]  # fmt: skip
PORTS = [
    {
        "proto": "tcp",
        "host_ip": "127.0.0.1",
        "host_port": 8080,
        "ip": "10.1.0.2",
        "container_port": 80,
    }
]


def test_nftables_rules() -> None:
    script = firewall.render("t", NETS, PORTS)
    assert script.startswith("table ip t {}\ndelete table ip t\n")  # replaced whole, atomically
    assert "ip daddr 127.0.0.1 tcp dport 8080 dnat to 10.1.0.2:80" in script
    assert 'ip saddr 10.1.0.0/24 oifname != "br-a" masquerade' in script
    assert 'ip saddr 10.2.0.0/24 oifname != "br-b" masquerade' not in script  # internal: no way out
    assert 'iifname "br-a" oifname { "br-b" } drop' in script
    assert 'iifname "br-b" oifname != "br-b" drop' in script
    assert firewall.render("t", [], []) == "table ip t {}\ndelete table ip t\n"


def test_iptables_rules() -> None:
    text = firewall.render_iptables("t", NETS, PORTS)
    assert "-d 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80" in text
    assert (
        "-s 10.1.0.0/24 ! -o br-a -j MASQUERADE" in text and "! -o br-b -j MASQUERADE" not in text
    )
    assert text.count("COMMIT") == 2


def _query(name: str, qtype: int = 1) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return (
        struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", qtype, 1)
    )


def test_dns_answers_names_and_leaves_others() -> None:
    table = {"db": ["10.1.0.5"], "web": ["10.1.0.6", "10.1.0.7"]}
    reply = dns.answer(_query("db"), table.get)
    assert reply is not None
    qid, flags, _qd, ancount, _ns, _ar = struct.unpack_from("!HHHHHH", reply)
    assert qid == 0x1234 and flags & 0x8000 and ancount == 1
    assert reply.endswith(bytes([10, 1, 0, 5]))
    assert struct.unpack_from("!HHHHHH", dns.answer(_query("web"), table.get))[3] == 2
    assert dns.answer(_query("example.org"), table.get) is None  # forwarded upstream
    aaaa = dns.answer(_query("db", 28), table.get)
    assert struct.unpack_from("!HHHHHH", aaaa)[3] == 0  # known name, no IPv6: empty answer
