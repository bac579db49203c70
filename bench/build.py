"""Builds: dockyard against buildah and docker (classic builder and BuildKit), in one run.

One Dockerfile of ten instructions on a context of 500 small files and four
of 4 MiB (~20 MB, deterministic, as shared/peers/anchors.sh makes it), built:
cold (image and build cache removed first), fully cached, and after one small
source file changed. Medians of ``--rounds``; ratios against each peer. Each
timed build starts after ``sync``, so no engine pays for another's writeback.

Each engine has its own state under a temporary directory; buildah its own
storage.conf; docker a containerd and dockerd of the bench's own (no bridge, no
iptables). Every build runs with ``--network none`` (RUN steps without network).

Usage: python bench/build.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from containers import Dockerd, dockyard_with_busybox, podman_env, remove_peer_cgroups

DOCKERFILE = """FROM busybox
ARG FLAVOR=bench
ENV APP_HOME=/app GREETING=hello
WORKDIR /app
COPY data/ /app/data/
RUN mkdir -p gen && for i in $(seq 1 200); do echo "$i $GREETING" > gen/f$i.txt; done && dd if=/dev/zero of=gen/zero.bin bs=1024 count=2048 2>/dev/null
RUN rm gen/f1.txt
COPY Dockerfile /app/Dockerfile.copy
LABEL org.opencontainers.image.title="dockyard-bench" bench.kind="build"
EXPOSE 8080
CMD ["/bin/sh", "-c", "ls -l /app"]
"""


def make_context(base: str) -> str:
    ctx = os.path.join(base, "ctx")
    r = random.Random(42)
    for i in range(500):
        d = f"{ctx}/data/small/d{i % 20:02d}"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/f{i:03d}.bin", "wb") as f:
            f.write(r.randbytes(r.randint(1024, 15 * 1024)))
    os.makedirs(f"{ctx}/data/big", exist_ok=True)
    for i in range(4):
        with open(f"{ctx}/data/big/blob{i}.bin", "wb") as f:
            f.write(r.randbytes(4 * 1024 * 1024))
    with open(f"{ctx}/Dockerfile", "w") as f:
        f.write(DOCKERFILE)
    return ctx


def timed(argv: list[str], env: dict[str, str] | None) -> float:
    # Every engine writes to the same filesystem: without this, the writeback of what one
    # engine left dirty stalls the next one's file creations (ext4 journal) and is charged
    # to it.
    os.sync()
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.decode(errors='replace')[-2000:]}")
    return time.perf_counter() - t0


def quiet(argv: list[str], env: dict[str, str] | None = None) -> None:
    subprocess.run(argv, env=env, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-build-", dir="/var/tmp") as work:
        ctx = make_context(work)
        dy, archive = dockyard_with_busybox(work)
        # name -> (build argv, env, cold-preparation argvs)
        engines: dict[str, tuple[list[str], dict[str, str] | None, list[list[str]]]] = {
            "dockyard": ([*dy, "build", "-q", "--network", "none", "-t", "bench:dy", ctx], None,
                         [[*dy, "rmi", "-f", "bench:dy"], [*dy, "builder", "prune", "-f"]]),
        }  # fmt: skip
        dockerd = None
        try:
            if shutil.which("buildah"):
                env = podman_env(work)
                subprocess.run(
                    ["podman", "load", "-q", "-i", archive],
                    env=env,
                    check=True,
                    capture_output=True,
                )
                engines["buildah"] = (["buildah", "bud", "-q", "--layers", "--network", "none", "-t", "bench:buildah",
                                       ctx], env,
                                      [["buildah", "rmi", "-f", "bench:buildah"], ["buildah", "rmi", "--prune"]])  # fmt: skip
            if shutil.which("dockerd") and os.path.exists("/usr/bin/docker"):
                dockerd = Dockerd(work)
                docker = "/usr/bin/docker"  # Debian's 20.10 CLI: BuildKit without the buildx plugin
                subprocess.run(
                    [docker, "load", "-q", "-i", archive],
                    env=dockerd.env,
                    check=True,
                    capture_output=True,
                )
                for name, kit in (("docker-classic", "0"), ("docker-buildkit", "1")):
                    env = {**dockerd.env, "DOCKER_BUILDKIT": kit}
                    engines[name] = ([docker, "build", "-q", "--network", "none", "-t", f"bench:{name}", ctx], env,
                                     [[docker, "rmi", "-f", f"bench:{name}"], [docker, "builder", "prune", "-af"],
                                      [docker, "image", "prune", "-f"]])  # fmt: skip
            results = measure(engines, ctx, args.rounds)
        finally:
            quiet([*dy, "network", "prune", "-f"])  # RUN steps used the default bridge
            if dockerd is not None:
                dockerd.stop()
            if "buildah" in engines:
                quiet(["podman", "system", "reset", "-f"], engines["buildah"][1])
                remove_peer_cgroups()
    report(results)
    return 0


def measure(engines: dict[str, tuple[list[str], dict[str, str] | None, list[list[str]]]], ctx: str,
            rounds: int) -> dict[str, dict[str, float]]:  # fmt: skip
    results: dict[str, dict[str, list[float]]] = {
        n: {"cold": [], "cached": [], "one file": []} for n in engines
    }
    changed = os.path.join(ctx, "data/small/d00/f000.bin")
    for _ in range(rounds):
        for name, (argv, env, prepare) in engines.items():
            for step in prepare:
                quiet(step, env)
            results[name]["cold"].append(timed(argv, env))
            timed(argv, env)  # warm
            results[name]["cached"].append(timed(argv, env))
            with open(changed, "wb") as f:
                f.write(os.urandom(2048))
            results[name]["one file"].append(timed(argv, env))
    return {n: {k: statistics.median(v) * 1000 for k, v in r.items()} for n, r in results.items()}


def report(results: dict[str, dict[str, float]]) -> None:
    kinds = ("cold", "cached", "one file")
    print(f"\n{'ms (median)':<16}" + "".join(f"{k:>12}" for k in kinds))
    for name, r in results.items():
        print(f"{name:<16}" + "".join(f"{r[k]:>12.0f}" for k in kinds))
    for peer in results:
        if peer != "dockyard":
            ratios = ", ".join(
                f"{k} {results['dockyard'][k] / results[peer][k]:.2f}x" for k in kinds
            )
            print(f"dockyard / {peer}: {ratios}")


if __name__ == "__main__":
    raise SystemExit(main())
