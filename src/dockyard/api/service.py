"""``dockyard system service``: the Engine API on a Unix socket (or TLS over TCP).

The service is one face of the engine, not its owner: containers keep their own monitors,
so stopping the service leaves them running, and the CLI sees the same state at the
same moment. The socket is made 0660, owned by root and the ``docker`` group where one
exists, as dockerd's; a socket passed by systemd (``LISTEN_FDS``) is used as it is.
``--time N`` ends the service after N idle seconds (no request, no open stream).
"""

from __future__ import annotations

import os
import signal
import socket
import threading

from dockyard.errors import Conflict, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["DEFAULT_URI", "default_uri", "listening_socket", "serve"]

DEFAULT_URI = "unix:///run/dockyard/dockyard.sock"


def default_uri() -> str:
    """Root's ``DEFAULT_URI``; a rootless user's socket in the user's run directory."""
    from dockyard import rootless

    if rootless.active():
        return f"unix://{rootless.run_dir()}/dockyard.sock"
    return DEFAULT_URI
_SD_LISTEN_FDS_START = 3


def _systemd_socket() -> socket.socket | None:
    """The first socket systemd passed (socket activation), if it passed any to us."""
    if (
        os.environ.get("LISTEN_PID") != str(os.getpid())
        or int(os.environ.get("LISTEN_FDS") or 0) < 1
    ):
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for our children
    fd = _SD_LISTEN_FDS_START
    os.set_inheritable(fd, False)
    return socket.socket(fileno=fd)


def _unix_socket(path: str) -> socket.socket:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # a stale socket of a service that ended
        else:
            raise Conflict(f"another service is listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}.tmp"
    old_umask = os.umask(0o117)
    try:
        sock.bind(tmp)
    finally:
        os.umask(old_umask)
    from dockyard import rootless

    if rootless.active():
        os.chmod(tmp, 0o600)  # the user's alone: no group of the host's may drive their engine
    else:
        os.chmod(tmp, 0o660)
        try:
            import grp

            os.chown(tmp, 0, grp.getgrnam("docker").gr_gid)
        except KeyError:
            pass  # no docker group: root's only, as dockerd without one
    os.rename(tmp, path)  # appears only once it is bound with its mode and owner
    sock.listen(128)
    return sock


def listening_socket(uri: str) -> tuple[socket.socket, str | None]:
    """(the listening socket, the path to remove at the end) for ``uri``."""
    activated = _systemd_socket()
    if activated is not None:
        return activated, None
    if uri.startswith("unix://"):
        path = uri[len("unix://") :]
        return _unix_socket(path), path
    if uri.startswith("/"):
        return _unix_socket(uri), uri
    raise InvalidArgument(f"unsupported address {uri!r}: unix:///path, or tcp://host:port with TLS")


def _tcp_address(uri: str) -> tuple[str, int]:
    host, _, port = uri[len("tcp://") :].rpartition(":")
    if not host or not port.isdigit():
        raise InvalidArgument(f"invalid address {uri!r}: want tcp://HOST:PORT")
    return host.strip("[]"), int(port)


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class _Memory:
    """Keeps an idle service small: few malloc arenas (glibc makes one per thread, up to
    eight per core, each holding freed memory), and what is free handed back to the system
    once requests stop (a log read or a build leaves megabytes behind otherwise)."""

    _M_ARENA_MAX = -8

    def __init__(self) -> None:
        import ctypes

        try:
            self.libc: Any = ctypes.CDLL("libc.so.6")
            self.libc.mallopt(self._M_ARENA_MAX, 2)
        except (OSError, AttributeError):  # not glibc: nothing to tune
            self.libc = None
        self.trimmed_at = -1.0

    def trim_if_idle(self, server: Any) -> None:
        if self.libc is None or server.idle_for() < 1 or self.trimmed_at == server.last_activity:
            return
        self.trimmed_at = server.last_activity
        self.libc.malloc_trim(0)


def serve(root: str, snapshotter: str, uri: str = DEFAULT_URI, idle: float = 5.0,
          tls: dict[str, Any] | None = None, insecure_loopback: bool = False,
          ready: Callable[[str], None] | None = None) -> None:  # fmt: skip
    """Serve until SIGTERM/SIGINT, or ``idle`` seconds without a request (0: for ever)."""
    from dockyard import __version__
    from dockyard.api import http
    from dockyard.api.routes import API, Router
    from dockyard.engine.containers import Engine, reap_spawned

    memory = _Memory()
    engine = Engine(root, snapshotter)
    router = Router(API(engine))
    server: Any
    path = None
    if uri.startswith("tcp://"):
        host, port = _tcp_address(uri)
        context = None
        if tls and tls.get("verify"):
            context = _tls_context(tls)
        elif not (insecure_loopback and _is_loopback(host)):
            raise InvalidArgument("plain TCP is refused: use --tlsverify with --tlscacert, --tlscert and "
                                  "--tlskey, or a Unix socket (loopback only: --insecure-tcp)")  # fmt: skip
        server = http.TCPAPIServer((host, port), router, context)
        where = f"tcp://{host}:{server.server_address[1]}"
    else:
        sock, path = listening_socket(uri)
        server = http.UnixAPIServer(sock, router)
        where = uri
    server.server_version = __version__
    server.log_requests = bool(os.environ.get("DOCKYARD_API_LOG"))
    stop = threading.Event()

    def shutdown(*_args: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    serving = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
    )
    serving.start()
    if ready is not None:
        ready(where)
    try:
        while not stop.wait(0.5):
            reap_spawned()
            memory.trim_if_idle(server)
            if idle > 0 and server.idle_for() >= idle:
                break
    finally:
        server.shutdown()
        server.server_close()
        if path is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        reap_spawned()


def _tls_context(tls: dict[str, Any]) -> Any:
    import ssl

    for key in ("cacert", "cert", "key"):
        if not tls.get(key):
            raise InvalidArgument(f"--tlsverify needs --tls{key}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls["cert"], tls["key"])
    context.load_verify_locations(tls["cacert"])
    context.verify_mode = (
        ssl.CERT_REQUIRED
    )  # a client certificate the CA signed, as dockerd --tlsverify
    return context
