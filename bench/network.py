"""Network speed: dockyard against podman (and docker, where its dockerd can be started), in one run.

- published port, host -> container: TCP throughput (a 256 MiB stream into ``nc``)
  and connection rate (sequential HTTP/1.0 requests to busybox ``httpd``),
  both to ``127.0.0.1:HOSTPORT``;
- container -> container on a user network: throughput of a 256 MiB stream
  between two containers.

Traffic goes only to 127.0.0.1 and to the containers this bench starts. podman
uses its default network (CNI bridge, DNAT rules); docker gets a dockerd of the
bench's own with its own bridge and its default userland proxy for published
ports (its iptables rules are its own chains, removed when it stops).

Usage: python bench/network.py [--mib 256] [--requests 500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from containers import Dockerd, dockyard_with_busybox, podman_env, remove_peer_cgroups

SERVER = ("mkdir -p /www && echo ok > /www/index.html && httpd -p 80 -h /www && "
          "while true; do nc -l -p 5001 > /dev/null; done")  # fmt: skip


def stream(port: int, mib: int) -> float:
    """MiB/s of ``mib`` MiB sent to 127.0.0.1:port until the far end has it all."""
    chunk = b"\0" * (1 << 20)
    deadline = time.monotonic() + 20
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    t0 = time.perf_counter()
    for _ in range(mib):
        sock.sendall(chunk)
    sock.shutdown(socket.SHUT_WR)
    sock.recv(1)  # EOF once nc has read everything and exited
    elapsed = time.perf_counter() - t0
    sock.close()
    time.sleep(0.2)  # the server loop starts the next nc
    return mib / elapsed


def requests(port: int, count: int) -> float:
    """Connections per second: sequential HTTP/1.0 GETs, each on a new connection."""
    t0 = time.perf_counter()
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        while sock.recv(4096):
            pass
        sock.close()
    return count / (time.perf_counter() - t0)


def between_containers(cli: list[str], env: dict[str, str] | None, network: str, mib: int) -> float:
    server = subprocess.run([*cli, "run", "-d", "--network", network, "--name", "nbsrv", "busybox", "sh", "-c",
                             # nc on a stdin that never ends: at EOF it would half-close, and
                             # busybox's nc client gives up when the server half-closes
                             "mkfifo /f; exec 3<>/f; while true; do nc -l -p 5001 < /f > /dev/null; done"],
                            check=True, capture_output=True, text=True, env=env).stdout.strip()  # fmt: skip
    try:
        time.sleep(0.5)
        inspect = subprocess.run(
            [*cli, "inspect", server], check=True, capture_output=True, text=True, env=env
        )
        address = json.loads(inspect.stdout)[0]["NetworkSettings"]["Networks"][network]["IPAddress"]
        script = f"time -p sh -c 'dd if=/dev/zero bs=1048576 count={mib} 2>/dev/null | nc {address} 5001'"
        out = subprocess.run([*cli, "run", "--rm", "--network", network, "busybox", "sh", "-c", script],
                             check=True, capture_output=True, text=True, env=env)  # fmt: skip
        real = float(
            next(line.split()[1] for line in out.stderr.splitlines() if line.startswith("real"))
        )
        return mib / max(real, 1e-3)
    finally:
        subprocess.run([*cli, "rm", "-f", server], env=env, capture_output=True)


def measure(name: str, cli: list[str], env: dict[str, str] | None, args: argparse.Namespace,
            results: dict[str, dict[str, float]]) -> None:  # fmt: skip
    cid = subprocess.run([*cli, "run", "-d", "-p", "127.0.0.1:18301:5001", "-p", "127.0.0.1:18302:80",
                          "busybox", "sh", "-c", SERVER], check=True, capture_output=True, text=True,
                         env=env).stdout.strip()  # fmt: skip
    try:
        stream(18301, 16)  # warm-up
        rates = [stream(18301, args.mib) for _ in range(3)]
        requests(18302, 20)
        conns = [requests(18302, args.requests) for _ in range(3)]
    finally:
        subprocess.run([*cli, "rm", "-f", cid], env=env, capture_output=True)
    subprocess.run([*cli, "network", "create", "nbench"], check=True, capture_output=True, env=env)
    try:
        c2c = [between_containers(cli, env, "nbench", args.mib) for _ in range(3)]
    finally:
        subprocess.run([*cli, "network", "rm", "nbench"], capture_output=True, env=env)
    results[name] = {"port MiB/s": statistics.median(rates), "port conn/s": statistics.median(conns),
                     "c2c MiB/s": statistics.median(c2c)}  # fmt: skip


def nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def drop_new_tables(before: set[str]) -> None:
    """The peers' firewall set-up (CNI's and docker's iptables chains) outlives them: remove the
    nftables tables that did not exist before they ran, and the bridges they made."""
    for table in sorted(nft_tables() - before):
        subprocess.run(["nft", "delete", *table.split()], check=False)
        print(f"removed {table}, left by a peer")
    for link in ("cni-podman0", "docker0"):
        if os.path.exists(f"/sys/class/net/{link}"):
            subprocess.run(["ip", "link", "del", link], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-net-", dir="/var/tmp") as work:
        dy, archive = dockyard_with_busybox(work)
        try:
            measure("dockyard", dy, None, args, results)
        finally:
            subprocess.run([*dy, "network", "prune", "-f"], capture_output=True)
        before = nft_tables()
        try:
            peers(work, archive, args, results)
        finally:
            drop_new_tables(before)
    report(results)
    return 0


def peers(
    work: str, archive: str, args: argparse.Namespace, results: dict[str, dict[str, float]]
) -> None:
    if shutil.which("podman"):
        env = podman_env(work)
        subprocess.run(
            ["podman", "load", "-q", "-i", archive], check=True, env=env, stdout=subprocess.DEVNULL
        )
        try:
            measure("podman", ["podman"], env, args, results)
        finally:
            subprocess.run(["podman", "system", "reset", "-f"], env=env, capture_output=True)
            remove_peer_cgroups()
    if shutil.which("dockerd"):
        dockerd = Dockerd(work, bridge="dybench-d0", bip="172.29.253.1/24")
        try:
            subprocess.run(["docker", "load", "-q", "-i", archive], check=True, env=dockerd.env,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            measure("docker", ["docker"], dockerd.env, args, results)
        finally:
            dockerd.stop()


def report(results: dict[str, dict[str, float]]) -> None:
    print(f"\n{'':<10}" + "".join(f"{k:>14}" for k in ("port MiB/s", "port conn/s", "c2c MiB/s")))
    for name, r in results.items():
        print(
            f"{name:<10}"
            + "".join(f"{r[k]:>14.1f}" for k in ("port MiB/s", "port conn/s", "c2c MiB/s"))
        )
    for peer in results:
        if peer != "dockyard":
            ratios = ", ".join(
                f"{k} {results['dockyard'][k] / results[peer][k]:.2f}x" for k in results[peer]
            )
            print(f"dockyard / {peer}: {ratios}")


if __name__ == "__main__":
    raise SystemExit(main())
