"""A container's files: cp (both ways), diff, commit, export."""

from __future__ import annotations

from dockyard.cli import flags
from dockyard.cli._context import change_option
from dockyard.cli._context import engine as _engine
from dockyard.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass

__all__ = ["commit_cmd", "cp_cmd", "diff_cmd", "export_cmd"]


@flags.command("cp")
@flags.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information)")
@flags.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH")
@flags.option("-q", "--quiet", is_flag=True, help="Suppress progress output during copy")
@flags.argument("src")
@flags.argument("dest")
@flags.pass_context
def cp_cmd(
    ctx: flags.Context, archive: bool, follow_link: bool, quiet: bool, src: str, dest: str
) -> None:
    """Copy files between a container and the host (CONTAINER:SRC_PATH DEST or SRC CONTAINER:DEST_PATH)."""
    from dockyard.cli.cp import check_args, copy_from_container, copy_to_container
    from dockyard.engine.copy import ContainerFiles

    check_args(src, dest)
    engine = _engine(ctx)
    if _container_side(src):
        ref, _, path = src.partition(":")
        files = ContainerFiles(engine, engine.lookup(ref), ref)
        copy_from_container(files, path, dest, follow_link)
    elif _container_side(dest):
        ref, _, path = dest.partition(":")
        files = ContainerFiles(engine, engine.lookup(ref), ref)
        copy_to_container(files, src, path, follow_link, archive)
    else:
        raise InvalidArgument("must specify at least one container source")


def _container_side(arg: str) -> bool:
    """``NAME:PATH`` names a container; a local path with a colon is written ./a:b or /a:b."""
    return ":" in arg and not arg.startswith(("/", "."))


@flags.command("diff")
@flags.argument("container")
@flags.pass_context
def diff_cmd(ctx: flags.Context, container: str) -> None:
    """Inspect changes to files or directories on a container's filesystem (A added, C changed, D deleted)."""
    from dockyard.image.commit import diff_snapshot

    engine = _engine(ctx)
    cid = engine.lookup(container)
    for kind, path in diff_snapshot(
        engine.images, cid, engine.record(cid)["image_id"], engine.mount_points(cid)
    ):
        flags.echo(f"{kind} {path}")


@flags.command("commit")
@flags.option(
    "-a", "--author", default="", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")'
)
@change_option
@flags.option("-m", "--message", default="", help="Commit message")
@flags.option(
    "-p/--no-pause",
    "--pause/--no-pause",
    "pause",
    default=True,
    help="Pause container during commit",
)
@flags.argument("container")
@flags.argument("ref", required=False)
@flags.pass_context
def commit_cmd(ctx: flags.Context, author: str, changes: tuple[str, ...], message: str, pause: bool,
               container: str, ref: str | None) -> None:  # fmt: skip
    """Create a new image from a container's changes."""
    from dockyard.image.commit import commit_snapshot

    engine = _engine(ctx)
    cid = engine.lookup(container)
    rec = engine.refresh(cid)
    paused = pause and rec["status"] == "running"
    if paused:
        engine.pause(cid)  # a consistent layer: nothing writes while it is read
    try:
        args = list(rec["config"].get("Entrypoint") or []) + list(rec["config"].get("Cmd") or [])
        image_id = commit_snapshot(engine.images, cid, rec["image_id"], comment=message, author=author,
                                   changes_=list(changes), created_by=" ".join(args), ref=ref,
                                   exclude=engine.mount_points(cid))  # fmt: skip
    finally:
        if paused:
            engine.unpause(cid)
    flags.echo(image_id)


@flags.command("export")
@flags.option("-o", "--output", help="Write to a file, instead of STDOUT")
@flags.argument("container")
@flags.pass_context
def export_cmd(ctx: flags.Context, output: str | None, container: str) -> None:
    """Export a container's filesystem as a tar archive."""
    from dockyard.cli._context import write_archive
    from dockyard.image.commit import export_snapshot

    engine = _engine(ctx)
    cid = engine.lookup(container)
    write_archive(output, lambda out: export_snapshot(engine.images, cid, out))
