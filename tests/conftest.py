"""Fixtures shared by every test: root checks, a busybox rootfs, runtimes, leak checks."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

import pytest

from dockyard.runtime import cgroups

ROOT = os.geteuid() == 0
IN_CI = os.environ.get("CI") == "true"
# Tests send nothing off this host: dockyard refuses any registry that is not on loopback
# (an image missing by mistake must fail, not be pulled from Docker Hub).
os.environ["DOCKYARD_LOOPBACK_ONLY"] = "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ROOT:
        return
    if IN_CI and any("root" in item.keywords for item in items):
        raise pytest.UsageError("CI=true: the root tests must run, and this is not root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs root"))


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"uid={os.geteuid()} kernel={platform.release()} cgroups={cgroups.detect()}",
        "runtimes: " + ", ".join(f"{n}={shutil.which(n) or 'missing'}" for n in ("runc", "crun")),
    ]


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A scratch directory every uid can traverse (user-namespace tests need that)."""
    path = str(tmp_path_factory.mktemp("dy"))
    p = path
    while p != "/":
        os.chmod(p, os.stat(p).st_mode | 0o111)
        p = os.path.dirname(p)
    return path


@pytest.fixture(scope="session")
def busybox_rootfs(work_dir: str) -> str:
    """A busybox root shared read-only by the bundles of the whole session."""
    from dockyard.testing.busybox import make_rootfs

    if not os.path.exists("/bin/busybox"):
        pytest.fail("busybox-static is not installed (apt-get install busybox-static)")
    return make_rootfs(os.path.join(work_dir, "busybox-rootfs"))


def _v2_controllers() -> str:
    try:
        with open("/sys/fs/cgroup/unified/cgroup.controllers") as f:
            return f.read().strip()
    except OSError:
        return ""


def _network_objects() -> set[str]:
    """Links and nftables tables, to compare before and after the session."""
    out = {f"link: {name}" for name in os.listdir("/sys/class/net")}
    nft = shutil.which("nft")
    if nft:
        listing = subprocess.run([nft, "list", "tables"], capture_output=True, text=True).stdout
        out |= {f"nftables {line.strip()}" for line in listing.splitlines() if line.strip()}
    return out


def _leaks(prefix: str, work_dir: str) -> list[str]:
    found = []
    for state_root in (
        os.path.join(work_dir, d) for d in os.listdir(work_dir) if d.startswith("state-")
    ):
        found += [f"runtime state: {state_root}/{c}" for c in os.listdir(state_root)
                  if os.path.isdir(os.path.join(state_root, c)) and not c.startswith(".")]  # fmt: skip  # .seccomp: a cache
    with open("/proc/self/mountinfo") as f:
        found += [f"mount: {line.split()[4]}" for line in f if work_dir in line.split()[4]]
    for base, dirs, _files in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d.startswith(prefix):
                found.append(f"cgroup: {os.path.join(base, d)}")
        if base.count("/") > 5:
            dirs[:] = []
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    found += [f"process: {line.strip()}" for line in out.splitlines() if prefix in line]
    return found


ID_PREFIX = f"dytest{os.getpid()}-"


@pytest.fixture(scope="session", autouse=True)
def no_leaks(work_dir: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Fail the session if any test left a mount, cgroup, process, container, network link
    or nftables table behind, or did not hand cgroup2's controllers back after a crun run."""
    controllers = _v2_controllers()
    network = _network_objects() if ROOT else set()
    yield
    if not ROOT:
        return
    leaks = _leaks(ID_PREFIX, work_dir)
    base = str(tmp_path_factory.getbasetemp())
    out = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True).stdout
    leaks += [f"process: {line.strip()}" for line in out.splitlines()
              if base in line and "pytest" not in line]  # fmt: skip
    with open("/proc/self/mountinfo") as f:
        leaks += [f"mount: {line.split()[4]}" for line in f
                  if line.split()[4].startswith(base) and work_dir not in line.split()[4]]  # fmt: skip
    leaks += sorted(_network_objects() - network)
    if _v2_controllers() != controllers:
        leaks.append(f"cgroup2 controllers were {controllers!r}, now {_v2_controllers()!r}")
    assert not leaks, "left behind by the tests:\n" + "\n".join(leaks)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus not in (0, 5):
        sys.stderr.write(f"\nenvironment: uid={os.geteuid()} kernel={platform.release()} "
                         f"cgroups={cgroups.detect()}\n")  # fmt: skip
