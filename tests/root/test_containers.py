"""Containers through the ``dockyard`` command, as a Docker user drives them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import DOCKYARD, Dy, engine_for_module, read_until

pytestmark = pytest.mark.root


def _processes() -> list[tuple[int, list[str]]]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    out.append((int(name), f.read().decode(errors="replace").split("\0")))
            except OSError:
                pass
    return out


@pytest.fixture(scope="module")
def dy(tmp_path_factory):  # type: ignore[no-untyped-def]
    yield from engine_for_module(tmp_path_factory, "engine")


def test_run_passes_output_and_exit_status(dy: Dy) -> None:
    proc = dy("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", ok=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
    proc = dy("run", "--rm", "busybox", "ls", "-d", "/bin")  # "-d" goes to ls, not to run
    assert proc.stdout == "/bin\n"


@pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")
def test_runc_start_errors_exit_as_docker(dy: Dy) -> None:
    """runc tells why only in text; the kind comes from the bundle (the command looked up in
    the image's root as execvp would), so the exit status is Docker's."""
    for cmd, code, said in (("no-such-cmd", 127, "executable file not found"), ("/etc/passwd", 126, "permission denied"),
                            ("/bin", 126, "permission denied"), ("/no/such", 127, "no such file")):  # fmt: skip
        proc = dy("run", "--rm", "--runtime", "runc", "busybox", cmd, ok=False)
        assert proc.returncode == code and said in proc.stderr, (cmd, proc.stderr)
    assert dy("run", "--rm", "--runtime", "runc", "busybox", "true").returncode == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["busybox", "no-such-cmd"],
            127,
            'dockyard: exec: "no-such-cmd": executable file not found in $PATH\n',
        ),
        (["busybox", "/etc/passwd"], 126, 'dockyard: exec: "/etc/passwd": permission denied\n'),
        # --pull never: a pull would go to Docker Hub, and tests send nothing off this host
        (
            ["--pull", "never", "no-such-image"],
            125,
            "dockyard: Unable to find image 'no-such-image:latest' locally\n",
        ),
        (["--bogus", "busybox"], 125, "dockyard: unknown flag: --bogus\n"),
    ],
)
def test_exit_codes_and_messages(dy: Dy, args: list[str], code: int, message: str) -> None:
    containers = os.path.join(dy.root, "containers")
    before = sorted(os.listdir(containers)) if os.path.isdir(containers) else []
    proc = dy("run", "--rm", *args, ok=False)
    after = (
        sorted(os.listdir(containers)) if os.path.isdir(containers) else []
    )  # at once: no waiting
    assert (proc.returncode, proc.stderr) == (code, message)
    assert after == before  # --rm removed the container before run returned, as Docker


def test_rm_flag_leaves_nothing(dy: Dy) -> None:
    before = set(dy("ps", "-aq", "--no-trunc").stdout.split())
    dy("run", "--rm", "busybox", "true")
    assert set(dy("ps", "-aq", "--no-trunc").stdout.split()) == before
    assert sorted(os.listdir(os.path.join(dy.root, "containers"))) == sorted(before)


def test_only_throwaway_containers_skip_the_sync(dy: Dy) -> None:
    """A ``--rm`` container's root is mounted volatile (as podman does): its unmount does not
    write back the whole filesystem underneath. A kept container's root is synced as usual."""
    rm_id = dy("run", "-d", "--rm", "busybox", "sleep", "30").stdout.strip()
    kept_id = dy("run", "-d", "busybox", "sleep", "30").stdout.strip()
    try:
        with open("/proc/self/mountinfo") as f:
            options = {line.split()[4]: line.split(" - ")[1].split()[2] for line in f}
        rootfs = os.path.join(dy.root, "containers", "{}", "rootfs")
        assert "volatile" in options[rootfs.format(rm_id)]
        assert "volatile" not in options[rootfs.format(kept_id)]
    finally:
        dy("rm", "-f", rm_id, kept_id)


def test_detached_logs_stop_rm(dy: Dy) -> None:
    cid = dy("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
             "trap 'echo bye; exit 0' TERM; i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done").stdout.strip()  # fmt: skip
    assert len(cid) == 64
    deadline = time.monotonic() + 10
    while "tick 2" not in dy("logs", "ticker").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ps = dy("ps").stdout.splitlines()
    assert ps[0].split()[:2] == ["CONTAINER", "ID"] and any(
        line.endswith("ticker") for line in ps[1:]
    )
    assert dy("logs", "--tail", "1", "ticker").stdout.startswith("tick ")
    stop = dy("stop", "ticker")
    assert stop.stdout == "ticker\n" and stop.stderr == ""  # exited on SIGTERM: no escalation note
    assert dy("logs", "--tail", "1", "ticker").stdout == "bye\n"
    state = dy.record("ticker")["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 0, False)
    with open(os.path.join(dy.root, "containers", cid, f"{cid}-json.log")) as f:
        first = json.loads(f.readline())
    assert (
        first["stream"] == "stdout" and first["log"] == "tick 0\n" and first["time"].endswith("Z")
    )
    dy("rm", "ticker")
    assert dy("ps", "-a", "--filter", "name=ticker", "-q").stdout == ""


def test_stop_says_when_it_had_to_kill(dy: Dy) -> None:
    dy("run", "-d", "--name", "stubborn", "busybox", "sleep", "60")
    proc = dy("stop", "-t", "1", "stubborn")
    assert "sent SIGTERM, no exit after 1s, sent SIGKILL; PID 1 is sleep" in proc.stderr
    assert dy.record("stubborn")["State"]["ExitCode"] == 137
    dy("rm", "stubborn")


def test_name_conflict_names_the_holder(dy: Dy) -> None:
    cid = dy("create", "--name", "taken", "busybox", "true").stdout.strip()
    proc = dy("create", "--name", "taken", "busybox", "true", ok=False)
    assert proc.returncode == 125
    assert f'The container name "/taken" is already in use by container "{cid}"' in proc.stderr
    dy("rm", "taken")


def test_killed_monitor_does_not_lose_the_container(dy: Dy) -> None:
    cid = dy("run", "-d", "busybox", "sleep", "60").stdout.strip()
    # the monitor, in its lean shape once the container runs
    deadline = time.monotonic() + 10
    while not (
        found := [
            p for p, a in _processes() if "/cache/lean-" in " ".join(a) and cid in " ".join(a)
        ]
    ):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    monitor = found[0]
    pid = dy.record(cid)["State"]["Pid"]
    os.kill(monitor, signal.SIGKILL)
    time.sleep(0.2)
    assert dy.record(cid)["State"]["Status"] == "running"  # the truth: still running
    os.kill(pid, 0)
    dy("rm", "-f", cid)
    from dockyard.runtime.state import proc_start_time

    assert proc_start_time(pid) is None  # gone (or a zombie awaiting the host's init)
    assert not os.path.exists(os.path.join(dy.root, "containers", cid))
    assert not os.path.exists(f"/sys/fs/cgroup/pids/dockyard/{cid}")


def test_twenty_parallel_runs(dy: Dy) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(
            pool.map(
                lambda i: dy("run", "-d", "--name", f"par{i}", "busybox", "sleep", "60"), range(20)
            )
        )
    ids = {r.stdout.strip() for r in results}
    assert len(ids) == 20
    running = dy("ps", "--no-trunc", "-q").stdout.split()
    assert ids <= set(running)
    dy("rm", "-f", *ids)


def test_stdin_is_passed_with_i(dy: Dy) -> None:
    proc = dy("run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z", input="hello\n")
    assert proc.stdout == "HELLO\n"


def test_restart_on_failure_gives_up_after_n(dy: Dy) -> None:
    dy("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 1")
    assert dy("wait", "flaky", timeout=60).stdout.strip() == "1"
    deadline = time.monotonic() + 30
    while (
        dy.record("flaky")["RestartCount"] != 2 or dy.record("flaky")["State"]["Status"] != "exited"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    dy("rm", "-f", "flaky")


def test_restart_always_brings_it_back(dy: Dy) -> None:
    dy("run", "-d", "--name", "phoenix", "--restart", "always", "busybox", "sleep", "60")
    pid = dy.record("phoenix")["State"]["Pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        state = dy.record("phoenix")
        if state["State"]["Status"] == "running" and state["State"]["Pid"] not in (0, pid):
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert state["RestartCount"] >= 1
    dy("stop", "-t", "1", "phoenix")
    assert dy.record("phoenix")["State"]["Status"] == "exited"  # stop is not a failure to restart
    dy("rm", "phoenix")


def test_inspect_fields(dy: Dy) -> None:
    dy(
        "create",
        "--name",
        "insp",
        "-e",
        "A=1",
        "-l",
        "team=x",
        "-m",
        "64m",
        "busybox",
        "echo",
        "hi",
    )
    info = dy.record("insp")
    for key in ("Id", "Created", "Path", "Args", "State", "Image", "Name", "RestartCount", "HostConfig",
                "Mounts", "Config", "NetworkSettings"):  # fmt: skip
        assert key in info
    assert (info["Path"], info["Args"], info["Name"]) == ("echo", ["hi"], "/insp")
    assert "A=1" in info["Config"]["Env"] and info["Config"]["Labels"] == {"team": "x"}
    assert info["HostConfig"]["Memory"] == 64 << 20
    assert info["State"]["Status"] == "created"
    full = info["Id"]
    # "/name", the full ID and a prefix name the same container; an unknown name is one
    # line of error
    for ref in ("/insp", full, full[:12]):
        assert json.loads(dy("inspect", ref).stdout)[0]["Id"] == full
    assert (info["HostnamePath"], info["LogPath"]) == (
        os.path.join(dy.root, "containers", full, "hostname"),
        os.path.join(dy.root, "containers", full, f"{full}-json.log"),
    )
    missing = dy("inspect", "insp-nosuch", ok=False)
    assert missing.returncode == 1 and "No such object: insp-nosuch" in missing.stderr
    dy("rm", "insp")


def test_log_rotation(dy: Dy) -> None:
    cid = dy("run", "--name", "chatty", "--log-opt", "max-size=2k", "--log-opt", "max-file=2", "busybox",
             "sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done").stdout  # fmt: skip
    del cid
    full = dy.record("chatty")["Id"]
    files = sorted(
        f for f in os.listdir(os.path.join(dy.root, "containers", full)) if "-json.log" in f
    )
    assert files == [f"{full}-json.log", f"{full}-json.log.1"]
    for name in files:
        assert os.path.getsize(os.path.join(dy.root, "containers", full, name)) < 4096
    assert dy("logs", "--tail", "1", "chatty").stdout == "line-299\n"
    dy("rm", "chatty")


def test_exec_top_pause_rename_update(dy: Dy) -> None:
    cid = dy("run", "-d", "--name", "busy", "busybox", "sleep", "60").stdout.strip()
    proc = dy("exec", "-e", "X=1", "busy", "sh", "-c", "echo $X $(hostname); exit 4", ok=False)
    assert (proc.returncode, proc.stdout) == (4, f"1 {cid[:12]}\n")
    missing = dy("exec", "busy", "nope", ok=False)
    assert missing.returncode == 127 and "executable file not found" in missing.stderr
    assert "sleep 60" in dy("top", "busy").stdout
    dy("pause", "busy")
    assert dy.record("busy")["State"]["Paused"] is True
    assert dy("exec", "busy", "true", ok=False).returncode == 125
    dy("unpause", "busy")
    dy("rename", "busy", "busier")
    assert dy.record("busier")["Name"] == "/busier"
    dy("update", "--pids-limit", "33", "busier")
    with open(f"/sys/fs/cgroup/pids/dockyard/{cid}/pids.max") as f:
        assert f.read().strip() == "33"
    stats = dy("stats", "--no-stream", "busier").stdout.splitlines()
    assert stats[0].split()[:3] == ["CONTAINER", "ID", "NAME"] and stats[1].split()[1] == "busier"
    dy("rm", "-f", "busier")


def test_cp_resolves_container_symlinks_inside_the_container(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dy("run", "-d", "--name", "cpbox", "busybox", "sleep", "60")
    dy("exec", "cpbox", "ln", "-s", "/etc", "/tmp/evil")
    src = tmp_path / "payload.txt"
    src.write_text("payload\n")
    dy("cp", str(src), "cpbox:/tmp/evil/")
    assert dy("exec", "cpbox", "cat", "/etc/payload.txt").stdout == "payload\n"
    assert not os.path.exists("/etc/payload.txt")  # the host's /etc is untouched
    out = tmp_path / "passwd-copy"
    dy("cp", "cpbox:/tmp/evil/passwd", str(out))
    assert out.read_text().startswith("root:x:0:0:root:/root:/bin/sh")  # the container's passwd
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("deep")
    dy("cp", str(tree), "cpbox:/")
    assert dy("exec", "cpbox", "cat", "/tree/sub/f").stdout == "deep"
    dy("rm", "-f", "cpbox")


def test_rmi_refuses_an_image_in_use(dy: Dy) -> None:
    dy("tag", "busybox", "inuse:1")
    dy("run", "-d", "--name", "holder", "inuse:1", "sleep", "60")
    assert dy("rmi", "inuse:1").stdout == "Untagged: inuse:1\n"  # another name remains: just untag
    proc = dy("rmi", "-f", "busybox", ok=False)
    assert proc.returncode == 1 and "image is being used by running container" in proc.stderr
    dy("rm", "-f", "holder")
    cid = dy("create", "busybox", "true").stdout.strip()
    proc = dy("rmi", "busybox", ok=False)
    assert (
        proc.returncode == 1
        and f"container {cid[:12]} is using its referenced image" in proc.stderr
    )
    dy("rm", cid)
    assert dy("images", "-q").stdout.strip()  # still there for the tests after this one


def test_container_prune(dy: Dy) -> None:
    a = dy("create", "busybox", "true").stdout.strip()
    b = dy("run", "-d", "busybox", "sleep", "60").stdout.strip()
    out = dy("container", "prune", "-f").stdout
    assert a in out and b not in out
    assert b in dy("ps", "-q", "--no-trunc").stdout
    dy("rm", "-f", b)


def _pty_run(dy: Dy, *args: str, rows: int = 33, cols: int = 101):  # type: ignore[no-untyped-def]
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen([DOCKYARD, "--root", dy.root, *args], stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)  # fmt: skip
    os.close(slave)
    return proc, master


def _lean_monitors(cid: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"/cache/lean-" in cmd and cid.encode() in cmd:
            found.append(int(name))
    return found


def test_interactive_terminal(dy: Dy) -> None:
    proc, master = _pty_run(dy, "run", "-it", "--name", "tty1", "busybox", "sh")
    try:
        read_until(master, b"# ")
        os.write(master, b"stty size; tty; echo $((6*7))\r")
        out = read_until(master, b"42")
        assert b"33 101" in out and b"/dev/pts/0" in out  # our window size reached the container
        os.write(master, b"sleep 30\r")
        time.sleep(0.3)
        os.write(master, b"\x03")  # ^C goes to the container's shell, not to dockyard
        read_until(master, b"# ")
        assert dy.record("tty1")["State"]["Running"] is True
        os.write(master, b"\x10\x11")  # ctrl-p ctrl-q: detach, the container keeps running
        assert proc.wait(timeout=20) == 0
        rec = dy.record("tty1")
        assert rec["State"]["Running"] is True
        # Alone, the monitor sheds the engine: it re-execs itself as the lean loop.
        deadline = time.monotonic() + 10
        while not _lean_monitors(rec["Id"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_lean_monitors(rec["Id"])) == 1
        assert "42" in dy("logs", "tty1").stdout
    finally:
        os.close(master)
        proc.kill()
        proc.wait()
        dy("rm", "-f", "tty1")


def test_interactive_exit_code(dy: Dy) -> None:
    proc, master = _pty_run(dy, "run", "-it", "--rm", "busybox", "sh")
    try:
        read_until(master, b"# ")
        os.write(master, b"exit 7\r")
        assert proc.wait(timeout=20) == 7
    finally:
        os.close(master)


def test_named_volume_is_filled_from_the_image_then_kept(dy: Dy) -> None:
    dy("volume", "create", "--label", "team=x", "etcvol")
    out = dy(
        "run",
        "--rm",
        "-v",
        "etcvol:/etc",
        "busybox",
        "sh",
        "-c",
        "cat /etc/group | head -1; echo kept > /etc/mine",
    )
    assert out.stdout == "root:x:0:\n"  # the empty volume got the image's /etc on first use
    again = dy(
        "run",
        "--rm",
        "-v",
        "etcvol:/data:ro",
        "busybox",
        "sh",
        "-c",
        "cat /data/mine; touch /data/x",
        ok=False,
    )
    assert again.stdout == "kept\n" and "Read-only file system" in again.stderr
    info = json.loads(dy("volume", "inspect", "etcvol").stdout)[0]
    assert info["Labels"] == {"team": "x"} and info["Mountpoint"].endswith("/volumes/etcvol/_data")
    cid = dy("run", "-d", "-v", "etcvol:/d", "busybox", "sleep", "60").stdout.strip()
    mounts = dy.record(cid)["Mounts"]
    assert (
        mounts[0]["Type"] == "volume"
        and mounts[0]["Name"] == "etcvol"
        and mounts[0]["Destination"] == "/d"
    )
    busy = dy("volume", "rm", "etcvol", ok=False)
    assert busy.returncode == 1 and f"volume is in use - [{cid}]" in busy.stderr
    dy("rm", "-f", cid)
    dy("volume", "rm", "etcvol")
    assert "etcvol" not in dy("volume", "ls", "-q").stdout


def test_anonymous_volumes_go_with_rm_v_and_prune(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = set(dy("volume", "ls", "-q").stdout.split())
    cid = dy("create", "-v", "/cache", "busybox", "true").stdout.strip()
    new = set(dy("volume", "ls", "-q").stdout.split()) - before
    assert len(new) == 1
    dy("rm", "-v", cid)
    assert set(dy("volume", "ls", "-q").stdout.split()) == before
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "f").write_text("from host")
    proc = dy(
        "run",
        "--rm",
        "--mount",
        f"type=bind,source={host},target=/h,readonly",
        "busybox",
        "cat",
        "/h/f",
    )
    assert proc.stdout == "from host"
    bad = dy(
        "run",
        "--rm",
        "--mount",
        "type=bind,source=/no/such/dir,target=/x",
        "busybox",
        "true",
        ok=False,
    )
    assert bad.returncode == 125 and "bind source path does not exist" in bad.stderr


def test_diff_commit_export(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dy(
        "run",
        "-d",
        "--name",
        "changer",
        "busybox",
        "sh",
        "-c",
        "echo hi > /etc/motd; rm /bin/vi; sleep 60",
    )
    deadline = time.monotonic() + 10
    while "A /etc/motd" not in dy("diff", "changer").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # the engine's own mount points (hosts, hostname, resolv.conf) are not the container's changes
    assert dy("diff", "changer").stdout.splitlines() == [
        "C /bin",
        "D /bin/vi",
        "C /etc",
        "A /etc/motd",
    ]
    image_id = dy(
        "commit", "-m", "add motd", "-c", 'CMD ["cat", "/etc/motd"]', "changer", "busybox:motd"
    ).stdout.strip()
    assert dy("run", "--rm", "busybox:motd").stdout == "hi\n"
    info = dy.record("busybox:motd")
    assert (
        info["Id"] == image_id
        and info["Comment"] == "add motd"
        and len(info["RootFS"]["Layers"]) == 2
    )
    out = tmp_path / "changer.tar"
    dy("export", "-o", str(out), "changer")
    import tarfile

    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    assert "etc/motd" in names and "bin/busybox" in names and "bin/vi" not in names
    dy("rm", "-f", "changer")
    dy("rmi", "busybox:motd")


def test_system_df_counts_containers_and_volumes(dy: Dy) -> None:
    def df() -> dict[str, list[str]]:
        rows = [line.split() for line in dy("system", "df").stdout.splitlines()[1:]]
        return {
            r[0] if r[0] != "Local" else "Volumes": r[1:] if r[0] != "Local" else r[2:]
            for r in rows
        }

    before = df()
    dy("run", "-d", "--name", "filler", "-v", "dfvol:/data", "busybox", "sh", "-c",
       "dd if=/dev/zero of=/big bs=1M count=4 2>/dev/null; dd if=/dev/zero of=/data/v bs=1M count=2 2>/dev/null;"
       " touch /done; sleep 60")  # fmt: skip
    deadline = time.monotonic() + 10
    while dy("exec", "filler", "ls", "/done", ok=False).returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    during = df()
    assert int(during["Containers"][1]) == int(before["Containers"][1]) + 1  # one more active
    assert during["Containers"][2].endswith("MB") and float(during["Containers"][2][:-2]) >= 4
    assert during["Volumes"][2].endswith("MB") and float(during["Volumes"][2][:-2]) >= 2
    dy("rm", "-f", "filler")
    dy("volume", "rm", "dfvol")


def test_init_forwards_stop_signal(dy: Dy) -> None:
    if not os.path.exists("/usr/bin/tini-static"):
        pytest.skip("tini is not installed (apt-get install tini)")
    dy("run", "-d", "--init", "--name", "withinit", "busybox", "sleep", "60")
    proc = dy("stop", "-t", "5", "withinit")
    assert proc.stderr == ""  # no escalation: tini passed SIGTERM on to sleep
    assert dy.record("withinit")["State"]["ExitCode"] == 143
    ps1 = dy("run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline").stdout
    assert ps1.split("\0")[0] == "/sbin/docker-init"
    dy("rm", "withinit")


def test_seccomp_profile_from_a_docker_file(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [
            {
                "architecture": "SCMP_ARCH_X86_64",
                "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            }
        ],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {
                "names": ["chdir"],
                "action": "SCMP_ACT_ERRNO",
                "includes": {"caps": ["CAP_SYS_ADMIN"]},
            },
        ],
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    proc = dy("run", "--rm", "--security-opt", f"seccomp={path}", "busybox", "sh", "-c",
              "mkdir /tmp/x; echo mkdir=$?; cd /tmp && echo cd-ok", ok=False)  # fmt: skip
    assert "mkdir=1" in proc.stdout and "Operation not permitted" in proc.stderr
    assert "cd-ok" in proc.stdout  # the chdir rule needs CAP_SYS_ADMIN, which the container lacks
    bad = dy("run", "--rm", "--security-opt", "seccomp=/no/such/file", "busybox", "true", ok=False)
    assert bad.returncode == 125 and "opening seccomp profile" in bad.stderr


# What the default profile refuses that a container without one may do: a new user
# namespace (gated by CAP_SYS_ADMIN in Docker's profile), a keyring, a persona.
_PROBE = ("grep Seccomp: /proc/self/status; unshare -U true 2>/dev/null; echo userns=$?; "
          "unshare -m true 2>/dev/null; echo mountns=$?")  # fmt: skip


@pytest.mark.parametrize("runtime", ["dockyard-runtime", "runc"])
def test_docker_default_seccomp_profile_applies(dy: Dy, runtime: str) -> None:
    out = dy("run", "--rm", "--runtime", runtime, "busybox", "sh", "-c", _PROBE).stdout
    assert out == "Seccomp:\t2\nuserns=1\nmountns=1\n"
    out = dy("run", "--rm", "--runtime", runtime, "--security-opt", "seccomp=unconfined", "busybox",
             "sh", "-c", _PROBE).stdout  # fmt: skip
    assert out == "Seccomp:\t0\nuserns=0\nmountns=1\n"  # unshare -m needs CAP_SYS_ADMIN anyway
    out = dy(
        "run", "--rm", "--runtime", runtime, "--privileged", "busybox", "sh", "-c", _PROBE
    ).stdout
    assert out == "Seccomp:\t0\nuserns=0\nmountns=0\n"
    # with CAP_SYS_ADMIN the profile lets the namespace calls through, as Docker's does
    out = dy(
        "run", "--rm", "--runtime", runtime, "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c", _PROBE
    ).stdout
    assert out == "Seccomp:\t2\nuserns=0\nmountns=0\n"
    cid = dy("create", "busybox", "true").stdout.strip()
    assert dy.record(cid)["SeccompProfile"] == "builtin"
    dy("rm", cid)
    cid = dy("create", "--security-opt", "seccomp=unconfined", "busybox", "true").stdout.strip()
    assert dy.record(cid)["SeccompProfile"] == "unconfined"
    dy("rm", cid)
    assert "name=seccomp,profile=builtin" in dy("info", "-f", "{{json .SecurityOptions}}").stdout
    assert "Profile: builtin" in dy("info").stdout


def test_health_check_states(dy: Dy) -> None:
    dy("run", "-d", "--name", "patient", "--health-cmd", "test -f /tmp/ok", "--health-interval", "100ms",
       "--health-retries", "2", "busybox", "sh", "-c", "sleep 60")  # fmt: skip

    def health() -> dict:
        return dy.record("patient")["State"].get("Health") or {}

    seen = []
    deadline = time.monotonic() + 20
    while "unhealthy" not in seen:
        assert time.monotonic() < deadline, seen
        status = health().get("Status")
        if status and (not seen or seen[-1] != status):
            seen.append(status)
        time.sleep(0.05)
    assert "(unhealthy)" in dy("ps", "--filter", "name=patient").stdout
    dy("exec", "patient", "touch", "/tmp/ok")
    deadline = time.monotonic() + 20
    while health().get("Status") != "healthy":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    log = health()["Log"]
    assert 1 <= len(log) <= 5 and log[-1]["ExitCode"] == 0
    dy("rm", "-f", "patient")
    assert dy("run", "--rm", "--health-interval", "bogus", "--health-cmd", "true", "busybox", "true",
              ok=False).stderr == 'dockyard: invalid duration "bogus"\n'  # fmt: skip


def test_events_follow_and_history(dy: Dy) -> None:
    follower = subprocess.Popen([DOCKYARD, "--root", dy.root, "events", "--filter", "container=evented"],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        time.sleep(0.5)
        dy(
            "run",
            "--rm",
            "--name",
            "evented",
            "-l",
            "team=x",
            "busybox",
            "sh",
            "-c",
            "exit 3",
            ok=False,
        )
        deadline = time.monotonic() + 10
        lines: list[str] = []
        while len(lines) < 4:
            assert time.monotonic() < deadline, lines
            line = follower.stdout.readline() if follower.stdout else ""
            if line:
                lines.append(line)
    finally:
        follower.terminate()
        follower.wait()
    actions = [line.split()[2] for line in lines]
    assert actions == ["create", "start", "die", "destroy"]
    assert "exitCode=3" in lines[2] and "name=evented" in lines[2] and "team=x" in lines[2]
    past = dy(
        "events", "--since", "1m", "--until", "0s", "--filter", "event=die", "--format", "json"
    ).stdout
    records = [json.loads(line) for line in past.splitlines()]
    assert any(r["Actor"]["Attributes"].get("name") == "evented" for r in records)
    assert all(r["Action"] == "die" for r in records)
    templated = dy("events", "--since", "1m", "--until", "0s", "--filter", "container=evented", "--format",
                   "{{.Action}} {{.Actor.Attributes.exitCode}}").stdout  # fmt: skip
    assert "die 3" in templated.splitlines()


@pytest.mark.parametrize("runtime", ["dockyard-runtime", "runc"])
def test_tty_output_is_not_lost_at_exit(dy: Dy, runtime: str) -> None:
    if runtime == "runc" and not shutil.which("runc"):
        pytest.skip("runc is not installed")
    proc = dy(
        "run", "--rm", "-t", "--runtime", runtime, "busybox", "sh", "-c", "tty; exit 4", ok=False
    )
    assert (proc.returncode, proc.stdout.strip()) == (4, "/dev/pts/0")


def test_runtime_runc_drives_the_same_verbs(dy: Dy) -> None:
    if not shutil.which("runc"):
        pytest.skip("runc is not installed")
    assert (
        dy("run", "--rm", "--runtime", "runc", "busybox", "echo", "via runc").stdout == "via runc\n"
    )
    cid = dy(
        "run", "-d", "--runtime", "runc", "--name", "byrunc", "busybox", "sleep", "60"
    ).stdout.strip()
    assert dy.record("byrunc")["HostConfig"]["Runtime"] == "runc"
    assert os.path.isdir(os.path.join(dy.root, "exec", "runc", cid))  # runc's own state
    proc = dy("exec", "byrunc", "sh", "-c", "echo in; exit 5", ok=False)
    assert (proc.returncode, proc.stdout) == (5, "in\n")
    assert "sleep 60" in dy("top", "byrunc").stdout
    dy("pause", "byrunc")
    assert dy.record("byrunc")["State"]["Paused"] is True
    dy("unpause", "byrunc")
    dy("kill", "byrunc")
    assert dy("wait", "byrunc").stdout.strip() == "137"
    dy("rm", "byrunc")
    assert not os.path.exists(os.path.join(dy.root, "exec", "runc", cid))
    bad = dy("run", "--rm", "--runtime", "no-such-runtime", "busybox", "true", ok=False)
    assert (
        bad.returncode == 125
        and bad.stderr == "dockyard: unknown or invalid runtime name: no-such-runtime\n"
    )


def test_attach_to_a_running_container(dy: Dy) -> None:
    dy(
        "run",
        "-d",
        "-i",
        "--name",
        "listener",
        "busybox",
        "sh",
        "-c",
        "read x; echo got $x; exit 6",
    )
    proc = dy("attach", "listener", input="hello\n", ok=False)
    assert (proc.returncode, proc.stdout) == (6, "got hello\n")
    stopped = dy("attach", "listener", ok=False)
    assert stopped.returncode == 1 and "You cannot attach to a stopped container" in stopped.stderr
    dy("rm", "listener")


def test_state_survives_new_processes_and_removal_leaves_nothing(dy: Dy) -> None:
    """There is no daemon to restart: every command is a new process reading the same state."""
    up = dy("run", "-d", "--name", "survivor", "busybox", "sleep", "60").stdout.strip()
    dy("run", "--name", "done3", "busybox", "sh", "-c", "exit 3", ok=False)
    table = dy("ps", "-a").stdout
    assert any(line.endswith("survivor") and " Up " in line for line in table.splitlines())
    assert any(line.endswith("done3") and "Exited (3)" in line for line in table.splitlines())
    dy("rm", "-f", "survivor", "done3")
    with open("/proc/self/mountinfo") as f:
        assert up not in f.read()
    assert not os.path.exists(f"/sys/fs/cgroup/pids/dockyard/{up}")
    assert not [p for p, a in _processes() if up in " ".join(a)]


def test_slow_health_checks_never_overlap(dy: Dy) -> None:
    """A check slower than its interval: the next one starts an interval after it finished."""
    cid = dy(
        "run",
        "-d",
        "--health-cmd",
        "sleep 0.6",
        "--health-interval",
        "100ms",
        "busybox",
        "sleep",
        "60",
    ).stdout.strip()
    try:
        most = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            running = [
                p
                for p, args in _processes()
                if "dockyard.engine.health" in args and cid in " ".join(args)
            ]
            most = max(most, len(running))
            time.sleep(0.05)
        assert most == 1  # checks ran, one at a time
        assert dy.record(cid)["State"]["Health"]["Status"] == "healthy"
    finally:
        dy("rm", "-f", cid)


def test_rm_goes_on_after_an_error(dy: Dy) -> None:
    """As Docker: each container is tried; errors are printed and the status is 1."""
    cid = dy("create", "busybox", "true").stdout.strip()
    proc = dy("rm", "-f", "no-such-one", cid, ok=False)
    assert proc.returncode == 1
    assert proc.stderr == "dockyard: No such container: no-such-one\n" and proc.stdout == cid + "\n"
    assert cid not in dy("ps", "-aq", "--no-trunc").stdout


def test_format_templates_as_docker_scripts_use_them(dy: Dy) -> None:
    """``inspect -f`` and the ``--format`` of ps, images, history, network ls, volume ls and
    stats take Go templates, ``table`` ones with Docker's headers; a broken template is one
    line, status 1."""
    cid = dy(
        "run", "-d", "--name", "fmt-web", "-l", "tier=front", "busybox", "sleep", "30"
    ).stdout.strip()
    try:
        assert dy(
            "inspect", "-f", "{{.State.Status}} {{.Config.Labels}} {{json .Config.Cmd}}", "fmt-web"
        ).stdout == ('running map[tier:front] ["sleep","30"]\n')
        assert (
            dy("inspect", "--format", "{{.Name}}", "fmt-web", cid).stdout == "/fmt-web\n/fmt-web\n"
        )
        assert dy("image", "inspect", "-f", "{{.Os}}", "busybox").stdout == "linux\n"
        ps = dy(
            "ps", "--filter", "name=fmt-web", "--format", '{{.Names}}|{{.Label "tier"}}|{{.State}}'
        ).stdout
        assert ps == "fmt-web|front|running\n"
        lines = dy(
            "ps", "--filter", "name=fmt-web", "--format", "table {{.ID}}\\t{{.Names}}"
        ).stdout.splitlines()
        assert lines == ["CONTAINER ID   NAMES", f"{cid[:12]}   fmt-web"]
        images = dy("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        assert "busybox:latest" in images
        assert (
            dy("history", "--format", "{{.ID}}", "busybox").stdout.splitlines()[-1] == "<missing>"
        )
        assert (
            "bridge:bridge"
            in dy("network", "ls", "--format", "{{.Name}}:{{.Driver}}").stdout.split()
        )
        stats = dy("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "fmt-web").stdout
        assert stats == "fmt-web 1\n"
        broken = dy("inspect", "-f", "{{.State", "fmt-web", ok=False)
        assert (
            broken.returncode == 1
            and broken.stderr == "dockyard: template parsing error: unclosed action\n"
        )
    finally:
        dy("rm", "-f", cid)


def test_restart_gives_a_new_process_and_keeps_rm_containers(dy: Dy) -> None:
    """``restart``: stop then start (a new PID 1, the same container); a ``--rm`` container
    comes back instead of being removed, and goes once stopped for good, as in Docker."""
    kept = dy("run", "-d", "--name", "rs-kept", "busybox", "sleep", "60").stdout.strip()
    gone = dy("run", "-d", "--rm", "--name", "rs-rm", "busybox", "sleep", "60").stdout.strip()
    try:
        before = dy("inspect", "-f", "{{.State.Pid}}", "rs-kept").stdout.strip()
        assert dy("restart", "-t", "0", "rs-kept", "rs-rm").stdout == "rs-kept\nrs-rm\n"
        after = dy(
            "inspect", "-f", "{{.State.Pid}} {{.State.Status}}", "rs-kept", "rs-rm"
        ).stdout.splitlines()
        assert after[0].split()[1] == "running" and after[0].split()[0] != before
        assert after[1].split()[1] == "running"
        events = dy("events", "--since", "1m", "--until", "0s", "--filter", "event=restart", "--format",
                    "{{.Actor.Attributes.name}}").stdout.split()  # fmt: skip
        assert {"rs-kept", "rs-rm"} <= set(events)
        dy("stop", "-t", "0", "rs-rm")
        dy("wait", "rs-rm", ok=False)
        assert gone not in dy("ps", "-aq", "--no-trunc").stdout
        missing = dy("restart", "no-such-one", ok=False)
        assert (
            missing.returncode == 1
            and missing.stderr == "dockyard: No such container: no-such-one\n"
        )
    finally:
        dy("rm", "-f", kept, gone, ok=False)


def test_system_prune_removes_what_nothing_uses(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Stopped containers, unused networks, dangling images and build cache go; with -a every
    image no container has, with --volumes anonymous volumes; what a container uses stays."""
    d = Dy(str(tmp_path / "root"))
    d("image", "bootstrap", "busybox")
    try:
        d("tag", "busybox", "spare:1")
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo x > /x\n")
        d("build", "-q", "--network", "none", "-t", "built:1", str(ctx))
        d("tag", "built:1", "built:2")
        d("rmi", "built:1", "built:2")  # leaves nothing dangling yet: the build cache holds it
        up = d(
            "run", "-d", "--network", "none", "-v", "/anon", "busybox", "sleep", "60"
        ).stdout.strip()
        stopped = d("create", "--network", "none", "-v", "/anon2", "busybox", "true").stdout.strip()
        d("network", "create", "spare-net")
        d("volume", "create", "named")
        refused = d("system", "prune", input="n\n")
        assert (
            "WARNING! This will remove:" in refused.stdout
            and stopped in d("ps", "-aq", "--no-trunc").stdout
        )
        out = d("system", "prune", "-f").stdout
        assert (
            f"Deleted Containers:\n{stopped}\n" in out and "Deleted Networks:\nspare-net\n" in out
        )
        assert "Deleted build cache objects:" in out and out.rstrip().splitlines()[-1].startswith(
            "Total reclaimed"
        )
        assert d("ps", "-aq", "--no-trunc").stdout.split() == [up]
        assert sorted(d("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()) == [
            "busybox:latest", "spare:1"]  # fmt: skip
        out = d("system", "prune", "-a", "-f", "--volumes").stdout
        assert "untagged: spare:1" not in out  # busybox:latest and spare:1 are one image, in use
        assert sorted(d("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()) == [
            "busybox:latest", "spare:1"]  # fmt: skip
        volumes = d("volume", "ls", "--format", "{{.Name}}").stdout.split()
        assert "named" in volumes and len(volumes) == 2  # the running container's volume stays
    finally:
        d("rm", "-f", *d("ps", "-aq").stdout.split(), ok=False)
        d("network", "prune", "-f")


def test_info_counts_what_the_engine_has(tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = Dy(str(tmp_path / "root"))
    d("image", "bootstrap", "busybox")
    cid = d("create", "--network", "none", "busybox", "true").stdout.strip()
    try:
        text = d("info").stdout
        assert " Containers: 1\n  Running: 0\n  Paused: 0\n  Stopped: 1\n Images: 1\n" in text
        assert f" Docker Root Dir: {d.root}" in text and " Storage Driver: overlay" in text
        assert d("info", "-f", "{{.Containers}} {{.Images}} {{.OSType}}").stdout == "1 1 linux\n"
    finally:
        d("rm", cid)


def test_more_run_flags_docker_users_reach_for(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--device (with permissions), --cidfile, --shm-size, --pid/--uts/--ipc/--cgroupns host,
    --group-add, --label-file, --memory-reservation, --oom-kill-disable, --domainname."""
    fuse = "/dev/fuse" if os.path.exists("/dev/fuse") else "/dev/loop-control"
    run = ["run", "--rm", "--network", "none"]
    out = dy(*run, "--device", f"{fuse}:/dev/extra:r", "busybox", "sh", "-c",
             "true < /dev/extra && echo opened; true > /dev/extra || echo write-denied").stdout  # fmt: skip
    assert out == "opened\nwrite-denied\n"
    assert (
        "opened"
        not in dy(*run, "busybox", "sh", "-c", f"true < {fuse} && echo opened", ok=False).stdout
    )
    cidfile = tmp_path / "cid"
    dy(*run, "--cidfile", str(cidfile), "busybox", "true")
    assert len(cidfile.read_text()) == 64
    again = dy(*run, "--cidfile", str(cidfile), "busybox", "true", ok=False)
    assert again.returncode == 125 and "Container ID file found" in again.stderr
    assert "128.0M" in dy(*run, "--shm-size", "128m", "busybox", "df", "-h", "/dev/shm").stdout
    with open("/proc/1/cmdline", "rb") as f:
        host_init = f.read().split(b"\0")[0].decode()
    assert (
        dy(
            *run, "--pid", "host", "busybox", "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"
        ).stdout.split()[0]
        == host_init
    )
    before = os.uname().nodename
    assert dy(*run, "--uts", "host", "busybox", "hostname").stdout.strip() == before
    assert os.uname().nodename == before  # the host's name is the host's: not renamed
    marker = f"/dev/shm/dockyard-test-{os.getpid()}"
    open(marker, "w").close()
    try:
        assert dy(*run, "--ipc", "host", "busybox", "ls", marker).returncode == 0
        assert dy(*run, "busybox", "ls", marker, ok=False).returncode != 0
    finally:
        os.unlink(marker)
    groups = dy(*run, "--group-add", "10", "busybox", "id", "-G").stdout.split()
    assert "10" in groups
    (tmp_path / "labels").write_text("a=1\n# a comment\nb=2\n")
    cid = dy("create", "--network", "none", "--label-file", str(tmp_path / "labels"), "-l", "c=3",
             "--memory-reservation", "10m", "--oom-kill-disable", "--domainname", "example.org",
             "--cgroupns", "host", "busybox", "sh", "-c",
             "cat /proc/sys/kernel/domainname; grep -c /dockyard/ /proc/self/cgroup").stdout.strip()  # fmt: skip
    try:
        assert dy("inspect", "-f", "{{.Config.Labels}}", cid).stdout == "map[a:1 b:2 c:3]\n"
        host = dy.record(cid)["HostConfig"]
        assert host["MemoryReservation"] == 10 << 20 and host["OomKillDisable"] is True
        out = dy("start", "-a", cid).stdout.split()
        assert out[0] == "example.org" and int(out[1]) > 0  # the host's cgroup view: full paths
    finally:
        dy("rm", "-f", cid)


def test_log_driver_none_keeps_nothing(dy: Dy) -> None:
    """``--log-driver none``: a foreground run still shows its output; nothing is kept, and
    ``logs`` says the driver cannot be read (status 1, as docker logs)."""
    assert dy("run", "--network", "none", "--name", "quiet", "--log-driver", "none", "busybox",
              "echo", "shown").stdout == "shown\n"  # fmt: skip
    try:
        cid = dy.record("quiet")["Id"]
        assert not [
            n for n in os.listdir(os.path.join(dy.root, "containers", cid)) if n.endswith(".log")
        ]
        logs = dy("logs", "quiet", ok=False)
        assert (logs.returncode, logs.stderr) == (
            1,
            "dockyard: configured logging driver does not support reading\n",
        )
        bad = dy("run", "--rm", "--log-driver", "syslog", "busybox", "true", ok=False)
        assert bad.returncode == 125 and "logging driver syslog is not supported" in bad.stderr
    finally:
        dy("rm", "-f", "quiet")


def test_untouched_container_has_no_diff_and_stop_t0_says_nothing(dy: Dy) -> None:
    cid = dy("run", "-d", "busybox", "sleep", "60").stdout.strip()
    try:
        assert dy("diff", cid).stdout == ""  # /etc's mount points are the engine's, not changes
        dy("exec", cid, "touch", "/etc/mine")
        assert dy("diff", cid).stdout == "C /etc\nA /etc/mine\n"
        proc = dy("stop", "-t", "0", cid)
        assert proc.stdout == cid + "\n" and proc.stderr == ""  # a kill asked for: no hint
    finally:
        dy("rm", "-f", cid)


def test_daemon_errors_exit_1_outside_run_create_start_exec(dy: Dy) -> None:
    """As the docker CLI: 125 is kept for the commands whose status may be the container's."""
    for argv in (["stop", "nosuch"], ["rm", "nosuch"], ["cp", "nosuch:/x", "."], ["inspect", "nosuch"],
                 ["container", "stop", "nosuch"]):  # fmt: skip
        proc = dy(*argv, ok=False)
        assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, (argv, proc.stderr)
    for argv in (["run", "nosuch:1"], ["create", "nosuch:1"], ["start", "nosuch"], ["exec", "nosuch", "true"],
                 ["container", "run", "nosuch:1"], ["stop", "--bogus"]):  # fmt: skip
        assert dy(*argv, ok=False).returncode == 125, argv


@pytest.mark.parametrize(("memory", "swap"), [("48m", "48m"), ("32m", "64m")])
def test_memory_and_swap_limits_from_unlimited(dy: Dy, memory: str, swap: str) -> None:
    """From unlimited down, the memory limit goes first and memsw after (memsw may never be
    below it): ``-m 48m --memory-swap 48m`` once failed with EINVAL on cgroup v1."""
    base = "/sys/fs/cgroup/memory"
    if not os.path.exists(f"{base}/memory.memsw.limit_in_bytes"):
        pytest.skip("no swap accounting (memory.memsw) on this host")
    cid = dy(
        "run", "-d", "-m", memory, "--memory-swap", swap, "busybox", "sleep", "60"
    ).stdout.strip()
    try:
        units = {"m": 1 << 20}
        with open(f"{base}/dockyard/{cid}/memory.limit_in_bytes") as f:
            assert int(f.read()) == int(memory[:-1]) * units["m"]
        with open(f"{base}/dockyard/{cid}/memory.memsw.limit_in_bytes") as f:
            assert int(f.read()) == int(swap[:-1]) * units["m"]
    finally:
        dy("rm", "-f", cid)


def test_stats_count_network_and_block_io(dy: Dy) -> None:
    """NET I/O from the container's interfaces; BLOCK I/O from its cgroup, or where that
    counts nothing (cgroup v1 on a queue nobody throttles), from its processes' accounting."""
    dy("run", "-d", "--name", "iosrv", "busybox", "sleep", "60")
    try:
        ip = dy.record("iosrv")["NetworkSettings"]["IPAddress"]
        dy("run", "-d", "--name", "iocli", "busybox", "sh", "-c",
           f"dd if=/dev/zero of=/big bs=1M count=8 conv=fsync 2>/dev/null; "
           f"ping -c 10 -i 0.1 -s 50000 {ip} > /dev/null; sleep 60")  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            row = dy(
                "stats", "--no-stream", "--format", "{{.NetIO}}|{{.BlockIO}}", "iocli"
            ).stdout.strip()
            net, block = row.split("|")
            sent, written = net.split(" / ")[1], block.split(" / ")[1]
            if sent.endswith("kB") and float(sent[:-2]) >= 500 and written.endswith("MB"):
                break
            assert time.monotonic() < deadline, row
            time.sleep(0.2)
        assert float(written[:-2]) >= 8
    finally:
        dy("rm", "-f", "iosrv", "iocli", ok=False)


def test_ipc_and_pid_of_another_container(dy: Dy) -> None:
    """``--ipc container:NAME`` (the donor ``shareable``: its /dev/shm, a tmpfs the engine
    mounts on the host, is bound into the joiner too) and ``--pid container:NAME``: the
    same namespaces, the donor's files in /dev/shm and its processes; refusals in dockerd's
    words; the donor's /dev/shm unmounted when it stops."""
    try:
        dy("run", "-d", "--name", "ipc-donor", "--ipc", "shareable", "busybox", "sh", "-c",
           "echo shared > /dev/shm/note; touch /tmp/ready; exec sleep 300")  # fmt: skip
        deadline = time.monotonic() + 10
        while dy("exec", "ipc-donor", "test", "-f", "/tmp/ready", ok=False).returncode != 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        probe = "cat /dev/shm/note; readlink /proc/self/ns/ipc; readlink /proc/self/ns/pid; ps -o comm | grep -c '^sleep'"
        joined = dy("run", "--rm", "--ipc", "container:ipc-donor", "--pid", "container:ipc-donor", "busybox", "sh", "-c",
                    probe).stdout.split()  # fmt: skip
        donor = dy("exec", "ipc-donor", "sh", "-c", probe).stdout.split()
        assert joined[0] == "shared" and joined[:3] == donor[:3] and joined[3] == "1"
        alone = dy("run", "--rm", "busybox", "sh", "-c", probe, ok=False).stdout.split()
        assert (
            alone[0] != donor[1] and donor[1] not in alone and alone[-1] == "0"
        )  # no note, no sleep
        dy("run", "-d", "--name", "ipc-private", "busybox", "sleep", "300")
        refused = {
            ("--ipc", "container:ipc-private"): "non-shareable IPC (hint: use IpcMode:shareable for the donor container)",
            ("--ipc", "container:nosuch"): "No such container: nosuch",
            ("--ipc", "sideways"): "invalid --ipc: sideways (private, shareable, host, none, container:NAME)",
        }  # fmt: skip
        for flags_, message in refused.items():
            proc = dy("run", "--rm", *flags_, "busybox", "true", ok=False)
            assert proc.returncode == 125 and proc.stderr.strip() == f"dockyard: {message}", (
                proc.stderr
            )
        dy("stop", "-t", "0", "ipc-private")
        proc = dy("run", "--rm", "--pid", "container:ipc-private", "busybox", "true", ok=False)
        assert (
            proc.stderr.strip()
            == "dockyard: cannot join PID of a non running container: ipc-private"
        )
        shm = os.path.join(dy.root, "containers", dy.record("ipc-donor")["Id"], "shm")
        with open("/proc/self/mountinfo") as f:
            assert shm in f.read()
        dy("stop", "-t", "0", "ipc-donor")
        with open("/proc/self/mountinfo") as f:
            assert shm not in f.read()
    finally:
        dy("rm", "-f", "ipc-donor", "ipc-private", ok=False)
