"""Compose v1 (Debian's docker-compose 1.29.2) and v2 (docker compose 2.40.3, a CLI plugin)
bring up a three-service project through dockyard's Engine API: a build (the classic
builder), a named volume, two user networks, a health check that gates ``depends_on``;
then ps, logs, exec, and ``down -v`` that leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .api_support import serving
from .conftest import Dy, engine_for_module

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed"),
]

PLUGIN = os.path.join(
    os.path.dirname(sys.executable), "..", "libexec", "cli-plugins", "docker-compose"
)

PROJECT = """\
services:
  db:
    image: busybox
    command: sh -c "echo db-up; sleep 1; touch /tmp/ready; sleep 300"
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      timeout: 2s
      retries: 30
    volumes: [data:/data]
    networks: [back]
  api:
    build: ./api
    depends_on:
      db:
        condition: service_healthy
    networks: [back, front]
  web:
    image: busybox
    depends_on: [api]
    networks: [front]
    command: sh -c "echo web-up; sleep 300"
volumes:
  data: {}
networks:
  back: {}
  front: {}
"""


@pytest.fixture(scope="module")
def dy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dy]:
    yield from engine_for_module(tmp_path_factory, "api-compose")


@pytest.fixture(scope="module")
def stack(dy: Dy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from serving(dy.root, str(tmp_path_factory.mktemp("api-compose-sock")))


@pytest.fixture()
def project(tmp_path) -> str:  # type: ignore[no-untyped-def]
    (tmp_path / "api").mkdir()
    (tmp_path / "docker-compose.yml").write_text(PROJECT)
    (tmp_path / "api" / "Dockerfile").write_text(
        'FROM busybox\nCMD ["sh", "-c", "nslookup db >/dev/null && echo api-up; sleep 300"]\n'
    )
    return str(tmp_path)


def _compose(stack: Any, project: str, name: str, version: int) -> Any:
    _service, _proxy, env = stack
    env = {**env, "COMPOSE_PROJECT_NAME": name}
    if version == 2:
        plugins = os.path.join(env["DOCKER_CONFIG"], "cli-plugins")
        if not os.path.exists(PLUGIN):
            pytest.fail(
                "the Compose v2 plugin is missing (bash scripts/install.sh --test fetches it)"
            )
        os.makedirs(plugins, exist_ok=True)
        if not os.path.exists(os.path.join(plugins, "docker-compose")):
            os.symlink(os.path.realpath(PLUGIN), os.path.join(plugins, "docker-compose"))
        base = ["docker", "compose"]
    else:
        if shutil.which("docker-compose") is None:
            pytest.fail("Compose v1 is missing (apt-get install docker-compose)")
        base = ["docker-compose"]

    def run(*args: str, ok: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*base, *args], cwd=project, env=env, capture_output=True, text=True, timeout=timeout
        )
        if ok:
            assert proc.returncode == 0, f"{' '.join(base + list(args))}: {proc.stderr}"
        return proc

    return run


def _docker(stack: Any, *args: str) -> str:
    return subprocess.run(["docker", *args], env=stack[2], capture_output=True, text=True, check=True,
                          timeout=60).stdout  # fmt: skip


@pytest.mark.parametrize("version", [1, 2], ids=["compose-v1", "compose-v2"])
def test_a_compose_project_up_and_down(stack: Any, project: str, version: int) -> None:
    name = f"demo{version}"
    compose = _compose(stack, project, name, version)
    try:
        compose("up", "-d")
        ps = compose("ps").stdout
        assert ps.count("Up") >= 3 and "healthy" in ps
        # depends_on waited for db's health check: api started after db was healthy
        db = f"{name}{'_' if version == 1 else '-'}db{'_' if version == 1 else '-'}1"
        started = _docker(stack, "inspect", "-f", "{{.State.Health.Status}}", db).strip()
        assert started == "healthy"
        deadline = time.monotonic() + 30
        while True:
            logs = compose("logs", "--no-color").stdout
            if all(word in logs for word in ("db-up", "api-up", "web-up")):
                break
            assert time.monotonic() < deadline, logs
            time.sleep(0.2)
        # api is on both networks: it reaches db (back) and web (front); web does not see db
        assert "both" in compose("exec", "-T", "api", "sh", "-c",
                                 "nslookup db >/dev/null && nslookup web >/dev/null && echo both").stdout  # fmt: skip
        assert (
            "hidden"
            in compose(
                "exec", "-T", "web", "sh", "-c", "nslookup db >/dev/null || echo hidden"
            ).stdout
        )
        assert (
            compose("exec", "-T", "db", "sh", "-c", "echo kept > /data/f && cat /data/f").stdout
            == "kept\n"
        )
        assert f"{name}_data" in _docker(stack, "volume", "ls", "--format", "{{.Name}}")
    finally:
        compose("down", "-v", "--timeout", "1", ok=False)
    # nothing left: containers, the project's networks and volume
    assert _docker(stack, "ps", "-aq") == ""
    assert name not in _docker(stack, "network", "ls", "--format", "{{.Name}}")
    assert name not in _docker(stack, "volume", "ls", "--format", "{{.Name}}")
    _docker(stack, "rmi", f"{name}{'_' if version == 1 else '-'}api")
    assert not stack[1].violations, stack[1].violations
