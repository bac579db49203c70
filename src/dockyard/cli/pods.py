"""``dockyard pod``: podman's pod verbs on the engine's pods (``engine.pods``)."""

from __future__ import annotations

import sys
import time

from dockyard.cli import flags
from dockyard.cli._context import engine as _engine

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["pod_group"]


@flags.group("pod")
def pod_group() -> None:
    """Manage pods: containers that share a network, IPC and host name."""


@pod_group.command("create")
@flags.option("--name", help="Assign a name to the pod")
@flags.option("-p", "--publish", multiple=True, help="Publish a port of the pod to the host")
@flags.option("--network", default="", help="Connect the pod to a network")
@flags.option("--share", default="net,ipc,uts", help="Kernel namespaces to share (net, ipc, uts)")
@flags.option("-l", "--label", multiple=True, help="Set metadata on the pod")
@flags.option("--hostname", default="", help="The pod's host name (default: its name)")
@flags.option("--restart", default="", help="Restart policy of the pod's containers")
@flags.pass_context
def create_cmd(ctx: flags.Context, name: str | None, publish: tuple[str, ...], network: str, share: str,
               label: tuple[str, ...], hostname: str, restart: str) -> None:  # fmt: skip
    """Create a new empty pod."""
    from dockyard.engine.pods import create
    from dockyard.network.endpoints import parse_publish

    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in publish:
        for port, host_ip, host_port in parse_publish(spec):
            bindings.setdefault(port, []).append({"HostIp": host_ip, "HostPort": host_port})
    labels = dict(item.partition("=")[::2] for item in label)
    kinds = tuple(k.strip() for k in share.split(",") if k.strip())
    flags.echo(create(_engine(ctx), name, bindings, network, kinds, labels, hostname, restart))


def _each(ctx: flags.Context, pods: tuple[str, ...], act: Any) -> None:
    """``act`` on each pod named, its ID printed; a failure is reported and the rest go on,
    as podman does; exit status 125 if one failed."""
    from dockyard.errors import DockyardError

    failed = False
    for ref in pods:
        try:
            flags.echo(act(_engine(ctx), ref))
        except DockyardError as err:
            sys.stderr.write(f"dockyard: {err}\n")
            failed = True
    if failed:
        ctx.exit(125)


@pod_group.command("start")
@flags.argument("pods", nargs=-1, required=True)
@flags.pass_context
def start_cmd(ctx: flags.Context, pods: tuple[str, ...]) -> None:
    """Start one or more pods."""
    from dockyard.engine.pods import start

    _each(ctx, pods, start)


@pod_group.command("stop")
@flags.option(
    "-t", "--time", "timeout", type=int, help="Seconds to wait for the containers to stop"
)
@flags.argument("pods", nargs=-1, required=True)
@flags.pass_context
def stop_cmd(ctx: flags.Context, timeout: int | None, pods: tuple[str, ...]) -> None:
    """Stop one or more pods."""
    from dockyard.engine.pods import stop

    _each(ctx, pods, lambda engine, ref: stop(engine, ref, timeout))


@pod_group.command("restart")
@flags.argument("pods", nargs=-1, required=True)
@flags.pass_context
def restart_cmd(ctx: flags.Context, pods: tuple[str, ...]) -> None:
    """Restart one or more pods."""
    from dockyard.engine.pods import restart

    _each(ctx, pods, restart)


@pod_group.command("kill")
@flags.option("-s", "--signal", default="SIGKILL", help="Signal to send to the containers")
@flags.argument("pods", nargs=-1, required=True)
@flags.pass_context
def kill_cmd(ctx: flags.Context, signal: str, pods: tuple[str, ...]) -> None:
    """Send a signal to the containers of one or more pods."""
    from dockyard.engine.pods import kill

    _each(ctx, pods, lambda engine, ref: kill(engine, ref, signal))


@pod_group.command("rm")
@flags.option("-f", "--force", is_flag=True, help="Stop running containers first")
@flags.argument("pods", nargs=-1, required=True)
@flags.pass_context
def rm_cmd(ctx: flags.Context, force: bool, pods: tuple[str, ...]) -> None:
    """Remove one or more pods and their containers."""
    from dockyard.engine.pods import remove

    _each(ctx, pods, lambda engine, ref: remove(engine, ref, force))


@pod_group.command("ls")
@flags.option("-q", "--quiet", is_flag=True, help="Print the IDs only")
@flags.option("--no-trunc", is_flag=True, help="Do not truncate the IDs")
@flags.pass_context
def ls_cmd(ctx: flags.Context, quiet: bool, no_trunc: bool) -> None:
    """List pods."""
    from dockyard.cli.format import human_duration, table
    from dockyard.clock import parse_time
    from dockyard.engine.pods import list_pods, members, status

    engine = _engine(ctx)
    width = 64 if no_trunc else 12
    rows = [["POD ID", "NAME", "STATUS", "CREATED", "INFRA ID", "# OF CONTAINERS"]]
    for pod in list_pods(engine):
        if quiet:
            flags.echo(pod["id"][:width])
            continue
        ago = human_duration(time.time() - parse_time(pod["created"])) + " ago"
        rows.append([pod["id"][:width], pod["name"], status(engine, pod), ago, pod["infra_id"][:width],
                     str(1 + len(members(engine, pod["id"])))])  # fmt: skip
    if not quiet:
        flags.echo(table(rows), nl=False)


pod_group.add_command(ls_cmd, "ps")
pod_group.add_command(ls_cmd, "list")


@pod_group.command("inspect")
@flags.argument("pods", nargs=-1, required=True)
@flags.pass_context
def inspect_cmd(ctx: flags.Context, pods: tuple[str, ...]) -> None:
    """Display the configuration of one or more pods."""
    from dockyard import _json as json
    from dockyard.engine.pods import inspect

    engine = _engine(ctx)
    out = [inspect(engine, ref) for ref in pods]
    flags.echo(json.dumps(out[0] if len(out) == 1 else out, indent=4))


@pod_group.command("top")
@flags.argument("pod")
@flags.pass_context
def top_cmd(ctx: flags.Context, pod: str) -> None:
    """Display the running processes of a pod's containers."""
    from dockyard.cli.format import table
    from dockyard.engine.pods import lookup, members

    engine = _engine(ctx)
    found = lookup(engine, pod)
    rows: list[list[str]] = []
    for rec in members(engine, found["id"]):
        if rec["status"] not in ("running", "paused"):
            continue
        top = engine.top(rec["id"])
        if not rows:
            rows.append(["CONTAINER", *top["Titles"]])
        rows += [[rec["name"], *p] for p in top["Processes"]]
    flags.echo(table(rows), nl=False)


@pod_group.command("logs")
@flags.option("-f", "--follow", is_flag=True, help="Follow log output")
@flags.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@flags.argument("pod")
@flags.pass_context
def logs_cmd(ctx: flags.Context, follow: bool, timestamps: bool, pod: str) -> None:
    """The logs of a pod's containers, each line prefixed with its container's name."""
    from dockyard.cli import prefixed_logs
    from dockyard.engine.logs import records
    from dockyard.engine.pods import lookup, members

    engine = _engine(ctx)
    recs = members(engine, lookup(engine, pod)["id"])
    prefixes = prefixed_logs.Prefixes([r["name"] for r in recs], colour=False)
    if follow:
        prefixed_logs.follow(engine, [r["id"] for r in recs], prefixes, timestamps)
        return
    for rec in recs:  # each container's lines together, oldest container first
        for r in records(engine, rec["id"]):
            flags.echo(prefixes(rec["name"]) + prefixed_logs.log_line(r, timestamps), nl=False)
