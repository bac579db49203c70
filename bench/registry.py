"""Push and pull: dockyard against skopeo, through Debian's docker-registry on 127.0.0.1.

The image: busybox plus five layers of 40 MiB of random bytes (~200 MB), built by
dockyard. Each round starts a registry with empty storage, so every push uploads
everything. Push: ``dockyard push`` against ``skopeo copy`` of the same image
from a docker-archive. Pull: ``dockyard pull`` into an empty engine (which also
unpacks the layers) against ``skopeo copy`` to an OCI layout directory (which
does not). Medians of ``--rounds``; each timed step starts after ``sync``.

dockyard stores the layers it builds as plain tars and gzips them on their first
push, keeping the result (``compressed_blobs``); skopeo gzips them on every copy. So
"dockyard push" is the first push of each round, the compressed copies dropped before
it, and "dockyard push again" the next one, which reuses them.

Usage: python bench/registry.py [--rounds 3] [--mib 40]
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
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from containers import DOCKYARD, dockyard_with_busybox


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, work: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="reg-", dir=work)
        self.host = f"127.0.0.1:{free_port()}"
        conf = os.path.join(self.dir, "config.yml")
        with open(conf, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {self.dir}/data\n"
                    f"http:\n  addr: {self.host}\n")  # fmt: skip
        self.proc = subprocess.Popen(["docker-registry", "serve", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def forget_compressed(work: str) -> None:
    """Drop the compressed copies a push made, so the next push compresses again."""
    import sqlite3

    root = os.path.join(work, "dockyard")
    db = sqlite3.connect(os.path.join(root, "dockyard.db"))
    with db:
        for (digest,) in db.execute("SELECT digest FROM compressed_blobs").fetchall():
            path = os.path.join(root, "content", "blobs", "sha256", digest[7:])
            if os.path.exists(path):
                os.unlink(path)
        db.execute("DELETE FROM compressed_blobs")
    db.close()


def timed(argv: list[str]) -> float:
    os.sync()  # what the previous step left dirty is not written back on this one's time
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=40)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    if not shutil.which("docker-registry") or not shutil.which("skopeo"):
        sys.exit("needs docker-registry and skopeo (apt-get install docker-registry skopeo)")
    times: dict[str, list[float]] = {
        k: []
        for k in (
            "dockyard push",
            "dockyard push again",
            "skopeo push",
            "dockyard pull",
            "skopeo pull",
        )
    }
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-reg-", dir="/var/tmp") as work:
        dy, _ = dockyard_with_busybox(work)
        ctx = os.path.join(work, "ctx")
        os.makedirs(ctx)
        lines = ["FROM busybox"]
        for i in range(5):
            with open(os.path.join(ctx, f"blob{i}"), "wb") as f:
                f.write(os.urandom(args.mib << 20))
            lines.append(f"COPY blob{i} /data/blob{i}")
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write("\n".join(lines) + "\n")
        subprocess.run([*dy, "build", "-q", "-t", "big:1", ctx], check=True, capture_output=True)
        archive = os.path.join(work, "big.tar")
        subprocess.run([*dy, "save", "-o", archive, "big:1"], check=True)
        for _ in range(args.rounds):
            for tool in ("dockyard", "skopeo"):
                reg = Registry(work)
                try:
                    ref = f"{reg.host}/bench/big:1"
                    if tool == "dockyard":
                        subprocess.run([*dy, "tag", "big:1", ref], check=True)
                        forget_compressed(work)
                        times["dockyard push"].append(timed([*dy, "push", ref]))
                        again = f"{reg.host}/bench/again:1"
                        subprocess.run([*dy, "tag", "big:1", again], check=True)
                        times["dockyard push again"].append(timed([*dy, "push", again]))
                        subprocess.run([*dy, "rmi", again], capture_output=True)
                        puller = [DOCKYARD, "--root", os.path.join(work, "pull-root")]
                        times["dockyard pull"].append(timed([*puller, "pull", ref]))
                        subprocess.run([*puller, "rmi", ref], capture_output=True)
                        subprocess.run([*dy, "rmi", ref], capture_output=True)
                        shutil.rmtree(os.path.join(work, "pull-root"), ignore_errors=True)
                    else:
                        times["skopeo push"].append(timed(["skopeo", "copy", "--dest-tls-verify=false",
                                                           f"docker-archive:{archive}", f"docker://{ref}"]))  # fmt: skip
                        layout = os.path.join(work, "layout")
                        times["skopeo pull"].append(timed(["skopeo", "copy", "--src-tls-verify=false",
                                                           f"docker://{ref}", f"oci:{layout}:big"]))  # fmt: skip
                        shutil.rmtree(layout, ignore_errors=True)
                finally:
                    reg.stop()
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"\n{5 * args.mib} MiB in 5 layers, median of {args.rounds} (ms):")
    for k, v in med.items():
        print(f"  {k:<14} {v:8.0f}")
    print(f"  dockyard / skopeo: push {med['dockyard push'] / med['skopeo push']:.2f}x (compressing; again: "
          f"{med['dockyard push again'] / med['skopeo push']:.2f}x), "
          f"pull {med['dockyard pull'] / med['skopeo pull']:.2f}x (dockyard's pull also unpacks)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
