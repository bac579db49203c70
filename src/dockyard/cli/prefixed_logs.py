"""Several containers' logs on one output, each line after its container's name, as
Compose and podman's ``pod logs`` print them."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Prefixes", "follow", "log_line"]

# Compose's colours for log prefixes, given out in turn (cyan, yellow, green, magenta,
# blue, then their bright forms)
_RAINBOW = ("36", "33", "32", "35", "34", "36;1", "33;1", "32;1", "35;1", "34;1")


class Prefixes:
    """``name  | `` before each line, the names padded to one width and coloured one
    colour each when the output is a terminal (unless ``--no-color``), as Compose does."""

    def __init__(self, names: list[str], colour: bool, shown: bool = True) -> None:
        self.width = max((len(n) for n in names), default=0)
        self.colours = {n: _RAINBOW[i % len(_RAINBOW)] for i, n in enumerate(names)}
        self.colour, self.shown = colour, shown

    def __call__(self, name: str) -> str:
        if not self.shown:
            return ""
        text = f"{name.ljust(self.width)}  |"
        return f"\033[{self.colours.get(name, '0')}m{text}\033[0m " if self.colour else f"{text} "


def log_line(record: dict[str, Any], timestamps: bool) -> str:
    return f"{record['time']} {record['log']}" if timestamps else record["log"]


def follow(engine: Any, ids: list[str], prefixes: Prefixes | None = None,
            timestamps: bool = False, tail: int | None = None) -> None:  # fmt: skip
    """Every container's output, prefixed, until they all end (compose's ``up`` in the
    foreground and ``logs -f``, ``pod logs -f``)."""
    import threading

    from dockyard.engine.logs import records

    names = {c: engine.record(c)["name"] for c in ids}
    prefix = prefixes or Prefixes(list(names.values()), sys.stdout.isatty())
    lock = threading.Lock()

    def follow(cid: str) -> None:
        from dockyard.engine.containers import Engine

        mine = Engine(engine.root, engine.snapshotter)  # a database connection of its own
        for r in records(mine, cid, tail=tail, follow=True):
            with lock:
                sys.stdout.write(prefix(names[cid]) + log_line(r, timestamps))
                sys.stdout.flush()

    threads = [threading.Thread(target=follow, args=(cid,), daemon=True) for cid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
