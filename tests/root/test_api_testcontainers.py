"""testcontainers (PyPI) runs a container with an exposed port through dockyard's Engine
API, waits for its log line, execs in it, and reaches the mapped port from the test, as a
test suite using Docker would (``TC_HOST=127.0.0.1``: this machine is itself a container;
no Ryuk, which needs an image of its own from Docker Hub)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .api_support import serving
from .conftest import Dy, engine_for_module

# read when testcontainers is imported: the host is this machine's loopback, reached by the
# mapped port (testcontainers would take this machine, itself a container, for a Docker in
# Docker and use the bridge's gateway instead)
os.environ.setdefault("TC_HOST", "127.0.0.1")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
pytest.importorskip("testcontainers")

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def dy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dy]:
    yield from engine_for_module(tmp_path_factory, "api-tc")


@pytest.fixture(scope="module")
def stack(dy: Dy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from serving(dy.root, str(tmp_path_factory.mktemp("api-tc-sock")))


def test_a_testcontainers_container(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _service, proxy, env = stack
    monkeypatch.setenv("DOCKER_HOST", env["DOCKER_HOST"])
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    server = ("sh -c 'echo ready; while true; do echo -e \"HTTP/1.0 200 OK\\r\\n\\r\\nfrom dockyard\" "
              "| nc -l -p 8080; done'")  # fmt: skip
    ready = LogMessageWaitStrategy("ready").with_startup_timeout(30)
    with DockerContainer("busybox").with_command(server).with_exposed_ports(8080).waiting_for(ready) as c:
        host, port = c.get_container_host_ip(), int(c.get_exposed_port(8080))
        assert host == "127.0.0.1" and port > 0
        code, out = c.exec(["sh", "-c", "echo in-container"])
        assert code == 0 and out == b"in-container\n"
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    reply = b""
                    while chunk := s.recv(4096):
                        reply += chunk
                if b"from dockyard" in reply:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the mapped port never answered"
            time.sleep(0.1)
    assert not proxy.violations, proxy.violations
    assert os.environ.get("DOCKER_HOST") == env["DOCKER_HOST"]
