"""Pods: containers that share the infra's network namespace (localhost between them, ports
published by the pod), IPC and host name; started, stopped and removed together."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from .conftest import Dy, engine_for_module, http_get, until

pytestmark = pytest.mark.root

SERVER = ("sh", "-c", "trap 'exit 0' TERM; mkdir -p /w && echo from-pod > /w/index.html; "
          "echo serving; httpd -f -p 80 -h /w & wait")  # fmt: skip


@pytest.fixture(scope="module")
def dy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dy]:
    yield from engine_for_module(tmp_path_factory, "pods")


def test_a_pod_shares_network_ipc_and_name(dy: Dy) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        pod_id = dy("pod", "create", "--name", "web", "-p", f"127.0.0.1:{port}:80").stdout.strip()
        assert len(pod_id) == 64
        dy("run", "-d", "--pod", "web", "--name", "web-srv", "busybox", *SERVER)
        until("the pod answers on the host", lambda: http_get(port) == "from-pod")
        probe = "hostname; readlink /proc/self/ns/ipc; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 80 | tail -1"
        name, ipc, body = dy(
            "run", "--rm", "--pod", "web", "busybox", "sh", "-c", probe
        ).stdout.split()
        assert (name, body) == ("web", "from-pod")  # the pod's host name; the server on localhost
        assert ipc == dy("exec", "web-srv", "readlink", "/proc/self/ns/ipc").stdout.strip()
        ps = dy("ps", "--pod", "--format", "{{.Names}} {{.Pod}} {{.PodName}}").stdout.split("\n")
        assert (
            "web-srv " + pod_id[:12] + " web" in ps
            and f"{pod_id[:12]}-infra {pod_id[:12]} web" in ps
        )
        listed = dy("pod", "ls").stdout.splitlines()
        assert listed[0].split()[:3] == ["POD", "ID", "NAME"] and listed[1].split()[1:3] == [
            "web",
            "Running",
        ]
        assert listed[1].split()[-1] == "2"
        info = json.loads(dy("pod", "inspect", "web").stdout)
        assert (info["Id"], info["State"], info["SharedNamespaces"]) == (
            pod_id,
            "Running",
            ["net", "ipc", "uts"],
        )
        assert "web-srv" in [c["Name"] for c in info["Containers"]]
        assert "httpd" in dy("pod", "top", "web").stdout
        assert "web-srv  | serving" in dy("pod", "logs", "web").stdout
        # together: stopped, started, and the port answers again
        dy("pod", "stop", "-t", "2", "web")
        assert dy("pod", "ls").stdout.splitlines()[1].split()[2] == "Exited"
        assert dy("inspect", "-f", "{{.State.Status}}", "web-srv").stdout.strip() == "exited"
        assert http_get(port) == ""
        dy("pod", "start", "web")
        until("the pod answers again", lambda: http_get(port) == "from-pod")
        # refusals, one line each
        for args, message in (
            (("rm", "-f", f"{pod_id[:12]}-infra"), "is the infra container of a pod and cannot be removed"),
            (("pod", "rm", "web"), "pod web has running containers (web-srv): stop them or use -f"),
            (("pod", "create", "--name", "web"), "pod web already exists"),
            (("pod", "create", "--share", "net,pid"), "invalid kernel namespace to share: pid"),
            (("run", "--rm", "--pod", "web", "-p", "81", "busybox", "true"), "published ports belong to the pod"),
            (("run", "--rm", "--pod", "nosuch", "busybox", "true"), "no pod with name or ID nosuch found"),
        ):  # fmt: skip
            proc = dy(*args, ok=False)
            assert (
                proc.returncode != 0
                and message in proc.stderr
                and len(proc.stderr.splitlines()) == 1
            ), (
                args,
                proc.stderr,
            )
        dy("pod", "rm", "-f", "web")
        assert dy("pod", "ls", "-q").stdout == ""
        assert dy("ps", "-a", "--filter", f"label=io.dockyard.pod={pod_id}", "-q").stdout == ""
        assert http_get(port) == ""
    finally:
        dy("pod", "rm", "-f", "web", ok=False)


def test_init_containers_and_the_pods_restart_policy(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Init containers run to completion, in order, before the others at each ``pod start``
    (``once``: at the first only, then they are gone); a failing one stops the start with
    its code. Members without a policy of their own get the pod's (Kubernetes' words too)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    vol = f"{shared}:/s"
    try:
        dy("pod", "create", "--name", "ini", "--restart", "OnFailure")
        dy("create", "--pod", "ini", "--init-ctr", "always", "--name", "ini-first", "-v", vol, "busybox", "sh", "-c",
           "echo first >> /s/order")  # fmt: skip
        dy("create", "--pod", "ini", "--init-ctr", "once", "--name", "ini-second", "-v", vol, "busybox", "sh", "-c",
           "sleep 0.3; echo second >> /s/order")  # fmt: skip
        dy("create", "--pod", "ini", "--name", "ini-main", "-v", vol, "busybox", "sh", "-c",
           "echo main >> /s/order; exec sleep 300")  # fmt: skip
        assert (
            dy("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", "ini-main").stdout.strip()
            == "on-failure"
        )
        assert json.loads(dy("pod", "inspect", "ini").stdout)["RestartPolicy"] == "on-failure"
        dy("pod", "start", "ini")
        until("main ran", lambda: "main" in (shared / "order").read_text())
        assert (shared / "order").read_text().split() == ["first", "second", "main"]
        assert dy("inspect", "ini-second", ok=False).returncode != 0  # once: gone after its run
        dy("pod", "stop", "-t", "1", "ini")
        dy("pod", "start", "ini")
        until("main ran again", lambda: (shared / "order").read_text().split().count("main") == 2)
        assert (shared / "order").read_text().split() == [
            "first",
            "second",
            "main",
            "first",
            "main",
        ]
        dy(
            "create",
            "--pod",
            "ini",
            "--init-ctr",
            "always",
            "--name",
            "ini-broken",
            "busybox",
            "sh",
            "-c",
            "exit 3",
        )
        dy("pod", "stop", "-t", "1", "ini")
        failed = dy("pod", "start", "ini", ok=False)
        assert (
            failed.returncode == 125
            and "init container ini-broken of pod ini exited with 3" in failed.stderr
        )
        assert (
            dy("inspect", "-f", "{{.State.Status}}", "ini-main").stdout.strip() == "exited"
        )  # not started
        refused = dy(
            "run", "--rm", "--pod", "ini", "--init-ctr", "once", "busybox", "true", ok=False
        )
        assert "--init-ctr is for create" in refused.stderr
        refused = dy("create", "--init-ctr", "once", "busybox", "true", ok=False)
        assert refused.stderr.strip() == "dockyard: --init-ctr needs --pod"
    finally:
        dy("pod", "rm", "-f", "ini", ok=False)
