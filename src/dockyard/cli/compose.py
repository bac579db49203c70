"""``dockyard compose``: Compose projects through the engine (``dockyard.compose``)."""

from __future__ import annotations

import sys

from dockyard.cli import flags, prefixed_logs
from dockyard.cli._context import engine as _engine

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.compose.model import Project

__all__ = ["compose_group"]


@flags.group("compose")
@flags.option("-f", "--file", "files", multiple=True, help="Compose configuration files")
@flags.option("-p", "--project-name", "project", help="Project name")
@flags.option("--project-directory", help="Alternate working directory")
@flags.option("--env-file", "env_files", multiple=True, help="Alternate environment files")
@flags.option("--profile", "profiles", multiple=True, help="Profiles to enable")
@flags.pass_context
def compose_group(ctx: flags.Context, files: tuple[str, ...], project: str | None, project_directory: str | None,
                  env_files: tuple[str, ...], profiles: tuple[str, ...]) -> None:  # fmt: skip
    """Define and run multi-container applications (the Compose Specification)."""
    ctx.find_root().obj["compose"] = {"files": list(files), "project": project, "workdir": project_directory,
                                      "env_files": list(env_files), "profiles": list(profiles)}  # fmt: skip


def _project(ctx: flags.Context) -> Project:
    import os

    from dockyard.compose.model import load

    opts = ctx.find_root().obj["compose"]
    return load(opts["files"] or None, opts["project"], opts["workdir"], opts["env_files"] or None,
                opts["profiles"] or None, os.path.join(ctx.find_root().obj["root"], "compose", ".parsed"))  # fmt: skip


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


@compose_group.command("up")
@flags.option(
    "-d", "--detach", is_flag=True, help="Detached mode: run containers in the background"
)
@flags.option("--build", is_flag=True, help="Build images before starting containers")
@flags.option(
    "--force-recreate",
    is_flag=True,
    help="Recreate containers even if their configuration is unchanged",
)
@flags.option("--no-deps", is_flag=True, help="Don't start linked services")
@flags.option(
    "--wait", is_flag=True, help="Wait for services to be running|healthy (implies --detach)"
)
@flags.option("--wait-timeout", type=int, default=120, help="Maximum duration in seconds to wait")
@flags.option(
    "--dry-run", is_flag=True, help="Say, per service, what would happen and why; change nothing"
)
@flags.option("--rollout", is_flag=True,
              help="Replace changed services' containers one at a time, each healthy before an old one goes")  # fmt: skip
@flags.option(
    "--remove-orphans", is_flag=True, help="Remove containers for services not in the file"
)
@flags.option("--scale", multiple=True, help="Scale SERVICE to NUM instances (SERVICE=NUM)")
@flags.argument("services", nargs=-1)
@flags.pass_context
def up_cmd(ctx: flags.Context, detach: bool, build: bool, force_recreate: bool, no_deps: bool, wait: bool,
           wait_timeout: int, dry_run: bool, rollout: bool, remove_orphans: bool, scale: tuple[str, ...],
           services: tuple[str, ...]) -> None:  # fmt: skip
    """Create and start containers."""
    from dockyard.compose import apply
    from dockyard.errors import InvalidArgument

    engine = _engine(ctx)
    project = _project(ctx)
    for item in scale:
        name, eq, num = item.partition("=")
        if not eq or not num.isdigit() or name not in project.services:
            raise InvalidArgument(
                f"invalid --scale {item!r}: want SERVICE=NUM for a service of the project"
            )
        project.services[name]["replicas"] = int(num)
    if dry_run:
        for line in apply.up(engine, project, list(services) or None, force_recreate=force_recreate,
                             no_deps=no_deps, dry_run=True):  # fmt: skip
            flags.echo(line)
        return
    ids = apply.up(engine, project, list(services) or None, build, force_recreate, no_deps, wait_timeout, _say,
                   rollout=rollout, remove_orphans=remove_orphans)  # fmt: skip
    if wait:
        apply.wait_healthy(engine, ids, wait_timeout)
    if not (detach or wait):
        prefixed_logs.follow(engine, ids)


@compose_group.command("down")
@flags.option("-v", "--volumes", is_flag=True, help="Remove named volumes declared in the project")
@flags.option("-t", "--timeout", type=int, help="Specify a shutdown timeout in seconds")
@flags.option("--rmi", default="", help='Remove images used by services: "local" or "all"')
@flags.option(
    "--remove-orphans",
    is_flag=True,
    help="Remove containers for services not defined in the Compose file",
)
@flags.pass_context
def down_cmd(
    ctx: flags.Context, volumes: bool, timeout: int | None, rmi: str, remove_orphans: bool
) -> None:
    """Stop and remove containers, networks (and volumes, images)."""
    from dockyard.compose import apply

    if rmi and rmi not in ("local", "all"):
        from dockyard.errors import InvalidArgument

        raise InvalidArgument(f'invalid --rmi value "{rmi}": use local or all')
    apply.down(_engine(ctx), _project(ctx), volumes, timeout, _say, remove_orphans, rmi)


@compose_group.command("ps")
@flags.option("-a", "--all", "all_", is_flag=True, help="Show all stopped containers")
@flags.option("-q", "--quiet", is_flag=True, help="Only display IDs")
@flags.pass_context
def ps_cmd(ctx: flags.Context, all_: bool, quiet: bool) -> None:
    """List containers."""
    from dockyard.cli.format import table
    from dockyard.compose.apply import P, project_containers
    from dockyard.engine import listing

    engine = _engine(ctx)
    recs = [
        r
        for r in project_containers(engine, _project(ctx).name)
        if all_ or r["status"] in ("running", "paused", "restarting")
    ]
    if quiet:
        for r in recs:
            flags.echo(r["id"])
        return
    rows = [["NAME", "IMAGE", "SERVICE", "STATUS"]]
    for r in recs:
        rows.append(
            [
                r["name"],
                r["image_ref"],
                r["config"]["Labels"].get(P + "service", ""),
                listing.status_text(r),
            ]
        )
    flags.echo(table(rows), nl=False)


@compose_group.command("config")
@flags.option("--services", is_flag=True, help="Print the service names, one per line")
@flags.option("--volumes", is_flag=True, help="Print the volume names, one per line")
@flags.option(
    "--format", "fmt", default="yaml", type=flags.Choice(["yaml", "json"]), help="Format the output"
)
@flags.pass_context
def config_cmd(ctx: flags.Context, services: bool, volumes: bool, fmt: str) -> None:
    """Parse, resolve and render the compose file in canonical format."""
    project = _project(ctx)
    if services:
        flags.echo("\n".join(project.services), nl=bool(project.services))
        return
    if volumes:
        flags.echo("\n".join(project.volumes), nl=bool(project.volumes))
        return
    model = {"name": project.name, "services": project.services, "networks": project.networks,
             "volumes": project.volumes}  # fmt: skip
    for kind in ("configs", "secrets"):  # what they hold stays out of the printout
        if getattr(project, kind):
            model[kind] = {k: {"file": v["file"]} if "file" in v else {"content": "(hidden)"}
                           for k, v in getattr(project, kind).items()}  # fmt: skip
    if fmt == "json":
        from dockyard import _json as json

        flags.echo(json.dumps(model))
        return
    import yaml

    flags.echo(yaml.safe_dump(model, sort_keys=False), nl=False)


@compose_group.command("logs")
@flags.option("-f", "--follow", is_flag=True, help="Follow log output")
@flags.option("--no-log-prefix", is_flag=True, help="Don't print prefix in logs")
@flags.option("--no-color", is_flag=True, help="Produce monochrome output")
@flags.option("-t", "--timestamps", is_flag=True, help="Show timestamps")
@flags.option(
    "-n",
    "--tail",
    default="all",
    help="Number of lines to show from the end of the logs for each container",
)
@flags.argument("services", nargs=-1)
@flags.pass_context
def logs_cmd(ctx: flags.Context, follow: bool, no_log_prefix: bool, no_color: bool, timestamps: bool,
             tail: str, services: tuple[str, ...]) -> None:  # fmt: skip
    """View output from containers."""
    from dockyard.compose.apply import P, project_containers
    from dockyard.engine.logs import records
    from dockyard.errors import InvalidArgument

    engine = _engine(ctx)
    recs = [r for r in project_containers(engine, _project(ctx).name)
            if not services or r["config"]["Labels"].get(P + "service") in services]  # fmt: skip
    if tail != "all" and not tail.lstrip("-").isdigit():
        raise InvalidArgument(f"invalid tail value: {tail}")
    lines = None if tail == "all" else int(tail)
    prefixes = prefixed_logs.Prefixes(
        [r["name"] for r in recs], sys.stdout.isatty() and not no_color, not no_log_prefix
    )
    if follow:
        prefixed_logs.follow(engine, [r["id"] for r in recs], prefixes, timestamps, lines)
        return
    for r in recs:
        for line in records(engine, r["id"], tail=lines):
            flags.echo(prefixes(r["name"]) + prefixed_logs.log_line(line, timestamps), nl=False)


@compose_group.command("exec", context_settings={"allow_interspersed_args": False})
@flags.option("-T", "--no-TTY", "no_tty", is_flag=True, help="Disable pseudo-TTY allocation")
@flags.option(
    "--index", type=int, default=0, help="Index of the container if service has multiple replicas"
)
@flags.argument("service")
@flags.argument("command", nargs=-1, required=True, type=flags.UNPROCESSED)
@flags.pass_context
def exec_cmd(
    ctx: flags.Context, no_tty: bool, index: int, service: str, command: tuple[str, ...]
) -> None:
    """Execute a command in a running container."""
    import os

    from dockyard.compose.apply import project_containers
    from dockyard.engine import execs
    from dockyard.errors import InvalidArgument

    engine = _engine(ctx)
    recs = _replica(project_containers(engine, _project(ctx).name, service), index)
    if not recs:
        raise InvalidArgument(f"service {service!r} is not running")
    tty = not no_tty and os.isatty(0)
    exec_id = execs.create(engine, recs[0]["id"], {"Cmd": list(command), "Tty": tty, "AttachStdin": True,
                                                   "AttachStdout": True, "AttachStderr": True})  # fmt: skip
    ctx.exit(execs.start(engine, exec_id) or 0)


def _replica(recs: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    """``--index N``: the container numbered N; without it (0), the service's first, as
    Compose picks (numbers grow past 1 once a rollout replaced a container)."""
    from dockyard.compose.apply import P

    if index:
        return [r for r in recs if r["config"]["Labels"].get(P + "container-number") == str(index)]
    return recs[:1]  # project_containers sorts by number


def _name(ctx: flags.Context) -> str:
    import os

    from dockyard.compose.model import project_name

    opts = ctx.find_root().obj["compose"]
    given = opts["project"] or os.environ.get("COMPOSE_PROJECT_NAME")
    return project_name(given) if given else _project(ctx).name


@compose_group.command("history")
@flags.pass_context
def history_cmd(ctx: flags.Context) -> None:
    """List the project's revisions: number, time, what changed."""
    from dockyard.cli.format import table
    from dockyard.compose.revisions import history

    rows = [["REVISION", "CREATED", "CHANGES"]]
    rows += [[str(r["number"]), r["created"][:19].replace("T", " "), r["summary"]]
             for r in history(_engine(ctx), _name(ctx))]  # fmt: skip
    flags.echo(table(rows), nl=False)


@compose_group.command("rollback")
@flags.argument("revision", type=int, required=False)
@flags.pass_context
def rollback_cmd(ctx: flags.Context, revision: int | None) -> None:
    """Bring the project back to a revision (default: the one before the latest), images
    pinned as they were."""
    from dockyard.compose import apply
    from dockyard.compose.revisions import load_revision

    engine = _engine(ctx)
    project, images, number = load_revision(engine, _name(ctx), revision)
    _say(f" Rolling back {project.name} to revision {number}")
    apply.up(engine, project, say=_say, pinned=images)


def _containers(
    ctx: flags.Context, services: tuple[str, ...], all_: bool = True
) -> list[dict[str, Any]]:
    from dockyard.compose.apply import P, project_containers

    recs = project_containers(_engine(ctx), _name(ctx))
    return [r for r in recs if (not services or r["config"]["Labels"].get(P + "service") in services)
            and (all_ or r["status"] in ("running", "paused", "restarting"))]  # fmt: skip


@compose_group.command("stop")
@flags.option("-t", "--timeout", type=int, help="Specify a shutdown timeout in seconds")
@flags.argument("services", nargs=-1)
@flags.pass_context
def stop_cmd(ctx: flags.Context, timeout: int | None, services: tuple[str, ...]) -> None:
    """Stop services."""
    engine = _engine(ctx)
    for r in _containers(ctx, services, all_=False):
        engine.stop(r["id"], timeout)
        _say(f" Container {r['name']}  Stopped")


@compose_group.command("start")
@flags.argument("services", nargs=-1)
@flags.pass_context
def start_cmd(ctx: flags.Context, services: tuple[str, ...]) -> None:
    """Start services."""
    engine = _engine(ctx)
    for r in _containers(ctx, services):
        engine.start(r["id"])
        _say(f" Container {r['name']}  Started")


@compose_group.command("restart")
@flags.option("-t", "--timeout", type=int, help="Specify a shutdown timeout in seconds")
@flags.argument("services", nargs=-1)
@flags.pass_context
def restart_cmd(ctx: flags.Context, timeout: int | None, services: tuple[str, ...]) -> None:
    """Restart service containers."""
    engine = _engine(ctx)
    for r in _containers(ctx, services):
        engine.restart(r["id"], timeout)
        _say(f" Container {r['name']}  Started")


@compose_group.command("kill")
@flags.option("-s", "--signal", "sig", default="SIGKILL", help="SIGNAL to send to the container")
@flags.argument("services", nargs=-1)
@flags.pass_context
def kill_cmd(ctx: flags.Context, sig: str, services: tuple[str, ...]) -> None:
    """Force stop service containers."""
    engine = _engine(ctx)
    for r in _containers(ctx, services, all_=False):
        engine.kill(r["id"], sig)
        _say(f" Container {r['name']}  Killed")


@compose_group.command("rm")
@flags.option("-f", "--force", is_flag=True, help="Don't ask to confirm removal")
@flags.option(
    "-s", "--stop", is_flag=True, help="Stop the containers, if required, before removing"
)
@flags.option(
    "-v", "--volumes", is_flag=True, help="Remove any anonymous volumes attached to containers"
)
@flags.argument("services", nargs=-1)
@flags.pass_context
def rm_cmd(
    ctx: flags.Context, force: bool, stop: bool, volumes: bool, services: tuple[str, ...]
) -> None:
    """Removes stopped service containers."""
    engine = _engine(ctx)
    for r in _containers(ctx, services):
        if r["status"] in ("running", "paused", "restarting"):
            if not stop:
                continue  # as Compose: only stopped containers, unless --stop
            engine.stop(r["id"])
        engine.remove(r["id"], volumes=volumes)
        _say(f" Container {r['name']}  Removed")


@compose_group.command("top")
@flags.argument("services", nargs=-1)
@flags.pass_context
def top_cmd(ctx: flags.Context, services: tuple[str, ...]) -> None:
    """Display the running processes."""
    from dockyard.cli.format import table

    engine = _engine(ctx)
    for r in _containers(ctx, services, all_=False):
        body = engine.top(r["id"])
        flags.echo(r["name"])
        flags.echo(table([body["Titles"], *body["Processes"]]))


@compose_group.command("images")
@flags.option("-q", "--quiet", is_flag=True, help="Only display IDs")
@flags.argument("services", nargs=-1)
@flags.pass_context
def images_cmd(ctx: flags.Context, quiet: bool, services: tuple[str, ...]) -> None:
    """List images used by the created containers."""
    from dockyard.cli.format import table

    recs = _containers(ctx, services)
    if quiet:
        for image_id in dict.fromkeys(r["image_id"] for r in recs):
            flags.echo(image_id.removeprefix("sha256:")[:12])
        return
    rows = [["CONTAINER", "IMAGE", "IMAGE ID"]]
    rows += [[r["name"], r["image_ref"], r["image_id"].removeprefix("sha256:")[:12]] for r in recs]
    flags.echo(table(rows), nl=False)


@compose_group.command("port")
@flags.option(
    "--index", type=int, default=0, help="Index of the container if service has multiple replicas"
)
@flags.argument("service")
@flags.argument("private_port")
@flags.pass_context
def port_cmd(ctx: flags.Context, index: int, service: str, private_port: str) -> None:
    """Print the public port for a port binding."""
    from dockyard.engine.networking import settings
    from dockyard.errors import InvalidArgument

    recs = _replica(_containers(ctx, (service,)), index)
    if not recs:
        raise InvalidArgument(f"service {service!r} has no container {index or ''}".rstrip())
    key = private_port if "/" in private_port else f"{private_port}/tcp"
    bindings = settings(_engine(ctx), recs[0]["id"])["Ports"].get(key) or []
    if not bindings:
        raise InvalidArgument(f"no port {key} published for service {service}")
    flags.echo(f"{bindings[0]['HostIp']}:{bindings[0]['HostPort']}")


@compose_group.command("ls")
@flags.option("-a", "--all", "all_", is_flag=True, help="Show all stopped Compose projects")
@flags.pass_context
def ls_cmd(ctx: flags.Context, all_: bool) -> None:
    """List running compose projects."""
    from dockyard.cli.format import table
    from dockyard.compose.apply import P

    projects: dict[str, dict[str, Any]] = {}
    for r in _engine(ctx).list(all_=True):
        labels = r["config"].get("Labels") or {}
        name = labels.get(P + "project")
        if not name:
            continue
        p = projects.setdefault(
            name, {"running": 0, "exited": 0, "files": labels.get(P + "project.config_files", "")}
        )
        p["running" if r["status"] in ("running", "paused", "restarting") else "exited"] += 1
    rows = [["NAME", "STATUS", "CONFIG FILES"]]
    for name, p in sorted(projects.items()):
        if not all_ and not p["running"]:
            continue
        status = ", ".join(
            f"{k}({v})" for k, v in (("running", p["running"]), ("exited", p["exited"])) if v
        )
        rows.append([name, status, p["files"]])
    flags.echo(table(rows), nl=False)


@compose_group.command("build")
@flags.argument("services", nargs=-1)
@flags.pass_context
def build_cmd(ctx: flags.Context, services: tuple[str, ...]) -> None:
    """Build or rebuild services."""
    from dockyard.compose.apply import build_images

    build_images(_engine(ctx), _project(ctx), list(services) or None, _say)


@compose_group.command("pull")
@flags.argument("services", nargs=-1)
@flags.pass_context
def pull_cmd(ctx: flags.Context, services: tuple[str, ...]) -> None:
    """Pull service images."""
    from dockyard.compose.apply import pull_images

    pull_images(_engine(ctx), _project(ctx), list(services) or None, _say)


@compose_group.command("push")
@flags.option(
    "--ignore-push-failures", is_flag=True, help="Push what images can be pushed, ignoring failures"
)
@flags.argument("services", nargs=-1)
@flags.pass_context
def push_cmd(ctx: flags.Context, ignore_push_failures: bool, services: tuple[str, ...]) -> None:
    """Push service images."""
    from dockyard.compose.apply import push_images

    push_images(_engine(ctx), _project(ctx), list(services) or None, ignore_push_failures, _say)


@compose_group.command("events")
@flags.option("--json", "as_json", is_flag=True, help="Output events as a stream of json objects")
@flags.option("--since", help="Show all events created since timestamp")
@flags.option("--until", help="Stream events until this timestamp")
@flags.argument("services", nargs=-1)
@flags.pass_context
def events_cmd(ctx: flags.Context, as_json: bool, since: str | None, until: str | None,
               services: tuple[str, ...]) -> None:  # fmt: skip
    """Receive real time events from containers."""
    from dockyard import _json as json
    from dockyard.clock import time_bound
    from dockyard.compose.apply import P
    from dockyard.engine.events import stream
    from dockyard.filters import Filters

    name = _name(ctx)
    flt = Filters.parse((f"label={P}project={name}", "type=container"))
    for ev in stream(_engine(ctx).db, time_bound(since), time_bound(until), flt):
        attrs = dict(ev["Actor"]["Attributes"])
        service = attrs.get(P + "service", "")
        if services and service not in services:
            continue
        stamp = ev["timeNano"] / 1e9
        if as_json:
            from dockyard.clock import rfc3339

            line = json.dumps({"time": rfc3339(stamp), "type": "container", "action": ev["Action"],
                               "id": ev["Actor"]["ID"], "service": service, "attributes": {
                                   "image": attrs.get("image", ""), "name": attrs.get("name", "")}})  # fmt: skip
        else:
            import time

            when = (
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
                + f".{int(stamp % 1 * 1e6):06d}"
            )
            line = (f"{when} container {ev['Action']} {ev['Actor']['ID']} "
                    f"(image={attrs.get('image', '')}, name={attrs.get('name', '')})")  # fmt: skip
        flags.echo(line)


@compose_group.command("run", context_settings={"allow_interspersed_args": False})
@flags.option("--rm", is_flag=True, help="Automatically remove the container when it exits")
@flags.option(
    "-d", "--detach", is_flag=True, help="Run container in background and print container ID"
)
@flags.option("-T", "--no-TTY", "no_tty", is_flag=True, help="Disable pseudo-TTY allocation")
@flags.option("--no-deps", is_flag=True, help="Don't start linked services")
@flags.option("-e", "--env", multiple=True, help="Set environment variables")
@flags.argument("service")
@flags.argument("command", nargs=-1, type=flags.UNPROCESSED)
@flags.pass_context
def run_cmd(ctx: flags.Context, rm: bool, detach: bool, no_tty: bool, no_deps: bool, env: tuple[str, ...],
            service: str, command: tuple[str, ...]) -> None:  # fmt: skip
    """Run a one-off command on a service."""
    import os

    from dockyard.cli.containers import _attach
    from dockyard.compose.apply import one_off

    engine = _engine(ctx)
    tty = not no_tty and not detach and os.isatty(0)
    cid = one_off(engine, _project(ctx), service, list(command) or None, dict(e.partition("=")[::2] for e in env),
                  rm, tty, no_deps, _say)  # fmt: skip
    if detach:
        engine.start(cid)
        flags.echo(cid)
        return
    monitor = engine.start(cid, attach=True)
    code = _attach(engine, cid, True, tty, True, sock=monitor.attach)
    monitor.wait()
    ctx.exit(code or 0)
