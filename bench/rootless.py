"""Rootless: dockyard as a user without root against rootless podman, in one run.

A user is made for the run (useradd, subordinate ranges), and both engines run as that
user through runuser: dockyard with its defaults (state in the user's XDG directories,
bridges in the user's network namespace behind slirp4netns, published ports through its
forwarder), podman 4.3 with runc and cgroupfs (crun refuses this host's hybrid
cgroups), native overlay, slirp4netns and rootlessport. dockyard as root is measured
beside them.

- start: ``run --rm busybox true``, with each engine's default network and with
  ``--network none``; medians of ``--rounds``, interleaved.
- port throughput: a container publishes port 80, where busybox ``nc`` sends
  ``--mib`` MiB from the container's tmpfs each time a client connects; the client, on
  the host's loopback, reads it all; MiB/s, median of ``--transfers``.

Targets (issue 17): start at most half of rootless podman's; throughput no lower.

Usage: python bench/rootless.py [--rounds 15] [--mib 256] [--transfers 5]
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from containers import DOCKYARD

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BenchUser:
    def __init__(self, base: str) -> None:
        self.name = f"dybench{os.getpid() % 100000}"
        self.home = os.path.join(base, "h")
        subprocess.run(["useradd", "--create-home", "--home-dir", self.home, "--shell", "/bin/sh", self.name],
                       check=True, capture_output=True)  # fmt: skip
        self.uid = pwd.getpwnam(self.name).pw_uid
        with open("/etc/subuid") as f:
            if not any(line.startswith(self.name + ":") for line in f):
                sys.exit(f"useradd gave {self.name} no subordinate IDs (login.defs SUB_UID_COUNT)")
        self.run_dir = os.path.join(base, "r")
        os.mkdir(self.run_dir, 0o700)
        os.chown(self.run_dir, self.uid, self.uid)
        self.env = {"HOME": self.home, "USER": self.name, "PATH": _PATH, "XDG_RUNTIME_DIR": self.run_dir}

    def argv(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.name, "--", "env", "-i", *[f"{k}={v}" for k, v in self.env.items()], *args]

    def run(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), check=True, capture_output=True, text=True, cwd=self.home, **kw)  # type: ignore[call-overload,no-any-return]

    def remove(self) -> None:
        try:
            self.run("podman", "system", "reset", "-f")
        except subprocess.CalledProcessError:
            pass
        subprocess.run(["pkill", "-KILL", "-u", str(self.uid)], capture_output=True)
        time.sleep(0.5)
        subprocess.run(["userdel", "--force", self.name], capture_output=True)


def podman_config(user: BenchUser) -> None:
    conf = os.path.join(user.home, ".config", "containers")
    os.makedirs(conf)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with open(os.path.join(conf, "containers.conf"), "w") as f:
        f.write('[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n'
                f'[containers]\ndefault_ulimits = ["nofile={hard}:{hard}"]\n')  # fmt: skip
    with open(os.path.join(conf, "storage.conf"), "w") as f:
        f.write('[storage]\ndriver = "overlay"\n')
    subprocess.run(["chown", "-R", f"{user.uid}:{user.uid}", os.path.join(user.home, ".config")], check=True)


def timed(argv: list[str], cwd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    return time.perf_counter() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def throughput(port: int, mib: int) -> float:
    """MiB/s of one ``GET /big`` of ``mib`` MiB from the published port, the body counted
    from the first byte after the response's head."""
    deadline = time.monotonic() + 30
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        with s:
            t0 = time.perf_counter()
            s.sendall(b"GET /big HTTP/1.0\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                n = s.recv_into(buf)
                if not n:
                    raise RuntimeError(f"the connection ended before the response's head: {head!r}")
                head += bytes(view[:n])
            got = len(head.partition(b"\r\n\r\n")[2])
            while n := s.recv_into(buf):
                got += n
            elapsed = time.perf_counter() - t0
        if got != mib << 20:
            raise RuntimeError(f"received {got} bytes of {mib << 20}")
        return mib / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--transfers", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (it makes the user it measures as)")
    for tool in ("podman", "runc", "slirp4netns", "newuidmap"):
        if not shutil.which(tool):
            sys.exit(f"needs {tool} (apt-get install podman runc slirp4netns uidmap)")
    tun = os.stat("/dev/net/tun").st_mode & 0o777 if os.path.exists("/dev/net/tun") else None
    if tun is not None and tun & 0o006 != 0o006:
        os.chmod("/dev/net/tun", 0o666)  # as udev leaves it on Debian; restored at the end
    # short: podman's conmon takes 20 s per container when its attach socket's path is long
    base = tempfile.mkdtemp(prefix="dyrl-", dir="/tmp")
    os.chmod(base, 0o755)
    user = BenchUser(base)
    try:
        return measure(args, user, base)
    finally:
        user.remove()
        shutil.rmtree(base, ignore_errors=True)
        if tun is not None:
            os.chmod("/dev/net/tun", tun)


def measure(args: argparse.Namespace, user: BenchUser, base: str) -> int:
    root_dy = [DOCKYARD, "--root", os.path.join(base, "root-dockyard")]
    subprocess.run([*root_dy, "image", "bootstrap", "busybox"], check=True, capture_output=True)
    archive = os.path.join(base, "busybox.tar")
    subprocess.run([*root_dy, "save", "-o", archive, "busybox"], check=True)
    os.chmod(archive, 0o644)
    user.run(DOCKYARD, "image", "bootstrap", "busybox")
    podman_config(user)
    user.run("podman", "load", "-q", "-i", archive)
    engines = {
        "dockyard rootless": user.argv(DOCKYARD, "run", "--rm", "busybox", "true"),
        "podman rootless": user.argv("podman", "run", "--rm", "busybox", "true"),
        "dockyard root": [*root_dy, "run", "--rm", "busybox", "true"],
        "dockyard rootless, --network none": user.argv(DOCKYARD, "run", "--rm", "--network", "none", "busybox", "true"),
        "podman rootless, --network none": user.argv("podman", "run", "--rm", "--network", "none", "busybox", "true"),
    }
    for argv in engines.values():  # warm: images, namespaces, the user's pause processes
        timed(argv, user.home)
    runs: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(args.rounds):
        for name, argv in engines.items():
            runs[name].append(timed(argv, user.home))
    med = {k: statistics.median(v) * 1000 for k, v in runs.items()}
    print(f"\nrun --rm busybox true, median of {args.rounds} (ms):")
    for k, v in med.items():
        print(f"  {k:36s} {v:8.1f}")
    start_ratio = med["dockyard rootless"] / med["podman rootless"]
    none_ratio = med["dockyard rootless, --network none"] / med["podman rootless, --network none"]
    print(f"  dockyard / podman, rootless: {start_ratio:.2f}x (default network), {none_ratio:.2f}x (none)")

    rates: dict[str, list[float]] = {}
    # httpd sends with sendfile, as real servers do (busybox nc's 4 KiB writes would
    # measure nc: 47 MiB/s over a veth even as root)
    server = f"head -c {args.mib << 20} /dev/zero > /dev/shm/big && echo ready && exec httpd -f -p 80 -h /dev/shm"
    for name, cli in (("dockyard", [DOCKYARD]), ("podman", ["podman"])):
        port = free_port()
        shm = ["--shm-size", f"{args.mib + 16}m"]
        user.run(*cli, "run", "-d", "--name", "tput", *shm, "-p", f"{port}:80", "busybox", "sh", "-c", server)
        try:
            deadline = time.monotonic() + 60
            while "ready" not in user.run(*cli, "logs", "tput").stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: the server never got ready")
                time.sleep(0.1)
            time.sleep(0.2)  # httpd listening
            throughput(port, args.mib)  # warm
            rates[name] = [throughput(port, args.mib) for _ in range(args.transfers)]
        finally:
            user.run(*cli, "rm", "-f", "tput")
    print(f"\npublished-port throughput, {args.mib} MiB from the container to the host's loopback, "
          f"median of {args.transfers} (MiB/s):")  # fmt: skip
    for k, v in rates.items():
        print(f"  {k:10s} {statistics.median(v):8.1f}   ({', '.join(f'{x:.0f}' for x in v)})")
    t_ratio = statistics.median(rates["dockyard"]) / statistics.median(rates["podman"])
    print(f"  dockyard / podman: {t_ratio:.2f}x")
    print(json.dumps({"start_ms": med, "start_ratio": start_ratio, "none_ratio": none_ratio,
                      "throughput": {k: statistics.median(v) for k, v in rates.items()},
                      "throughput_ratio": t_ratio}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
