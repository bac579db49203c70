"""Container commands: run, create, start, stop, restart, kill, rm, ps, logs, wait, inspect,
pause, unpause, rename, exec, top, update, prune, attach (create's flags are in
``container_flags``; cp, diff, commit and export in ``container_files``)."""

from __future__ import annotations

import os
import select
import time

from dockyard import _json as json
from dockyard.cli import flags
from dockyard.cli.container_flags import build_request, create_options, restart_policy
from dockyard.cli.format import human_duration, table
from dockyard.clock import parse_time, time_bound
from dockyard.engine import stream
from dockyard.engine.attach import parse_detach_keys
from dockyard.engine.containers import Engine
from dockyard.errors import (
    DockyardError,
    ImageNotFound,
    InvalidArgument,
)

__all__ = ["register"]


from dockyard.cli._context import engine as _engine
from dockyard.units import ram_in_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@flags.command("create", context_settings={"allow_interspersed_args": False})
@create_options
@flags.pass_context
def create_cmd(ctx: flags.Context, **kw: Any) -> None:
    """Create a new container."""
    image, config, host, name = build_request(kw)
    networking = host.pop("_NetworkingConfig")
    flags.echo(_create(_engine(ctx), kw, image, config, host, name, networking))


@flags.command("run", context_settings={"allow_interspersed_args": False})
@flags.option(
    "-d", "--detach", is_flag=True, help="Run container in background and print container ID"
)
@flags.option(
    "--sig-proxy/--no-sig-proxy", default=True, help="Proxy received signals to the process"
)
@flags.option(
    "--detach-keys", default="ctrl-p,ctrl-q", help="Override the key sequence for detaching"
)
@create_options
@flags.pass_context
def run_cmd(ctx: flags.Context, detach: bool, sig_proxy: bool, detach_keys: str, **kw: Any) -> None:
    """Create and run a new container from an image."""
    if kw.get("init_ctr"):
        raise InvalidArgument("--init-ctr is for create: pod start runs a pod's init containers")
    engine = _engine(ctx)
    image, config, host, name = build_request(kw)
    networking = host.pop("_NetworkingConfig")
    cid = _create(engine, kw, image, config, host, name, networking)
    if detach:
        try:
            engine.start(cid)
        except DockyardError:
            if host["AutoRemove"]:
                engine.remove(cid, force=True)
            raise
        flags.echo(cid)
        return
    monitor = engine.start(cid, attach=True)
    try:
        code = _attach(engine, cid, config["OpenStdin"], config["Tty"], sig_proxy,
                       parse_detach_keys(detach_keys), monitor.attach)  # fmt: skip
    except DockyardError:
        monitor.wait()  # a start error: with --rm the monitor removes the container first, as Docker
        raise
    if code is None:  # detached with the key sequence: the container goes on
        flags.echo("read escape sequence", err=True)
        ctx.exit(0)
    monitor.wait()  # with --rm the monitor removes the container before it exits
    ctx.exit(code)


def _create(engine: Engine, kw: dict[str, Any], image: str, config: dict[str, Any], host: dict[str, Any],
            name: str | None, networking: dict[str, Any] | None) -> str:  # fmt: skip
    """``engine.create``, pulling the image first as ``--pull`` says (progress on stderr, as Docker)."""
    import sys

    def fetch() -> None:
        from dockyard.jsonmessage import TextRenderer
        from dockyard.registry.transfer import pull

        with TextRenderer(sys.stderr) as progress:
            pull(engine.images, image, kw.get("platform"), progress, implicit=True)

    cidfile = kw.get("cidfile")
    if cidfile and os.path.exists(cidfile):
        raise InvalidArgument(f"Container ID file found, make sure the other container isn't running "
                              f"or delete {cidfile}")  # fmt: skip
    if kw.get("pull") == "always":
        fetch()
    if kw.get("init_ctr") and not kw.get("pod"):
        raise InvalidArgument("--init-ctr needs --pod")
    if kw.get("pod"):
        from dockyard.engine.pods import add_member

        add_member(engine, kw["pod"], config, host, kw.get("init_ctr") or "")
    try:
        cid = engine.create(image, config, host, name, networking)
    except ImageNotFound as err:
        if kw.get("pull") != "missing":
            raise
        sys.stderr.write(f"{err}\n")
        sys.stderr.flush()
        fetch()
        cid = engine.create(image, config, host, name, networking)
    from dockyard.engine.spec import create_warnings

    for warning in create_warnings(host):
        sys.stderr.write(f"WARNING: {warning}\n")
        sys.stderr.flush()
    if cidfile:
        with open(cidfile, "w") as f:
            f.write(cid)
    return cid


def _attach(engine: Engine, cid: str, stdin: bool, tty: bool, sig_proxy: bool,
            detach_keys: bytes = b"\x10\x11", sock: Any = None) -> int | None:  # fmt: skip
    """Stream the container's output here (and our input there) until it exits; its exit code,
    or None when the user detached with the key sequence. ``sock`` is the socket a monitor
    started for us hands over; without it we connect to the running container's."""
    from dockyard.engine.attach import AttachSession, DetachKeys

    session = AttachSession(engine, cid, sock)
    saved_tty = None
    if tty and stdin and os.isatty(0):
        import termios
        import tty as tty_mod

        saved_tty = termios.tcgetattr(0)
        tty_mod.setraw(0)
        import signal as signal_mod

        def resize(*_args: Any) -> None:
            cols, rows = os.get_terminal_size(0)
            session.resize(rows, cols)

        resize()
        signal_mod.signal(signal_mod.SIGWINCH, resize)
    if sig_proxy and not tty:
        # the C module: `signal` wraps every constant in an enum, ~2 ms of each `run`
        import _signal as signal

        def forward(sig: int, _frame: Any) -> None:
            try:
                engine.kill(cid, str(sig))
            except DockyardError:
                pass

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, forward)
    from dockyard.engine.monitor import warm_finish

    warm_finish()
    watch: list[Any] = [session] + ([0] if stdin else [])
    keys = DetachKeys(detach_keys if tty else b"")
    try:
        while not session.done:
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:
                continue
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    session.close_stdin()
                    watch.remove(0)
                else:
                    data, detached = keys.feed(data)
                    session.send(data)
                    if detached:
                        return None
            if session in ready:
                for kind, payload in session.read():
                    stream.send_all(1 if kind == stream.STDOUT else 2, payload)
        return session.exit_code
    finally:
        if saved_tty is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved_tty)
        session.close()


@flags.command("start")
@flags.option("-a", "--attach", is_flag=True, help="Attach STDOUT/STDERR and forward signals")
@flags.option("-i", "--interactive", is_flag=True, help="Attach container's STDIN")
@flags.argument("containers", nargs=-1, required=True)
@flags.pass_context
def start_cmd(
    ctx: flags.Context, attach: bool, interactive: bool, containers: tuple[str, ...]
) -> None:
    """Start one or more stopped containers."""
    engine = _engine(ctx)
    if attach or interactive:
        if len(containers) > 1:
            raise InvalidArgument("you cannot start and attach multiple containers at once")
        cid = engine.lookup(containers[0])
        rec = engine.record(cid)
        monitor = engine.start(cid, attach=True)
        # already running: docker start -a attaches to it
        code = _attach(engine, cid, interactive, rec["config"].get("Tty", False), True,
                       sock=monitor.attach if monitor is not None else None)  # fmt: skip
        if monitor is not None:
            monitor.wait()
        ctx.exit(code)
    for ref in containers:
        engine.start(engine.lookup(ref))
        flags.echo(ref)


@flags.command("stop")
@flags.option(
    "-t", "--time", "timeout", type=int, help="Seconds to wait before killing the container"
)
@flags.option("-s", "--signal", "sig", help="Signal to send to the container")
@flags.argument("containers", nargs=-1, required=True)
@flags.pass_context
def stop_cmd(
    ctx: flags.Context, timeout: int | None, sig: str | None, containers: tuple[str, ...]
) -> None:
    """Stop one or more running containers."""
    engine = _engine(ctx)
    for ref in containers:
        note = engine.stop(engine.lookup(ref), timeout)
        if note:
            flags.echo(f"dockyard: {ref}: {note}", err=True)
        flags.echo(ref)


@flags.command("restart")
@flags.option(
    "-t", "--time", "timeout", type=int, help="Seconds to wait before killing the container"
)
@flags.argument("containers", nargs=-1, required=True)
@flags.pass_context
def restart_cmd(ctx: flags.Context, timeout: int | None, containers: tuple[str, ...]) -> None:
    """Restart one or more containers."""
    engine = _engine(ctx)
    failed = False
    for ref in containers:
        try:
            note = engine.restart(engine.lookup(ref), timeout)
        except DockyardError as err:
            flags.echo(f"dockyard: {err}", err=True)
            failed = True
            continue
        if note:
            flags.echo(f"dockyard: {ref}: {note}", err=True)
        flags.echo(ref)
    if failed:
        raise flags.Exit(1)


@flags.command("kill")
@flags.option("-s", "--signal", "sig", default="KILL", help="Signal to send to the container")
@flags.argument("containers", nargs=-1, required=True)
@flags.pass_context
def kill_cmd(ctx: flags.Context, sig: str, containers: tuple[str, ...]) -> None:
    """Kill one or more running containers."""
    engine = _engine(ctx)
    for ref in containers:
        engine.kill(engine.lookup(ref), sig)
        flags.echo(ref)


@flags.command("rm")
@flags.option(
    "-f", "--force", is_flag=True, help="Force the removal of a running container (uses SIGKILL)"
)
@flags.option(
    "-v", "--volumes", is_flag=True, help="Remove anonymous volumes associated with the container"
)
@flags.argument("containers", nargs=-1, required=True)
@flags.pass_context
def rm_cmd(ctx: flags.Context, force: bool, volumes: bool, containers: tuple[str, ...]) -> None:
    """Remove one or more containers."""
    engine = _engine(ctx)
    failed = False
    for ref in containers:  # each one, as Docker: an error for one does not keep the others
        try:
            engine.remove(engine.lookup(ref), force, volumes)
        except DockyardError as err:
            flags.echo(f"dockyard: {err}", err=True)
            failed = True
            continue
        flags.echo(ref)
    if failed:
        raise flags.Exit(1)


def _command_text(cfg: dict[str, Any], trunc: bool) -> str:
    cmd = " ".join(list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or []))
    if trunc and len(cmd) > 20:
        cmd = cmd[:19] + "…"
    return f'"{cmd}"'


@flags.command("ps")
@flags.option(
    "-a", "--all", "all_", is_flag=True, help="Show all containers (default shows just running)"
)
@flags.option("-q", "--quiet", is_flag=True, help="Only display container IDs")
@flags.option("-n", "--last", "last", type=int, default=-1, help="Show n last created containers")
@flags.option("-l", "--latest", is_flag=True, help="Show the latest created container")
@flags.option("-s", "--size", is_flag=True, help="Display total file sizes")
@flags.option("--no-trunc", is_flag=True, help="Don't truncate output")
@flags.option("--pod", "pods", is_flag=True, help="Show the pod each container belongs to")
@flags.option(
    "-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided"
)
@flags.option(
    "--format",
    "fmt",
    default="table",
    help="'table', 'json', or a Go template ('table TEMPLATE' aligns it)",
)
@flags.pass_context
def ps_cmd(ctx: flags.Context, all_: bool, quiet: bool, last: int, latest: bool, size: bool, no_trunc: bool,
           pods: bool, filters: tuple[str, ...], fmt: str) -> None:  # fmt: skip
    """List containers."""
    engine = _engine(ctx)
    if latest:
        last = 1
    from dockyard.engine import listing
    from dockyard.filters import Filters

    recs = listing.containers(engine, all_, Filters.parse(filters), last)
    if quiet:
        for r in recs:
            flags.echo(r["id"] if no_trunc else r["id"][:12])
        return
    rows = []
    for r in recs:
        row = {"ID": r["id"] if no_trunc else r["id"][:12], "Image": r["image_ref"],
               "Command": _command_text(r["config"], not no_trunc), "CreatedAt": r["created"],
               "RunningFor": human_duration(time.time() - parse_time(r["created"])) + " ago",
               "Status": listing.status_text(r), "State": r["status"], "Ports": _ports_text(engine, r), "Names": r["name"]}  # fmt: skip
        if size:
            from dockyard.image.store import du

            row["Size"] = _human(du(engine.images.snapshots.fs(r["id"])))
        if pods:
            row["Pod"], row["PodName"] = _pod_of(engine, r)
        rows.append(row)
    if fmt not in ("table", "json"):
        from dockyard.cli.format import templated

        for row, r in zip(rows, recs, strict=True):
            labels = r["config"].get("Labels") or {}
            row["Labels"] = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            row["Label"] = lambda key, labels=labels: labels.get(key, "")
            row.setdefault("Size", "")
        flags.echo(templated(rows, fmt, _PS_HEADERS), nl=False)
        return
    if fmt == "json":
        for row in rows:
            flags.echo(json.dumps(row, sort_keys=True))
        return
    header = (
        ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
        + (["SIZE"] if size else [])
        + (["POD ID", "PODNAME"] if pods else [])
    )
    body = [[r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], r["Ports"], r["Names"]]
            + ([r["Size"]] if size else []) + ([r["Pod"], r["PodName"]] if pods else []) for r in rows]  # fmt: skip
    flags.echo(table([header, *body]), nl=False)


# what a ``table`` template's header line says for each field, as Docker's
_PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
               "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
               "Names": "NAMES", "Labels": "LABELS", "Label": lambda key: "LABEL", "Pod": "POD ID",
               "PodName": "PODNAME"}  # fmt: skip


def _pod_of(engine: Engine, rec: dict[str, Any]) -> tuple[str, str]:
    """(pod ID, pod name) of a pod's container; empty for the others."""
    pod_id = (rec["config"].get("Labels") or {}).get("io.dockyard.pod")
    if not pod_id:
        return "", ""
    from dockyard.engine.pods import PodNotFound, lookup

    try:
        pod = lookup(engine, pod_id)
    except PodNotFound:
        return pod_id[:12], ""
    return pod["id"][:12], pod["name"]


def _ports_text(engine: Engine, rec: dict[str, Any]) -> str:
    if not rec["config"].get("ExposedPorts") and not (rec["host_config"].get("PortBindings")):
        return ""
    from dockyard.engine.networking import ports_text

    return ports_text(engine, rec["id"])


def _human(n: int) -> str:
    from dockyard.cli.format import human_size

    return human_size(n)


@flags.command("logs")
@flags.option("-f", "--follow", is_flag=True, help="Follow log output")
@flags.option(
    "-n", "--tail", default="all", help="Number of lines to show from the end of the logs"
)
@flags.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@flags.option("--since", help="Show logs since timestamp (RFC 3339) or relative (e.g. 42m)")
@flags.option("--until", help="Show logs before a timestamp (RFC 3339) or relative (e.g. 42m)")
@flags.argument("container")
@flags.pass_context
def logs_cmd(ctx: flags.Context, follow: bool, tail: str, timestamps: bool, since: str | None,
             until: str | None, container: str) -> None:  # fmt: skip
    """Fetch the logs of a container."""
    from dockyard.engine.logs import records

    engine = _engine(ctx)
    cid = engine.lookup(container)
    if tail != "all" and not tail.lstrip("-").isdigit():
        raise InvalidArgument(f"invalid value for tail: {tail}")
    lines = None if tail == "all" or int(tail) < 0 else int(tail)
    for r in records(engine, cid, time_bound(since), time_bound(until), lines, follow):
        _print_record(r, timestamps)


def _print_record(r: dict[str, Any], timestamps: bool) -> None:
    text = (r["time"] + " " if timestamps else "") + r["log"]
    stream.send_all(2 if r["stream"] == "stderr" else 1, text.encode())


@flags.command("wait")
@flags.argument("containers", nargs=-1, required=True)
@flags.pass_context
def wait_cmd(ctx: flags.Context, containers: tuple[str, ...]) -> None:
    """Block until one or more containers stop, then print their exit codes."""
    engine = _engine(ctx)
    for ref in containers:
        flags.echo(engine.wait(engine.lookup(ref)))


@flags.command("inspect")
@flags.argument("names", nargs=-1, required=True)
@flags.option("--type", "kind", type=flags.Choice(["container", "image"]), default=None)
@flags.option(
    "-f", "--format", "fmt", default=None, help="Format the output using the given Go template"
)
@flags.pass_context
def inspect_cmd(
    ctx: flags.Context, names: tuple[str, ...], kind: str | None, fmt: str | None
) -> None:
    """Return low-level information on containers or images."""
    inspect_objects(ctx, names, kind, fmt)


def print_inspected(objects: list[Any], fmt: str | None) -> None:
    """Docker's inspect output: a JSON array, or each object through a Go template."""
    if not fmt:
        flags.echo(json.dumps(objects, indent=4))
        return
    from dockyard.cli.gotemplate import Template, TemplateError, prepare

    try:
        template = Template(prepare(fmt)[1])
        text = "".join(template.execute(obj) + "\n" for obj in objects)
    except TemplateError as err:
        raise InvalidArgument(f"template parsing error: {err}") from None
    flags.echo(text, nl=False)


def inspect_objects(
    ctx: flags.Context, names: tuple[str, ...], kind: str | None, fmt: str | None = None
) -> None:
    """Print ContainerJSON/ImageInspect for each name; exit 1 naming the first one not found."""
    from dockyard.engine.images import inspect as inspect_image
    from dockyard.errors import NotFound

    engine = _engine(ctx)
    out, missing = [], []
    for name in names:
        try:
            if kind != "image":
                try:
                    out.append(engine.inspect(name))
                    continue
                except NotFound:
                    if kind == "container":
                        raise
            out.append(inspect_image(engine.images, engine.images.resolve(name)))
        except NotFound:
            missing.append(name)
    print_inspected(out, fmt)
    if missing:
        what = {"image": "image", "container": "container"}.get(kind or "", "object")
        flags.echo(f"dockyard: Error: No such {what}: {missing[0]}", err=True)
        ctx.exit(1)


def register(cli: flags.Group) -> None:
    commands = (
        run_cmd,
        create_cmd,
        start_cmd,
        stop_cmd,
        restart_cmd,
        kill_cmd,
        rm_cmd,
        ps_cmd,
        logs_cmd,
        wait_cmd,
    )
    for cmd in commands:
        cli.add_command(cmd)
    cli.add_command(inspect_cmd)

    @flags.group("container")
    def container_group() -> None:
        """Manage containers."""

    for cmd in commands:
        container_group.add_command(cmd)
    container_group.add_command(ps_cmd, "ls")
    container_group.add_command(ps_cmd, "list")
    container_group.add_command(inspect_cmd, "inspect")
    register_more(cli, container_group)
    cli.add_command(container_group)

    def the_rest() -> None:
        from dockyard.cli import events, networks, stats, volumes

        cli.add_command(events.events_cmd)
        networks.register(cli, container_group)
        cli.add_command(stats.stats_cmd)
        container_group.add_command(stats.stats_cmd)
        cli.add_command(volumes.volume_group)

    done: list[bool] = []

    def once() -> None:  # whichever group asks first registers for both
        if not done:
            done.append(True)
            the_rest()

    cli.defer(once)
    container_group.defer(once)


@flags.command("pause")
@flags.argument("containers", nargs=-1, required=True)
@flags.pass_context
def pause_cmd(ctx: flags.Context, containers: tuple[str, ...]) -> None:
    """Pause all processes within one or more containers."""
    engine = _engine(ctx)
    for ref in containers:
        engine.pause(engine.lookup(ref))
        flags.echo(ref)


@flags.command("unpause")
@flags.argument("containers", nargs=-1, required=True)
@flags.pass_context
def unpause_cmd(ctx: flags.Context, containers: tuple[str, ...]) -> None:
    """Unpause all processes within one or more containers."""
    engine = _engine(ctx)
    for ref in containers:
        engine.unpause(engine.lookup(ref))
        flags.echo(ref)


@flags.command("rename")
@flags.argument("container")
@flags.argument("new_name")
@flags.pass_context
def rename_cmd(ctx: flags.Context, container: str, new_name: str) -> None:
    """Rename a container."""
    engine = _engine(ctx)
    engine.rename(engine.lookup(container), new_name)


@flags.command("exec", context_settings={"allow_interspersed_args": False})
@flags.option("-d", "--detach", is_flag=True, help="Detached mode: run command in the background")
@flags.option("-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached")
@flags.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY")
@flags.option("-e", "--env", multiple=True, help="Set environment variables")
@flags.option("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
@flags.option("-w", "--workdir", help="Working directory inside the container")
@flags.argument("container")
@flags.argument("command", nargs=-1, required=True, type=flags.UNPROCESSED)
@flags.pass_context
def exec_cmd(ctx: flags.Context, detach: bool, interactive: bool, tty: bool, env: tuple[str, ...],
             user: str | None, workdir: str | None, container: str, command: tuple[str, ...]) -> None:  # fmt: skip
    """Execute a command in a running container."""
    from dockyard.engine import execs

    engine = _engine(ctx)
    config = {"Cmd": list(command), "Tty": tty, "AttachStdin": interactive, "AttachStdout": not detach,
              "AttachStderr": not detach, "User": user or "", "WorkingDir": workdir or "",
              "Env": [e if "=" in e else f"{e}={os.environ.get(e, '')}" for e in env]}  # fmt: skip
    exec_id = execs.create(engine, container, config)
    if not interactive and not detach:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    code = execs.start(engine, exec_id, detach)
    ctx.exit(code or 0)


@flags.command("top", context_settings={"allow_interspersed_args": False})
@flags.argument("container")
@flags.argument("ps_args", nargs=-1, type=flags.UNPROCESSED)
@flags.pass_context
def top_cmd(ctx: flags.Context, container: str, ps_args: tuple[str, ...]) -> None:
    """Display the running processes of a container."""
    engine = _engine(ctx)
    body = engine.top(engine.lookup(container), list(ps_args))
    flags.echo(table([body["Titles"], *body["Processes"]]), nl=False)


@flags.command("update")
@flags.option("-m", "--memory", help="Memory limit")
@flags.option("--cpus", type=float, help="Number of CPUs")
@flags.option("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
@flags.option("--pids-limit", type=int, help="Tune container pids limit (-1 for unlimited)")
@flags.option("--restart", help="Restart policy to apply when a container exits")
@flags.argument("containers", nargs=-1, required=True)
@flags.pass_context
def update_cmd(ctx: flags.Context, memory: str | None, cpus: float | None, cpu_shares: int | None,
               pids_limit: int | None, restart: str | None, containers: tuple[str, ...]) -> None:  # fmt: skip
    """Update configuration of one or more containers."""
    engine = _engine(ctx)
    changes = {"Memory": ram_in_bytes(memory) if memory else None, "NanoCpus": int(cpus * 1e9) if cpus else None,
               "CpuShares": cpu_shares, "PidsLimit": pids_limit,
               "RestartPolicy": restart_policy(restart) if restart else None}  # fmt: skip
    for ref in containers:
        engine.update(engine.lookup(ref), changes)
        flags.echo(ref)


@flags.command("prune")
@flags.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@flags.pass_context
def container_prune_cmd(ctx: flags.Context, force: bool) -> None:
    """Remove all stopped containers."""
    if not force and not flags.confirm(
        "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?"
    ):
        return
    gone = _engine(ctx).prune()
    if gone:
        flags.echo("Deleted Containers:\n" + "\n".join(gone) + "\n")
    flags.echo("Total reclaimed space: 0B")


@flags.command("attach")
@flags.option("--no-stdin", is_flag=True, help="Do not attach STDIN")
@flags.option(
    "--sig-proxy/--no-sig-proxy", default=True, help="Proxy all received signals to the process"
)
@flags.option(
    "--detach-keys", default="ctrl-p,ctrl-q", help="Override the key sequence for detaching"
)
@flags.argument("container")
@flags.pass_context
def attach_cmd(
    ctx: flags.Context, no_stdin: bool, sig_proxy: bool, detach_keys: str, container: str
) -> None:
    """Attach local standard input, output, and error streams to a running container."""
    engine = _engine(ctx)
    cid = engine.lookup(container)
    rec = engine.refresh(cid)
    if rec["status"] not in ("running", "paused"):
        raise InvalidArgument("You cannot attach to a stopped container, start it first")
    stdin = rec["config"].get("OpenStdin") and not no_stdin
    code = _attach(
        engine,
        cid,
        bool(stdin),
        bool(rec["config"].get("Tty")),
        sig_proxy,
        parse_detach_keys(detach_keys),
    )
    if code is None:
        flags.echo("read escape sequence", err=True)
        ctx.exit(0)
    ctx.exit(engine.wait(cid))


def register_more(cli: flags.Group, group: flags.Group) -> None:
    for cmd in (pause_cmd, unpause_cmd, rename_cmd, exec_cmd, top_cmd, update_cmd, attach_cmd):
        cli.add_command(cmd)
        group.add_command(cmd)
    for name, text in (("cp", "Copy files between a container and the host"),
                       ("diff", "Inspect changes to files or directories on a container's filesystem"),
                       ("commit", "Create a new image from a container's changes"),
                       ("export", "Export a container's filesystem as a tar archive")):  # fmt: skip

        def load(name: str = name) -> flags.Command:
            from dockyard.cli import container_files

            return getattr(container_files, f"{name}_cmd")

        lazy = flags.LazyCommand(name, text, load)
        cli.add_command(lazy)
        group.add_command(lazy)
    group.add_command(container_prune_cmd)
