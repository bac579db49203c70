"""The Engine API over TCP: only with TLS and a client certificate the CA signed (as
``dockerd --tlsverify``); plain TCP refused unless on loopback with ``--insecure-tcp``."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator

import pytest

from .conftest import DOCKYARD, Dy, engine_for_module, wait_for_port

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]


@pytest.fixture(scope="module")
def dy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dy]:
    yield from engine_for_module(tmp_path_factory, "api-tls")


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certs(d: str) -> None:
    """A CA, a server certificate for 127.0.0.1, and a client certificate, as docker's
    TLS guide makes them."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=test-ca", cwd=d)  # fmt: skip
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):  # fmt: skip
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)  # fmt: skip


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_only_with_tls_and_a_client_certificate(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = str(tmp_path)
    _certs(d)
    port = _port()
    # plain TCP: refused in one line, nothing served
    refused = subprocess.run([DOCKYARD, "--root", dy.root, "system", "service", f"tcp://127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    assert refused.returncode != 0 and "plain TCP is refused" in refused.stderr
    service = subprocess.Popen([DOCKYARD, "--root", dy.root, "system", "service", "--time", "0", "--tlsverify",
                                "--tlscacert", f"{d}/ca.pem", "--tlscert", f"{d}/server.pem", "--tlskey",
                                f"{d}/server-key.pem", f"tcp://127.0.0.1:{port}"], stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for_port(port, service)
        client_dir = tmp_path / "client"
        client_dir.mkdir()
        for src, dst in (
            ("ca.pem", "ca.pem"),
            ("client.pem", "cert.pem"),
            ("client-key.pem", "key.pem"),
        ):
            shutil.copy(f"{d}/{src}", client_dir / dst)
        env = {**os.environ, "DOCKER_HOST": f"tcp://127.0.0.1:{port}", "DOCKER_TLS_VERIFY": "1",
               "DOCKER_CERT_PATH": str(client_dir), "DOCKER_CONFIG": str(tmp_path / "cfg")}  # fmt: skip
        if shutil.which("docker"):
            out = subprocess.run(["docker", "run", "--rm", "busybox", "echo", "over tls"], env=env,
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
            assert out.returncode == 0 and out.stdout == "over tls\n", out.stderr
        # a client with no certificate gets no answer
        context = ssl.create_default_context(cafile=f"{d}/ca.pem")

        def without_certificate() -> None:
            with (socket.create_connection(("127.0.0.1", port), 5) as raw,
                  context.wrap_socket(raw, server_hostname="127.0.0.1") as tls):  # fmt: skip
                tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                if not tls.recv(64):
                    raise ConnectionError("closed without an answer")

        with pytest.raises(OSError):  # ssl.SSLError and ConnectionError are OSErrors
            without_certificate()
        # with one, /_ping answers
        context.load_cert_chain(f"{d}/client.pem", f"{d}/client-key.pem")
        with (socket.create_connection(("127.0.0.1", port), 5) as raw,
              context.wrap_socket(raw, server_hostname="127.0.0.1") as tls):  # fmt: skip
            tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert tls.recv(64).startswith(b"HTTP/1.1 200")
    finally:
        service.terminate()
        service.wait(30)
    # plain TCP on loopback only when asked for
    port = _port()
    service = subprocess.Popen([DOCKYARD, "--root", dy.root, "system", "service", "--time", "0", "--insecure-tcp",
                                f"tcp://127.0.0.1:{port}"], stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for_port(port, service)
        with socket.create_connection(("127.0.0.1", port), 5) as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(64).startswith(b"HTTP/1.1 200")
    finally:
        service.terminate()
        service.wait(30)
