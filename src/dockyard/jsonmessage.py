"""Progress as Docker's JSON messages, and how a terminal or a log shows them.

Library code reports progress by calling a ``Progress`` callback with the messages
dockerd streams (moby's jsonmessage): ``{"status": ...}``, with ``"id"`` for one layer,
and ``"progressDetail": {"current", "total"}`` while bytes move. The API server sends
them as they are; the CLI and the builder draw them with :class:`TextRenderer`, as the
docker CLI does: a live bar per layer on a terminal, one line per event otherwise.
"""

from __future__ import annotations

import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO

    Progress = Callable[[dict[str, Any]], None]

__all__ = ["Progress", "TextRenderer", "discard"]


def discard(message: dict[str, Any]) -> None:
    """A Progress that shows nothing (``--quiet``)."""


class TextRenderer:
    """Draws messages on ``out``: bars (rich) when it is a terminal, else lines; messages
    that only move a bar (they carry ``progressDetail``) are not lines of their own."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.bars: Any = None
        self.tasks: dict[str, Any] = {}
        if getattr(out, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

            self.bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TextColumn("{task.fields[status]}"), console=Console(file=out), transient=False)  # fmt: skip
            self.bars.start()

    def __call__(self, message: dict[str, Any]) -> None:
        status, ident = message.get("status", ""), message.get("id")
        with self.lock:
            if "progressDetail" in message:
                if self.bars is not None and ident:
                    self._move(ident, status, message["progressDetail"])
                return
            if self.bars is not None and ident in self.tasks:
                self.bars.update(self.tasks[ident], status=status)
                return
            line = f"{ident}: {status}" if ident else status
            if self.bars is not None:
                self.bars.console.print(line, highlight=False)
            else:
                self.out.write(line + "\n")
                self.out.flush()

    def _move(self, ident: str, status: str, detail: dict[str, Any]) -> None:
        if ident not in self.tasks:
            self.tasks[ident] = self.bars.add_task(ident, total=detail.get("total"), status=status)
        fields: dict[str, Any] = {"status": status}
        if "current" in detail:
            fields["completed"] = detail["current"]
        if detail.get("total"):
            fields["total"] = detail["total"]
        self.bars.update(self.tasks[ident], **fields)

    def __enter__(self) -> TextRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.bars is not None:
            self.bars.stop()
            self.bars = None
