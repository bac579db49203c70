"""``dockyard events``: the engine's event stream, printed as the docker CLI prints it."""

from __future__ import annotations

import time

from dockyard import _json as json
from dockyard.cli import flags
from dockyard.cli._context import engine as _engine
from dockyard.clock import time_bound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["events_cmd"]


@flags.command("events")
@flags.option(
    "--since",
    help="Show all events created since timestamp (RFC 3339, unix time, or relative: 10m)",
)
@flags.option("--until", help="Stream events until this timestamp")
@flags.option("-f", "--filter", "filters", multiple=True,
              help="Filter output (type=, event=, container=, image=, volume=, label=)")  # fmt: skip
@flags.option(
    "--format", "fmt", default=None, help="'json' for one JSON object per line, or a Go template"
)
@flags.pass_context
def events_cmd(ctx: flags.Context, since: str | None, until: str | None, filters: tuple[str, ...],
               fmt: str | None) -> None:  # fmt: skip
    """Get real time events from dockyard (past ones too with --since)."""
    from dockyard.engine.events import stream
    from dockyard.filters import Filters

    engine = _engine(ctx)
    flt = Filters.parse(filters)
    for msg in stream(engine.db, time_bound(since), time_bound(until), flt):
        _print_event(msg, fmt)


def _print_event(message: dict[str, Any], fmt: str | None) -> None:
    if fmt == "json":
        flags.echo(json.dumps(message))
        return
    if fmt:  # a Go template over Docker's events message (``{{.Actor.Attributes.name}}``)
        from dockyard.cli.format import templated

        # the Go struct's field names, which templates use: .Status, .ID, .From, .Scope, .TimeNano
        fields = {"Status": message.get("status", ""), "ID": message.get("id", ""), "From": message.get("from", ""),
                  "Scope": message["scope"], "Time": message["time"], "TimeNano": message["timeNano"]}  # fmt: skip
        flags.echo(templated([{**message, **fields}], fmt, {}), nl=False)
        return
    seconds, nanos = divmod(message["timeNano"], 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
    attrs = message["Actor"]["Attributes"]
    inner = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))
    head = f"{stamp} {message['Type']} {message['Action']} {message['Actor']['ID']}"
    flags.echo(head + (f" ({inner})" if inner else ""))
