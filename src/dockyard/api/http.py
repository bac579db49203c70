"""HTTP/1.1 for the Engine API: requests in, JSON, streams and hijacked connections out.

Built on the standard library's ``http.server``, with worker threads that take turns in
``accept`` (leader and followers) and serve the connection they accepted: every engine
call blocks (SQLite, forks, waits), and the engine is safe to call from threads (its
database connection is per thread; monitors start without forking a threaded process).
An answer's status line, headers and body go out in one write. A request handler is a
function ``(Request) -> None`` that answers through the request: ``send_json``,
``send_empty``, ``stream`` (chunked, flushed per write, for logs, events, pulls, builds),
or ``hijack`` (the raw socket after ``101 UPGRADED``, for attach and exec).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import traceback
from email.utils import formatdate
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


def _reason(status: int) -> str:
    return BaseHTTPRequestHandler.responses.get(status, ("",))[0]


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """RFC 9110's date, made once a second (formatting it is a tenth of a small answer)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


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

    def _head(self, status: int, headers: dict[str, str]) -> bytes:
        """The status line and headers as bytes, written by the caller together with the
        body: one write, so the client reads the whole answer at one wake-up."""
        self.answered = True
        h = self.handler
        h.log_request(status)
        out = [f"HTTP/1.1 {status} {_reason(status)}\r\nServer: {h.version_string()}\r\n"
               f"Date: {_http_date()}\r\nApi-Version: {h.server.api_version}\r\nOstype: linux\r\n"]  # fmt: skip
        for key, value in headers.items():
            out.append(f"{key}: {value}\r\n")
        out.append("\r\n")
        return "".join(out).encode("latin-1", "strict")

    def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        head = self._head(status, headers)
        self.handler.wfile.write(head if self.method == "HEAD" else head + data)

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self._send(status, data, {"Content-Type": "application/json", "Content-Length": str(len(data)),
                                  **(headers or {})})  # fmt: skip

    def send_text(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        data = text.encode()
        self._send(status, data, {"Content-Type": "text/plain; charset=utf-8",
                                  "Content-Length": str(len(data)), **(headers or {})})  # fmt: skip

    def send_empty(self, status: int = 204, headers: dict[str, str] | None = None) -> None:
        self._send(status, b"", {**({"Content-Length": "0"} if status >= 200 and status not in (204, 304) else {}),
                                 **(headers or {})})  # fmt: skip

    def send_bytes(self, status: int, data: bytes, content_type: str,
                   headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self._send(status, data, {"Content-Type": content_type, "Content-Length": str(len(data)),
                                  **(headers or {})})  # fmt: skip

    def stream(self, content_type: str = "application/json", status: int = 200,
               headers: dict[str, str] | None = None) -> Stream:  # fmt: skip
        """Headers now (clients wait for them before they go on), then chunks as written."""
        self.handler.wfile.write(self._head(status, {"Content-Type": content_type, "Transfer-Encoding": "chunked",
                                                     **(headers or {})}))  # fmt: skip
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
    """Connections accepted and handled by worker threads, leader and followers: one idle
    worker at a time waits in ``accept``, the others wait for its place; the one that
    accepts hands the place on and serves the connection itself, so a connection costs no
    hand-off between threads. A worker stays for a while after its last connection, keeping
    its database connection (opening one reads the WAL index); one is started whenever a
    connection is accepted and none is left waiting (a follow or an attach holds its worker
    for as long as it lasts)."""

    _IDLE_SECONDS = 60

    def _init_workers(self) -> None:
        self._place = threading.Lock()  # held by the worker in accept
        self._workers_lock = threading.Lock()
        self._waiting = 0  # workers in accept or waiting for the place
        self._stopping = False
        self._stopped = threading.Event()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until ``shutdown``; ``poll_interval`` is how often the worker in accept
        looks whether it should stop."""
        self.socket.settimeout(poll_interval)  # type: ignore[attr-defined]
        self._spawn()
        self._stopped.wait()

    def shutdown(self) -> None:
        """Accept no more connections (those being served finish on their own)."""
        self._stopping = True
        with self._place:  # no worker is in accept once this is held
            pass
        self._stopped.set()

    def _spawn(self) -> None:
        with self._workers_lock:
            self._waiting += 1
        threading.Thread(target=self._work, daemon=True).start()

    def _work(self) -> None:
        while True:
            if not self._place.acquire(timeout=self._IDLE_SECONDS):
                with self._workers_lock:
                    if self._waiting > 1:  # another stays waiting: this one may go
                        self._waiting -= 1
                        return
                continue
            try:
                if self._stopping:
                    with self._workers_lock:
                        self._waiting -= 1
                    return
                try:
                    request, client_address = self.get_request()  # type: ignore[attr-defined]
                except TimeoutError:
                    continue
                except OSError:
                    if self._stopping:
                        continue
                    time.sleep(0.01)  # out of descriptors, say: not a busy loop
                    continue
                with self._workers_lock:
                    self._waiting -= 1
                    alone = self._waiting == 0
            finally:
                self._place.release()
            if alone:
                self._spawn()  # someone must be in accept while this one serves
            try:
                self.finish_request(request, client_address)  # type: ignore[attr-defined]
            except Exception:  # one connection's failure ends that connection only
                self.handle_error(request, client_address)  # type: ignore[attr-defined]
            finally:
                self.shutdown_request(request)  # type: ignore[attr-defined]
            with self._workers_lock:
                self._waiting += 1


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
