"""Volume commands: volume create/ls/inspect/rm/prune."""

from __future__ import annotations

from dockyard import _json as json
from dockyard.cli import flags
from dockyard.cli._context import engine as _engine
from dockyard.cli.format import table
from dockyard.errors import InvalidArgument

__all__ = ["volume_group"]


@flags.group("volume")
def volume_group() -> None:
    """Manage volumes."""


@volume_group.command("create")
@flags.argument("name", required=False)
@flags.option("--label", multiple=True, help="Set metadata for a volume")
@flags.option("-d", "--driver", default="local", help="Specify volume driver name")
@flags.pass_context
def volume_create_cmd(
    ctx: flags.Context, name: str | None, label: tuple[str, ...], driver: str
) -> None:
    """Create a volume."""
    if driver != "local":
        raise InvalidArgument(f"volume driver {driver} is not supported (local only)")
    labels = dict(item.partition("=")[::2] for item in label)
    flags.echo(_engine(ctx).volumes.create(name, labels))


@volume_group.command("ls")
@flags.option("-q", "--quiet", is_flag=True, help="Only display volume names")
@flags.option(
    "-f",
    "--filter",
    "filters",
    multiple=True,
    help="Provide filter values (dangling=, name=, label=)",
)
@flags.option("--format", "fmt", default=None, help="Format the output using the given Go template")
@flags.pass_context
def volume_ls_cmd(
    ctx: flags.Context, quiet: bool, filters: tuple[str, ...], fmt: str | None
) -> None:
    """List volumes."""
    vols = _engine(ctx).volumes
    from dockyard.engine import listing
    from dockyard.filters import Filters

    rows = listing.volumes(_engine(ctx), Filters.parse(filters))
    if quiet:
        for r in rows:
            flags.echo(r["name"])
        return
    if fmt:
        from dockyard.cli.format import templated

        records = [{"Name": r["name"], "Driver": r["driver"], "Scope": "local",
                    "Mountpoint": vols.inspect(r["name"])["Mountpoint"],
                    "Labels": ",".join(f"{k}={v}" for k, v in sorted(json.loads(r["labels"]).items()))}
                   for r in rows]  # fmt: skip
        headers = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
                   "Labels": "LABELS"}  # fmt: skip
        flags.echo(templated(records, fmt, headers), nl=False)
        return
    flags.echo(
        table([["DRIVER", "VOLUME NAME"], *[[r["driver"], r["name"]] for r in rows]]), nl=False
    )


@volume_group.command("inspect")
@flags.argument("names", nargs=-1, required=True)
@flags.option(
    "-f", "--format", "fmt", default=None, help="Format the output using the given Go template"
)
@flags.pass_context
def volume_inspect_cmd(ctx: flags.Context, names: tuple[str, ...], fmt: str | None) -> None:
    """Display detailed information on one or more volumes."""
    vols = _engine(ctx).volumes
    from dockyard.cli.containers import print_inspected

    print_inspected([vols.inspect(n) for n in names], fmt)


@volume_group.command("rm")
@flags.option("-f", "--force", is_flag=True, help="Force the removal of one or more volumes")
@flags.argument("names", nargs=-1, required=True)
@flags.pass_context
def volume_rm_cmd(ctx: flags.Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove one or more volumes."""
    vols = _engine(ctx).volumes
    for name in names:
        vols.remove(name, force)
        flags.echo(name)


@volume_group.command("prune")
@flags.option(
    "-a", "--all", "all_", is_flag=True, help="Remove all unused volumes, not just anonymous ones"
)
@flags.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@flags.pass_context
def volume_prune_cmd(ctx: flags.Context, all_: bool, force: bool) -> None:
    """Remove unused local volumes (anonymous ones, or all with -a)."""
    from dockyard.cli.format import human_size

    if not force and not flags.confirm("WARNING! This will remove anonymous local volumes not used by at least one "
                                       "container.\nAre you sure you want to continue?"):  # fmt: skip
        return
    gone, freed = _engine(ctx).volumes.prune(all_)
    if gone:
        flags.echo("Deleted Volumes:\n" + "\n".join(gone) + "\n")
    flags.echo(f"Total reclaimed space: {human_size(freed)}")
