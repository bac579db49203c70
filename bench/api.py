"""The Engine API's speed and weight: the same docker CLI against dockyard's service and
against dockerd 20.10 (Debian's docker.io, with a containerd and sockets of the bench's
own, no networking), in one run.

- ``docker run --rm --network none busybox true``: median wall time, engines alternating.
- ``docker ps -a`` with 50 containers, ``docker inspect`` of one, ``docker logs`` of a
  10 MB log: medians.
- What the server itself spends on an inspect: a fresh connection carrying the docker
  CLI's two requests (``HEAD /_ping``, ``GET /containers/c7/json``) from a Python client,
  without the CLI's own start-up: medians of many, engines alternating.
- The service idle: its RSS after the rounds; dockerd's and containerd's beside it.
- Socket activation: from spawning the service on a socket passed as systemd passes it
  (``LISTEN_FDS``) to the first ``/_ping`` answered.

Usage: python bench/api.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from containers import DOCKYARD, Dockerd, dockyard_with_busybox


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def ping(sock: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(sock)
                s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)


def _read_answer(s: socket.socket, head_only: bool) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    if head_only:
        return
    fields = dict(line.lower().split(b":", 1) for line in head.split(b"\r\n")[1:])
    if b"content-length" in fields:  # dockyard's JSON answers
        while len(body) < int(fields[b"content-length"]):
            body += s.recv(65536)
    else:  # dockerd chunks an answer larger than its 2 KiB buffer
        while not body.endswith(b"\r\n0\r\n\r\n"):
            body += s.recv(65536)


def raw_inspect(sock: str, version: str) -> float:
    t0 = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock)
        s.sendall(b"HEAD /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\n\r\n")
        _read_answer(s, True)
        s.sendall(f"GET /v{version}/containers/c7/json HTTP/1.1\r\nHost: api.moby.localhost\r\n\r\n".encode())
        _read_answer(s, False)
    return time.perf_counter() - t0


def activated_first_answer(root: str, work: str) -> float:
    """Seconds from spawning the service on a passed, already listening socket to its first
    answer: the socket accepts the connection before the service runs, as with systemd."""
    path = os.path.join(work, "activated.sock")
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    moved = listener.fileno() != 3
    if moved:
        os.dup2(listener.fileno(), 3)
    launcher = ("import os, sys; os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1'; "
                "os.execv(sys.argv[1], sys.argv[1:])")  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", launcher, DOCKYARD, "--root", root, "system", "service",
                             "--time", "0", f"unix://{path}"], pass_fds=(3,), stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        ping(path)
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(30)
        listener.close()
        if moved:
            os.close(3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if shutil.which("docker") is None:
        print("the docker CLI is not installed")
        return 1
    with tempfile.TemporaryDirectory(prefix="dy-bench-api-", dir="/var/tmp") as work:
        dy, archive = dockyard_with_busybox(work)
        root = dy[2]
        sock = os.path.join(work, "dockyard.sock")
        service = subprocess.Popen([*dy, "system", "service", "--time", "0", f"unix://{sock}"],
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        ping(sock)
        engines: dict[str, dict[str, str]] = {
            "dockyard": {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
        }
        dockerd = None
        if shutil.which("dockerd") and shutil.which("containerd"):
            dockerd = Dockerd(work)
            subprocess.run(["docker", "load", "-q", "-i", archive], check=True, env=dockerd.env,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            engines["dockerd"] = dockerd.env
        else:
            print("dockerd: left out (docker.io not installed)")
        try:
            return _measure(args, work, root, engines, service, dockerd)
        finally:
            service.terminate()
            service.wait(30)
            for env in engines.values():
                ids = subprocess.run(
                    ["docker", "ps", "-aq"], env=env, capture_output=True, text=True
                ).stdout.split()
                if ids:
                    subprocess.run(["docker", "rm", "-f", *ids], env=env, capture_output=True)
            if dockerd is not None:
                dockerd.stop()


def _measure(args: Any, work: str, root: str, engines: dict[str, dict[str, str]], service: Any,
             dockerd: Any) -> int:  # fmt: skip
    figures: dict[str, dict[str, float]] = {name: {} for name in engines}
    runs: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(args.rounds):
        for name, env in engines.items():
            runs[name].append(
                timed(["docker", "run", "--rm", "--network", "none", "busybox", "true"], env)
            )
    for name in engines:
        figures[name]["run --rm"] = statistics.median(runs[name])
    for env in engines.values():
        for n in range(50):
            subprocess.run(["docker", "create", "--network", "none", "--name", f"c{n}", "busybox", "true"],
                           check=True, env=env, stdout=subprocess.DEVNULL)  # fmt: skip
        subprocess.run(["docker", "run", "--network", "none", "--name", "chatty", "busybox", "sh", "-c",
                        "i=0; while [ $i -lt 100000 ]; do echo line $i of a log of ten megabytes, padded to about one hundred bytes a line here; "
                        "i=$((i+1)); done"], check=True, env=env, stdout=subprocess.DEVNULL)  # fmt: skip
    for label, argv in (("ps -a (50)", ["docker", "ps", "-a"]), ("inspect", ["docker", "inspect", "c7"]),
                        ("logs 10 MB", ["docker", "logs", "chatty"])):  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(args.rounds):
            for name, env in engines.items():
                times[name].append(timed(argv, env))
        for name in engines:
            figures[name][label] = statistics.median(times[name])
    raw: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(args.rounds * 20):
        for name, env in engines.items():
            raw[name].append(raw_inspect(env["DOCKER_HOST"].removeprefix("unix://"), "1.41"))
    for name in engines:
        figures[name]["raw inspect"] = statistics.median(raw[name])
    size = len(
        subprocess.run(
            ["docker", "logs", "chatty"], env=engines["dockyard"], capture_output=True
        ).stdout
    )
    print(f"docker CLI {subprocess.run(['docker', '--version'], capture_output=True, text=True).stdout.strip()}; "
          f"medians of {args.rounds}; the log is {size / 1e6:.1f} MB")  # fmt: skip
    for label in figures["dockyard"]:
        line = f"  {label:<12} dockyard {figures['dockyard'][label] * 1000:7.2f} ms"
        if "dockerd" in figures:
            ratio = figures["dockyard"][label] / figures["dockerd"][label]
            line += f"   dockerd {figures['dockerd'][label] * 1000:7.2f} ms   {ratio:.2f}x"
        print(line)
    time.sleep(2)
    print(f"  idle RSS     dockyard service {rss_kib(service.pid) / 1024:.1f} MiB", end="")
    if dockerd is not None:
        daemons = sum(rss_kib(p.pid) for p in dockerd.procs)
        print(f"   dockerd + containerd {daemons / 1024:.1f} MiB")
    else:
        print()
    first = statistics.median(activated_first_answer(root, work) for _ in range(5))
    print(f"  socket activation: first answer after {first * 1000:.0f} ms (median of 5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
