"""A container's output as Docker's json-file driver keeps it, read back for every face.

``records`` yields the file's records (``{"log", "stream", "time"}``) in order, cut by
``since``/``until``/``tail`` as ``docker logs`` cuts them, then, with ``follow``, those
written after, until the container stops or ``stop`` is set. The follow starts at the
byte where the reading stopped, so nothing written in between is lost.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from dockyard import _json as json
from dockyard.clock import parse_time
from dockyard.errors import InvalidArgument

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
    """The records of container ``cid`` (an ID); ``tail`` None is all of them."""
    if (engine.record(cid)["host_config"].get("LogConfig") or {}).get("Type") == "none":
        raise InvalidArgument("configured logging driver does not support reading")
    if tail is not None and tail < 0:
        raise InvalidArgument(f"invalid tail value: {tail}")
    paths = files(engine, cid)
    found: list[dict[str, Any]] = []
    pos, ino = 0, None
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
                if path == paths[-1]:
                    ino = os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            continue
        complete = data[: data.rfind(b"\n") + 1]
        if path == paths[-1]:
            pos = len(complete)
        found += [json.loads(line) for line in complete.splitlines() if line.strip()]
    found = [r for r in found if _within(r, since, until)]
    if tail is not None:
        found = found[-tail:] if tail > 0 else []
    yield from found
    if not follow:
        return
    path = paths[-1]
    while True:
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_ino != ino:  # rotated: the new file from its start
                    ino, pos = os.fstat(f.fileno()).st_ino, 0
                f.seek(pos)
                for line in f:
                    if not line.endswith(b"\n"):
                        break
                    pos += len(line)
                    record = json.loads(line)
                    if until is not None and parse_time(record["time"]) >= until:
                        return
                    yield record
        except FileNotFoundError:
            pass
        if engine.refresh(cid)["status"] not in _LIVE:
            return
        if stop is not None and stop.wait(_POLL):
            return
        if stop is None:
            time.sleep(_POLL)


def _within(record: dict[str, Any], since: float | None, until: float | None) -> bool:
    if since is None and until is None:
        return True
    t = parse_time(record["time"])
    return (since is None or t >= since) and (until is None or t < until)
