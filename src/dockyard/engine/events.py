"""Events as Docker reports them: a query over what happened, then a follow stream.

Every change of state records a row (``MetadataDB.emit``); this turns the rows into
Docker's events message, with both shapes a client may read: ``Type``/``Action``/
``Actor``/``time``/``timeNano`` and, for containers and images, the legacy
``status``/``id``/``from``. Filters are Docker's (``type``, ``event``, ``container``,
``image``, ``volume``, ``network``, ``label``): the same key repeated is OR, keys AND.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from dockyard import _json as json
from dockyard.filters import Filters

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from typing import Any

    from dockyard.metadata import MetadataDB

__all__ = ["EVENT_FILTERS", "stream"]

EVENT_FILTERS = ("container", "event", "image", "label", "network", "type", "volume")
_POLL = 0.1


def _matches(flt: Filters, ev: Any, attrs: dict[str, str]) -> bool:
    kind, actor = ev["type"], ev["actor"]
    return (
        flt.match("type", lambda v: kind == v)
        and flt.match("event", lambda v: ev["action"] == v or ev["action"].split(":", 1)[0] == v)
        and flt.match("container", lambda v: kind == "container" and (actor.startswith(v) or attrs.get("name") == v))
        and flt.match("image", lambda v: attrs.get("image") == v or (kind == "image" and (actor == v or attrs.get("name") == v)))
        and flt.match("volume", lambda v: kind == "volume" and actor == v)
        and flt.match("network", lambda v: kind == "network" and (actor.startswith(v) or attrs.get("name") == v))
        and flt.match("label", lambda v: v.partition("=")[0] in attrs
                      and ("=" not in v or attrs[v.partition("=")[0]] == v.partition("=")[2]))
    )  # fmt: skip


def message(ev: Any) -> dict[str, Any]:
    """Docker's events message for one recorded row."""
    attrs = json.loads(ev["attributes"])
    seconds = ev["time_nano"] // 1_000_000_000
    msg: dict[str, Any] = {}
    if ev["type"] in ("container", "image"):
        msg = {"status": ev["action"], "id": ev["actor"]}
        if ev["type"] == "container" and "image" in attrs:
            msg["from"] = attrs["image"]
    msg.update({"Type": ev["type"], "Action": ev["action"], "Actor": {"ID": ev["actor"], "Attributes": attrs},
                "scope": "local", "time": seconds, "timeNano": ev["time_nano"]})  # fmt: skip
    return msg


def stream(db: MetadataDB, since: float | None = None, until: float | None = None,
           filters: Filters | None = None, stop: threading.Event | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Docker's messages from ``since`` (now when None) on: past ones first, then new ones as
    they happen, until ``until`` (for ever when None) or until ``stop`` is set. The filters
    are checked, and "now" taken, before this returns: a refusal is an answer of its own,
    not a stream cut after its headers."""
    flt = (filters or Filters()).check(EVENT_FILTERS)
    lo = time.time() if since is None else since
    last = 0
    rows = db.query(
        "SELECT seq FROM events WHERE time_nano < ? ORDER BY seq DESC LIMIT 1", (int(lo * 1e9),)
    )
    if rows:
        last = rows[0]["seq"]
    return _follow(db, last, until, flt, stop)


def _follow(db: MetadataDB, last: int, until: float | None, flt: Any,
            stop: threading.Event | None) -> Iterator[dict[str, Any]]:  # fmt: skip
    while True:
        for ev in db.query("SELECT * FROM events WHERE seq > ? ORDER BY seq", (last,)):
            last = ev["seq"]
            if until is not None and ev["time_nano"] >= until * 1e9:
                return
            if _matches(flt, ev, json.loads(ev["attributes"])):
                yield message(ev)
        if until is not None and time.time() >= until:
            return
        if stop is not None and stop.wait(_POLL):
            return
        if stop is None:
            time.sleep(_POLL)
