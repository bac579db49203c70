"""Rootless mode: users made for the test (with subordinate ID ranges, and one without)
run dockyard through ``runuser``, with nothing of dockyard's running as root.

Each user's state must land in their XDG directories, their containers must run as
them on the host, and a second user must not reach the first's state or socket. At the
end nothing of theirs is left: no container process, no mount in their namespace, no
helper but the namespace holder and its slirp4netns, which the teardown ends.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import DOCKYARD, on_a_terminal, until, wait_for_port
from .test_registry import _docker_registry, _free_port

pytestmark = pytest.mark.root

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class User:
    """A user made for the test, and dockyard run as them."""

    def __init__(self, base: str, name: str, ranges: bool) -> None:
        self.name = name
        self.home = os.path.join(base, name)
        subprocess.run(["useradd", "--create-home", "--home-dir", self.home, "--shell", "/bin/sh", name],
                       check=True, capture_output=True)  # fmt: skip
        pw = pwd.getpwnam(name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.sub_start = 0
        if ranges:
            if not _ranges_of(name):  # useradd gives ranges where login.defs says so
                start = _free_range()
                subprocess.run(["usermod", "--add-subuids", f"{start}-{start + 65535}", "--add-subgids",
                                f"{start}-{start + 65535}", name], check=True, capture_output=True)  # fmt: skip
            self.sub_start = _ranges_of(name)[0][0]
        else:
            for start, count in _ranges_of(name):
                span = f"{start}-{start + count - 1}"
                subprocess.run(["usermod", "--del-subuids", span, "--del-subgids", span, name],
                               check=True, capture_output=True)  # fmt: skip
            assert not _ranges_of(name)
        self.run_dir = os.path.join(base, f"{name}-run")
        os.mkdir(self.run_dir, 0o700)
        os.chown(self.run_dir, self.uid, self.gid)
        self.env = {"HOME": self.home, "USER": name, "PATH": _PATH, "XDG_RUNTIME_DIR": self.run_dir,
                    "LANG": "C.UTF-8"}  # fmt: skip
        self.data_root = os.path.join(self.home, ".local", "share", "dockyard")
        self.sock = os.path.join(self.run_dir, "dockyard", "dockyard.sock")

    def argv(self, *args: str) -> list[str]:
        env = [f"{k}={v}" for k, v in self.env.items()]
        return ["runuser", "-u", self.name, "--", "env", "-i", *env, DOCKYARD, *args]

    def __call__(
        self, *args: str, ok: bool = True, timeout: float = 120, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout,
                              cwd=self.home, **kw)  # fmt: skip
        if ok:
            assert proc.returncode == 0, f"{args}: {proc.stderr}"
        return proc

    def holder(self) -> int:
        with open(os.path.join(self.run_dir, "dockyard", "ns.json")) as f:
            return int(json.load(f)["pid"])

    def processes(self) -> list[str]:
        out = subprocess.run(["ps", "-u", str(self.uid), "-o", "pid=,stat=,args="], capture_output=True,
                             text=True).stdout  # fmt: skip
        return [
            ln.strip() for ln in out.splitlines() if ln.strip() and " Z" not in f" {ln.split()[1]}"
        ]

    def remove(self) -> None:
        try:
            os.kill(self.holder(), 9)
        except (OSError, ValueError):
            pass
        subprocess.run(["pkill", "-KILL", "-u", str(self.uid)], capture_output=True)
        until(f"{self.name}'s processes gone", lambda: not self.processes(), timeout=10)
        subprocess.run(["userdel", "--force", self.name], capture_output=True)


def _ranges_of(name: str) -> list[tuple[int, int]]:
    out = []
    with open("/etc/subuid") as f:
        for line in f:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[0] == name:
                out.append((int(parts[1]), int(parts[2])))
    return out


def _free_range() -> int:
    taken = []
    with open("/etc/subuid") as f:
        for line in f:
            parts = line.strip().split(":")
            if len(parts) == 3:
                taken.append((int(parts[1]), int(parts[1]) + int(parts[2])))
    start = 1_000_000
    while any(a < start + 65536 and start < b for a, b in taken):
        start += 65536
    return start


class _HostAccess:
    """What a user needs of this host that a fresh Debian gives (and this test host may
    not): a checkout and an interpreter they can reach, and /dev/net/tun for slirp4netns
    (udev makes it 0666). Undone afterwards."""

    def __init__(self) -> None:
        self.undo: list[tuple[str, int]] = []
        paths = {
            os.path.dirname(DOCKYARD),
            os.path.realpath(os.path.join(os.path.dirname(DOCKYARD), "python3")),
        }
        for path in paths:
            d = path
            while d != "/":
                d = os.path.dirname(d)
                self._add(d, 0o001)
        for dev in ("/dev/net/tun", "/dev/fuse"):  # slirp4netns; fuse-overlayfs
            if os.path.exists(dev):
                self._add(dev, 0o006)

    def _add(self, path: str, bits: int) -> None:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & bits != bits:
            self.undo.append((path, mode))
            os.chmod(path, mode | bits)

    def restore(self) -> None:
        for path, mode in reversed(self.undo):
            os.chmod(path, mode)


@pytest.fixture(scope="module")
def users() -> Iterator[tuple[User, User, User]]:
    for tool in ("newuidmap", "slirp4netns", "runuser", "useradd"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not installed (scripts/install.sh)")
    access = _HostAccess()
    base = tempfile.mkdtemp(prefix="dyt-rootless-", dir="/var/tmp")
    os.chmod(base, 0o755)
    tag = f"{os.getpid() % 100000:05d}"
    made: list[User] = []
    try:
        for name, ranges in ((f"dyra{tag}", True), (f"dyrb{tag}", True), (f"dyrc{tag}", False)):
            made.append(User(base, name, ranges))
        made[0]("image", "bootstrap", "busybox")
        yield made[0], made[1], made[2]
    finally:
        for u in made:
            u.remove()
        shutil.rmtree(base, ignore_errors=True)
        access.restore()


def test_state_in_the_users_directories_and_containers_run_as_the_user(
    users: tuple[User, User, User],
) -> None:
    alice, _, _ = users
    info = alice("info").stdout
    assert "rootless" in info and f"Docker Root Dir: {alice.data_root}" in info
    assert f"uid 0->{alice.uid}, 1-65536->{alice.sub_start}-{alice.sub_start + 65535}" in info
    assert "Cgroup Driver: none" in info and "slirp4netns" in info
    assert (
        "Snapshotter: overlay (native" in info
    )  # this kernel mounts overlayfs in a user namespace
    assert os.path.isfile(os.path.join(alice.data_root, "dockyard.db"))
    assert stat.S_IMODE(os.stat(alice.data_root).st_mode) == 0o700
    assert os.stat(alice.data_root).st_uid == alice.uid
    # root inside; the user's own ID (and ranges) outside
    out = alice(
        "run", "--rm", "busybox", "sh", "-c", "id -u; cat /proc/self/uid_map"
    ).stdout.split()
    assert out[0] == "0" and out[1:4] == ["0", str(alice.uid), "1"]
    # a container's processes are the user's on the host: an escape lands as the user
    alice("run", "-d", "--name", "sleeper", "busybox", "sleep", "300")
    alice("run", "-d", "--name", "other", "--user", "1234", "busybox", "sleep", "300")
    try:
        for name, host_uid in (("sleeper", alice.uid), ("other", alice.sub_start + 1233)):
            pid = alice("inspect", "-f", "{{.State.Pid}}", name).stdout.strip()
            with open(f"/proc/{pid}/status") as f:
                uids = next(ln for ln in f if ln.startswith("Uid:")).split()[1:]
            assert uids == [str(host_uid)] * 4, (name, uids)
        # nothing of dockyard's runs as root for this user
        root_procs = subprocess.run(
            ["ps", "-U", "0", "-o", "args="], capture_output=True, text=True
        ).stdout
        assert alice.data_root not in root_procs and alice.run_dir not in root_procs
        with open("/proc/self/mountinfo") as f:
            assert alice.data_root not in f.read()
    finally:
        alice("rm", "-f", "sleeper", "other")


def test_detached_exec_logs_and_a_terminal(users: tuple[User, User, User]) -> None:
    alice, _, _ = users
    alice(
        "run",
        "-d",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "echo hello; echo oops >&2; sleep 300",
    )
    try:
        until("the output", lambda: "hello" in alice("logs", "talker").stdout)
        logs = alice("logs", "talker")
        assert logs.stdout == "hello\n" and logs.stderr == "oops\n"
        assert alice("exec", "talker", "sh", "-c", "echo $((6*7))").stdout == "42\n"
        assert alice("exec", "talker", "false", ok=False).returncode == 1
        ps = alice("ps").stdout
        assert "talker" in ps and "Up" in ps
    finally:
        alice("rm", "-f", "talker")
    code, out = on_a_terminal(alice.argv("run", "--rm", "-it", "busybox", "sh", "-c", "tty; stty size"),
                              columns=97, rows=31, stdin=True)  # fmt: skip
    assert code == 0, out
    assert "/dev/pts/0" in out and "31 97" in out
    # stdin piped in
    piped = subprocess.run(alice.argv("run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z"), input="piped\n",
                           capture_output=True, text=True, timeout=60, cwd=alice.home)  # fmt: skip
    assert piped.stdout == "PIPED\n", piped.stderr


def test_build_with_chown_keeps_owners(users: tuple[User, User, User]) -> None:
    alice, _, _ = users
    ctx = os.path.join(alice.home, "ctx")
    os.makedirs(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM busybox\n"
                "RUN mkdir -p /a && touch /a/x && echo 'app:x:1234:1234::/:/bin/sh' >> /etc/passwd\n"
                "RUN rm -rf /a && mkdir /a && touch /a/y && chown 1234:1234 /a/y && chown nobody /a\n"
                "COPY --chown=1234:1234 note /note\n"
                "USER app\nRUN id -u && ls -ln /a\n")  # fmt: skip
    with open(os.path.join(ctx, "note"), "w") as f:
        f.write("n\n")
    subprocess.run(["chown", "-R", f"{alice.uid}:{alice.gid}", ctx], check=True)
    alice("build", "-t", "chowned", ctx)
    listing = alice(
        "run", "--rm", "--user", "0", "chowned", "sh", "-c", "ls -lnd /a /a/* /note"
    ).stdout
    rows = {ln.split()[-1]: ln.split()[2:4] for ln in listing.splitlines()}
    assert rows == {"/a": ["65534", "0"], "/a/y": ["1234", "1234"], "/note": ["1234", "1234"]}, (
        listing
    )
    # the layer records the owners as the image sees them (and x stays deleted)
    archive = os.path.join(alice.home, "chowned.tar")
    alice("save", "-o", archive, "chowned")
    found = subprocess.run(["sh", "-c", f"cd {alice.home} && mkdir -p sv && tar -xf {archive} -C sv && "
                            "for l in sv/*/layer.tar; do tar -tvf $l; done"], capture_output=True, text=True).stdout  # fmt: skip
    assert any("1234/1234" in ln and ln.endswith("a/y") for ln in found.splitlines()), found
    assert any(ln.endswith("a/.wh..wh..opq") for ln in found.splitlines()), found
    alice("rmi", "chowned")


def test_fuse_overlayfs_snapshots_read_the_same_with_the_kernels_overlay(
    users: tuple[User, User, User],
) -> None:
    alice, _, _ = users
    fuse = ("--snapshotter", "fuse-overlayfs")
    ctx = os.path.join(alice.home, "fusectx")
    os.makedirs(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM busybox\nRUN mkdir -p /b && touch /b/x /b/gone\n"
                "RUN rm /b/gone && rm -rf /b && mkdir /b && touch /b/z && chown 1234 /b/z\n")  # fmt: skip
    subprocess.run(["chown", "-R", f"{alice.uid}:{alice.gid}", ctx], check=True)
    alice(*fuse, "build", "-t", "fused", ctx)
    for opts in (fuse, ()):
        out = alice(*opts, "run", "--rm", "fused", "sh", "-c", "mount | grep ' / '; ls -an /b")
        assert out.stderr == "", out.stderr
        mount, *listing = out.stdout.splitlines()
        assert ("fuse-overlayfs" in mount) == bool(opts), mount
        assert [ln.split()[-1] for ln in listing[1:]] == [".", "..", "z"], listing
        assert listing[-1].split()[2] == "1234"
    until(
        "no fuse-overlayfs process",
        lambda: not [p for p in alice.processes() if "fuse-overlayfs" in p],
    )
    alice("rmi", "fused")


def test_pull_and_push_through_a_loopback_registry(
    users: tuple[User, User, User], tmp_path: Any
) -> None:
    alice, bob, _ = users
    proc, host = _docker_registry(tmp_path)
    try:
        ref = f"{host}/team/busybox:1"
        alice("tag", "busybox", ref)
        alice("push", ref)
        alice("rmi", ref)
        pulled = bob("pull", ref)  # into an engine that has nothing yet: unpacked as bob
        assert f"Status: Downloaded newer image for {ref}" in pulled.stdout, pulled.stdout
        assert bob("run", "--rm", ref, "stat", "-c", "%u %n", "/tmp").stdout == "0 /tmp\n"
        bob("rmi", ref)
    finally:
        proc.kill()
        proc.wait()


def _outside_server(tmp_path: Any) -> Iterator[tuple[str, int]]:
    """A network namespace of the test's, reached from the host through a veth, with a TCP
    server: somewhere outbound traffic may go."""
    ns = f"dyt-rl-{os.getpid()}"
    host_if, peer = f"dyrl{os.getpid() % 10000}h", f"dyrl{os.getpid() % 10000}p"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(
            ["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer], check=True
        )
        subprocess.run(["ip", "link", "set", peer, "netns", ns], check=True)
        subprocess.run(["ip", "addr", "add", "10.213.77.1/30", "dev", host_if], check=True)
        subprocess.run(["ip", "link", "set", host_if, "up"], check=True)
        for cmd in (["addr", "add", "10.213.77.2/30", "dev", peer], ["link", "set", peer, "up"],
                    ["link", "set", "lo", "up"]):  # fmt: skip
            subprocess.run(["ip", "netns", "exec", ns, "ip", *cmd], check=True)
        server = subprocess.Popen(["ip", "netns", "exec", ns, "busybox", "nc", "-l", "-p", "7707", "-e", "echo",
                                   "from-outside"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            yield "10.213.77.2", 7707
        finally:
            server.kill()
            server.wait()
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_published_ports_user_networks_and_outbound(
    users: tuple[User, User, User], tmp_path: Any
) -> None:
    alice, _, _ = users
    port = _free_port()
    alice("run", "-d", "--name", "web", "-p", f"{port}:80", "busybox", "sh", "-c",
          "echo served-rootless > /index.html && httpd -f -p 80 -h /")  # fmt: skip
    try:
        wait_for_port(port)
        body = _get(port)
        assert body == "served-rootless", body
        assert f"0.0.0.0:{port}->80/tcp" in alice("ps").stdout
        assert alice("port", "web").stdout.strip() == f"80/tcp -> 0.0.0.0:{port}"
        # several connections at once, both ways, a megabyte each
        # several connections at once, a megabyte each
        alice("exec", "web", "sh", "-c", "head -c 1048576 /dev/zero > /big")
        sizes: list[int] = []
        threads = [
            threading.Thread(target=lambda: sizes.append(len(_raw_get(port, "/big"))))
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sizes == [1 << 20] * 8
        refused = alice("run", "--rm", "-p", "80:80", "busybox", "true", ok=False)
        assert refused.returncode == 125 and "cannot expose privileged port 80" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    finally:
        alice("rm", "-f", "web")
    until("the port closed", lambda: not _listening(port))
    # two containers find each other by name on a user network
    alice("network", "create", "rlnet")
    try:
        alice("run", "-d", "--name", "named", "--network", "rlnet", "busybox", "sh", "-c",
              "echo by-name > /index.html && httpd -f -p 80 -h /")  # fmt: skip
        got = alice("run", "--rm", "--network", "rlnet", "busybox", "sh", "-c",
                    "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc named 80")  # fmt: skip
        assert got.stdout.endswith("by-name\n"), got.stdout
        alice("rm", "-f", "named")
    finally:
        alice("network", "rm", "rlnet", ok=False)
    # outbound: through slirp4netns to a namespace of this test's, reached from the host
    for addr, oport in _outside_server(tmp_path):
        out = alice("run", "--rm", "busybox", "nc", "-w", "5", addr, str(oport))
        assert out.stdout.strip() == "from-outside", out


def _raw_get(port: int, path: str = "/") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    return data.partition(b"\r\n\r\n")[2]


def _get(port: int, path: str = "/") -> str:
    return _raw_get(port, path).decode(errors="replace").strip()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def test_compose_pods_and_kube_as_the_user(users: tuple[User, User, User]) -> None:
    alice, _, _ = users
    proj = os.path.join(alice.home, "proj")
    os.makedirs(proj)
    port, pod_port = _free_port(), _free_port()
    with open(os.path.join(proj, "compose.yaml"), "w") as f:
        f.write("services:\n  web:\n    image: busybox\n"
                "    command: sh -c 'echo composed > /index.html && httpd -f -p 80 -h /'\n"
                f"    ports: ['{port}:80']\n  cli:\n    image: busybox\n    command: sleep 300\n")  # fmt: skip
    with open(os.path.join(proj, "pod.yaml"), "w") as f:
        f.write("apiVersion: v1\nkind: Pod\nmetadata:\n  name: kp\nspec:\n  containers:\n  - name: c\n"
                "    image: busybox\n    command: ['sleep', '300']\n")  # fmt: skip
    subprocess.run(["chown", "-R", f"{alice.uid}:{alice.gid}", proj], check=True)
    compose = ("compose", "-f", os.path.join(proj, "compose.yaml"))
    alice(*compose, "up", "-d")
    try:
        wait_for_port(port)
        assert _get(port) == "composed"
        got = alice(
            *compose,
            "exec",
            "-T",
            "cli",
            "sh",
            "-c",
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc web 80",
        )
        assert got.stdout.endswith("composed\n"), got.stdout
    finally:
        alice(*compose, "down")
    assert alice("ps", "-aq").stdout == ""
    alice("pod", "create", "--name", "pw", "-p", f"{pod_port}:80")
    try:
        alice(
            "run",
            "-d",
            "--pod",
            "pw",
            "busybox",
            "sh",
            "-c",
            "echo podded > /index.html && httpd -f -p 80 -h /",
        )
        wait_for_port(pod_port)
        assert _get(pod_port) == "podded"
    finally:
        alice("pod", "rm", "-f", "pw")
    alice("kube", "play", os.path.join(proj, "pod.yaml"))
    assert "kp-c" in alice("ps", "--format", "{{.Names}}").stdout.split()
    alice("kube", "down", os.path.join(proj, "pod.yaml"))
    assert alice("ps", "-aq").stdout == ""


def test_limits_are_discarded_in_one_line(users: tuple[User, User, User]) -> None:
    alice, _, _ = users
    out = alice("run", "--rm", "-m", "64m", "--cpus", "1", "busybox", "echo", "ran")
    assert out.stdout == "ran\n"
    assert out.stderr.strip().splitlines() == [
        "WARNING: this host does not delegate cgroups to this user (rootless): Memory, NanoCpus discarded"
    ]


def test_another_user_cannot_reach_the_first(users: tuple[User, User, User]) -> None:
    alice, bob, _ = users
    alice("run", "-d", "--name", "private", "busybox", "sleep", "300")
    server = subprocess.Popen(alice.argv("system", "service", "--time", "0"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, cwd=alice.home)  # fmt: skip
    try:
        until("the socket", lambda: os.path.exists(alice.sock))
        assert stat.S_IMODE(os.stat(alice.sock).st_mode) == 0o600
        assert "private" not in bob("ps", "-a").stdout
        probe = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect(sys.argv[1])\n"
                 " print('connected')\nexcept OSError as e:\n print(type(e).__name__)\n")  # fmt: skip
        for target in (alice.sock,):
            got = subprocess.run(["runuser", "-u", bob.name, "--", "/usr/bin/python3", "-c", probe, target],
                                 capture_output=True, text=True).stdout.strip()  # fmt: skip
            assert got == "PermissionError", got
        for path in (alice.data_root, os.path.join(alice.run_dir, "dockyard")):
            listing = subprocess.run(
                ["runuser", "-u", bob.name, "--", "ls", path], capture_output=True, text=True
            )
            assert listing.returncode != 0 and "Permission denied" in listing.stderr
        # bob's engine pointed at alice's state is refused by the kernel, not by politeness
        peek = bob("--root", alice.data_root, "ps", "-a", ok=False)
        assert peek.returncode != 0 and "private" not in peek.stdout
        # the docker CLI reaches alice's containers through her socket, as her
        listed = subprocess.run(["runuser", "-u", alice.name, "--", "env", f"DOCKER_HOST=unix://{alice.sock}",
                                 f"HOME={alice.home}", "docker", "ps", "--format", "{{.Names}}"],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert listed.stdout.split() == ["private"], listed.stderr
    finally:
        server.terminate()
        server.wait(timeout=20)
        alice("rm", "-f", "private")


def test_only_the_users_own_id_without_ranges(users: tuple[User, User, User]) -> None:
    _, _, carol = users
    boot = carol("image", "bootstrap", "busybox")
    assert (
        "only your own ID is mapped" in boot.stderr and len(boot.stderr.strip().splitlines()) == 1
    )
    out = carol(
        "run", "--rm", "busybox", "sh", "-c", "id -u; cat /proc/self/uid_map"
    ).stdout.split()
    assert out == ["0", "0", str(carol.uid), "1"]
    assert "only the user's own ID" in carol("info").stdout
    carol("rm", "-f", *carol("ps", "-aq").stdout.split(), ok=False)


def test_nothing_is_left_of_the_containers(users: tuple[User, User, User]) -> None:
    alice, _, _ = users
    port = _free_port()
    alice("network", "create", "leftover")
    alice(
        "run",
        "-d",
        "--name",
        "l1",
        "-p",
        f"{port}:80",
        "--network",
        "leftover",
        "busybox",
        "httpd",
        "-f",
    )
    alice("run", "-d", "--name", "l2", "busybox", "sleep", "300")
    alice("run", "--rm", "busybox", "true")
    holder = alice.holder()
    with open(f"/proc/{holder}/mountinfo") as f:
        assert alice.data_root in f.read()  # the running containers' roots, in the user's namespace
    alice("rm", "-f", "l1", "l2")
    alice("network", "rm", "leftover")
    until("only the holder and slirp4netns", lambda: len(alice.processes()) == 2)
    kinds = sorted(p.split(None, 2)[2].split()[0] for p in alice.processes())
    assert kinds == ["/usr/bin/sleep", "/usr/bin/slirp4netns"], alice.processes()
    with open(f"/proc/{holder}/mountinfo") as f:
        assert alice.data_root not in f.read()

    def veths() -> str:
        out = subprocess.run(["nsenter", "-t", str(holder), "-U", "-n", "--preserve-credentials", "ip", "-o", "link"],
                             capture_output=True, text=True).stdout  # fmt: skip
        return "\n".join(ln for ln in out.splitlines() if "@if" in ln)

    # the kernel frees the veths with their namespaces, in the background
    until("no veth in the user's namespace", lambda: not veths(), timeout=10)
    assert not _listening(port)
