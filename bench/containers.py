"""Container start-up and monitor weight: dockyard against podman (and docker, where a
dockerd can be started), in one run.

- ``run --rm busybox true``: median wall time, alternating engines each round.
  podman runs with ``--network none``, since dockyard has no networking yet.
- 50 idle detached containers (``sleep``): PSS of their monitors, per container
  (dockyard's monitor processes against podman's conmon).

Each engine gets its own state under a temporary directory; podman gets its own
storage.conf/containers.conf (cgroupfs, runc, rlimits no higher than the hard
limits root has here, as shared/peers/anchors.sh does). docker is left out
unless ``docker`` answers on ``$DOCKER_HOST``.

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
        print("docker: left out (no dockerd of this bench's own; see shared/peers for its figures)")
        runs: dict[str, list[float]] = {name: [] for name in engines}
        names = list(engines)
        for i in range(args.rounds + 2):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                base, env = engines[name]
                argv = (
                    [*dy, "run", "--rm", "busybox", "true"]
                    if name == "dockyard"
                    else [*base, "--rm", "busybox", "true"]
                )
                elapsed = timed(argv, env)
                if i >= 2:  # two warm-up rounds
                    runs[name].append(elapsed)
        print(f"\nrun --rm busybox true, median of {args.rounds}:")
        base_pod = statistics.median(runs["podman"]) if "podman" in runs else None
        for name, vals in runs.items():
            med = statistics.median(vals) * 1000
            ratio = f"  {med / (base_pod * 1000):.2f}x podman" if base_pod else ""
            print(f"  {name:<9} {med:7.1f} ms{ratio}")

        print(f"\n{args.idle} idle detached containers, monitor PSS per container:")
        ids = [subprocess.run([*dy, "run", "-d", "busybox", "sleep", "600"], check=True, capture_output=True,
                              text=True).stdout.strip() for _ in range(args.idle)]  # fmt: skip
        time.sleep(1)
        n, total = pss_of(b"lean.py", root.encode())
        print(f"  dockyard  {total / max(n, 1) / 1024:6.2f} MiB  ({n} monitors)")
        subprocess.run([*dy, "rm", "-f", *ids], check=True, stdout=subprocess.DEVNULL)
        if "podman" in engines:
            env = engines["podman"][1]
            pids = [subprocess.run(["podman", "run", "-d", "--network", "none", "busybox", "sleep", "600"],
                                   check=True, capture_output=True, text=True, env=env).stdout.strip()
                    for _ in range(args.idle)]  # fmt: skip
            time.sleep(1)
            n, total = pss_of(b"conmon", work.encode())
            print(f"  conmon    {total / max(n, 1) / 1024:6.2f} MiB  ({n} monitors)")
            subprocess.run(
                ["podman", "rm", "-f", "-t", "0", *pids],
                check=True,
                env=env,
                stdout=subprocess.DEVNULL,
            )
            subprocess.run(["podman", "system", "reset", "-f"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
