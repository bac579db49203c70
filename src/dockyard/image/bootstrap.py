"""Base images without the internet: a busybox image from the host's busybox-static.

The layer is built deterministically (sorted entries, owner 0, one mtime:
the busybox binary's), so the same binary gives the same image ID anywhere.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time

from dockyard.busy import changing
from dockyard.image.store import ImageStore
from dockyard.platforms import host_arch

__all__ = [
    "BUSYBOX",
    "CATATONIT",
    "bootstrap_busybox",
    "bootstrap_infra",
    "deterministic_tar",
    "make_rootfs",
]


BUSYBOX = "/bin/busybox"
CATATONIT = "/usr/bin/catatonit"  # podman's pause process: a static C program of ~700 KiB


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
        "architecture": host_arch(),
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


@changing(lambda store, *_: store.root)
def bootstrap_infra(store: ImageStore, tag: str, catatonit: str = CATATONIT) -> str:
    """The image of a pod's infra container: ``catatonit -P``, a process that only waits
    (and reaps), alone in its root; its ID."""
    if not os.path.exists(catatonit):
        raise FileNotFoundError(f"pods need {catatonit}: apt-get install catatonit")
    mtime = int(os.stat(catatonit).st_mtime)
    with tempfile.TemporaryDirectory(prefix="dockyard-infra-") as tmp:
        root = os.path.join(tmp, "rootfs")
        for d in ("dev", "proc", "sys", "etc"):
            os.makedirs(os.path.join(root, d))
        shutil.copy2(catatonit, os.path.join(root, "catatonit"))
        layer_bytes = deterministic_tar(root, mtime)
    layer = store.add_layer(None, io.BytesIO(layer_bytes))
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))
    config = {
        "architecture": host_arch(), "os": "linux", "created": created,
        "config": {"Entrypoint": ["/catatonit", "-P"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": created, "created_by": f"dockyard pod infra ({catatonit} -P)"}],
    }  # fmt: skip
    image_id = store.create_image(config, [layer])
    store.tag(image_id, tag)
    return image_id
