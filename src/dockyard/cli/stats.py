"""``dockyard stats``: Docker's stats JSON from the engine, shown as the docker CLI shows it."""

from __future__ import annotations

import time

from dockyard.cli import flags
from dockyard.cli._context import engine as _engine
from dockyard.cli.format import table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["stats_cmd"]


@flags.command("stats")
@flags.option(
    "-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)"
)
@flags.option(
    "--no-stream", is_flag=True, help="Disable streaming stats and only pull the first result"
)
@flags.option("--format", "fmt", default=None, help="Format the output using the given Go template")
@flags.argument("containers", nargs=-1)
@flags.pass_context
def stats_cmd(
    ctx: flags.Context, all_: bool, no_stream: bool, fmt: str | None, containers: tuple[str, ...]
) -> None:
    """Display a live stream of container(s) resource usage statistics."""
    from dockyard.cli.format import human_size

    engine = _engine(ctx)
    ids = [engine.lookup(c) for c in containers] or [r["id"] for r in engine.list(all_)]

    from dockyard.engine import stats as docker_stats

    def sample() -> dict[str, dict[str, Any]]:
        return {cid: docker_stats.sample(engine, cid) for cid in ids}

    before = sample()
    while True:
        time.sleep(0.5)
        after = sample()
        rows = [
            [
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "NET I/O",
                "BLOCK I/O",
                "PIDS",
            ]
        ]
        for cid in ids:
            # Docker's stats JSON, shown as the docker CLI shows it
            s1 = {**after[cid], "precpu_stats": before[cid]["cpu_stats"]}
            usage, limit = docker_stats.memory_used(s1), s1["memory_stats"]["limit"]
            nets = (s1.get("networks") or {}).values()
            rx, tx = (
                sum(n.get("rx_bytes", 0) for n in nets),
                sum(n.get("tx_bytes", 0) for n in nets),
            )
            io = s1["blkio_stats"]["io_service_bytes_recursive"] or []
            read = sum(e["value"] for e in io if e["op"].lower() == "read")
            written = sum(e["value"] for e in io if e["op"].lower() == "write")
            rows.append([cid[:12], s1["name"][1:], f"{docker_stats.cpu_percent(s1):.2f}%",
                         f"{human_size(usage)} / {human_size(limit)}", f"{usage / limit * 100:.2f}%",
                         f"{human_size(rx)} / {human_size(tx)}", f"{human_size(read)} / {human_size(written)}",
                         str(s1["pids_stats"]["current"])])  # fmt: skip
        if not no_stream:
            flags.echo("\033[2J\033[H", nl=False)
        if fmt:
            from dockyard.cli.format import templated

            keys = ["ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs"]
            records = [
                {**dict(zip(keys, row, strict=True)), "Container": row[0]} for row in rows[1:]
            ]
            headers = {
                **dict(zip(keys, rows[0], strict=True)),
                "Container": "CONTAINER",
                "Name": "NAME",
            }
            flags.echo(templated(records, fmt, headers), nl=False)
        else:
            flags.echo(table(rows), nl=False)
        if no_stream:
            return
        before = after
