"""Container start-up: dockyard-runtime against runc and crun, in one run.

Times, for each runtime, the lifecycle of a busybox container running
/bin/true, two ways:

- ``run``: one ``run --bundle B ID`` (create + start + wait + delete in one process);
- ``steps``: ``create``, ``start``, wait for the process to go, ``delete``: four commands.

Runtimes alternate within each round (rotating who goes first) so that load
on this shared machine hits all of them alike. Medians and ratios to runc are
printed; absolute times mean little here, ratios do.

On a hybrid cgroup host crun refuses to run, so a second phase moves
cgroup2's controllers to v1 (and back afterwards) and runs all three.

Usage: python bench/runtime_start.py [--rounds N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from dockyard.runtime import cgroups
from dockyard.testing.busybox import make_bundle
from dockyard.testing.hybrid import crun_cgroup_fix, undo_crun_cgroup_fix

DOCKYARD = os.path.join(os.path.dirname(sys.executable), "dockyard-runtime")


def _quiet(argv: list[str]) -> None:
    # stderr to a file, not a pipe: a created container inherits it and would keep
    # the pipe open until it exits, which is after the ``start`` we have not sent yet.
    with tempfile.TemporaryFile() as err:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv)}: {err.read().decode().strip()}")


def time_run(argv: list[str], root: str, bundle: str, cid: str) -> float:
    t0 = time.perf_counter()
    _quiet([*argv, "--root", root, "run", "--bundle", bundle, cid])
    return time.perf_counter() - t0


def time_steps(argv: list[str], root: str, bundle: str, cid: str) -> float:
    pid_file = os.path.join(root, f"{cid}.pid")
    t0 = time.perf_counter()
    _quiet([*argv, "--root", root, "create", "--bundle", bundle, "--pid-file", pid_file, cid])
    _quiet([*argv, "--root", root, "start", cid])
    with open(pid_file) as f:
        pid = int(f.read())
    # The container's parent is gone, so it is not ours to wait for: poll /proc.
    while True:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.0005)
    _quiet([*argv, "--root", root, "delete", cid])
    elapsed = time.perf_counter() - t0
    os.unlink(pid_file)
    return elapsed


def phase(runtimes: dict[str, list[str]], rounds: int, work: str) -> dict[str, dict[str, float]]:
    bundle = make_bundle(os.path.join(work, "bundle"), ["/bin/true"])
    roots = {name: os.path.join(work, f"root-{name}") for name in runtimes}
    samples: dict[str, dict[str, list[float]]] = {n: {"run": [], "steps": []} for n in runtimes}
    names = list(runtimes)
    for name in names:  # warm-up: page cache, bytecode
        for _ in range(3):
            time_run(runtimes[name], roots[name], bundle, f"warm-{name}")
    for i in range(rounds):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            samples[name]["run"].append(time_run(runtimes[name], roots[name], bundle, f"b{i}"))
            samples[name]["steps"].append(time_steps(runtimes[name], roots[name], bundle, f"s{i}"))
    return {
        name: {kind: statistics.median(vals) * 1000 for kind, vals in by_kind.items()}
        for name, by_kind in samples.items()
    }


def report(title: str, medians: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"{'runtime':<10} {'run (ms)':>9} {'vs runc':>8} {'steps (ms)':>11} {'vs runc':>8}")
    base = medians.get("runc")
    for name, m in medians.items():
        r1 = f"{m['run'] / base['run']:.2f}x" if base else "-"
        r2 = f"{m['steps'] / base['steps']:.2f}x" if base else "-"
        print(f"{name:<10} {m['run']:>9.1f} {r1:>8} {m['steps']:>11.1f} {r2:>8}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", help="also write the medians to this file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: containers need namespaces and cgroups")
    runtimes = {"dockyard": [DOCKYARD]}
    for peer in ("runc", "crun"):
        if shutil.which(peer):
            runtimes[peer] = [shutil.which(peer) or peer]
        else:
            print(f"{peer}: not installed, left out")
    results = {}
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as work:
        os.chmod(work, 0o755)
        mode = cgroups.detect()
        print(f"cgroups: {mode}, rounds: {args.rounds}, kernel {os.uname().release}")
        if mode == "hybrid" and "crun" in runtimes:
            booted = {n: a for n, a in runtimes.items() if n != "crun"}
            results["as booted (crun refuses hybrid cgroups)"] = phase(booted, args.rounds, work)
            fixed = crun_cgroup_fix()
            try:
                results["cgroup2 controllers moved to v1 (all three)"] = phase(
                    runtimes, args.rounds, work
                )
            finally:
                stuck = undo_crun_cgroup_fix(fixed)
                if stuck:
                    print(f"warning: {stuck} did not return to cgroup2", file=sys.stderr)
        else:
            results[f"cgroups {mode}"] = phase(runtimes, args.rounds, work)
    for title, medians in results.items():
        report(title, medians)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
