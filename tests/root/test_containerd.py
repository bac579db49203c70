"""dockyard-runtime as a Kubernetes node runs it: under Debian's containerd 1.6 and its
runc v2 shim (``ctr run --runc-binary``), with a containerd of the test's own (root,
state, sockets and namespace), driven by ``ctr``. What the shim does with the binary —
create/start/state/kill [--all]/delete [--force]/exec --detach/ps --format json/update
--resources -/pause/resume, with ``--log`` in JSON — must work as it does with runc, and
nothing may be left afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from ..conftest import ID_PREFIX
from .conftest import DOCKYARD_RUNTIME, Dy, engine_for_module, on_a_terminal

pytestmark = pytest.mark.root

NS = f"{ID_PREFIX}ctd"  # containerd's namespace: its cgroups are /<NS>/<ID> (the leak check sees them)
RUNC_ROOT = f"/run/containerd/runc/{NS}"  # where the shim keeps the runtime's state


class Containerd:
    def __init__(self, work: str) -> None:
        self.work = work
        self.state = f"/run/{ID_PREFIX}ctd"
        self.sock = os.path.join(self.state, "containerd.sock")
        self.fifo = os.path.join(work, "fifo")
        os.makedirs(self.fifo)
        config = os.path.join(work, "config.toml")
        with open(config, "w") as f:
            f.write(f'version = 2\nroot = "{work}/root"\nstate = "{self.state}"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.sock}"\n[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
                    f'[debug]\n  address = "{self.state}/debug.sock"\n')  # fmt: skip
        with open(os.path.join(work, "containerd.log"), "w") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(["containerd", "--config", config], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while self.ctr("version", ok=False).returncode != 0:
            assert time.monotonic() < deadline, "containerd did not come up"
            assert self.proc.poll() is None, "containerd exited"
            time.sleep(0.1)

    def ctr(
        self, *args: str, ok: bool = True, timeout: float = 60, **kw
    ) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
        proc = subprocess.run(["ctr", "-a", self.sock, "-n", NS, *args], capture_output=True, text=True,
                              timeout=timeout, **kw)  # fmt: skip
        if ok:
            assert proc.returncode == 0, f"ctr {args}: {proc.stderr}"
        return proc

    def run(
        self, cid: str, *argv: str, detach: bool = False, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.ctr("run", *(["-d"] if detach else ["--rm"]), "--fifo-dir", self.fifo, "--runc-binary",
                        DOCKYARD_RUNTIME[0], "docker.io/library/busybox:latest", cid, *argv, ok=ok)  # fmt: skip

    def runtime(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
        """The binary called as the shim calls it."""
        return subprocess.run([*DOCKYARD_RUNTIME, "--root", RUNC_ROOT, "--log", os.path.join(self.work, "rt.json"),
                               "--log-format", "json", *args], capture_output=True, text=True, timeout=60, **kw)  # fmt: skip

    def tasks(self) -> dict[str, tuple[str, str]]:
        rows = self.ctr("task", "ls").stdout.splitlines()[1:]
        return {r.split()[0]: (r.split()[1], r.split()[2]) for r in rows}

    def until_stopped(self, cid: str) -> None:
        deadline = time.monotonic() + 20
        while self.tasks()[cid][1] != "STOPPED":
            assert time.monotonic() < deadline, f"{cid} did not stop"
            time.sleep(0.05)

    def stop(self) -> None:
        for cid in self.tasks():
            self.ctr("task", "kill", "-s", "SIGKILL", cid, ok=False)
            self.ctr("task", "delete", "-f", cid, ok=False)
        for cid in self.ctr("container", "ls", "-q").stdout.split():
            self.ctr("container", "rm", cid, ok=False)
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def dy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dy]:
    yield from engine_for_module(tmp_path_factory, "containerd")


def _shims() -> list[int]:
    """This test's shims: processes whose command line names its namespace."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/comm", "rb") as f:
                comm = f.read()
        except OSError:
            continue
        if NS.encode() in cmdline and comm.startswith(b"containerd-shim"):
            out.append(int(pid))
    return out


def test_dockyard_runtime_under_containerd(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.fail("containerd is not installed (apt-get install containerd)")
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the shims are reaped here (PID 1 does not)
    created_run_containerd = not os.path.exists("/run/containerd")
    dy("save", "-o", str(tmp_path / "busybox.tar"), "busybox")
    ctd = Containerd(str(tmp_path / "ctd"))
    try:
        ctd.ctr("images", "import", str(tmp_path / "busybox.tar"))
        # output and exit status
        done = ctd.run("t1", "sh", "-c", "echo hello from dockyard-runtime; exit 3", ok=False)
        assert (done.returncode, done.stdout) == (3, "hello from dockyard-runtime\n"), done.stderr
        # a long-running task: exec, ps, its init a child of the shim, pause/resume, metrics
        ctd.run(
            "t2", "sh", "-c", "trap 'exit 0' TERM; touch /tmp/ready; sleep 300 & wait", detach=True
        )
        deadline = time.monotonic() + 20
        while ctd.ctr("task", "exec", "--fifo-dir", ctd.fifo, "--exec-id", "probe", "t2", "test", "-f", "/tmp/ready",
                      ok=False).returncode != 0:  # fmt: skip
            assert time.monotonic() < deadline, "t2 never got ready"
            time.sleep(0.1)
        ran = ctd.ctr("task", "exec", "--fifo-dir", ctd.fifo, "--exec-id", "e1", "t2", "sh", "-c", "echo in exec; exit 5",
                      ok=False)  # fmt: skip
        assert (ran.returncode, ran.stdout) == (5, "in exec\n"), ran.stderr
        pid = int(ctd.tasks()["t2"][0])
        assert ctd.tasks()["t2"][1] == "RUNNING"
        listed = [
            int(line.split()[0]) for line in ctd.ctr("task", "ps", "t2").stdout.splitlines()[1:]
        ]
        assert pid in listed and len(listed) == 2  # sh and its sleep
        with open(f"/proc/{pid}/status") as f:
            parent = int(next(line for line in f if line.startswith("PPid:")).split()[1])
        with open(f"/proc/{parent}/comm") as f:
            assert f.read().strip().startswith("containerd-shim")
        ctd.ctr("task", "pause", "t2")
        assert ctd.tasks()["t2"][1] == "PAUSED"
        ctd.ctr("task", "resume", "t2")
        assert ctd.tasks()["t2"][1] == "RUNNING"
        assert "memory.usage_in_bytes" in ctd.ctr("task", "metrics", "t2").stdout
        # what the shim also calls, called the same way
        updated = ctd.runtime(
            "update",
            "--resources",
            "-",
            "t2",
            input='{"memory": {"limit": 67108864}, "pids": {"limit": 64}}',
        )
        assert updated.returncode == 0, updated.stderr
        metrics = ctd.ctr("task", "metrics", "t2").stdout
        assert "67108864" in metrics.split("memory.limit_in_bytes")[1].split("\n")[0]
        assert "64" in metrics.split("pids.limit")[1].split("\n")[0]
        import json

        assert sorted(json.loads(ctd.runtime("ps", "--format", "json", "t2").stdout)) == sorted(
            listed
        )
        state = json.loads(ctd.runtime("state", "t2").stdout)
        assert (state["id"], state["status"], state["pid"]) == ("t2", "running", pid)
        stats = json.loads(ctd.runtime("events", "--stats", "t2").stdout.splitlines()[0])
        assert stats["type"] == "stats" and stats["data"]["pids"]["current"] == 2
        assert ctd.runtime("--version").stdout.startswith("dockyard-runtime version ")
        bad = ctd.runtime("update", "--resources", "-", "t2", input="not json")
        assert (
            bad.returncode == 1 and '"level":"error"' in (tmp_path / "ctd" / "rt.json").read_text()
        )
        ctd.ctr("task", "kill", "t2")  # SIGTERM: the trap ends it with 0
        ctd.until_stopped("t2")
        ctd.ctr("task", "delete", "t2")
        ctd.ctr("container", "rm", "t2")
        # kill --all reaches every process, not only init
        ctd.run("t3", "sh", "-c", "sleep 300 & sleep 300 & wait", detach=True)
        ctd.ctr("task", "kill", "--all", "-s", "SIGKILL", "t3")
        ctd.until_stopped("t3")
        ctd.ctr("task", "delete", "t3")
        ctd.ctr("container", "rm", "t3")
        # the runtime's error, written to --log as JSON, is what ctr reports
        failed = ctd.run("t4", "/no/such/command", ok=False)
        assert (
            failed.returncode != 0
            and 'exec: "/no/such/command": no such file or directory' in failed.stderr
        )
        ctd.ctr("container", "rm", "t4", ok=False)
        # a terminal through the shim's console socket
        code, seen = on_a_terminal(["ctr", "-a", ctd.sock, "-n", NS, "run", "--rm", "-t", "--fifo-dir", ctd.fifo,
                                    "--runc-binary", DOCKYARD_RUNTIME[0], "docker.io/library/busybox:latest", "t5",
                                    "sh", "-c", "tty; exit 4"])  # fmt: skip
        assert code == 4 and "/dev/pts/" in seen, seen
        assert ctd.tasks() == {} and ctd.ctr("container", "ls", "-q").stdout.split() == []
    finally:
        ctd.stop()
        deadline = time.monotonic() + 10
        while _shims() and time.monotonic() < deadline:
            time.sleep(0.05)
        leftover = _shims()
        while True:  # the shims that ended, reparented here
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        libc.prctl(36, 0, 0, 0, 0)
        left_cgroups = [os.path.join(base, d) for base in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids")
                        if os.path.isdir(os.path.join(base, NS)) for d in os.listdir(os.path.join(base, NS))
                        if os.path.isdir(os.path.join(base, NS, d))]  # fmt: skip
        for hierarchy in os.listdir(
            "/sys/fs/cgroup"
        ):  # containerd's namespace parents (runc leaves them too)
            try:
                os.rmdir(os.path.join("/sys/fs/cgroup", hierarchy, NS))
            except OSError:
                pass
        state_left = os.listdir(RUNC_ROOT) if os.path.isdir(RUNC_ROOT) else []
        shutil.rmtree(RUNC_ROOT, ignore_errors=True)
        shutil.rmtree(ctd.state, ignore_errors=True)
        if created_run_containerd:
            shutil.rmtree("/run/containerd", ignore_errors=True)
        subprocess.run(["umount", "-R", str(tmp_path / "ctd" / "root")], capture_output=True)
    assert leftover == [] and left_cgroups == [] and state_left == [], (
        leftover,
        left_cgroups,
        state_left,
    )
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if str(tmp_path) in line or ctd.state in line]
