"""A container's output as Docker's json-file driver keeps it, read back for every face.

``records`` yields the file's records (``{"log", "stream", "time"}``) in order, cut by
``since``/``until``/``tail`` as ``docker logs`` cuts them, then, with ``follow``, those
written after, until the container stops or ``stop`` is set. The follow starts at the
byte where the reading stopped, so nothing written in between is lost.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator

from dockyard import _json as json
from dockyard.clock import parse_time
from dockyard.errors import InvalidArgument, NotFound, NotImplementedHere

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from typing import Any

    from dockyard.engine.containers import Engine

__all__ = ["files", "records"]

_POLL = 0.05
_LIVE = ("running", "restarting", "paused", "created")


def files(engine: Engine, cid: str) -> list[str]:
    """The json-file logs, oldest first (``-json.log.2``, ``.1``, then the current one)."""
    base = f"{cid}-json.log"
    rotated = sorted((p for p in os.listdir(engine.cdir(cid)) if p.startswith(base + ".")),
                     key=lambda p: -int(p.rsplit(".", 1)[1]))  # fmt: skip
    return [os.path.join(engine.cdir(cid), p) for p in [*rotated, base]]


def records(engine: Engine, cid: str, since: float | None = None, until: float | None = None,
            tail: int | None = None, follow: bool = False,
            stop: threading.Event | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The records of container ``cid`` (an ID); ``tail`` None is all of them.

    Its arguments are checked, and its files opened, before this returns: a client that
    is told the stream began (the API's headers) and removes the container at its exit
    (docker-py's ``run``) still gets every line."""
    if (engine.record(cid)["host_config"].get("LogConfig") or {}).get("Type") == "none":
        raise NotImplementedHere("configured logging driver does not support reading")
    if tail is not None and tail < 0:
        raise InvalidArgument(f"invalid tail value: {tail}")
    paths = files(engine, cid)
    opened = []
    for path in paths:
        try:
            opened.append((path, open(path, "rb")))  # noqa: SIM115 - closed by the reader
        except FileNotFoundError:
            continue
    return _records(engine, cid, paths, opened, since, until, tail, follow, stop)


def _records(engine: Engine, cid: str, paths: list[str], opened: list[tuple[str, Any]],
             since: float | None, until: float | None, tail: int | None, follow: bool,
             stop: threading.Event | None) -> Iterator[dict[str, Any]]:  # fmt: skip
    pos, ino = 0, None
    # streamed, not read whole: a log of many megabytes must not sit in memory (a server
    # keeps what it once took); ``tail`` keeps only its last lines
    kept: deque[bytes] | None = deque(maxlen=tail) if tail is not None else None
    current = None  # the file being followed: the current one, kept open
    try:
        for n, (path, f) in enumerate(opened):
            yield from _complete(f, since, until, kept)
            if path == paths[-1]:
                ino, pos = os.fstat(f.fileno()).st_ino, f.tell()
                if follow:
                    current = f
                    opened[n] = (path, None)
        if kept is not None:
            for line in kept if tail else ():
                yield json.loads(line)
        if follow:
            yield from _follow(engine, cid, paths[-1], current, pos, ino, until, stop)
    finally:
        for _path, f in opened:
            if f is not None:
                f.close()


def _complete(f: Any, since: float | None, until: float | None,
              kept: deque[bytes] | None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The complete lines of ``f`` within since/until (into ``kept`` where a tail is
    wanted); ``f`` is left after its last complete line."""
    offset = 0
    for line in f:
        if not line.endswith(b"\n"):
            break  # a line still being written: the follow reads it from here
        offset += len(line)
        if not line.strip():
            continue
        if kept is not None and since is None and until is None:
            kept.append(line)  # parsed only if it is among the last ones
            continue
        record = json.loads(line)
        if _within(record, since, until):
            if kept is not None:
                kept.append(line)
            else:
                yield record
    f.seek(offset)


def _follow(engine: Engine, cid: str, path: str, current: Any, pos: int, ino: int | None,
            until: float | None, stop: threading.Event | None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Lines written to ``path`` from ``pos`` on, until the container stops. The file stays
    open between rounds: a client that removes the container as soon as it exits
    (docker-py's run does) must still get its last lines."""
    ended = False
    try:
        while True:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if current is None or (st is not None and st.st_ino != ino):
                if current is not None:
                    yield from _new_lines(current, pos, until)  # what the old file still held
                    current.close()
                    current = None
                if st is not None:
                    try:
                        current = open(path, "rb")  # noqa: SIM115 - kept open across rounds
                    except FileNotFoundError:
                        current = None
                    if current is not None and os.fstat(current.fileno()).st_ino != ino:
                        ino, pos = os.fstat(current.fileno()).st_ino, 0  # rotated: from its start
            if current is not None:
                current.seek(pos)
                for record, size in _records_from(current, until):
                    if record is None:
                        return  # past ``until``
                    pos += size
                    yield record
            if ended:
                return
            try:
                status = engine.refresh(cid)["status"]
            except NotFound:
                status = "removed"
            if status not in _LIVE:
                # it stopped (or is gone): once more round the file, for what it wrote
                # between the read above and its exit
                ended = True
                continue
            if stop is not None and stop.wait(_POLL):
                return
            if stop is None:
                time.sleep(_POLL)
    finally:
        if current is not None:
            current.close()


def _records_from(f: Any, until: float | None) -> Iterator[tuple[dict[str, Any] | None, int]]:
    """(record, bytes) for each complete line from ``f``'s position; (None, 0) once a
    record is at or past ``until``."""
    for line in f:
        if not line.endswith(b"\n"):
            return
        record = json.loads(line)
        if until is not None and parse_time(record["time"]) >= until:
            yield None, 0
            return
        yield record, len(line)


def _new_lines(f: Any, pos: int, until: float | None) -> Iterator[dict[str, Any]]:
    f.seek(pos)
    for record, _size in _records_from(f, until):
        if record is None:
            return
        yield record


def _within(record: dict[str, Any], since: float | None, until: float | None) -> bool:
    if since is None and until is None:
        return True
    t = parse_time(record["time"])
    return (since is None or t >= since) and (until is None or t < until)
