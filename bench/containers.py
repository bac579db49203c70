"""Container start-up and monitor weight: dockyard against podman (and docker, where a
dockerd can be started), in one run.

- ``run --rm busybox true``: median wall time, alternating engines each round, all
  with ``--network none`` (and dockyard once more with its default bridge).
- 50 idle detached containers (``sleep``): PSS of their monitors, per container
  (dockyard's monitor processes against podman's conmon).

Each engine gets its own state under a temporary directory; podman gets its own
storage.conf/containers.conf (cgroupfs, runc, rlimits no higher than the hard
limits root has here, as shared/peers/anchors.sh does); docker (Debian's
docker.io) gets a containerd and dockerd of the bench's own (own sockets, data
and exec roots, no bridge and no iptables rules: nothing of the host is touched),
stopped at the end. The comparison runs all three with ``--network none``
(docker's and podman's default networks would need their bridges and firewall
rules on this host); dockyard is also measured with its default bridge, to show
what its networking adds. The figures to compare are ratios within one run.

Usage: python bench/containers.py [--rounds 20] [--idle 50]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

DOCKYARD = os.path.join(os.path.dirname(sys.executable), "dockyard")


def pss_of(match: bytes, also: bytes) -> tuple[int, int]:
    """(processes, total PSS KiB) of processes whose cmdline has both byte strings."""
    n = total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read()
            if match not in cmd or also not in cmd:
                continue
            with open(f"/proc/{name}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
            n += 1
        except OSError:
            continue
    return n, total


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def dockyard_with_busybox(work: str) -> tuple[list[str], str]:
    """A dockyard engine under ``work`` with the busybox image, and that image saved as a
    docker-archive for the peers: (dockyard command prefix, archive path)."""
    dy = [DOCKYARD, "--root", os.path.join(work, "dockyard")]
    subprocess.run([*dy, "image", "bootstrap", "busybox"], check=True, stdout=subprocess.DEVNULL)
    archive = os.path.join(work, "busybox.tar")
    subprocess.run([*dy, "save", "-o", archive, "busybox"], check=True)
    return dy, archive


def podman_env(work: str) -> dict[str, str]:
    hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    hard_nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    if hard_nproc == resource.RLIM_INFINITY or hard_nproc > pid_max:
        hard_nproc = pid_max
    storage = os.path.join(work, "storage.conf")
    conf = os.path.join(work, "containers.conf")
    with open(storage, "w") as f:
        f.write(
            f'[storage]\ndriver = "overlay"\nrunroot = "{work}/podman-run"\ngraphroot = "{work}/podman-root"\n'
        )
    with open(conf, "w") as f:
        f.write('[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n'
                f'[containers]\ndefault_ulimits = ["nofile={hard_nofile}:{hard_nofile}", '
                f'"nproc={hard_nproc}:{hard_nproc}"]\n')  # fmt: skip
    return {**os.environ, "CONTAINERS_STORAGE_CONF": storage, "CONTAINERS_CONF": conf}


class Dockerd:
    """containerd + dockerd under ``work``, reachable only through their own sockets."""

    def __init__(self, work: str, bridge: str | None = None, bip: str | None = None) -> None:
        """Without ``bridge``: no networking at all (``--bridge=none``, no iptables). With it: a
        bridge of that name (made here, removed at stop) and docker's own iptables chains."""
        self.bridge = bridge
        if bridge:
            subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
            subprocess.run(
                ["ip", "addr", "add", bip or "172.29.253.1/24", "dev", bridge], check=True
            )
            subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
        self.work = os.path.join(work, "docker")
        os.makedirs(self.work)
        self.run_dir = tempfile.mkdtemp(prefix="dy-bench-docker-", dir="/run")
        self.ctrd_sock = os.path.join(self.run_dir, "containerd.sock")
        self.host = f"unix://{self.run_dir}/docker.sock"
        conf = os.path.join(self.work, "containerd.toml")
        with open(conf, "w") as f:
            f.write(f'version = 2\nroot = "{self.work}/containerd-root"\nstate = "{self.run_dir}/containerd"\n'
                    f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{self.ctrd_sock}"\n')  # fmt: skip
        log = open(os.path.join(self.work, "daemons.log"), "wb")  # noqa: SIM115 - lives with the daemons
        self.procs = [subprocess.Popen(["containerd", "--config", conf], stdout=log, stderr=log,
                                       stdin=subprocess.DEVNULL)]  # fmt: skip
        self._wait(lambda: os.path.exists(self.ctrd_sock), "containerd")
        self.procs.append(subprocess.Popen(
            ["dockerd", f"--containerd={self.ctrd_sock}", f"--data-root={self.work}/data",
             f"--exec-root={self.run_dir}/exec", f"--pidfile={self.run_dir}/dockerd.pid",
             "--storage-driver=overlay2", *([f"--bridge={bridge}"] if bridge else
                                            ["--bridge=none", "--iptables=false", "--ip6tables=false"]),
             "-H", self.host], stdout=log, stderr=log, stdin=subprocess.DEVNULL))  # fmt: skip
        self.env = {**os.environ, "DOCKER_HOST": self.host}
        self._wait(lambda: subprocess.run(["docker", "version"], env=self.env, capture_output=True).returncode == 0,
                   "dockerd")  # fmt: skip

    def _wait(self, ready: Any, name: str) -> None:
        deadline = time.monotonic() + 60
        while not ready():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise RuntimeError(f"{name} did not start; see {self.work}/daemons.log")
            time.sleep(0.05)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for target in reversed(mounts):  # whatever the daemons left mounted under our dirs
            if target.startswith((self.work, self.run_dir)):
                subprocess.run(["umount", "-l", target], check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.bridge:
            subprocess.run(["ip", "link", "del", self.bridge], check=False)
        remove_peer_cgroups()


def remove_peer_cgroups() -> None:
    """The (empty) parent cgroups docker and podman leave in every hierarchy: on a hybrid host
    a child left in the cgroup2 hierarchy keeps its controllers from being handed to v1,
    which the test suite's crun runs need."""
    for hierarchy in os.listdir("/sys/fs/cgroup"):
        for name in ("docker", "libpod_parent"):
            top = os.path.join("/sys/fs/cgroup", hierarchy, name)
            if not os.path.isdir(top):
                continue
            for base, dirs, _files in os.walk(top, topdown=False):
                for d in dirs:
                    try:
                        os.rmdir(os.path.join(base, d))
                    except OSError:
                        pass  # still in use: left alone
            try:
                os.rmdir(top)
            except OSError:
                pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--idle", type=int, default=50)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-ctr-", dir="/var/tmp") as work:
        root = os.path.join(work, "dockyard")
        dy = [DOCKYARD, "--root", root]
        subprocess.run(
            [*dy, "image", "bootstrap", "busybox"], check=True, stdout=subprocess.DEVNULL
        )
        engines: dict[str, tuple[list[str], dict[str, str] | None]] = {"dockyard": (dy, None)}
        if shutil.which("podman"):
            env = podman_env(work)
            archive = os.path.join(work, "busybox.tar")
            subprocess.run([*dy, "save", "-o", archive, "busybox"], check=True)
            subprocess.run(
                ["podman", "load", "-q", "-i", archive],
                check=True,
                env=env,
                stdout=subprocess.DEVNULL,
            )
            engines["podman"] = (["podman", "run", "--network", "none"], env)
        else:
            print("podman is not installed: left out")
        dockerd = None
        if shutil.which("dockerd") and shutil.which("docker") and shutil.which("containerd"):
            dockerd = Dockerd(work)
            archive = os.path.join(work, "busybox.tar")
            if not os.path.exists(archive):
                subprocess.run([*dy, "save", "-o", archive, "busybox"], check=True)
            subprocess.run(["docker", "load", "-q", "-i", archive], check=True, env=dockerd.env,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            engines["docker"] = (["docker", "run", "--network", "none"], dockerd.env)
        else:
            print("docker: left out (dockerd, containerd or docker not installed)")
        try:
            return _measure(args, work, root, dy, engines)
        finally:
            subprocess.run([*dy, "network", "prune", "-f"], capture_output=True)
            if dockerd is not None:
                dockerd.stop()


def _measure(args: Any, work: str, root: str, dy: list[str],
             engines: dict[str, tuple[list[str], dict[str, str] | None]]) -> int:  # fmt: skip
    engines = {"dockyard": engines["dockyard"], "dockyard-bridge": engines["dockyard"],
               **{k: v for k, v in engines.items() if k != "dockyard"}}  # fmt: skip
    runs: dict[str, list[float]] = {name: [] for name in engines}
    names = list(engines)
    for i in range(args.rounds + 2):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            base, env = engines[name]
            if name == "dockyard":
                argv = [*dy, "run", "--rm", "--network", "none", "busybox", "true"]
            elif name == "dockyard-bridge":
                argv = [*dy, "run", "--rm", "busybox", "true"]
            else:
                argv = [*base, "--rm", "busybox", "true"]
            elapsed = timed(argv, env)
            if i >= 2:  # two warm-up rounds
                runs[name].append(elapsed)
    medians = {name: statistics.median(vals) * 1000 for name, vals in runs.items()}
    print(f"\nrun --rm busybox true, median of {args.rounds}:")
    for name, med in medians.items():
        ratios = "".join(f"  {medians['dockyard'] / medians[peer]:.2f}x {peer}" for peer in medians
                         if name == "dockyard" and not peer.startswith("dockyard"))  # fmt: skip
        print(f"  {name:<16} {med:7.1f} ms{ratios}")
    added = medians["dockyard-bridge"] - medians["dockyard"]
    print(
        f"  networking (default bridge, veth, addresses, route) adds {added:.1f} ms to dockyard's run"
    )

    print(f"\n{args.idle} idle detached containers, monitor PSS per container:")
    pss: dict[str, float] = {}
    ids = [subprocess.run([*dy, "run", "-d", "busybox", "sleep", "600"], check=True, capture_output=True,
                          text=True).stdout.strip() for _ in range(args.idle)]  # fmt: skip
    time.sleep(1)
    n, total = pss_of(b"/cache/lean-", root.encode())
    pss["dockyard monitor"] = total / max(n, 1) / 1024
    print(f"  dockyard monitor  {pss['dockyard monitor']:6.2f} MiB  ({n} monitors)")
    subprocess.run([*dy, "rm", "-f", *ids], check=True, stdout=subprocess.DEVNULL)
    for name, monitor, marker in (("podman", "conmon", work.encode()),
                                  ("docker", "containerd-shim", b"/run/dy-bench-docker-")):  # fmt: skip
        if name not in engines:
            continue
        base, env = engines[name]
        ids = [subprocess.run([*base, "-d", "busybox", "sleep", "600"], check=True, capture_output=True,
                              text=True, env=env).stdout.strip() for _ in range(args.idle)]  # fmt: skip
        time.sleep(1)
        n, total = pss_of(monitor.encode(), marker)
        pss[monitor] = total / max(n, 1) / 1024
        print(f"  {monitor:<17} {pss[monitor]:6.2f} MiB  ({n} monitors)")
        stop_now = ["-t", "0"] if name == "podman" else []
        subprocess.run(
            [name, "rm", "-f", *stop_now, *ids], check=True, env=env, stdout=subprocess.DEVNULL
        )
    if "podman" in engines:
        subprocess.run(["podman", "system", "reset", "-f"], env=engines["podman"][1],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        remove_peer_cgroups()
    for peer in ("conmon", "containerd-shim"):
        if peer in pss:
            print(f"  dockyard monitor / {peer}: {pss['dockyard monitor'] / pss[peer]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
