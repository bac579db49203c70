"""A busybox root filesystem and OCI bundle, built from Debian's busybox-static.

Usage as a command (the README's demo):  python -m dockyard.testing.busybox BUNDLE_DIR
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

from dockyard.runtime.spec import default_spec

__all__ = ["BUSYBOX", "make_bundle", "make_rootfs"]

BUSYBOX = "/bin/busybox"


def make_rootfs(path: str, busybox: str = BUSYBOX) -> str:
    """Lay out a minimal busybox root at ``path``: /bin with every applet, /etc, /tmp."""
    if not os.path.exists(busybox):
        raise FileNotFoundError(f"{busybox} is missing: apt-get install busybox-static")
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "home"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    target = os.path.join(path, "bin", "busybox")
    shutil.copy2(busybox, target)
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    for name in applets.stdout.split():
        link = os.path.join(path, "bin", name)
        if name != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write(
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        )
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
    return path


def make_bundle(
    path: str,
    args: list[str] | None = None,
    rootfs: str | None = None,
    edit: dict[str, Any] | None = None,
) -> str:
    """An OCI bundle at ``path`` running ``args`` (no terminal) in a busybox rootfs.

    ``rootfs`` names an existing rootfs to point at instead of building one;
    ``edit`` is merged into the top level of the default config.
    """
    os.makedirs(path, exist_ok=True)
    spec = default_spec()
    spec["process"]["terminal"] = False
    spec["process"]["args"] = args or ["/bin/true"]
    if rootfs is None:
        make_rootfs(os.path.join(path, "rootfs"))
        spec["root"]["path"] = "rootfs"
    else:
        spec["root"]["path"] = rootfs
    spec.update(edit or {})
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(spec, f, indent=2)
    return path


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m dockyard.testing.busybox BUNDLE_DIR [ARGS...]")
    make_bundle(sys.argv[1], sys.argv[2:] or None)
    print(sys.argv[1])
