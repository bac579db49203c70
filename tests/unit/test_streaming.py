"""The pipe between a layer's download and its unpacking: bytes in order across chunk
boundaries, the end, a writer's failure, a reader that gave up."""

from __future__ import annotations

import threading

import pytest

from dockyard.registry.streaming import Pipe, StreamAborted


def feed(pipe: Pipe, chunks: list[bytes], end: BaseException | None = None) -> threading.Thread:
    def run() -> None:
        for c in chunks:
            pipe.write(c)
        if end is None:
            pipe.close()
        else:
            pipe.fail(end)

    t = threading.Thread(target=run)
    t.start()
    return t


def test_reads_of_any_size_give_the_bytes_in_order() -> None:
    chunks = [bytes([i]) * (i * 37 + 1) for i in range(40)]  # more chunks than the pipe holds
    whole = b"".join(chunks)
    for size in (1, 7, 512, 1000, 1 << 20):
        pipe = Pipe(depth=3)
        t = feed(pipe, chunks)
        assert pipe.peek(4) == whole[:4]
        got = b""
        while data := pipe.read(size):
            assert len(data) <= size
            got += data
        t.join()
        assert got == whole


def test_read_all_and_peek_across_chunks() -> None:
    pipe = Pipe()
    t = feed(pipe, [b"\x1f", b"\x8b", b"", b"rest"])
    assert pipe.peek(4) == b"\x1f\x8brs"[:2] + b"re"
    assert pipe.read() == b"\x1f\x8brest"
    assert pipe.read(10) == b""
    t.join()


def test_a_failed_download_aborts_the_reader() -> None:
    pipe = Pipe()
    t = feed(pipe, [b"half a layer"], end=OSError("connection reset"))
    assert pipe.read(4) == b"half"
    with pytest.raises(StreamAborted, match="connection reset"):
        pipe.read(1 << 20)
    t.join()


def test_a_reader_that_gave_up_never_blocks_the_download() -> None:
    pipe = Pipe(depth=1)
    pipe.broken = True
    t = feed(pipe, [b"x"] * 100)
    t.join(timeout=10)
    assert not t.is_alive()
