"""commit, diff and import through the Python API and the CLI, on both snapshotters."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from dockyard.image.bootstrap import bootstrap_busybox
from dockyard.image.commit import commit_snapshot, diff_snapshot
from dockyard.image.store import ImageStore
from dockyard.snapshot.snapshotter import unmount

pytestmark = pytest.mark.root

DOCKYARD = os.path.join(os.path.dirname(sys.executable), "dockyard")


@pytest.fixture(params=["overlay", "copy"])
def store(request, tmp_path) -> ImageStore:  # type: ignore[no-untyped-def]
    return ImageStore(str(tmp_path / "root"), request.param)


@pytest.fixture
def mnt(tmp_path):  # type: ignore[no-untyped-def]
    target = tmp_path / "mnt"
    target.mkdir()
    yield str(target)
    unmount(str(target))


def test_commit_keeps_a_containers_changes(store: ImageStore, mnt: str) -> None:
    base = bootstrap_busybox(store)
    top = store.layers(base)[-1].chain_id
    store.snapshots.prepare("ctr", top)
    store.snapshots.mount("ctr", mnt)
    with open(os.path.join(mnt, "etc/motd"), "w") as f:
        f.write("hello\n")
    with open(os.path.join(mnt, "etc/passwd"), "a") as f:
        f.write("app:x:1000:1000::/home/app:/bin/sh\n")
    os.unlink(os.path.join(mnt, "bin/vi"))
    unmount(mnt)
    assert diff_snapshot(store, "ctr", base) == [
        ("C", "/bin"), ("D", "/bin/vi"), ("C", "/etc"), ("A", "/etc/motd"), ("C", "/etc/passwd"),
    ]  # fmt: skip
    new = commit_snapshot(store, "ctr", base, comment="add motd", author="me <me@example.test>",
                          changes_=['CMD ["cat", "/etc/motd"]', "ENV GREETING=hi"], ref="busybox:motd")  # fmt: skip
    cfg = store.config(new)
    assert cfg["config"]["Cmd"] == ["cat", "/etc/motd"]
    assert "GREETING=hi" in cfg["config"]["Env"]
    assert cfg["history"][-1]["comment"] == "add motd" and cfg["author"] == "me <me@example.test>"
    assert len(store.layers(new)) == 2 and store.resolve("busybox:motd") == new
    store.snapshots.prepare("check", store.layers(new)[-1].chain_id)
    store.snapshots.mount("check", mnt)
    with open(os.path.join(mnt, "etc/motd")) as f:
        assert f.read() == "hello\n"
    assert not os.path.exists(os.path.join(mnt, "bin/vi"))
    with open(os.path.join(mnt, "etc/passwd")) as f:
        assert f.read().endswith("/bin/sh\n")
    unmount(mnt)
    # the layer itself carries a whiteout for the deleted file, nothing else untouched
    layer = store.layers(new)[-1]
    with store.content.open(layer.blob_digest) as f, tarfile.open(fileobj=f) as tar:
        names = tar.getnames()
    assert "bin/.wh.vi" in names and "etc/motd" in names and "bin/busybox" not in names


def test_import_with_changes_via_cli(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w:gz") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    src = tmp_path / "rootfs.tar.gz"
    src.write_bytes(rootfs.getvalue())
    root = str(tmp_path / "root")
    proc = subprocess.run([DOCKYARD, "--root", root, "import", "-c", "CMD /hello", "-c", "EXPOSE 80",
                           "-c", "LABEL a=b c=d", "-m", "from a tarball", str(src), "imported:v1"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    image_id = proc.stdout.strip()
    info = json.loads(subprocess.run([DOCKYARD, "--root", root, "image", "inspect", "imported:v1"],
                                     capture_output=True, text=True).stdout)[0]  # fmt: skip
    assert info["Id"] == image_id
    assert info["Config"]["Cmd"] == ["/bin/sh", "-c", "/hello"]
    assert info["Config"]["ExposedPorts"] == {"80/tcp": {}}
    assert info["Config"]["Labels"] == {"a": "b", "c": "d"}
    assert info["Comment"] == "from a tarball"
    bad = subprocess.run([DOCKYARD, "--root", root, "import", "-c", "RUN true", str(src)],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 1 and bad.stderr == "dockyard: RUN is not a valid change command\n"


def test_export_flattens_image_and_changes(store: ImageStore, mnt: str) -> None:
    from dockyard.image.commit import export_snapshot

    base = bootstrap_busybox(store)
    fs = store.snapshots.prepare("exp", store.layers(base)[-1].chain_id)
    store.snapshots.mount("exp", mnt)
    with open(os.path.join(mnt, "added.txt"), "w") as f:
        f.write("mine")
    os.unlink(os.path.join(mnt, "bin/vi"))
    unmount(mnt)
    assert os.path.isdir(fs)
    buf = io.BytesIO()
    export_snapshot(store, "exp", buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        names = set(tar.getnames())
        assert tar.extractfile("added.txt").read() == b"mine"  # type: ignore[union-attr]
    assert "bin/busybox" in names and "bin/vi" not in names
    assert not any(n.split("/")[-1].startswith(".wh.") for n in names)
    assert not [d for d in os.listdir(store.root) if d.startswith("export-")]
