"""HTTP/1.1 for the Engine API: requests in, JSON, streams and hijacked connections out.

Built on the standard library's ``http.server`` with a thread per connection: every
engine call blocks (SQLite, forks, waits), and the engine is safe to call from threads
(its database connection is per thread; monitors start without forking a threaded
process). A request handler is a function ``(Request) -> None`` that answers through the
request: ``send_json``, ``send_empty``, ``stream`` (chunked, flushed per write, for logs,
events, pulls, builds), or ``hijack`` (the raw socket after ``101 UPGRADED``, for
attach and exec).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler
from socketserver import TCPServer, UnixStreamServer
from urllib.parse import parse_qs, unquote, urlsplit

from dockyard import _json as json
from dockyard.errors import DockyardError, InvalidArgument, NotModified

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["APIServer", "Request", "Stream", "TCPAPIServer", "UnixAPIServer", "client_gone"]

_TRUE = ("1", "true", "True", "yes")


class Request:
    """One API request: ``path`` without its ``/v1.NN`` prefix, ``version`` the client's."""

    def __init__(self, handler: _Handler, method: str, path: str, version: tuple[int, int],
                 query: dict[str, list[str]]) -> None:  # fmt: skip
        self.handler = handler
        self.method = method
        self.path = path
        self.version = version
        self.query = query
        self.headers = handler.headers
        self.answered = False
        self.consumed = False
        self._body: bytes | None = None

    # -- the request

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        return list(self.query.get(name) or [])

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.arg(name)
        return default if value is None or value == "" else value in _TRUE

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        value = self.arg(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidArgument(f"invalid value for {name}: {value!r}") from None

    def body(self) -> bytes:
        if self._body is None:
            self._body = b"".join(self.body_chunks())
        return self._body

    def body_chunks(self, size: int = 1 << 20) -> Any:
        """The body as it arrives (a build context, an image to load)."""
        if self.consumed:
            return
        self.consumed = True
        rfile = self.handler.rfile
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = rfile.readline(1024)
                if not line:
                    return
                length = int(line.split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                yield rfile.read(length)
                rfile.readline(8)  # the CRLF after the chunk
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                chunk = rfile.read(min(size, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    def json(self, default: Any = None) -> Any:
        """The body as JSON (``default`` when empty); malformed JSON is a 400."""
        raw = self.body()
        if not raw.strip():
            return default
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise InvalidArgument(f"invalid JSON: {err}") from None

    # -- the answer

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.answered = True
        h = self.handler
        h.send_response(status)
        h.send_header("Api-Version", h.server.api_version)
        h.send_header("Ostype", "linux")
        for key, value in headers.items():
            h.send_header(key, value)

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self._head(status, {"Content-Type": "application/json", "Content-Length": str(len(data)),
                            **(headers or {})})  # fmt: skip
        self.handler.end_headers()
        if self.method != "HEAD":
            self.handler.wfile.write(data)

    def send_text(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        data = text.encode()
        self._head(status, {"Content-Type": "text/plain; charset=utf-8",
                            "Content-Length": str(len(data)), **(headers or {})})  # fmt: skip
        self.handler.end_headers()
        if self.method != "HEAD":
            self.handler.wfile.write(data)

    def send_empty(self, status: int = 204, headers: dict[str, str] | None = None) -> None:
        self._head(status, {**({"Content-Length": "0"} if status >= 200 and status not in (204, 304) else {}),
                            **(headers or {})})  # fmt: skip
        self.handler.end_headers()

    def send_bytes(self, status: int, data: bytes, content_type: str,
                   headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self._head(status, {"Content-Type": content_type, "Content-Length": str(len(data)),
                            **(headers or {})})  # fmt: skip
        self.handler.end_headers()
        if self.method != "HEAD":
            self.handler.wfile.write(data)

    def stream(self, content_type: str = "application/json", status: int = 200,
               headers: dict[str, str] | None = None) -> Stream:  # fmt: skip
        """Headers now (clients wait for them before they go on), then chunks as written."""
        self._head(status, {"Content-Type": content_type, "Transfer-Encoding": "chunked",
                            **(headers or {})})  # fmt: skip
        self.handler.end_headers()
        self.handler.wfile.flush()
        return Stream(self.handler)

    def until_gone(self) -> threading.Event:
        """An event set once the client hangs up (watched every quarter second), for a
        follow that may stay silent for long; the handler sets it too when it is done."""
        stop = threading.Event()
        sock = self.handler.connection

        def watch() -> None:
            while not stop.wait(0.25):
                if client_gone(sock):
                    stop.set()

        threading.Thread(target=watch, daemon=True).start()
        return stop

    def hijack(self, content_type: str) -> socket.socket:
        """The connection as a raw socket: ``101 UPGRADED`` where the client asked to
        upgrade (the docker CLI, docker-py), else a 200 whose body is the stream."""
        upgrade = "upgrade" in self.headers.get("Connection", "").lower()
        self.answered = True
        h = self.handler
        if upgrade:
            h.wfile.write(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: " + content_type.encode() +
                          b"\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n" +
                          f"Api-Version: {h.server.api_version}\r\n\r\n".encode())  # fmt: skip
        else:
            h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type.encode() +
                          f"\r\nApi-Version: {h.server.api_version}\r\n\r\n".encode())  # fmt: skip
        h.wfile.flush()
        h.close_connection = True
        h.hijacked = True
        return h.connection


class Stream:
    """A chunked response body: each ``write`` is one chunk, sent at once."""

    def __init__(self, handler: _Handler) -> None:
        self._wfile = handler.wfile
        self.closed = False

    def write(self, data: bytes) -> int:
        """Raises BrokenPipeError (an OSError) once the client has gone. A file's ``write``,
        so that code writing tars (save, export) writes straight to the response."""
        if data:
            self._wfile.write(b"%x\r\n%s\r\n" % (len(data), bytes(data)))
            self._wfile.flush()
        return len(data)

    def flush(self) -> None:
        pass  # every write is sent at once

    def json(self, obj: Any) -> None:
        self.write(json.dumps(obj).encode() + b"\r\n")

    def end(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self._wfile.write(b"0\r\n\r\n")
                self._wfile.flush()
            except OSError:
                pass


def client_gone(sock: socket.socket) -> bool:
    """Whether the peer of a streaming response has closed its end (polled between writes
    of a follow stream that may stay silent for long)."""
    import select

    try:
        ready, _, _ = select.select([sock], [], [], 0)
        if not ready:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class _Headers(dict):  # type: ignore[type-arg]
    """A request's headers by lower-cased name (the last of a repeated one)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: APIServer
    hijacked = False

    def parse_request(self) -> bool:
        """The request line and headers, read without the email package's parser, which is
        most of what http.server spends on a small request; the same rules otherwise."""
        self.command = None  # type: ignore[assignment]
        self.request_version = "HTTP/1.1"  # so that even a garbled request gets a status line
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            self.send_error(400, f"Bad request syntax ({self.requestline!r})")
            return False
        command, path, version = words
        try:
            major, minor = (int(x) for x in version[5:].split(".", 1))
        except ValueError:
            self.send_error(400, f"Bad request version ({version!r})")
            return False
        if major >= 2:
            self.send_error(505, f"Invalid HTTP version ({version})")
            return False
        self.command, self.path, self.request_version = command, path, version
        if (major, minor) >= (1, 1):
            self.close_connection = False
        headers = _Headers()
        for _ in range(101):
            line = self.rfile.readline(65537)
            if len(line) > 65536:
                self.send_error(431, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = line.decode("iso-8859-1").partition(":")
            if not sep or not name.strip():
                self.send_error(400, "Bad header line")
                return False
            headers[name.strip().lower()] = value.strip()
        else:
            self.send_error(431, "Too many headers")
            return False
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        if headers.get("Expect", "").lower() == "100-continue" and (major, minor) >= (1, 1):
            return self.handle_expect_100()
        return True

    def version_string(self) -> str:
        return f"dockyard/{self.server.server_version}"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log_requests:
            sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {format % args}\n")

    def address_string(self) -> str:
        return "unix" if isinstance(self.client_address, (str, bytes)) else self.client_address[0]

    def _dispatch(self) -> None:
        server = self.server
        with server.activity():
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            version = server.default_version
            if path.startswith("/v") and "/" in path[1:]:
                head, _, rest = path[1:].partition("/")
                try:
                    major, minor = (int(x) for x in head[1:].split("."))
                    version, path = (major, minor), "/" + rest
                except ValueError:
                    pass
            req = Request(self, self.command, path, version,
                          parse_qs(parts.query, keep_blank_values=True))  # fmt: skip
            try:
                if version < server.min_version:
                    raise InvalidArgument(
                        f"client version {version[0]}.{version[1]} is too old. Minimum supported API "
                        f"version is {server.min_version[0]}.{server.min_version[1]}, please upgrade "
                        "your client to a newer version"
                    )
                server.route(req)
            except NotModified:
                if not req.answered:
                    req.send_empty(304)
            except DockyardError as err:
                self._error(req, err.http_status, str(err) or type(err).__name__)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client went away: nothing to answer
            except Exception as err:  # a bug must answer 500, never drop the connection
                traceback.print_exc(file=sys.stderr)
                self._error(req, 500, f"internal error: {type(err).__name__}: {err}")
            if not req.answered:
                req.send_empty(204)
            if not self.hijacked and not req.consumed:
                # a body the handler did not read would be taken for the next request
                try:
                    for _chunk in req.body_chunks():
                        pass
                except OSError:
                    self.close_connection = True

    def _error(self, req: Request, status: int, message: str) -> None:
        if req.answered:
            self.close_connection = True  # mid-stream: the only way left to say it failed
            return
        req.send_json(status, {"message": message})

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch

    def finish(self) -> None:
        if self.hijacked:
            return  # the handler owns the socket now, and has closed it
        super().finish()


class APIServer:
    """What the handler threads share: routing, versions, the idle clock."""

    api_version = "1.44"
    min_version = (1, 24)
    default_version = (1, 44)
    server_version = ""
    log_requests = False
    route: Callable[[Request], None]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self.last_activity = time.monotonic()

    def activity(self) -> _Activity:
        return _Activity(self)

    def idle_for(self) -> float:
        """Seconds since the last request ended; 0 while one runs (a follow, an attach)."""
        with self._lock:
            return 0.0 if self._active else time.monotonic() - self.last_activity


class _Activity:
    def __init__(self, server: APIServer) -> None:
        self.server = server

    def __enter__(self) -> None:
        with self.server._lock:
            self.server._active += 1

    def __exit__(self, *exc: object) -> None:
        with self.server._lock:
            self.server._active -= 1
            self.server.last_activity = time.monotonic()


class _Workers:
    """Connections handled by worker threads that stay for a while after their last one:
    a thread keeps its database connection (opening one reads the WAL index), so a request
    after another pays for neither a thread nor a connection. A worker is started whenever
    none is idle (a follow or an attach holds one for as long as it lasts)."""

    _IDLE_SECONDS = 60

    def _init_workers(self) -> None:
        import queue

        self._jobs: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        self._idle = 0
        self._workers_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._workers_lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1  # that idle worker's: it takes the job off the queue
        self._jobs.put((request, client_address))
        if spawn:
            threading.Thread(target=self._work, daemon=True).start()

    def _work(self) -> None:
        import queue

        while True:
            try:
                request, client_address = self._jobs.get(timeout=self._IDLE_SECONDS)
            except queue.Empty:
                with self._workers_lock:
                    if self._idle > 0:  # no job was promised to this worker: it may go
                        self._idle -= 1
                        return
                continue  # a job is on its way to the queue
            try:
                self.finish_request(request, client_address)  # type: ignore[attr-defined]
            except Exception:  # one connection's failure ends that connection only
                self.handle_error(request, client_address)  # type: ignore[attr-defined]
            finally:
                self.shutdown_request(request)  # type: ignore[attr-defined]
            with self._workers_lock:
                self._idle += 1


class UnixAPIServer(_Workers, UnixStreamServer, APIServer):
    def __init__(self, sock: socket.socket, route: Callable[[Request], None]) -> None:
        APIServer.__init__(self)
        self._init_workers()
        UnixStreamServer.__init__(self, "", _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.route = route  # type: ignore[method-assign]

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, _addr = self.socket.accept()
        return conn, ""

    def server_bind(self) -> None:  # the socket comes bound (a path, or systemd's)
        pass


class TCPAPIServer(_Workers, TCPServer, APIServer):
    """The API over TCP: with an SSL context, each connection is TLS with a verified client
    certificate; without one only on loopback (the service refuses plain TCP elsewhere)."""

    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], route: Callable[[Request], None], context: Any = None
    ) -> None:
        APIServer.__init__(self)
        self._init_workers()
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        TCPServer.__init__(self, address, _Handler)
        self.context = context
        self.route = route  # type: ignore[method-assign]

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = self.socket.accept()
        if self.context is not None:
            # the handshake happens in the connection's own thread (finish_request), so a
            # slow or silent client cannot hold up the accepting one
            conn = self.context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.context is not None:
            request.settimeout(30)
            try:
                request.do_handshake()
            except OSError:
                return  # not TLS, or no certificate the CA signed: nothing to answer
            request.settimeout(None)
        super().finish_request(request, client_address)
