"""The registry client's HTTP/1.1 against a loopback server that answers as written."""

from __future__ import annotations

import socket
import threading

import pytest

from dockyard.registry.http11 import Connection, ProtocolError
from dockyard.threads import Workers


class _Server:
    """Answers each connection with ``answer`` (bytes) after reading the request head
    and as much body as its Content-Length says; keeps what it received."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.received: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            while len(body) < length:
                body += conn.recv(65536)
            self.received.append(head + b"\r\n\r\n" + body)
            conn.sendall(self.answer)

    def close(self) -> None:
        self.thread.join(5)
        self.sock.close()


def _exchange(answer: bytes, method: str = "GET", body: object = None,
              headers: dict[str, str] | None = None) -> tuple[object, bytes, bytes]:  # fmt: skip
    server = _Server(answer)
    conn = Connection(server.host, timeout=5)
    try:
        conn.request(method, "/v2/x", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
        server.close()
    return resp, data, server.received[0]


def test_a_body_with_a_length_and_the_request_as_sent() -> None:
    resp, data, sent = _exchange(
        b"HTTP/1.1 201 Created\r\nLocation: /a\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 5\r\n\r\nhello",
        "PUT", b"payload", {"Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert (resp.status, resp.reason, data) == (201, "Created", b"hello")  # type: ignore[attr-defined]
    assert resp.getheader("location") == "/a" and resp.getheader("X-A") == "1, 2"  # type: ignore[attr-defined]
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"PUT /v2/x HTTP/1.1\r\n") and body == b"payload"
    assert b"\r\nContent-Length: 7" in head and b"\r\nHost: 127.0.0.1:" in head


def test_a_post_without_a_body_says_its_length_is_zero() -> None:
    _resp, _data, sent = _exchange(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", "POST")
    assert b"\r\nContent-Length: 0\r\n" in sent


def test_a_file_body_goes_whole(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blob = tmp_path / "blob"
    blob.write_bytes(bytes(range(256)) * 12000)  # three blocks
    with open(blob, "rb") as f:
        _resp, _data, sent = _exchange(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", "PUT", f,
                                       {"Content-Length": str(blob.stat().st_size)})  # fmt: skip
    assert sent.partition(b"\r\n\r\n")[2] == blob.read_bytes()


def test_chunked_answers_and_interim_100() -> None:
    resp, data, _ = _exchange(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n"
    )
    assert (resp.status, data) == (200, b"hello world")  # type: ignore[attr-defined]


def test_an_answer_that_ends_with_the_connection() -> None:
    _resp, data, _ = _exchange(b"HTTP/1.0 200 OK\r\n\r\nto the end")
    assert data == b"to the end"


def test_a_head_answer_has_no_body() -> None:
    resp, data, _ = _exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n", "HEAD")
    assert (resp.status, data, resp.getheader("Content-Length")) == (200, b"", "999")  # type: ignore[attr-defined]


def test_a_short_body_reads_short_in_chunks_and_fails_whole() -> None:
    server = _Server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
    conn = Connection(server.host, timeout=5)
    conn.request("GET", "/b")
    resp = conn.getresponse()
    assert resp.read(1 << 20) == b"only this" and resp.read(1 << 20) == b""
    conn.close()
    server.close()
    with pytest.raises(ProtocolError, match="short"):
        _exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")


@pytest.mark.parametrize("answer", [b"", b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"])  # fmt: skip
def test_what_is_not_http_is_one_protocol_error(answer: bytes) -> None:
    with pytest.raises(ProtocolError):
        _exchange(answer)


def test_netlocs() -> None:
    assert (Connection("r.example").host, Connection("r.example").port) == ("r.example", 80)
    assert (Connection("r.example:5000").host, Connection("r.example:5000").port) == ("r.example", 5000)
    v6 = Connection("[::1]:5001")
    assert (v6.host, v6.port, v6.netloc) == ("::1", 5001, "[::1]:5001")
    assert Connection("r.example", context=object()).port == 443


def test_workers_keep_order_bound_threads_and_hand_on_errors() -> None:
    running = []
    peak = [0]
    lock = threading.Lock()
    both = threading.Barrier(2, timeout=5)  # broken unless the first two run at once

    def work(n: int) -> int:
        with lock:
            running.append(n)
            peak[0] = max(peak[0], len(running))
        if n < 2:
            both.wait()
        with lock:
            running.remove(n)
        if n == 3:
            raise ValueError("three")
        return n * n

    with Workers(2) as pool:
        jobs = [pool.submit(work, n) for n in range(6)]
        assert [j.result() for j in jobs[:3]] == [0, 1, 4]
        with pytest.raises(ValueError, match="three"):
            jobs[3].result()
    assert [j.result() for j in jobs[4:]] == [16, 25] and peak[0] == 2
