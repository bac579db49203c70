"""The rest of runtime-spec 1.1 for Linux, each asserted from inside the container.

Behaviour every OCI runtime shares runs against all of them (``bundles``);
dockyard-runtime's own choices use ``dy_bundles``.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess

import pytest

from .conftest import Bundles, Runtime, edit_with

pytestmark = pytest.mark.root


def test_sysctl_is_written_in_the_containers_namespace(bundles: Bundles) -> None:
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        host = f.read().strip()
    proc = bundles.run(["/bin/cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
                       edit_with(**{"linux.sysctl": {"net.ipv4.ip_unprivileged_port_start": "77"}}))  # fmt: skip
    assert proc.stdout.strip() == "77", proc.stderr
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        assert f.read().strip() == host


def test_oom_score_adj(bundles: Bundles) -> None:
    proc = bundles.run(
        ["/bin/cat", "/proc/self/oom_score_adj"], edit_with(**{"process.oomScoreAdj": 567})
    )
    assert proc.stdout.strip() == "567", proc.stderr


def test_user_groups_umask_cwd_env(bundles: Bundles) -> None:
    user = {"uid": 1234, "gid": 2345, "additionalGids": [3456, 4567], "umask": 0o027}
    proc = bundles.run(
        ["/bin/sh", "-c", "id; umask; pwd; echo $FOO"],
        edit_with(
            **{
                "process.user": user,
                "process.cwd": "/tmp",
                "process.env": ["FOO=bar baz", "PATH=/bin"],
            }
        ),
    )
    lines = proc.stdout.splitlines()
    assert "uid=1234" in lines[0] and "gid=2345" in lines[0]
    assert "3456" in lines[0] and "4567" in lines[0]
    assert lines[1] == "0027"
    assert lines[2] == "/tmp"
    assert lines[3] == "bar baz"


def test_domainname(bundles: Bundles, runtime: Runtime) -> None:
    if runtime.name == "runc" and "1.1." in runtime.ok("--version"):
        pytest.skip("runc 1.1 ignores domainname (added in runc 1.2)")
    proc = bundles.run(
        ["/bin/cat", "/proc/sys/kernel/domainname"], edit_with(domainname="example.test")
    )
    assert proc.stdout.strip() == "example.test", proc.stderr


def test_bind_mount_read_only_and_tmpfs_noexec(bundles: Bundles, work_dir: str) -> None:
    src = os.path.join(work_dir, f"bind-{bundles.new_id()}")
    os.makedirs(src)
    with open(os.path.join(src, "data"), "w") as f:
        f.write("from the host\n")

    def edit(spec):  # type: ignore[no-untyped-def]
        spec["mounts"] += [
            {"destination": "/data", "type": "bind", "source": src, "options": ["rbind", "ro"]},
            {
                "destination": "/scratch",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["noexec", "size=1m"],
            },
        ]

    script = "cat /data/data; touch /data/x; echo bind=$?; cp /bin/busybox /scratch/bb; /scratch/bb true; echo exec=$?"
    proc = bundles.run(["/bin/sh", "-c", script], edit)
    assert "from the host" in proc.stdout
    assert "bind=1" in proc.stdout
    assert "exec=126" in proc.stdout  # noexec: permission denied
    assert not os.path.exists(os.path.join(src, "x"))


def test_devices_list_creates_nodes(bundles: Bundles) -> None:
    dev = {
        "path": "/dev/extra-null",
        "type": "c",
        "major": 1,
        "minor": 3,
        "fileMode": 0o600,
        "uid": 0,
        "gid": 0,
    }
    proc = bundles.run(["/bin/sh", "-c", "ls -l /dev/extra-null; echo hi > /dev/extra-null && echo ok; ls -l /dev/fd /dev/ptmx"],
                       edit_with(**{"linux.devices": [dev]}))  # fmt: skip
    assert proc.stdout.startswith("crw-------"), proc.stdout + proc.stderr
    assert "1,   3" in proc.stdout.splitlines()[0]
    assert "ok" in proc.stdout
    assert "/dev/fd -> /proc/self/fd" in proc.stdout
    assert "/dev/ptmx -> pts/ptmx" in proc.stdout


def test_default_devices_are_there(bundles: Bundles) -> None:
    proc = bundles.run(
        [
            "/bin/sh",
            "-c",
            "for d in null zero full random urandom tty; do [ -c /dev/$d ] && echo $d; done",
        ]
    )
    assert proc.stdout.split() == ["null", "zero", "full", "random", "urandom", "tty"]


def test_no_pivot(bundles: Bundles, runtime: Runtime) -> None:
    bundle, cid = bundles.make(["/bin/sh", "-c", "ls /; cat /proc/self/mountinfo | wc -l"])
    proc = runtime.cmd("run", "--no-pivot", "--bundle", bundle, cid)
    assert proc.returncode == 0, proc.stderr
    assert "bin" in proc.stdout.split() and "home" in proc.stdout.split()


def test_preserve_fds(bundles: Bundles, runtime: Runtime, work_dir: str) -> None:
    bundle, cid = bundles.make(["/bin/sh", "-c", "echo through-fd-3 >&3"])
    path = os.path.join(work_dir, f"{cid}.out")
    # A shell opens fd 3 for the runtime, so this process's own fd 3 stays untouched.
    argv = " ".join(shlex.quote(a) for a in [*runtime.argv, "--root", runtime.root, "run",
                                               "--preserve-fds", "1", "--bundle", bundle, cid])  # fmt: skip
    proc = subprocess.run(["/bin/sh", "-c", f"exec {argv} 3>{shlex.quote(path)}"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with open(path) as f:
        assert f.read() == "through-fd-3\n"


def test_hooks_run_in_order_with_the_state(
    bundles: Bundles, runtime: Runtime, work_dir: str
) -> None:
    log = os.path.join(work_dir, f"hooks-{bundles.new_id()}.log")

    def hook(name: str) -> dict:
        return {"path": "/bin/sh", "args": ["sh", "-c", f"echo {name} $(cat) >> {log}"]}

    def edit(spec):  # type: ignore[no-untyped-def]
        spec["hooks"] = {
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        }

    bundle, cid = bundles.make(["/bin/true"], edit)
    runtime.ok("create", "--bundle", bundle, cid)
    runtime.ok("start", cid)
    runtime.wait_status(cid, "stopped")
    runtime.ok("delete", cid)
    with open(log) as f:
        lines = f.read().splitlines()
    assert [line.split()[0] for line in lines] == [
        "prestart",
        "createRuntime",
        "poststart",
        "poststop",
    ]
    state = json.loads(lines[0].split(" ", 1)[1])
    assert state["id"] == cid and state["pid"] > 0


def test_failing_hook_fails_create_and_leaves_nothing(
    dy_bundles: Bundles, dockyard: Runtime
) -> None:
    def edit(spec):  # type: ignore[no-untyped-def]
        spec["hooks"] = {
            "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}]
        }

    bundle, cid = dy_bundles.make(["/bin/true"], edit)
    proc = dockyard.cmd("create", "--bundle", bundle, cid)
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == "dockyard-runtime: createRuntime hook /bin/sh exited with status 3: nope"
    )
    assert dockyard.cmd("state", cid).returncode == 1
    assert not os.path.exists(f"/sys/fs/cgroup/pids/{cid}")


def test_hook_timeout(dy_bundles: Bundles, dockyard: Runtime) -> None:
    def edit(spec):  # type: ignore[no-untyped-def]
        spec["hooks"] = {
            "prestart": [{"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}]
        }

    proc = dy_bundles.run(["/bin/true"], edit)
    assert proc.returncode == 1
    assert "prestart hook /bin/sleep timed out after 1s" in proc.stderr


def test_rlimit_above_hard_limit_names_the_limit(dy_bundles: Bundles) -> None:
    import resource
    import subprocess
    import sys

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("hard RLIMIT_NOFILE is unlimited here")
    probe = "import resource as r; s, h = r.getrlimit(r.RLIMIT_NOFILE); r.setrlimit(r.RLIMIT_NOFILE, (s, h + 1))"
    if subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0:
        pytest.skip("root may raise hard limits here (has CAP_SYS_RESOURCE)")
    limits = [{"type": "RLIMIT_NOFILE", "soft": hard + 10, "hard": hard + 10}]
    proc = dy_bundles.run(["/bin/true"], edit_with(**{"process.rlimits": limits}))
    assert proc.returncode == 1
    assert f"cannot raise RLIMIT_NOFILE hard limit to {hard + 10}" in proc.stderr
    assert "CAP_SYS_RESOURCE" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_rlimit_within_hard_limit_applies(bundles: Bundles) -> None:
    limits = [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}]
    proc = bundles.run(
        ["/bin/sh", "-c", "ulimit -n; ulimit -Hn"], edit_with(**{"process.rlimits": limits})
    )
    assert proc.stdout.split() == ["321", "654"]


def test_missing_executable_fails_create(dy_bundles: Bundles, dockyard: Runtime) -> None:
    bundle, cid = dy_bundles.make(["no-such-program"])
    proc = dockyard.cmd("create", "--bundle", bundle, cid)
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == 'dockyard-runtime: exec: "no-such-program": executable file not found in $PATH'
    )
    assert dockyard.cmd("state", cid).returncode == 1


def test_duplicate_id_is_refused(dy_bundles: Bundles, dockyard: Runtime) -> None:
    bundle, cid = dy_bundles.make(["/bin/sleep", "30"])
    dockyard.ok("create", "--bundle", bundle, cid)
    proc = dockyard.cmd("create", "--bundle", bundle, cid)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"dockyard-runtime: container with id exists: {cid}"
    assert dockyard.state(cid)["status"] == "created"  # the first one is untouched


def test_state_json_fields(dy_bundles: Bundles, dockyard: Runtime) -> None:
    bundle, cid = dy_bundles.make(
        ["/bin/sleep", "30"], edit_with(annotations={"org.example/k": "v"})
    )
    dockyard.ok("create", "--bundle", bundle, cid)
    st = dockyard.state(cid)
    assert set(st) >= {"ociVersion", "id", "status", "pid", "bundle", "rootfs", "created", "owner"}
    assert st["annotations"] == {"org.example/k": "v"}
    assert st["created"].endswith("Z")
    listed = json.loads(dockyard.ok("list", "--format", "json"))
    assert any(row["id"] == cid and row["status"] == "created" for row in listed)
    table = dockyard.ok("list")
    assert table.splitlines()[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]


def test_exec_detached_with_pid_file_and_process_json(
    dy_bundles: Bundles, dockyard: Runtime, work_dir: str
) -> None:
    _b, cid = dy_bundles.started(["/bin/sleep", "30"])
    pid_file = os.path.join(work_dir, f"{cid}.exec.pid")
    process = {
        "args": ["/bin/sleep", "20"],
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
    }
    pjson = os.path.join(work_dir, f"{cid}.process.json")
    with open(pjson, "w") as f:
        json.dump(process, f)
    dockyard.ok("exec", "--detach", "--pid-file", pid_file, "--process", pjson, cid)
    with open(pid_file) as f:
        pid = int(f.read())
    with open(f"/proc/{pid}/cmdline") as f:
        assert f.read().split("\0")[:2] == ["/bin/sleep", "20"]
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(
        f"/proc/{dockyard.state(cid)['pid']}/ns/pid"
    )
    assert pid in json.loads(dockyard.ok("ps", "--format", "json", cid))


def test_exec_missing_program(dy_bundles: Bundles, dockyard: Runtime) -> None:
    _b, cid = dy_bundles.started(["/bin/sleep", "30"])
    proc = dockyard.cmd("exec", cid, "nope")
    assert proc.returncode == 1
    assert 'exec: "nope": executable file not found in $PATH' in proc.stderr


def test_events_stats_reports_usage(dy_bundles: Bundles, dockyard: Runtime) -> None:
    _b, cid = dy_bundles.started(
        ["/bin/sleep", "30"], edit_with(**{"linux.resources.pids": {"limit": 50}})
    )
    data = json.loads(dockyard.ok("events", "--stats", cid))["data"]
    assert data["pids"] == {"current": 1, "limit": 50}
    if "memory" in data:
        assert data["memory"]["usage"]["usage"] > 0


def test_cgroup_v2_manager_on_this_host(dy_bundles: Bundles, work_dir: str) -> None:
    """--cgroup-manager v2: freezer, kill and tracking through a real cgroup2 hierarchy."""
    from dockyard.runtime import cgroups

    mode = cgroups.detect()
    if mode not in ("v2", "hybrid"):
        pytest.skip(f"no cgroup2 hierarchy on this {mode} host")
    v2 = Runtime("dockyard-v2", [*dy_bundles.runtime.argv, "--cgroup-manager", "v2"],
                 os.path.join(work_dir, "state-dockyard-v2"))  # fmt: skip
    dy_bundles.runtime = v2
    bundle, cid = dy_bundles.make(
        ["/bin/sleep", "30"], edit_with(**{"linux.resources.memory": {"limit": 64 << 20}})
    )
    proc = v2.cmd("create", "--bundle", bundle, cid)
    assert proc.returncode == 0, proc.stderr
    mount = "/sys/fs/cgroup" if mode == "v2" else "/sys/fs/cgroup/unified"
    cgdir = f"{mount}/{cid}"
    pid = v2.state(cid)["pid"]
    with open(f"{cgdir}/cgroup.procs") as f:
        assert [int(p) for p in f.read().split()] == [pid]
    if mode == "hybrid":  # memory belongs to v1 here: said in one line, container still made
        assert "cgroup controller memory is not available" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    v2.ok("start", cid)
    v2.ok("pause", cid)
    assert v2.state(cid)["status"] == "paused"
    with open(f"/proc/{pid}/status") as f:
        assert any(line.startswith("State:") for line in f)
    with open(f"{cgdir}/cgroup.events") as f:
        assert "frozen 1" in f.read()
    v2.ok("resume", cid)
    assert v2.state(cid)["status"] == "running"
    v2.ok("delete", "--force", cid)
    assert not os.path.exists(cgdir)


def test_spec_writes_a_config_runc_accepts(
    work_dir: str, dockyard: Runtime, busybox_rootfs: str
) -> None:
    bundle = os.path.join(work_dir, "spec-bundle")
    os.makedirs(bundle, exist_ok=True)
    dockyard.ok("spec", "--bundle", bundle)
    again = dockyard.cmd("spec", "--bundle", bundle)
    assert again.returncode == 1 and "exists" in again.stderr
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    assert spec["process"]["args"] == ["sh"] and spec["root"] == {
        "path": "rootfs",
        "readonly": True,
    }
    assert {m["destination"] for m in spec["mounts"]} >= {"/proc", "/dev", "/dev/pts", "/sys"}
    assert stat.S_ISREG(os.stat(os.path.join(bundle, "config.json")).st_mode)


def test_features_json(dockyard: Runtime) -> None:
    features = json.loads(dockyard.ok("features"))
    assert features["ociVersionMax"].startswith("1.")
    assert "user" in features["linux"]["namespaces"]
    assert "SCMP_ACT_ERRNO" in features["linux"]["seccomp"]["actions"]
    assert "CAP_SYS_ADMIN" in features["linux"]["capabilities"]


def test_unknown_flag_and_command(dockyard: Runtime) -> None:
    proc = dockyard.cmd("create", "--bogus", "x")
    assert (
        proc.returncode == 1
        and proc.stderr == "dockyard-runtime: flag provided but not defined: --bogus\n"
    )
    proc = dockyard.cmd("frobnicate")
    assert proc.returncode == 1 and "no such command: frobnicate" in proc.stderr
    assert (
        dockyard.cmd("state", "does-not-exist").stderr
        == "dockyard-runtime: container does not exist: does-not-exist\n"
    )


def test_log_json_records_errors(dockyard: Runtime, work_dir: str) -> None:
    log = os.path.join(work_dir, "runtime-log.json")
    proc = dockyard.cmd("--log", log, "--log-format", "json", "state", "nope")
    assert proc.returncode == 1
    with open(log) as f:
        entry = json.loads(f.readline())
    assert entry["level"] == "error" and entry["msg"] == "container does not exist: nope"


def test_container_hooks_run_inside_the_container(
    bundles: Bundles, runtime: Runtime, work_dir: str
) -> None:
    def edit(spec):  # type: ignore[no-untyped-def]
        # createContainer runs in the container's mount namespace before pivot_root,
        # startContainer inside the container before the process: /tmp is its tmpfs.
        spec["hooks"] = {
            "createContainer": [
                {
                    "path": "/bin/sh",
                    "args": ["sh", "-c", "cat /proc/self/mountinfo | wc -l > /dev/null"],
                }
            ],
            "startContainer": [
                {"path": "/bin/sh", "args": ["sh", "-c", "hostname > /tmp/hook-saw"]}
            ],
        }
        spec["hostname"] = "hooked"

    proc = bundles.run(["/bin/cat", "/tmp/hook-saw"], edit)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "hooked"


def test_seccomp_argument_filter(bundles: Bundles) -> None:
    # kill(pid, 0) is refused, kill(pid, SIGCONT) is not: the rule looks at argument 1.
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["kill"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 1,
                "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}],
            }
        ],
    }
    proc = bundles.run(["/bin/sh", "-c", "kill -0 $$; echo zero=$?; kill -CONT $$; echo cont=$?"],
                       edit_with(**{"linux.seccomp": profile}))  # fmt: skip
    assert "zero=1" in proc.stdout, proc.stdout + proc.stderr
    assert "cont=0" in proc.stdout
    assert "Operation not permitted" in proc.stderr


def test_oom_kill_is_reported_after_exit(dy_bundles: Bundles, dockyard: Runtime) -> None:
    bundle, cid = dy_bundles.make(["/bin/tail", "/dev/zero"],
                                  edit_with(**{"linux.resources.memory": {"limit": 16 << 20}}))  # fmt: skip
    dockyard.ok("create", "--bundle", bundle, cid)
    dockyard.ok("start", cid)
    dockyard.wait_status(cid, "stopped", timeout=30)
    data = json.loads(dockyard.ok("events", "--stats", cid))["data"]
    assert data["memory"]["oom_kill"] >= 1
    assert data["memory"]["usage"]["limit"] == 16 << 20
    dockyard.ok("delete", cid)


def test_run_with_terminal_and_no_console_socket(dy_bundles: Bundles, dockyard: Runtime) -> None:
    """A foreground run copies between its own terminal and the container's pty, as runc does."""
    import pty

    bundle, cid = dy_bundles.make(
        ["/bin/sh", "-c", "tty; stty size"], edit_with(**{"process.terminal": True})
    )
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([*dockyard.argv, "--root", dockyard.root, "run", "--bundle", bundle, cid],
                                stdin=slave, stdout=slave, stderr=subprocess.PIPE)  # fmt: skip
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        os.close(master)
    assert b"/dev/pts/0" in out


@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/cpu"), reason="needs v1 cpu controller")
def test_cpu_and_cpuset_limits_seen_from_inside(bundles: Bundles) -> None:
    cpu = {"shares": 512, "quota": 25000, "period": 50000, "cpus": "0", "mems": "0"}
    script = ("cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us "
              "/sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpuset/cpuset.cpus; "
              "grep Cpus_allowed_list /proc/self/status; cat /proc/self/cgroup | grep -c ':/$'")  # fmt: skip
    proc = bundles.run(["/bin/sh", "-c", script], edit_with(**{"linux.resources.cpu": cpu}))
    lines = proc.stdout.split("\n")
    assert lines[:4] == ["512", "25000", "50000", "0"], proc.stdout + proc.stderr
    assert lines[4].split()[-1] == "0"
    # cgroup namespace: the container sees its own cgroup as the root of every hierarchy
    assert int(lines[5]) >= 5


def test_kill_all_and_ps(dy_bundles: Bundles, dockyard: Runtime) -> None:
    _b, cid = dy_bundles.started(["/bin/sh", "-c", "sleep 40 & sleep 41 & wait"])
    deadline = 50
    while len(json.loads(dockyard.ok("ps", "--format", "json", cid))) < 3 and deadline:
        deadline -= 1
        __import__("time").sleep(0.05)
    table = dockyard.ok("ps", cid)
    assert "PID" in table.splitlines()[0]
    assert "sleep 40" in table and "sleep 41" in table
    dockyard.ok("kill", "--all", cid, "KILL")
    dockyard.wait_status(cid, "stopped")
    assert json.loads(dockyard.ok("ps", "--format", "json", cid)) == []


def test_mount_propagation_rslave_sees_host_mounts(
    bundles: Bundles, runtime: Runtime, work_dir: str
) -> None:
    src = os.path.join(work_dir, f"prop-{bundles.new_id()}")
    os.makedirs(os.path.join(src, "inner"))
    subprocess.run(["mount", "--bind", src, src], check=True)
    subprocess.run(["mount", "--make-shared", src], check=True)
    try:

        def edit(spec):  # type: ignore[no-untyped-def]
            spec["mounts"].append({"destination": "/shared", "type": "bind", "source": src,
                                   "options": ["rbind", "rslave"]})  # fmt: skip
            # runc's default; crun makes the root private unless told
            spec["linux"]["rootfsPropagation"] = "rslave"

        bundle, cid = bundles.make(
            [
                "/bin/sh",
                "-c",
                "while [ ! -e /shared/inner/marker ]; do sleep 0.05; done; echo seen",
            ],
            edit,
        )
        runtime.ok("create", "--bundle", bundle, cid)
        runtime.ok("start", cid)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", os.path.join(src, "inner")], check=True)
        try:
            with open(os.path.join(src, "inner", "marker"), "w") as f:
                f.write("x")
            runtime.wait_status(cid, "stopped", timeout=20)  # it saw the host's new mount
        finally:
            subprocess.run(["umount", os.path.join(src, "inner")], check=True)
        runtime.ok("delete", cid)
    finally:
        subprocess.run(["umount", src], check=True)


def _a_device_outside_the_defaults() -> tuple[int, int]:
    """Major and minor of a character device of this host that containers are not given by
    default and that opens without privileges (only opened, never read or written)."""
    for path in ("/dev/loop-control", "/dev/fuse"):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        return os.major(st.st_rdev), os.minor(st.st_rdev)
    pytest.skip("neither /dev/loop-control nor /dev/fuse on this host")


@pytest.mark.parametrize("manager", ["v1", "v2"])
def test_device_rules_mean_the_same_on_v1_and_v2(
    dy_bundles: Bundles, work_dir: str, manager: str
) -> None:
    """The spec's device rules decide opening a device node, whatever the cgroup version: on v1
    through devices.allow/deny, on v2 through an eBPF program attached to the cgroup (on a
    hybrid host, v2 is the cgroup2 hierarchy at /sys/fs/cgroup/unified). The devices every
    container may use stay usable."""
    from dockyard.runtime import cgroups

    mode = cgroups.detect()
    if manager == "v2" and mode not in ("v2", "hybrid"):
        pytest.skip(f"no cgroup2 hierarchy on this {mode} host")
    if manager == "v1" and mode not in ("v1", "hybrid"):
        pytest.skip(f"no cgroup v1 hierarchies on this {mode} host")
    dy_bundles.runtime = Runtime(f"dockyard-{manager}", [*dy_bundles.runtime.argv, "--cgroup-manager", manager],
                                 os.path.join(work_dir, f"state-dockyard-{manager}"))  # fmt: skip
    major, minor = _a_device_outside_the_defaults()
    node = {
        "path": "/dev/extra",
        "type": "c",
        "major": major,
        "minor": minor,
        "fileMode": 0o600,
        "uid": 0,
        "gid": 0,
    }
    script = "true < /dev/extra && echo opened; echo x > /dev/null && echo null-ok"
    deny_all = {"allow": False, "access": "rwm"}
    denied = dy_bundles.run(["/bin/sh", "-c", script], edit_with(**{
        "linux.devices": [node], "linux.resources.devices": [deny_all]}))  # fmt: skip
    assert denied.stdout.split() == ["null-ok"], denied.stderr
    assert "Operation not permitted" in denied.stderr
    readable = {"allow": True, "type": "c", "major": major, "minor": minor, "access": "r"}
    allowed = dy_bundles.run(["/bin/sh", "-c", script + "; true > /dev/extra || echo write-denied"],
                             edit_with(**{"linux.devices": [node],
                                          "linux.resources.devices": [deny_all, readable]}))  # fmt: skip
    assert allowed.stdout.split() == ["opened", "null-ok", "write-denied"], allowed.stderr


def _mounts_below(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path.rstrip("/") + "/")]


def test_without_a_mount_namespace_the_runtimes_is_used_and_left_clean(
    dy_bundles: Bundles, dockyard: Runtime
) -> None:
    """The spec: a namespace type not listed is the runtime's. The container's mounts are
    then made in the runtime's mount namespace (its /proc, /dev, /tmp show there while it
    runs), its root is only chrooted, and ``delete`` takes every one of them away (runc
    leaves them on the host)."""

    def no_mount_ns(spec: dict) -> None:  # type: ignore[type-arg]
        spec["linux"]["namespaces"] = [
            n for n in spec["linux"]["namespaces"] if n["type"] != "mount"
        ]
        spec["root"]["readonly"] = False

    host_root = os.stat("/")
    bundle, cid = dy_bundles.make(
        ["/bin/sh", "-c", "echo hi > /tmp/x && cat /tmp/x && sleep 30"], no_mount_ns
    )
    rootfs = dy_bundles.rootfs
    before = _mounts_below(rootfs)
    dockyard.ok("create", "--bundle", bundle, cid)
    dockyard.ok("start", cid)
    dockyard.wait_status(cid, "running")
    during = _mounts_below(rootfs)
    assert {f"{rootfs}/proc", f"{rootfs}/dev", f"{rootfs}/tmp"} <= set(during), during
    pid = dockyard.state(cid)["pid"]
    assert os.readlink(f"/proc/{pid}/root") == rootfs  # chrooted, not pivoted
    assert os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")  # the runtime's
    assert os.stat("/").st_ino == host_root.st_ino  # the host's root did not move
    dockyard.ok("kill", cid, "KILL")
    dockyard.wait_status(cid, "stopped")
    dockyard.ok("delete", cid)
    assert _mounts_below(rootfs) == before
