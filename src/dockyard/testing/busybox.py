"""A busybox root filesystem and OCI bundle, built from Debian's busybox-static.

Usage as a command (the README's demo):  python -m dockyard.testing.busybox BUNDLE_DIR
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from dockyard.image.bootstrap import BUSYBOX, make_rootfs
from dockyard.runtime.spec import default_spec

__all__ = ["BUSYBOX", "make_bundle", "make_rootfs"]


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
