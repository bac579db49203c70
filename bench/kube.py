"""``kube play`` and ``kube play --down`` of one file — a two-container Pod, a Deployment
of three replicas and a Service — with dockyard against podman 4.3 (Debian's, runc,
its own storage and containers.conf as bench/containers.py sets them), alternating each
round; and the PSS of a pod's infra process (dockyard's catatonit against podman's).

podman runs with ``--network none`` (its bridge would need firewall rules of its own on
this host); dockyard's pods use its default bridge, and its Service publishes a port,
so dockyard's column does more work than podman's.

Usage: python bench/kube.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from containers import dockyard_with_busybox, podman_env, pss_of

FILE = """\
apiVersion: v1
kind: Pod
metadata: {{name: duo, labels: {{app: duo}}}}
spec:
  containers:
  - {{name: a, image: {image}, command: [sh, -c, "trap 'exit 0' TERM; sleep 300 & wait"]}}
  - {{name: b, image: {image}, command: [sh, -c, "trap 'exit 0' TERM; sleep 300 & wait"]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - {{name: web, image: {image}, command: [sh, -c, "trap 'exit 0' TERM; sleep 300 & wait"]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: {port}, targetPort: 80}}]
"""


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-kube-", dir="/var/tmp") as work:
        dy, archive = dockyard_with_busybox(work)
        ours = os.path.join(work, "dockyard.yaml")
        with open(ours, "w") as f:
            f.write(FILE.format(image="busybox", port=18097))
        engines: dict[str, tuple[list[str], list[str], dict[str, str] | None]] = {
            "dockyard": ([*dy, "kube", "play", ours], [*dy, "kube", "play", "--down", ours], None)
        }
        if shutil.which("podman"):
            env = podman_env(work)
            subprocess.run(["podman", "load", "-q", "-i", archive], check=True, env=env, stdout=subprocess.DEVNULL)
            theirs = os.path.join(work, "podman.yaml")
            with open(theirs, "w") as f:
                f.write(FILE.format(image="localhost/busybox:latest", port=18098))
            engines["podman"] = (["podman", "kube", "play", "--network", "none", theirs],
                                 ["podman", "kube", "play", "--down", theirs], env)  # fmt: skip
            timed(engines["podman"][0], env)  # the first makes podman's pause image: not timed
            timed(engines["podman"][1], env)
        else:
            print("podman is not installed: left out")
        times: dict[str, dict[str, list[float]]] = {n: {"play": [], "down": []} for n in engines}
        pss: dict[str, tuple[int, int]] = {}
        for r in range(args.rounds):
            order = list(engines) if r % 2 == 0 else list(reversed(engines))
            for name in order:
                up, down, env = engines[name]
                times[name]["play"].append(timed(up, env))
                if r == 0:  # only this engine's pods run now: both pause with catatonit -P
                    time.sleep(0.5)
                    pss[name] = pss_of(b"catatonit", b"-P")
                times[name]["down"].append(timed(down, env))
        print(f"kube play of a 2-container Pod, a Deployment of 3 and a Service; medians of {args.rounds}, ms")
        for name in engines:
            line = f"  {name:<10} play {statistics.median(times[name]['play']) * 1000:7.1f}   down {statistics.median(times[name]['down']) * 1000:7.1f}"
            if name != "dockyard" and "dockyard" in times:
                line += (f"   dockyard: {statistics.median(times['dockyard']['play']) / statistics.median(times[name]['play']):.2f}x play,"
                         f" {statistics.median(times['dockyard']['down']) / statistics.median(times[name]['down']):.2f}x down")  # fmt: skip
            print(line)
        for name, (n, kib) in pss.items():
            print(f"  {name:<10} infra processes: {n}, PSS {kib / max(n, 1):.0f} KiB each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
