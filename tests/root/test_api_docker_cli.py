"""The real docker CLI (28.x on PATH) drives dockyard through the Engine API, unchanged:
``DOCKER_HOST`` points at ``dockyard system service``. Every JSON answer it receives is
checked against the Engine API's schema on the way (``api_support.ValidatingProxy``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator

import pytest

from .api_support import Service, ValidatingProxy, serving
from .conftest import DOCKYARD, Dy, engine_for_module, on_a_terminal, wait_for_port

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed"),
]


class Docker:
    """The docker CLI with DOCKER_HOST at the proxy, and a config directory of its own."""

    def __init__(self, env: dict[str, str], proxy: ValidatingProxy, service: Service) -> None:
        self.env, self.proxy, self.service = env, proxy, service

    def __call__(
        self, *args: str, ok: bool = True, timeout: float = 60, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout, **kw)  # type: ignore[call-overload]  # fmt: skip
        if ok:
            assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr}"
        return proc


@pytest.fixture(scope="module")
def dy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dy]:
    yield from engine_for_module(tmp_path_factory, "api-cli")


@pytest.fixture(scope="module")
def docker(dy: Dy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docker]:
    for service, proxy, env in serving(dy.root, str(tmp_path_factory.mktemp("api"))):
        yield Docker(env, proxy, service)


@pytest.fixture(autouse=True)
def _answers_fit_the_schema(docker: Docker) -> Iterator[None]:
    yield
    found, docker.proxy.violations[:] = list(docker.proxy.violations), []
    assert not found, "responses that do not fit the Engine API's schema:\n" + "\n".join(found)


def test_run_through_the_api(docker: Docker) -> None:
    assert docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip() == "1.44"
    assert docker("run", "--rm", "busybox", "echo", "hello").stdout == "hello\n"
    assert docker("run", "--rm", "busybox", "sh", "-c", "exit 3", ok=False).returncode == 3
    missing = docker("run", "--rm", "busybox", "no-such-command", ok=False)
    assert missing.returncode == 127 and "no-such-command" in missing.stderr
    # --rm: nothing left behind; without it, the container stays with its exit code
    assert docker("ps", "-aq").stdout == ""
    docker(
        "run", "--name", "kept", "busybox", "sh", "-c", "echo out; echo err >&2; exit 4", ok=False
    )
    assert (
        docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "kept").stdout
        == "exited 4\n"
    )
    logs = docker("logs", "kept")
    assert (logs.stdout, logs.stderr) == ("out\n", "err\n")
    assert docker("rm", "kept").stdout == "kept\n"
    # piped stdin with -i
    assert (
        docker("run", "-i", "--rm", "busybox", "tr", "a-z", "A-Z", input="piped\n").stdout
        == "PIPED\n"
    )


def _terminal(docker: Docker, argv: list[str]) -> tuple[int, str]:
    """``argv`` at a 40x97 terminal: stdin, stdout and stderr a pty, as ``-it`` wants."""
    return on_a_terminal(argv, columns=97, rows=40, stdin=True, env=docker.env)


def test_a_terminal_through_the_api(docker: Docker) -> None:
    code, out = _terminal(
        docker, ["docker", "run", "-it", "--rm", "busybox", "sh", "-c", "tty; stty size"]
    )
    # docker sends its terminal's size with the create (ConsoleSize): right from the start
    assert code == 0 and "/dev/pts/" in out and "40 97" in out, out
    docker("run", "-d", "--name", "shell", "busybox", "sleep", "300")
    try:
        code, out = _terminal(docker, ["docker", "exec", "-it", "shell", "sh", "-c", "tty; exit 5"])
        assert code == 5 and "/dev/pts/" in out, out
    finally:
        docker("rm", "-f", "shell")


def test_a_detached_container_through_its_life(docker: Docker, dy: Dy) -> None:
    cid = docker("run", "-d", "--name", "web", "-l", "tier=front", "busybox",
                 "sh", "-c", "echo started; trap 'exit 0' TERM; while true; do sleep 0.1; done").stdout.strip()  # fmt: skip
    try:
        assert len(cid) == 64
        listed = docker(
            "ps", "--filter", "label=tier=front", "--format", "{{.ID}} {{.Names}} {{.Status}}"
        ).stdout
        assert listed.startswith(f"{cid[:12]} web Up")
        assert (
            docker("inspect", "-f", "{{.State.Running}} {{.Name}}", "web").stdout == "true /web\n"
        )
        # the dockyard CLI sees the same container at the same moment (daemonless)
        assert dy("inspect", "-f", "{{.State.Status}}", "web").stdout == "running\n"
        deadline = time.monotonic() + 10
        while "started" not in docker("logs", "web").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "sh" in docker("top", "web").stdout
        docker("pause", "web")
        assert docker("inspect", "-f", "{{.State.Status}}", "web").stdout == "paused\n"
        docker("unpause", "web")
        assert docker("stop", "-t", "5", "web").stdout == "web\n"
        assert (
            docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "web").stdout
            == "exited 0\n"
        )
        # stopping a stopped container and starting a running one are no-ops (304), as dockerd
        assert docker("stop", "web").returncode == 0
        docker("start", "web")
        assert docker("start", "web").returncode == 0
        docker("restart", "-t", "5", "web")
        assert docker(
            "inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "web"
        ).stdout.endswith("running\n")
        docker("rename", "web", "site")
        assert docker("ps", "--format", "{{.Names}}").stdout == "site\n"
        refused = docker("rm", "site", ok=False)
        assert refused.returncode == 1 and "You cannot remove a running container" in refused.stderr
        docker("kill", "site")
        assert docker("wait", "site").stdout == "137\n"
    finally:
        docker("rm", "-f", "site", "web", ok=False)


def test_exec_and_logs_through_the_api(docker: Docker) -> None:
    docker("run", "-d", "--name", "box", "busybox", "sh", "-c",
           "for i in 1 2 3 4 5; do echo line $i; done; sleep 300")  # fmt: skip
    try:
        out = docker("exec", "box", "sh", "-c", "echo out; echo err >&2; exit 6", ok=False)
        assert (out.returncode, out.stdout, out.stderr) == (6, "out\n", "err\n")
        assert docker("exec", "-i", "box", "cat", input="through exec\n").stdout == "through exec\n"
        docker("exec", "-d", "box", "sh", "-c", "echo detached > /tmp/d")
        deadline = time.monotonic() + 10
        while docker("exec", "box", "cat", "/tmp/d", ok=False).stdout != "detached\n":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while docker("logs", "box").stdout.count("line") < 5:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert docker("logs", "--tail", "2", "box").stdout == "line 4\nline 5\n"
        stamped = docker("logs", "-t", "--tail", "1", "box").stdout
        assert stamped.endswith(" line 5\n") and stamped[:4].isdigit()
        missing = docker("exec", "box", "no-such-cmd", ok=False)
        assert missing.returncode == 127
    finally:
        docker("rm", "-f", "box")
    # logs -f ends when the container does
    docker("run", "-d", "--name", "brief", "busybox", "sh", "-c", "sleep 0.5; echo bye")
    try:
        assert docker("logs", "-f", "brief", timeout=30).stdout == "bye\n"
    finally:
        docker("rm", "-f", "brief")


def test_cp_both_ways_and_the_filesystem_verbs(docker: Docker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    docker(
        "run",
        "-d",
        "--name",
        "files",
        "busybox",
        "sh",
        "-c",
        "mkdir /w; echo inside > /w/a; sleep 300",
    )
    try:
        deadline = time.monotonic() + 10
        while docker("exec", "files", "cat", "/w/a", ok=False).returncode:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        docker("cp", "files:/w/a", str(tmp_path / "a"))
        assert (tmp_path / "a").read_text() == "inside\n"
        (tmp_path / "up").write_text("from the host\n")
        docker("cp", str(tmp_path / "up"), "files:/w/up")
        assert docker("exec", "files", "cat", "/w/up").stdout == "from the host\n"
        missing = docker("cp", "files:/nope", str(tmp_path / "x"), ok=False)
        assert missing.returncode == 1 and "/nope" in missing.stderr
        changes = docker("diff", "files").stdout.splitlines()
        assert "A /w" in changes and "A /w/up" in changes
        docker("export", "-o", str(tmp_path / "fs.tar"), "files")
        import tarfile

        with tarfile.open(tmp_path / "fs.tar") as tar:
            assert "w/up" in tar.getnames()
        stats = docker("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "files").stdout
        assert stats.split()[0] == "files" and int(stats.split()[1]) >= 1
    finally:
        docker("rm", "-f", "files")


def test_build_and_the_image_verbs(docker: Docker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "Dockerfile").write_text(
        'FROM busybox\nCOPY note /note\nRUN echo built >> /note\nCMD ["cat", "/note"]\n'
    )
    (tmp_path / "note").write_text("copied\n")
    built = docker("build", "-t", "mine:1", str(tmp_path))
    assert "Successfully tagged mine:1" in built.stdout
    assert docker("run", "--rm", "mine:1").stdout == "copied\nbuilt\n"
    quiet = docker("build", "-q", "-t", "mine:1", str(tmp_path)).stdout.strip()
    assert (
        quiet.startswith("sha256:")
        and quiet == docker("image", "inspect", "-f", "{{.Id}}", "mine:1").stdout.strip()
    )
    failing = tmp_path / "bad"
    failing.mkdir()
    (failing / "Dockerfile").write_text("FROM busybox\nRUN exit 9\n")
    broken = docker("build", str(failing), ok=False)
    assert broken.returncode == 1 and "exit code: 9" in broken.stderr
    docker("tag", "mine:1", "mine:2")
    assert {"mine:1", "mine:2"} <= set(
        docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    )
    assert "CMD" in docker("history", "mine:1").stdout
    assert docker("rmi", "mine:2").stdout == "Untagged: mine:2\n"
    docker("save", "-o", str(tmp_path / "mine.tar"), "mine:1")
    removed = docker("rmi", "mine:1").stdout
    assert "Untagged: mine:1" in removed and "Deleted: sha256:" in removed
    loaded = docker("load", "-i", str(tmp_path / "mine.tar")).stdout
    assert "mine:1" in loaded
    assert docker("run", "--rm", "mine:1").stdout == "copied\nbuilt\n"
    docker("rmi", "mine:1")
    gone = docker("image", "inspect", "mine:1", ok=False)
    assert gone.returncode == 1 and "No such image: mine:1" in gone.stderr


def test_pull_push_and_login_against_a_local_registry(docker: Docker, dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("htpasswd") is None:
        pytest.fail("htpasswd is not installed (apt-get install apache2-utils)")
    subprocess.run(["htpasswd", "-Bbc", str(tmp_path / "htpasswd"), "tester", "secret"], check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    registry = subprocess.Popen([DOCKYARD, "--root", str(tmp_path / "reg-root"), "registry", "serve", "--addr", f"127.0.0.1:{port}",
                                 "--htpasswd", str(tmp_path / "htpasswd")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
    host = f"127.0.0.1:{port}"
    try:
        wait_for_port(port, registry)
        denied = docker(
            "login", "-u", "tester", "--password-stdin", host, input="wrong\n", ok=False
        )
        assert denied.returncode == 1
        assert (
            "Login Succeeded"
            in docker("login", "-u", "tester", "--password-stdin", host, input="secret\n").stdout
        )
        docker("tag", "busybox", f"{host}/team/box:1")
        pushed = docker("push", f"{host}/team/box:1").stdout
        assert "digest: sha256:" in pushed
        docker("rmi", f"{host}/team/box:1")
        pulled = docker("pull", f"{host}/team/box:1").stdout
        assert "Digest: sha256:" in pulled and pulled.rstrip().endswith(f"{host}/team/box:1")
        assert docker("run", "--rm", f"{host}/team/box:1", "echo", "pulled").stdout == "pulled\n"
        missing = docker("pull", f"{host}/team/nope:1", ok=False)
        assert missing.returncode == 1 and "not found" in missing.stderr
        docker("rmi", f"{host}/team/box:1")
    finally:
        registry.terminate()
        registry.wait(10)


def test_networks_and_volumes_through_the_api(docker: Docker) -> None:
    docker("network", "create", "--subnet", "10.214.9.0/24", "--label", "k=v", "appnet")
    docker("volume", "create", "--label", "k=v", "data")
    try:
        nets = docker("network", "ls", "--filter", "label=k=v", "--format", "{{.Name}}").stdout
        assert nets == "appnet\n"
        info = json.loads(docker("network", "inspect", "appnet").stdout)[0]
        assert info["IPAM"]["Config"][0]["Subnet"] == "10.214.9.0/24"
        docker("run", "-d", "--name", "db", "--network", "appnet", "--network-alias", "database",
               "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f; sleep 300")  # fmt: skip
        out = docker("run", "--rm", "--network", "appnet", "busybox", "nslookup", "database").stdout
        assert "10.214.9." in out
        docker("network", "create", "other")
        docker("network", "connect", "--alias", "second", "other", "db")
        assert "other" in docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", "db").stdout
        docker("network", "disconnect", "other", "db")
        docker("network", "rm", "other")
        assert docker("volume", "ls", "--format", "{{.Name}}").stdout.split() == ["data"]
        assert (
            docker("run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/f").stdout
            == "kept\n"
        )
        busy = docker("volume", "rm", "data", ok=False)
        assert busy.returncode == 1 and "in use" in busy.stderr
    finally:
        docker("rm", "-f", "db", ok=False)
        docker("volume", "rm", "data", ok=False)
        docker("network", "rm", "appnet", ok=False)


def test_events_df_info_and_prune(docker: Docker) -> None:
    since = str(int(time.time()))
    docker("run", "--rm", "--name", "evt", "busybox", "true")
    until = str(int(time.time()) + 1)
    events = docker("events", "--since", since, "--until", until, "--filter", "container=evt",
                    "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}").stdout.splitlines()  # fmt: skip
    assert events[:2] == ["container create evt", "container start evt"]
    assert "container die evt" in events and events[-1] == "container destroy evt"
    assert "Images" in docker("system", "df").stdout
    info = json.loads(docker("info", "--format", "{{json .}}").stdout)
    assert info["OSType"] == "linux" and info["Driver"] in ("overlay", "overlayfs", "copy", "vfs")
    docker("run", "--name", "stopped", "busybox", "true")
    assert "Deleted Containers" in docker("container", "prune", "-f").stdout
    assert docker("ps", "-aq").stdout == ""
    docker("network", "create", "unused")
    assert "unused" in docker("network", "prune", "-f").stdout
    assert "Total reclaimed space" in docker("system", "prune", "-f").stdout


def test_errors_are_dockerds(docker: Docker) -> None:
    nope = docker("inspect", "nope", ok=False)
    assert nope.returncode == 1 and "No such object: nope" in nope.stderr
    gone = docker("logs", "nope", ok=False)
    assert "No such container: nope" in gone.stderr
    bad = docker("run", "--rm", "no-such-image-here", ok=False)
    assert (
        bad.returncode == 125
        and "Unable to find image 'no-such-image-here:latest' locally" in bad.stderr
    )
    swarm = docker("service", "ls", ok=False)
    assert swarm.returncode == 1 and "not a swarm manager" in swarm.stderr
    assert docker("plugin", "ls", "--format", "{{.Name}}").stdout == ""


def test_the_socket_and_daemonless_containers(docker: Docker, dy: Dy) -> None:
    mode = os.stat(docker.service.sock).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    assert os.stat(docker.service.sock).st_uid == 0
    docker("run", "-d", "--name", "survivor", "busybox", "sleep", "300")
    try:
        docker.service.stop()
        # no service: the container runs on, and the dockyard CLI still drives it
        assert dy("inspect", "-f", "{{.State.Status}}", "survivor").stdout == "running\n"
        docker.service.__init__(docker.service.root, docker.service.sock)  # type: ignore[misc]
        assert docker("ps", "--format", "{{.Names}}").stdout == "survivor\n"
    finally:
        docker("rm", "-f", "survivor")
