"""docker-py (PyPI's ``docker``) drives dockyard through the Engine API: containers,
images, networks, volumes and events, as a Python program using Docker would."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .api_support import serving
from .conftest import Dy, engine_for_module

docker = pytest.importorskip("docker")

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def dy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dy]:
    yield from engine_for_module(tmp_path_factory, "api-py")


@pytest.fixture(scope="module")
def stack(dy: Dy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from serving(dy.root, str(tmp_path_factory.mktemp("api-py-sock")))


@pytest.fixture(scope="module")
def client(stack: Any) -> Iterator[Any]:
    _service, _proxy, env = stack
    c = docker.DockerClient(base_url=env["DOCKER_HOST"], timeout=60)
    yield c
    c.close()


@pytest.fixture(autouse=True)
def _answers_fit_the_schema(stack: Any) -> Iterator[None]:
    yield
    proxy = stack[1]
    found, proxy.violations[:] = list(proxy.violations), []
    assert not found, "responses that do not fit the Engine API's schema:\n" + "\n".join(found)


def test_containers_with_docker_py(client: Any) -> None:
    assert client.ping() is True
    assert client.containers.run("busybox", ["echo", "hi"], remove=True) == b"hi\n"
    with pytest.raises(docker.errors.ContainerError) as failed:
        client.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 3"], remove=True)
    assert failed.value.exit_status == 3
    with pytest.raises(docker.errors.ImageNotFound):
        client.containers.run("no-such-image:1", ["true"])
    c = client.containers.run("busybox", ["sh", "-c", "echo up; sleep 300"], detach=True, name="py-web",
                              labels={"tier": "py"})  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while b"up" not in c.logs():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        c.reload()
        assert c.status == "running" and c.name == "py-web" and c.labels == {"tier": "py"}
        assert [x.name for x in client.containers.list(filters={"label": "tier=py"})] == ["py-web"]
        result = c.exec_run(["sh", "-c", "echo out; echo err >&2; exit 2"], demux=True)
        assert result.exit_code == 2 and result.output == (b"out\n", b"err\n")
        # put_archive / get_archive: docker cp's API
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = b"archived\n"
            info = tarfile.TarInfo("put.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        assert c.put_archive("/tmp", buf.getvalue()) is True
        assert c.exec_run(["cat", "/tmp/put.txt"]).output == b"archived\n"
        stream, stat = c.get_archive("/tmp/put.txt")
        assert stat["name"] == "put.txt" and stat["size"] == 9
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            assert tar.extractfile("put.txt").read() == b"archived\n"  # type: ignore[union-attr]
        stats = c.stats(stream=False)
        assert stats["pids_stats"]["current"] >= 1 and "memory_stats" in stats
        c.stop(timeout=1)
        assert c.wait()["StatusCode"] == 137
    finally:
        c.remove(force=True)


def test_attach_socket_with_docker_py(client: Any) -> None:
    c = client.containers.create(
        "busybox", ["sh", "-c", "read line; echo got $line"], stdin_open=True
    )
    try:
        sock = c.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
        c.start()
        sock._sock.sendall(b"hello\n")
        sock._sock.shutdown(1)  # stdin ends; output keeps coming
        out = b""
        deadline = time.monotonic() + 20
        while b"got hello" not in out:
            assert time.monotonic() < deadline
            chunk = sock._sock.recv(4096)
            if not chunk:
                break
            out += chunk
        assert b"got hello" in out
        sock.close()
        assert c.wait()["StatusCode"] == 0
    finally:
        c.remove(force=True)


def test_images_with_docker_py(client: Any, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nARG WHO=nobody\nRUN echo $WHO > /who\nCMD cat /who\n"
    )
    image, logs = client.images.build(path=str(tmp_path), tag="pyimg:1", buildargs={"WHO": "py"})
    assert any("Successfully tagged pyimg:1" in (entry.get("stream") or "") for entry in logs)
    assert client.containers.run("pyimg:1", remove=True) == b"py\n"
    image.tag("pyimg", "2")
    assert {"pyimg:1", "pyimg:2"} <= set(client.images.get("pyimg:1").tags)
    saved = b"".join(image.save(named=True))
    client.images.remove("pyimg:2")
    client.images.remove("pyimg:1")
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("pyimg:1")
    loaded = client.images.load(saved)
    assert loaded and "pyimg:1" in loaded[0].tags
    with pytest.raises(docker.errors.BuildError):
        (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN exit 4\n")
        client.images.build(path=str(tmp_path), tag="pybad:1")
    client.images.remove("pyimg:1")


def test_networks_volumes_and_events_with_docker_py(client: Any) -> None:
    since = int(time.time())
    net = client.networks.create("pynet", labels={"k": "v"})
    vol = client.volumes.create("pyvol", labels={"k": "v"})
    try:
        assert [n.name for n in client.networks.list(filters={"label": "k=v"})] == ["pynet"]
        assert client.volumes.get("pyvol").attrs["Labels"] == {"k": "v"}
        c = client.containers.run("busybox", ["sleep", "300"], detach=True, network="pynet",
                                  volumes={"pyvol": {"bind": "/data", "mode": "rw"}})  # fmt: skip
        try:
            net.reload()
            assert c.id in net.attrs["Containers"]
            other = client.networks.create("pynet2")
            other.connect(c, aliases=["second"])
            c.reload()
            assert "pynet2" in c.attrs["NetworkSettings"]["Networks"]
            other.disconnect(c)
            other.remove()
        finally:
            c.remove(force=True)
    finally:
        net.remove()
        vol.remove()
    until = int(time.time()) + 1
    seen = [(e["Type"], e["Action"]) for e in client.events(since=since, until=until, decode=True)]
    assert (
        ("network", "create") in seen
        and ("volume", "create") in seen
        and ("container", "start") in seen
    )
