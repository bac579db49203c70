"""Real containers, driven through the runc command line of each runtime under test.

The ``runtime`` fixture is parametrised: the same test runs against
dockyard-runtime, runc and crun, which shows the tests check real behaviour.
A runtime that cannot run here is skipped with the reason in the output.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dockyard.runtime import cgroups
from dockyard.runtime.spec import default_spec
from dockyard.testing.hybrid import crun_cgroup_fix, undo_crun_cgroup_fix

from ..conftest import ID_PREFIX

pytestmark = pytest.mark.root

_SCRIPT = os.path.join(os.path.dirname(sys.executable), "dockyard-runtime")
DOCKYARD_RUNTIME = (
    [_SCRIPT] if os.path.exists(_SCRIPT) else [sys.executable, "-m", "dockyard.runtime.cli"]
)
_counter = itertools.count()


class Runtime:
    """One OCI runtime binary with its own state root."""

    def __init__(self, name: str, argv: list[str], root: str) -> None:
        self.name = name
        self.argv = argv
        self.root = root

    def __repr__(self) -> str:
        return self.name

    def cmd(self, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run a runtime command; output goes through files, not pipes, because a
        created container inherits them and would hold a pipe open until it exits."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                [*self.argv, "--root", self.root, *args],
                stdout=out,
                stderr=err,
                timeout=timeout,
                **kw,
            )
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(
                proc.args, proc.returncode, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"),
            )  # fmt: skip

    def ok(self, *args: str, **kw: Any) -> str:
        proc = self.cmd(*args, **kw)
        assert proc.returncode == 0, f"{self.name} {' '.join(args)}: {proc.stderr or proc.stdout}"
        return proc.stdout

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self.ok("state", cid))

    def wait_status(self, cid: str, status: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            current = self.state(cid)["status"]
            if current == status:
                return
            assert time.monotonic() < deadline, f"{cid} still {current}, wanted {status}"
            time.sleep(0.02)


def _runtime_params() -> list[Any]:
    return [
        pytest.param("dockyard", id="dockyard"),
        pytest.param("runc", id="runc"),
        pytest.param("crun", id="crun"),
    ]


@pytest.fixture(scope="session", params=_runtime_params())
def runtime(request: pytest.FixtureRequest, work_dir: str) -> Iterator[Runtime]:
    name = request.param
    root = os.path.join(work_dir, f"state-{name}")
    if name == "dockyard":
        yield Runtime(name, DOCKYARD_RUNTIME, root)
        return
    binary = shutil.which(name)
    if binary is None:
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    fixed: list[str] = []
    if name == "crun" and cgroups.detect() == "hybrid":
        # crun refuses hybrid hosts; move cgroup2's controllers to v1 while it runs.
        try:
            fixed = crun_cgroup_fix()
        except (OSError, subprocess.CalledProcessError) as err:
            pytest.skip(f"crun refuses hybrid cgroups and the v1 remount failed: {err}")
    try:
        yield Runtime(name, [binary], root)
    finally:
        stuck = undo_crun_cgroup_fix(fixed)
        assert not stuck, f"could not hand {stuck} back to cgroup2"


@pytest.fixture
def dockyard(work_dir: str) -> Runtime:
    """dockyard-runtime alone, for behaviour the other runtimes do not share."""
    return Runtime("dockyard", DOCKYARD_RUNTIME, os.path.join(work_dir, "state-dockyard"))


class Bundles:
    """Makes bundles over the shared busybox rootfs and deletes their containers after."""

    def __init__(self, work_dir: str, rootfs: str, runtime: Runtime) -> None:
        self.work_dir = work_dir
        self.rootfs = rootfs
        self.runtime = runtime
        self.ids: list[tuple[Runtime, str]] = []

    def new_id(self) -> str:
        return f"{ID_PREFIX}{next(_counter)}"

    def spec(self, args: list[str]) -> dict[str, Any]:
        spec = default_spec()
        spec["process"]["terminal"] = False
        spec["process"]["args"] = args
        spec["root"] = {"path": self.rootfs, "readonly": True}
        spec["mounts"].append(
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev"],
            }
        )
        return spec

    def make(self, args: list[str], edit: Any = None) -> tuple[str, str]:
        """(bundle path, container id); ``edit(spec)`` may change the config first."""
        cid = self.new_id()
        bundle = os.path.join(self.work_dir, "bundles", cid)
        os.makedirs(bundle)
        spec = self.spec(args)
        if edit is not None:
            edit(spec)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        self.ids.append((self.runtime, cid))
        return bundle, cid

    def run(self, args: list[str], edit: Any = None, rt: Runtime | None = None, **kw: Any):
        """Run to completion in the foreground: the CompletedProcess."""
        bundle, cid = self.make(args, edit)
        return (rt or self.runtime).cmd("run", "--bundle", bundle, cid, **kw)

    def started(self, args: list[str], edit: Any = None) -> tuple[str, str]:
        bundle, cid = self.make(args, edit)
        self.runtime.ok("create", "--bundle", bundle, cid)
        self.runtime.ok("start", cid)
        return bundle, cid

    def cleanup(self) -> None:
        for rt, cid in self.ids:
            rt.cmd("delete", "--force", cid)
        self.ids.clear()


@pytest.fixture
def bundles(work_dir: str, busybox_rootfs: str, runtime: Runtime) -> Iterator[Bundles]:
    b = Bundles(work_dir, busybox_rootfs, runtime)
    yield b
    b.cleanup()


@pytest.fixture
def dy_bundles(work_dir: str, busybox_rootfs: str, dockyard: Runtime) -> Iterator[Bundles]:
    b = Bundles(work_dir, busybox_rootfs, dockyard)
    yield b
    b.cleanup()


def edit_with(**changes: Any):  # type: ignore[no-untyped-def]
    """An ``edit`` that sets dotted keys: edit_with(**{"linux.sysctl": {...}})."""

    def edit(spec: dict[str, Any]) -> None:
        for dotted, value in changes.items():
            node = spec
            *parents, last = dotted.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            node[last] = copy.deepcopy(value)

    return edit


def read_until(fd: int, needle: bytes, timeout: float = 20) -> bytes:
    """Read ``fd`` (a pty master, say) until ``needle`` shows up; fail after ``timeout``."""
    import select

    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out:
        assert time.monotonic() < deadline, f"no {needle!r} in {out!r}"
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


DOCKYARD = os.path.join(os.path.dirname(sys.executable), "dockyard")


class Dy:
    def __init__(self, root: str) -> None:
        self.root = root

    def __call__(
        self, *args: str, ok: bool = True, timeout: float = 60, **kw
    ) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
        proc = subprocess.run([DOCKYARD, "--root", self.root, *args], capture_output=True, text=True,
                              timeout=timeout, **kw)  # fmt: skip
        if ok:
            assert proc.returncode == 0, f"{args}: {proc.stderr}"
        return proc

    def record(self, ref: str) -> dict:
        return json.loads(self("inspect", ref).stdout)[0]


def wait_for_port(
    port: int, proc: subprocess.Popen[Any] | None = None, timeout: float = 30
) -> None:
    """Until something accepts connections on the loopback's ``port`` (``proc``, the server,
    must not have ended meanwhile)."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        assert proc is None or proc.poll() is None, "the server ended"
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on 127.0.0.1:{port}"
            time.sleep(0.05)


def http_get(port: int) -> str:
    """The body of ``GET /`` on the loopback's ``port``, or "" when nothing answers."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return ""
    return data.partition(b"\r\n\r\n")[2].decode().strip()


def until(what: str, check: Any, timeout: float = 20) -> None:
    """Until ``check()`` is true; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def engine_for_module(tmp_path_factory: Any, name: str) -> Iterator[Dy]:
    """An engine with busybox for a test module; at the end every container, user network and
    the default bridge's device are gone, and nothing of it stays mounted."""
    d = Dy(str(tmp_path_factory.mktemp(name) / "root"))
    d("image", "bootstrap", "busybox")
    yield d
    ids = d("ps", "-aq", "--no-trunc").stdout.split()
    if ids:
        d("rm", "-f", *ids)
    for net in d("network", "ls", "-q", "--filter", "type=custom").stdout.split():
        d("network", "rm", net, ok=False)
    d("network", "prune", "-f")
    with open("/proc/self/mountinfo") as f:
        assert d.root not in f.read()


def on_a_terminal(argv: list[str], columns: int = 120, rows: int = 40, stdin: bool = False,
                  env: dict[str, str] | None = None) -> tuple[int, str]:  # fmt: skip
    """Run ``argv`` with a pty of ``rows`` x ``columns`` as stdout and stderr (and stdin,
    with ``stdin``: as ``-it`` wants it): what a user at a terminal sees; (exit status,
    everything it wrote)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen(argv, stdout=slave, stderr=slave, stdin=slave if stdin else None,
                            start_new_session=stdin,
                            env={**(env or os.environ), "COLUMNS": str(columns), "TERM": "xterm"})  # fmt: skip
    os.close(slave)
    out = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO once the last writer closed the pty
            break
        if not data:
            break
        out += data
    os.close(master)
    return proc.wait(timeout=60), out.decode(errors="replace")
