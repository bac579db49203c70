"""What a process inside a container sees, asserted from inside with busybox.

Every test runs against dockyard-runtime, runc and crun alike.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest

from dockyard.runtime.state import proc_start_time

from .conftest import Bundles, Runtime, edit_with, read_until

pytestmark = pytest.mark.root


def test_process_is_pid_1_and_host_processes_are_invisible(bundles: Bundles) -> None:
    proc = bundles.run(["/bin/sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'"])
    assert proc.returncode == 0, proc.stderr
    pid, visible = proc.stdout.split()
    assert pid == "1"
    # sh, ls and grep at most; the host has dozens.
    assert int(visible) <= 3


def test_hostname_is_the_containers_own(bundles: Bundles) -> None:
    proc = bundles.run(["/bin/hostname"], edit_with(hostname="boxname"))
    assert proc.stdout.strip() == "boxname"
    assert socket.gethostname() != "boxname"


def test_masked_paths_read_empty(bundles: Bundles) -> None:
    proc = bundles.run(
        ["/bin/sh", "-c", "wc -c < /proc/keys; wc -c < /proc/timer_list; ls /sys/firmware | wc -l"]
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0", "0"]
    with open("/proc/timer_list") as f:  # the host's is not empty: the mask did it
        assert f.read(10)


def test_readonly_paths_refuse_writes(bundles: Bundles) -> None:
    proc = bundles.run(["/bin/sh", "-c", "echo x > /proc/sys/kernel/domainname; echo rc=$?"])
    assert "rc=1" in proc.stdout
    assert "Read-only file system" in proc.stderr


def test_readonly_root_refuses_writes_but_tmpfs_takes_them(bundles: Bundles) -> None:
    proc = bundles.run(
        ["/bin/sh", "-c", "touch /newfile; echo root=$?; touch /tmp/f && echo tmp=$?"]
    )
    assert "root=1" in proc.stdout and "tmp=0" in proc.stdout
    assert "Read-only file system" in proc.stderr


def test_mount_fails_without_cap_sys_admin(bundles: Bundles) -> None:
    proc = bundles.run(
        ["/bin/sh", "-c", "mount -t tmpfs none /tmp; echo rc=$?; grep -c ' /tmp ' /proc/mounts"]
    )
    assert "rc=1" in proc.stdout or "rc=255" in proc.stdout
    assert "permission denied" in proc.stderr.lower() or "not permitted" in proc.stderr
    assert proc.stdout.split()[-1] == "1"  # only the spec's own tmpfs


def test_capability_sets_are_exactly_the_spec(bundles: Bundles) -> None:
    proc = bundles.run(
        ["/bin/sh", "-c", "grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs)' /proc/self/status"]
    )
    fields = dict(line.split(":\t") for line in proc.stdout.strip().splitlines())
    # CAP_KILL (5), CAP_NET_BIND_SERVICE (10), CAP_AUDIT_WRITE (29)
    want = f"{(1 << 5) | (1 << 10) | (1 << 29):016x}"
    assert fields["CapEff"] == want
    assert fields["CapBnd"] == want
    assert fields["NoNewPrivs"] == "1"


def test_seccomp_rule_returns_its_errno(bundles: Bundles) -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95},
        ],
    }
    proc = bundles.run(["/bin/sh", "-c", "mkdir /tmp/d; echo rc=$?; touch /tmp/f && echo touch-ok"],
                       edit_with(**{"linux.seccomp": profile}))  # fmt: skip
    assert "rc=1" in proc.stdout
    assert "Operation not supported" in proc.stderr  # strerror(95)
    assert "touch-ok" in proc.stdout  # other syscalls untouched


def _cgroup_dir(controller: str, path: str) -> str:
    return f"/sys/fs/cgroup/{controller}{path}"


@pytest.mark.skipif(
    not os.path.isdir("/sys/fs/cgroup/memory"), reason="needs the v1 memory controller"
)
def test_memory_limit_oom_kills_the_process(bundles: Bundles, runtime: Runtime) -> None:
    cgpath = f"/{bundles.new_id()}-mem"
    bundle, cid = bundles.make(
        ["/bin/tail", "/dev/zero"],  # reads forever without a newline: memory grows
        edit_with(
            **{"linux.resources.memory": {"limit": 16 * 1024 * 1024}, "linux.cgroupsPath": cgpath}
        ),
    )
    runtime.ok("create", "--bundle", bundle, cid)
    runtime.ok("start", cid)
    runtime.wait_status(cid, "stopped", timeout=30)
    with open(os.path.join(_cgroup_dir("memory", cgpath), "memory.oom_control")) as f:
        counters = dict(line.split() for line in f)
    assert int(counters["oom_kill"]) >= 1
    runtime.ok("delete", cid)
    assert not os.path.exists(_cgroup_dir("memory", cgpath))


def test_memory_limit_oom_kill_exit_status(bundles: Bundles) -> None:
    proc = bundles.run(["/bin/tail", "/dev/zero"],
                       edit_with(**{"linux.resources.memory": {"limit": 16 * 1024 * 1024}}))  # fmt: skip
    assert proc.returncode == 137  # 128 + SIGKILL, as docker reports an OOM kill


def test_pids_limit_stops_a_fork_bomb(bundles: Bundles) -> None:
    # echo is a builtin: each number printed is one more process that could be forked.
    script = "i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); echo $i; done"
    proc = bundles.run(
        ["/bin/sh", "-c", script], edit_with(**{"linux.resources.pids": {"limit": 10}})
    )
    assert "can't fork" in proc.stderr or "Resource temporarily unavailable" in proc.stderr
    started = int(proc.stdout.split()[-1]) if proc.stdout.split() else 0
    assert 0 < started < 10


def test_user_namespace_maps_root_to_unprivileged_uid(bundles: Bundles, runtime: Runtime) -> None:
    def edit(spec):  # type: ignore[no-untyped-def]
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]

    bundle, cid = bundles.make(["/bin/sh", "-c", "id -u; cat /proc/self/uid_map; sleep 30"], edit)
    runtime.ok("create", "--bundle", bundle, cid)
    pid = runtime.state(cid)["pid"]
    with open(f"/proc/{pid}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert uids == ["200000"] * 4  # real, effective, saved, fs: all unprivileged on the host
    runtime.ok("delete", "--force", cid)


def test_user_namespace_root_inside(bundles: Bundles) -> None:
    def edit(spec):  # type: ignore[no-untyped-def]
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]

    proc = bundles.run(["/bin/sh", "-c", "id -u; cat /proc/self/uid_map"], edit)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", "200000", "65536"]


@pytest.mark.parametrize("code", [0, 3, 42])
def test_exit_status_passes_through(bundles: Bundles, code: int) -> None:
    assert bundles.run(["/bin/sh", "-c", f"exit {code}"]).returncode == code


@pytest.mark.parametrize(
    ("signal_name", "status"),
    [("TERM", 42), ("KILL", 137)],  # TERM is trapped by the script; KILL cannot be
)
def test_signals_pass_through(
    bundles: Bundles, runtime: Runtime, signal_name: str, status: int
) -> None:
    bundle, cid = bundles.make(
        ["/bin/sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done"]
    )
    proc = subprocess.Popen([*runtime.argv, "--root", runtime.root, "run", "--bundle", bundle, cid],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        runtime.ok("kill", cid, signal_name)
        assert proc.wait(timeout=20) == status
    finally:
        proc.kill()
        proc.wait()


def _console_server(path: str) -> socket.socket:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(20)
    return srv


def test_terminal_gets_a_working_pty(bundles: Bundles, runtime: Runtime, work_dir: str) -> None:
    bundle, cid = bundles.make(
        ["/bin/sh", "-c", "tty; read line; echo got:$line"], edit_with(**{"process.terminal": True})
    )
    sock_path = os.path.join(work_dir, f"{cid}.sock")
    srv = _console_server(sock_path)
    try:
        creating = subprocess.Popen(
            [*runtime.argv, "--root", runtime.root, "create", "--bundle", bundle,
             "--console-socket", sock_path, cid],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        conn, _ = srv.accept()
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        conn.close()
        assert creating.wait(timeout=20) == 0, creating.stderr.read() if creating.stderr else ""
        master = fds[0]
        runtime.ok("start", cid)
        assert b"/dev/pts/0" in read_until(master, b"/dev/pts/0")
        os.write(master, b"hello\n")
        assert b"got:hello" in read_until(master, b"got:hello")
        os.close(master)
    finally:
        srv.close()
        os.unlink(sock_path)


def test_delete_removes_every_mount_and_cgroup(bundles: Bundles, runtime: Runtime) -> None:
    cgpath = f"/{bundles.new_id()}-cg"
    bundle, cid = bundles.make(["/bin/sleep", "60"], edit_with(**{"linux.cgroupsPath": cgpath}))
    runtime.ok("create", "--bundle", bundle, cid)
    runtime.ok("start", cid)
    pid = runtime.state(cid)["pid"]
    with open(f"/proc/{pid}/mountinfo") as f:
        assert len(f.readlines()) > 5  # the container has its own mounts...
    hierarchies = [c for c in ("memory", "pids", "cpu") if os.path.isdir(f"/sys/fs/cgroup/{c}")]
    assert any(os.path.isdir(_cgroup_dir(c, cgpath)) for c in hierarchies) or os.path.isdir(
        f"/sys/fs/cgroup{cgpath}"
    )
    runtime.ok("kill", cid, "KILL")
    runtime.wait_status(cid, "stopped")
    runtime.ok("delete", cid)
    with open("/proc/self/mountinfo") as f:
        assert bundles.rootfs not in f.read()  # ...and none of them reached the host
    assert not any(os.path.exists(_cgroup_dir(c, cgpath)) for c in hierarchies)
    assert not os.path.exists(f"/sys/fs/cgroup{cgpath}")
    assert runtime.cmd("state", cid).returncode != 0
    assert proc_start_time(pid) is None  # gone, or a zombie waiting for its reaper


def test_lifecycle_states(bundles: Bundles, runtime: Runtime) -> None:
    bundle, cid = bundles.make(["/bin/sleep", "60"])
    runtime.ok("create", "--bundle", bundle, cid)
    st = runtime.state(cid)
    assert st["status"] == "created" and st["id"] == cid and st["pid"] > 0
    assert os.path.realpath(st["bundle"]) == os.path.realpath(bundle)
    runtime.ok("start", cid)
    assert runtime.state(cid)["status"] == "running"
    assert runtime.cmd("delete", cid).returncode != 0  # running: refused without --force
    runtime.ok("pause", cid)
    assert runtime.state(cid)["status"] == "paused"
    runtime.ok("resume", cid)
    assert runtime.state(cid)["status"] == "running"
    ids = runtime.ok("list", "-q").split()
    assert cid in ids
    runtime.ok("kill", cid, str(int(signal.SIGKILL)))
    runtime.wait_status(cid, "stopped")
    runtime.ok("delete", cid)
    assert cid not in runtime.ok("list", "-q").split()


def test_exec_joins_the_container(bundles: Bundles, runtime: Runtime) -> None:
    _bundle, cid = bundles.started(["/bin/sleep", "60"], edit_with(hostname="execbox"))
    proc = runtime.cmd("exec", "--env", "GREETING=hi", cid, "/bin/sh", "-c",
                       "hostname; echo $GREETING; cat /proc/1/cmdline | tr '\\0' ' '; exit 5")  # fmt: skip
    assert proc.returncode == 5, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "execbox"
    assert lines[1] == "hi"
    assert lines[2].strip() == "/bin/sleep 60"  # pid 1 of the container is its init


def test_joining_an_existing_namespace_by_path(bundles: Bundles, runtime: Runtime) -> None:
    _b, first = bundles.started(["/bin/sleep", "60"], edit_with(hostname="shared-uts"))
    pid = runtime.state(first)["pid"]

    def edit(spec):  # type: ignore[no-untyped-def]
        spec["hostname"] = None
        spec.pop("hostname")
        for ns in spec["linux"]["namespaces"]:
            if ns["type"] in ("uts", "network"):
                ns["path"] = f"/proc/{pid}/ns/{'net' if ns['type'] == 'network' else 'uts'}"

    proc = bundles.run(["/bin/sh", "-c", "hostname; readlink /proc/self/ns/net"], edit)
    assert proc.returncode == 0, proc.stderr
    name, netns = proc.stdout.split()
    assert name == "shared-uts"
    assert netns == os.readlink(f"/proc/{pid}/ns/net")
