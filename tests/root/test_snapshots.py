"""One conformance suite for every snapshotter, on real mounts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import pytest

from dockyard.errors import Conflict, InvalidArgument
from dockyard.snapshot.apply import LayerError
from dockyard.snapshot.snapshotter import SNAPSHOTTERS, Snapshotter, unmount

from .conftest import DOCKYARD_RUNTIME
from .test_layers import entry, make_tar

pytestmark = pytest.mark.root


@pytest.fixture(params=sorted(SNAPSHOTTERS))
def snap(request, tmp_path) -> Snapshotter:  # type: ignore[no-untyped-def]
    return SNAPSHOTTERS[request.param](str(tmp_path / "snapshots"))


@pytest.fixture
def mountpoint(tmp_path):  # type: ignore[no-untyped-def]
    target = tmp_path / "mnt"
    target.mkdir()
    yield str(target)
    unmount(str(target))


def _layers(snap: Snapshotter) -> str:
    snap.unpack("sha256:" + "1" * 64, None, make_tar([
        entry("etc", tarfile.DIRTYPE), entry("etc/os-release", data=b"base\n"),
        entry("tmp", tarfile.DIRTYPE), entry("tmp/junk", data=b"j"),
    ]))  # fmt: skip
    top = "sha256:" + "2" * 64
    snap.unpack(
        top, "sha256:" + "1" * 64, make_tar([entry("tmp/.wh.junk"), entry("app", data=b"v2\n")])
    )
    return top


def test_layers_stack_and_a_container_writes_on_top(snap: Snapshotter, mountpoint: str) -> None:
    top = _layers(snap)
    assert snap.stat(top).parent == "sha256:" + "1" * 64
    snap.prepare("ctr1", top)
    snap.mount("ctr1", mountpoint)
    assert sorted(os.listdir(mountpoint)) == ["app", "etc", "tmp"]
    assert os.listdir(os.path.join(mountpoint, "tmp")) == []  # whiteout hides the lower file
    with open(os.path.join(mountpoint, "etc/os-release"), "a") as f:
        f.write("changed\n")
    unmount(mountpoint)
    # the layers below are untouched; the change lives in the container's snapshot
    snap.mount(top, mountpoint, readonly=True)
    with open(os.path.join(mountpoint, "etc/os-release")) as f:
        assert f.read() == "base\n"
    with pytest.raises(OSError):
        open(os.path.join(mountpoint, "new-file"), "w").close()
    unmount(mountpoint)
    with open(os.path.join(snap.fs("ctr1"), "etc/os-release")) as f:
        assert f.read() == "base\nchanged\n"
    snap.remove("ctr1")
    assert not snap.exists("ctr1")


def test_unpack_is_once_and_failures_leave_nothing(snap: Snapshotter) -> None:
    top = _layers(snap)
    assert snap.unpack(top, None, io.BytesIO(b"never read")) is False
    with pytest.raises(LayerError):
        snap.unpack("sha256:" + "3" * 64, top, make_tar([entry("../escape", data=b"x")]))
    assert not snap.exists("sha256:" + "3" * 64)
    assert [i.kind for i in snap.list()] == ["committed", "committed"]


def test_remove_refuses_a_parent_in_use(snap: Snapshotter) -> None:
    top = _layers(snap)
    snap.prepare("ctr2", top)
    with pytest.raises(Conflict, match="has children"):
        snap.remove(top)
    with pytest.raises(Conflict, match="already exists"):
        snap.prepare("ctr2", top)
    with pytest.raises(InvalidArgument, match="not committed"):
        snap.prepare("ctr3", "ctr2")
    with pytest.raises(InvalidArgument, match="invalid snapshot name"):
        snap.prepare("../evil", top)
    snap.remove("ctr2")
    snap.remove(top)
    snap.remove("sha256:" + "1" * 64)
    assert list(snap.list()) == []
    assert os.listdir(os.path.join(snap.root, "l")) == []


def test_commit_a_container_snapshot_as_a_layer(snap: Snapshotter, mountpoint: str) -> None:
    top = _layers(snap)
    fs = snap.prepare("ctr4", top)
    with open(os.path.join(fs, "added"), "w") as f:
        f.write("committed")
    snap.commit("sha256:" + "4" * 64, "ctr4")
    assert snap.stat("sha256:" + "4" * 64).kind == "committed"
    snap.prepare("ctr5", "sha256:" + "4" * 64)
    snap.mount("ctr5", mountpoint)
    with open(os.path.join(mountpoint, "added")) as f:
        assert f.read() == "committed"
    assert "app" in os.listdir(mountpoint)


def _busybox_layer(rootfs: str) -> io.BytesIO:
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        tar.add(rootfs, arcname=".")
    layer.seek(0)
    return layer


def _run_on(
    mountpoint: str, tmp_path, name: str, args: list[str]
) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    from dockyard.runtime.spec import default_spec

    bundle = tmp_path / f"bundle-{name}"
    bundle.mkdir()
    spec = default_spec()
    spec["process"].update(terminal=False, args=args)
    spec["root"] = {"path": mountpoint, "readonly": False}
    (bundle / "config.json").write_text(json.dumps(spec))
    return subprocess.run([*DOCKYARD_RUNTIME, "--root", str(tmp_path / "state"), "run", "--bundle", str(bundle),
                           f"{name}-{os.getpid()}"], capture_output=True, text=True, timeout=60)  # fmt: skip


def test_120_layers_mount_and_run(
    snap: Snapshotter, mountpoint: str, busybox_rootfs: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    parent = "sha256:" + "0" * 64
    snap.unpack(parent, None, _busybox_layer(busybox_rootfs))
    for i in range(1, 120):
        name = f"sha256:{i:064x}"
        snap.unpack(name, parent, make_tar([entry(f"f{i:03d}", data=str(i).encode())]))
        parent = name
    snap.prepare("tall", parent)
    snap.mount("tall", mountpoint)
    files = sorted(f for f in os.listdir(mountpoint) if f.startswith("f"))
    assert len(files) == 119 and files[0] == "f001" and files[-1] == "f119"
    proc = _run_on(
        mountpoint,
        tmp_path,
        f"tall-{snap.kind}",
        ["/bin/sh", "-c", "cat /f077; echo; ls / | grep -c '^f'"],
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["77", "119"]


def test_a_container_runs_on_a_snapshot(
    snap: Snapshotter, mountpoint: str, busybox_rootfs: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """The image path end to end: rootfs tar -> layer snapshot -> mount -> dockyard-runtime."""
    snap.unpack("sha256:" + "b" * 64, None, _busybox_layer(busybox_rootfs))
    snap.prepare("bbctr", "sha256:" + "b" * 64)
    snap.mount("bbctr", mountpoint)
    proc = _run_on(
        mountpoint,
        tmp_path,
        f"snap-{snap.kind}",
        ["/bin/sh", "-c", "echo written > /note; cat /note; ls /bin/busybox"],
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["written", "/bin/busybox"]
    unmount(mountpoint)
    with open(
        os.path.join(snap.fs("bbctr"), "note")
    ) as f:  # the write landed in the container's layer
        assert f.read() == "written\n"


def test_snapshots_are_spread_over_block_groups(snap: Snapshotter) -> None:
    """``chattr +T`` on the snapshot directories: ext4 places each new snapshot where few
    inodes were freed lately, instead of next to the layer a prune just removed."""
    fstype = subprocess.run(["findmnt", "-no", "FSTYPE", "-T", snap.root], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    if fstype not in ("ext2", "ext3", "ext4"):
        pytest.skip(f"the top-directory flag is ext2/3/4's; this is {fstype}")
    for sub in ("active", "committed"):
        flags = subprocess.run(["lsattr", "-d", os.path.join(snap.root, sub)], capture_output=True,
                               text=True, check=True).stdout.split()[0]  # fmt: skip
        assert "T" in flags
    assert "T" not in subprocess.run(["lsattr", "-d", os.path.join(snap.root, "l")],
                                     capture_output=True, text=True).stdout.split()[0]  # fmt: skip


def test_a_volatile_snapshot_mounts_again_in_the_same_boot_only(tmp_path, mountpoint: str) -> None:
    """Overlay refuses an upper dir once mounted ``volatile``; in the boot that wrote it the
    writes are intact, so it mounts again; after a host restart it is refused in one line."""
    snap = SNAPSHOTTERS["overlay"](str(tmp_path / "snapshots"))
    top = _layers(snap)
    snap.prepare("ctr1", top)
    snap.mount("ctr1", mountpoint, volatile=True)
    assert "volatile" in _mount_options(mountpoint)  # "fsync=volatile" on newer kernels
    with open(os.path.join(mountpoint, "app"), "w") as f:
        f.write("unsynced\n")
    unmount(mountpoint)
    snap.mount("ctr1", mountpoint)  # same boot: the marker goes, a normal mount
    assert "volatile" not in _mount_options(mountpoint)
    with open(os.path.join(mountpoint, "app")) as f:
        assert f.read() == "unsynced\n"
    unmount(mountpoint)
    snap.mount("ctr1", mountpoint, volatile=True)
    unmount(mountpoint)
    with open(os.path.join(snap.root, "active", "ctr1", "volatile-boot"), "w") as f:
        f.write("0" * 32)  # as if written before the host restarted
    with pytest.raises(Conflict, match="written without sync before the host restarted"):
        snap.mount("ctr1", mountpoint)
    assert not os.path.ismount(mountpoint)


def _mount_options(target: str) -> str:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == target:
                return line.split(" - ")[1].split()[2]
    raise AssertionError(f"{target} is not mounted")
