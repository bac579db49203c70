"""HTTP/1.1, client side, as much of it as the registry client needs: one request per
connection, request bodies from bytes or a file, answers with a length, chunked or
ending with the connection.

The standard library's ``http.client`` would do, but it imports the email package and
``ssl`` on its way in: about 25 ms of every pull and push, more than a small image's
transfer from a registry on this host. Here ``ssl`` is the caller's, for HTTPS only.
"""

from __future__ import annotations

import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Connection", "ProtocolError", "Response"]

_BLOCK = 1 << 20
# the read buffer, small beside the reads of a body: a read of N bytes goes straight from
# the socket into its result for all but its last buffer's worth (a buffer as big as the
# read would copy every byte once more)
_READ_BUFFER = 64 << 10
_MAX_LINE = 65536
_MAX_HEADERS = 200


class ProtocolError(Exception):
    """An answer that is not HTTP/1.x, or one cut short."""


class Response:
    """A status, headers (by lower-cased name; repeated ones joined with ", ") and a body
    read with ``read``."""

    def __init__(self, fp: Any, method: str) -> None:
        self._fp = fp
        line = fp.readline(_MAX_LINE + 1)
        if not line:
            raise ProtocolError("the server closed the connection without answering")
        version, _, rest = line.decode("iso-8859-1").rstrip("\r\n").partition(" ")
        code, _, self.reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x answer: {line[:80]!r}")
        self.status = int(code)
        self.headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            line = fp.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                raise ProtocolError("header line too long")
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = line.decode("iso-8859-1").partition(":")
            if not sep:
                raise ProtocolError(f"malformed header line: {line[:80]!r}")
            key, value = name.strip().lower(), value.strip()
            self.headers[key] = f"{self.headers[key]}, {value}" if key in self.headers else value
        else:
            raise ProtocolError("too many headers")
        self._chunked = False
        self._left: int | None = None  # body bytes still to come; None: until the end
        if method == "HEAD" or self.status < 200 or self.status in (204, 304):
            self._left = 0
        elif "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._chunked, self._left = True, 0
        elif (length := self.headers.get("content-length")) is not None:
            if not length.strip().isdigit():
                raise ProtocolError(f"bad Content-Length: {length!r}")
            self._left = int(length)
        self._done = self._left == 0 and not self._chunked

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def read(self, amt: int | None = None) -> bytes:
        """Up to ``amt`` bytes of the body (all of it without ``amt``); b"" at its end. A body
        with a length that ends early returns what came in chunks, and raises ProtocolError
        when read whole."""
        if self._done:
            return b""
        if amt is None:
            parts = []
            while part := self.read(_BLOCK):
                parts.append(part)
            if self._left:
                raise ProtocolError(f"the answer ended {self._left} bytes short")
            return b"".join(parts)
        if self._chunked:
            return self._read_chunked(amt)
        want = amt if self._left is None else min(amt, self._left)
        data = self._fp.read(want)
        if self._left is not None:
            self._left -= len(data)
        if not data or self._left == 0:
            self._done = True
        return data

    def _read_chunked(self, amt: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < amt:
            if self._left == 0:
                line = self._fp.readline(_MAX_LINE + 1)
                try:
                    self._left = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size line: {line[:80]!r}") from None
                if self._left == 0:
                    while self._fp.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self._done = True
                    break
            data = self._fp.read(min(amt - got, self._left))
            if not data:
                raise ProtocolError("the answer ended inside a chunk")
            parts.append(data)
            got += len(data)
            self._left -= len(data)
            if self._left == 0:
                self._fp.readline(_MAX_LINE + 1)  # the CRLF after the chunk
        return b"".join(parts)

    def close(self) -> None:
        self._done = True


class Connection:
    """``host`` is a URL's netloc (``name``, ``name:port``, ``[v6]:port``); ``context`` an
    ``ssl.SSLContext`` for HTTPS, None for plain HTTP."""

    def __init__(self, host: str, timeout: float = 60, context: Any = None) -> None:
        self.netloc = host
        name, port = host, 443 if context is not None else 80
        if host.startswith("["):
            name, _, rest = host[1:].partition("]")
            if rest.startswith(":") and rest[1:].isdigit():
                port = int(rest[1:])
        elif host.count(":") == 1:
            name, _, number = host.partition(":")
            if number.isdigit():
                port = int(number)
        self.host, self.port = name, port
        self.timeout = timeout
        self.context = context
        self._sock: Any = None
        self._fp: Any = None
        self._method = "GET"

    def request(self, method: str, target: str, body: Any = None,
                headers: dict[str, str] | None = None) -> None:  # fmt: skip
        """Connect and send; ``body`` bytes or a file read to its end (its length in the
        caller's Content-Length)."""
        self._method = method
        fields = {"Host": self.netloc, "Accept-Encoding": "identity", "Connection": "close"}
        fields.update(headers or {})
        if not any(k.lower() == "content-length" for k in fields):
            if isinstance(body, (bytes, bytearray, memoryview)):
                fields["Content-Length"] = str(len(body))
            elif body is None and method in ("POST", "PUT", "PATCH"):
                fields["Content-Length"] = "0"
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        data = (head + "\r\n").encode("latin-1")
        if isinstance(body, (bytes, bytearray, memoryview)):
            if len(body) <= _BLOCK:
                sock.sendall(data + bytes(body))
                return
            sock.sendall(data)
            sock.sendall(body)
            return
        sock.sendall(data)
        if body is not None:
            while block := body.read(_BLOCK):
                sock.sendall(block)

    def getresponse(self) -> Response:
        if self._sock is None:
            raise ProtocolError("no request was sent")
        if self._fp is None:
            self._fp = self._sock.makefile("rb", buffering=_READ_BUFFER)
        while True:
            resp = Response(self._fp, self._method)
            if resp.status != 100:
                return resp
            # 100 Continue ahead of the real answer (unasked for here, but allowed)

    def close(self) -> None:
        # the file made from the socket holds the descriptor too: both go
        fp, sock, self._fp, self._sock = self._fp, self._sock, None, None
        if fp is not None:
            fp.close()
        if sock is not None:
            sock.close()
