"""Image store speed: save/load against skopeo, layer unpack against tar, in one run.

- save: dockyard's store -> OCI archive, against `skopeo copy oci:DIR oci-archive:FILE`
  of the same image;
- load: OCI archive -> dockyard's store (verified, unpacked), against
  `skopeo copy oci-archive:FILE oci:DIR` (verified, not unpacked);
- unpack: one layer of many small files and a few big ones, dockyard's
  apply_layer against `tar -x` of the same tar (MB/s and files/s).

Each is repeated, alternating tools, and medians and ratios are printed.
Usage: python bench/image_store.py [--size-mb 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

from dockyard.image.archive import load, save
from dockyard.image.store import ImageStore
from dockyard.snapshot.apply import apply_layer


def random_layer(path: str, size: int, files: int) -> None:
    """A tar of ``files`` files of random bytes totalling about ``size`` bytes."""
    per = max(size // files, 1)
    with tarfile.open(path, "w") as tar:
        for i in range(files):
            data = os.urandom(per)
            info = tarfile.TarInfo(f"d{i % 50:02d}/f{i:06d}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def timed(fn, *args) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def save_to(store: ImageStore, path: str) -> None:
    with open(path, "wb") as out:
        save(store, ["bench:latest"], out, "oci")


def load_from(store: ImageStore, path: str) -> None:
    with open(path, "rb") as f:
        load(store, f)


def apply_from(path: str, dest: str) -> None:
    with open(path, "rb") as f:
        apply_layer(f, dest, mode="flat")


def run(*argv: str) -> None:
    subprocess.run(list(argv), check=True)


def report(title: str, ours: list[float], theirs: list[float], peer: str, extra: str = "") -> None:
    a, b = statistics.median(ours), statistics.median(theirs)
    print(
        f"{title:<8} dockyard {a * 1000:8.0f} ms   {peer} {b * 1000:8.0f} ms   ratio {a / b:5.2f}x {extra}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    skopeo = shutil.which("skopeo")
    if os.geteuid() != 0:
        sys.exit("run as root: unpacking sets owners and device nodes")
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-img-", dir="/var/tmp") as work:
        store = ImageStore(os.path.join(work, "store"))
        layers = []
        per_layer = args.size_mb * (1 << 20) // 5
        for i in range(5):
            path = os.path.join(work, f"layer{i}.tar")
            random_layer(path, per_layer, 200)
            with open(path, "rb") as f:
                layers.append(store.add_layer(layers[-1] if layers else None, f))
        config = {"architecture": "amd64", "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}}  # fmt: skip
        store.tag(store.create_image(config, layers), "bench:latest")
        archive = os.path.join(work, "image.tar")
        with open(archive, "wb") as out:
            save(store, ["bench:latest"], out, "oci")
        print(f"image: {args.size_mb} MB in 5 layers; rounds: {args.rounds}")
        layout = os.path.join(work, "layout")
        if skopeo:
            subprocess.run(
                [skopeo, "copy", "-q", f"oci-archive:{archive}", f"oci:{layout}:bench"], check=True
            )
        save_ours, save_sk, load_ours, load_sk = [], [], [], []
        for r in range(args.rounds):
            save_ours.append(timed(save_to, store, os.path.join(work, "out.tar")))
            fresh = ImageStore(os.path.join(work, f"fresh{r}"))
            load_ours.append(timed(load_from, fresh, archive))
            if skopeo:
                sk_out = os.path.join(work, f"sk{r}.tar")
                save_sk.append(
                    timed(run, skopeo, "copy", "-q", f"oci:{layout}:bench", f"oci-archive:{sk_out}")
                )
                sk_dir = os.path.join(work, f"sk{r}")
                load_sk.append(
                    timed(
                        run, skopeo, "copy", "-q", f"oci-archive:{archive}", f"oci:{sk_dir}:bench"
                    )
                )
        if skopeo:
            report("save", save_ours, save_sk, "skopeo")
            report("load", load_ours, load_sk, "skopeo", "(dockyard also unpacks)")
        else:
            print("skopeo is not installed: save/load not compared")

        small = os.path.join(work, "small.tar")
        random_layer(small, 100 << 20, 10000)
        ours, tars = [], []
        # Removing a tree on this disk (mounted with discard) slows the next writes for
        # seconds; so every run gets a new directory, all removed after the timing.
        for r in range(args.rounds):
            os.sync()
            ours.append(timed(apply_from, small, os.path.join(work, f"u{r}")))
            tar_dest = os.path.join(work, f"t{r}")
            os.makedirs(tar_dest)
            os.sync()
            tars.append(timed(run, "tar", "-xf", small, "-C", tar_dest))
        mb = os.path.getsize(small) / 1e6
        a = statistics.median(ours)
        report(
            "unpack", ours, tars, "tar   ", f"(dockyard {mb / a:.0f} MB/s, {10000 / a:.0f} files/s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
