"""Base images without the internet: a busybox image from the host's busybox-static.

The layer is built deterministically (sorted entries, owner 0, one mtime:
the busybox binary's), so the same binary gives the same image ID anywhere.
"""

from __future__ import annotations

import io
import os
import platform
import subprocess
import tarfile
import tempfile
import time

from dockyard.busy import changing
from dockyard.image.store import ImageStore
from dockyard.testing.busybox import BUSYBOX, make_rootfs

__all__ = ["bootstrap_busybox", "deterministic_tar"]

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64"}  # fmt: skip


def deterministic_tar(root: str, mtime: int) -> bytes:
    """``root`` as an uncompressed layer tar: sorted, numeric owner 0, fixed mtime."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for base, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(dirs + files):
                path = os.path.join(base, name)
                info = tar.gettarinfo(path, arcname=os.path.relpath(path, root))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = mtime
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buf.getvalue()


@changing(lambda store, *_: store.root)
def bootstrap_busybox(
    store: ImageStore, tag: str = "busybox:latest", busybox: str = BUSYBOX
) -> str:
    """Build and tag a busybox image; return its ID."""
    mtime = int(os.stat(busybox).st_mtime)
    with tempfile.TemporaryDirectory(prefix="dockyard-bootstrap-") as tmp:
        rootfs = make_rootfs(os.path.join(tmp, "rootfs"), busybox)
        layer_bytes = deterministic_tar(rootfs, mtime)
    layer = store.add_layer(None, io.BytesIO(layer_bytes))
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))
    banner = subprocess.run([busybox], capture_output=True, text=True).stdout.split("\n", 1)[0]
    version = banner.split(" ")[1] if banner.startswith("BusyBox ") else ""
    config = {
        "architecture": _ARCH.get(platform.machine(), platform.machine()),
        "os": "linux",
        "created": created,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [
            {
                "created": created,
                "created_by": f"dockyard image bootstrap busybox ({busybox} {version})".strip(),
            },
            {"created": created, "created_by": 'CMD ["sh"]', "empty_layer": True},
        ],
    }
    image_id = store.create_image(config, [layer])
    store.tag(image_id, tag)
    return image_id
