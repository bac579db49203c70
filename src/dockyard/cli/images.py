"""Image commands: images, image ls/inspect/bootstrap/rm, tag, rmi, history."""

from __future__ import annotations

from dockyard import _json as json
from dockyard.cli import flags
from dockyard.cli._context import change_option
from dockyard.cli.format import human_size, since, table
from dockyard.errors import InvalidArgument
from dockyard.image import reference
from dockyard.image.store import ImageStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["register"]


def _store(ctx: flags.Context) -> ImageStore:
    from dockyard.cli._context import engine

    return engine(ctx).images


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _split_tag(ref: str) -> tuple[str, str]:
    parsed = reference.parse(ref)
    return parsed.familiar_name, parsed.tag or "<none>"


@flags.command("images")
@flags.argument("repository", required=False)
@flags.option(
    "-a",
    "--all",
    "show_all",
    is_flag=True,
    help="Show all images (default hides intermediate images)",
)
@flags.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@flags.option("--digests", is_flag=True, help="Show digests")
@flags.option("--no-trunc", is_flag=True, help="Don't truncate output")
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
def images_cmd(ctx: flags.Context, repository: str | None, show_all: bool, quiet: bool, digests: bool,
               no_trunc: bool, filters: tuple[str, ...], fmt: str) -> None:  # fmt: skip
    """List images."""
    store = _store(ctx)
    from dockyard.engine import listing
    from dockyard.filters import Filters

    flt = Filters.parse(list(filters) + ([f"reference={repository}"] if repository else []))
    rows: list[dict[str, str]] = []
    seen_quiet: list[str] = []
    for row, tags in listing.images(store, flt, show_all):
        image_id = row["id"] if no_trunc else _short(row["id"])
        repo_digests = store.digests_of(row["id"])
        digest = repo_digests[0].split("@", 1)[1] if repo_digests else "<none>"
        for ref in tags or [None]:
            repo, tag = _split_tag(ref) if ref else ("<none>", "<none>")
            rows.append({"Repository": repo, "Tag": tag, "Digest": digest, "ID": image_id,
                         "CreatedSince": since(row["created"]), "CreatedAt": row["created"],
                         "Size": human_size(row["size"])})  # fmt: skip
            if image_id not in seen_quiet:
                seen_quiet.append(image_id)
    if quiet:
        flags.echo("".join(f"{i}\n" for i in seen_quiet), nl=False)
        return
    if fmt == "json":
        for r in rows:
            flags.echo(json.dumps({**r, "Containers": "N/A", "SharedSize": "N/A", "UniqueSize": "N/A",
                                   "VirtualSize": r["Size"]}, sort_keys=True))  # fmt: skip
        return
    if fmt != "table":
        from dockyard.cli.format import templated

        headers = {"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "ID": "IMAGE ID",
                   "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE"}  # fmt: skip
        flags.echo(templated(rows, fmt, headers), nl=False)
        return
    header = (
        ["REPOSITORY", "TAG"] + (["DIGEST"] if digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    )
    body = [[r["Repository"], r["Tag"]] + ([r["Digest"]] if digests else []) + [r["ID"], r["CreatedSince"], r["Size"]]
            for r in rows]  # fmt: skip
    flags.echo(table([header, *body]), nl=False)


@flags.command("inspect")
@flags.argument("names", nargs=-1, required=True)
@flags.option(
    "-f", "--format", "fmt", default=None, help="Format the output using the given Go template"
)
@flags.pass_context
def image_inspect_cmd(ctx: flags.Context, names: tuple[str, ...], fmt: str | None) -> None:
    """Display detailed information on one or more images."""
    from dockyard.cli.containers import inspect_objects

    inspect_objects(ctx, names, "image", fmt)


@flags.command("tag")
@flags.argument("source")
@flags.argument("target")
@flags.pass_context
def tag_cmd(ctx: flags.Context, source: str, target: str) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
    _store(ctx).tag(source, target)


@flags.command("rmi")
@flags.argument("names", nargs=-1, required=True)
@flags.option("-f", "--force", is_flag=True, help="Force removal of the image")
@flags.pass_context
def rmi_cmd(ctx: flags.Context, names: tuple[str, ...], force: bool) -> None:
    """Remove one or more images."""
    from dockyard.cli._context import engine as get_engine
    from dockyard.engine.images import remove

    engine = get_engine(ctx)
    for name in names:
        for record in remove(engine, name, force):
            for kind, value in record.items():
                flags.echo(f"{kind}: {value}")


def reference_is_id(name: str) -> bool:
    from dockyard.engine.images import is_id_reference

    return is_id_reference(name)


@flags.command("history")
@flags.argument("name")
@flags.option(
    "-H", "--human", default=True, type=bool, help="Print sizes and dates in human readable format"
)
@flags.option("--no-trunc", is_flag=True, help="Don't truncate output")
@flags.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@flags.option("--format", "fmt", default=None, help="Format the output using the given Go template")
@flags.pass_context
def history_cmd(
    ctx: flags.Context, name: str, human: bool, no_trunc: bool, quiet: bool, fmt: str | None
) -> None:
    """Show the history of an image (one row per history entry, newest first)."""
    from dockyard.clock import rfc3339
    from dockyard.engine.images import history

    store = _store(ctx)
    image_id = store.resolve(name)
    items = history(store, image_id)
    if fmt and not quiet:
        from dockyard.cli.format import templated

        records = [{"ID": _history_id(item, no_trunc), "CreatedSince": since(rfc3339(item["Created"])),
                    "CreatedAt": rfc3339(item["Created"]).split(".")[0] + "Z", "CreatedBy": item["CreatedBy"],
                    "Size": human_size(item["Size"]) if human else str(item["Size"]),
                    "Comment": item["Comment"]} for item in items]  # fmt: skip
        headers = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
                   "Size": "SIZE", "Comment": "COMMENT"}  # fmt: skip
        flags.echo(templated(records, fmt, headers), nl=False)
        return
    out = [["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]]
    for item in items:
        ident = _history_id(item, no_trunc)
        if quiet:
            flags.echo(ident)
            continue
        created_by = item["CreatedBy"]
        if not no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        stamp = rfc3339(item["Created"])
        created = since(stamp) if human else stamp.split(".")[0] + "Z"
        out.append([ident, created, created_by, human_size(item["Size"]) if human else str(item["Size"]),
                    item["Comment"]])  # fmt: skip
    if not quiet:
        flags.echo(table(out), nl=False)


def _history_id(item: dict[str, Any], no_trunc: bool) -> str:
    return item["Id"] if no_trunc or item["Id"] == "<missing>" else _short(item["Id"])


@flags.command("save")
@flags.argument("names", nargs=-1, required=True)
@flags.option("-o", "--output", help="Write to a file, instead of STDOUT")
@flags.option("--format", "fmt", type=flags.Choice(["docker", "oci"]), default="docker", show_default=True,
              help="docker-archive or OCI image layout")  # fmt: skip
@flags.pass_context
def save_cmd(ctx: flags.Context, names: tuple[str, ...], output: str | None, fmt: str) -> None:
    """Save one or more images to a tar archive (streamed to STDOUT by default)."""
    from dockyard.cli._context import write_archive
    from dockyard.image.archive import save

    write_archive(output, lambda out: save(_store(ctx), list(names), out, fmt))


@flags.command("load")
@flags.option("-i", "--input", "input_", help="Read from tar archive file, instead of STDIN")
@flags.option("-q", "--quiet", is_flag=True, help="Suppress the load output")
@flags.pass_context
def load_cmd(ctx: flags.Context, input_: str | None, quiet: bool) -> None:
    """Load images from a docker-archive or OCI layout tar (gzip and zstd too)."""
    import sys

    from dockyard.image.archive import load

    store = _store(ctx)
    if input_ is None:
        if sys.stdin.isatty():
            raise InvalidArgument("requested load from stdin, but stdin is empty")
        lines = load(store, sys.stdin.buffer)
    else:
        try:
            f = open(input_, "rb")  # noqa: SIM115
        except OSError as err:
            raise InvalidArgument(f"open {input_}: {err.strerror}") from None
        with f:
            lines = load(store, f)
    if not quiet:
        for line in lines:
            flags.echo(line)


@flags.command("import")
@flags.argument("source")
@flags.argument("ref", required=False)
@change_option
@flags.option("-m", "--message", default="", help="Set commit message for imported image")
@flags.pass_context
def import_cmd(
    ctx: flags.Context, source: str, ref: str | None, changes: tuple[str, ...], message: str
) -> None:
    """Import the contents from a tarball (or - for STDIN) to create a filesystem image."""
    import sys

    from dockyard.image.commit import import_rootfs

    store = _store(ctx)
    if source == "-":
        image_id = import_rootfs(
            store, sys.stdin.buffer, ref=ref, message=message, changes_=list(changes)
        )
    else:
        try:
            f = open(source, "rb")  # noqa: SIM115
        except OSError as err:
            raise InvalidArgument(f"open {source}: {err.strerror}") from None
        with f:
            image_id = import_rootfs(store, f, ref=ref, message=message, changes_=list(changes))
    flags.echo(image_id)


@flags.command("prune")
@flags.option(
    "-a", "--all", "all_", is_flag=True, help="Remove all unused images, not just dangling ones"
)
@flags.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@flags.option("--filter", "filters", multiple=True, help="Provide filter values (label=...)")
@flags.pass_context
def prune_cmd(ctx: flags.Context, all_: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove unused images."""
    store = _store(ctx)
    if not force:
        what = (
            "all images without at least one container associated to them"
            if all_
            else "all dangling images"
        )
        if not flags.confirm(
            f"WARNING! This will remove {what}.\nAre you sure you want to continue?"
        ):
            return
    from dockyard.engine.images import prune as prune_images
    from dockyard.filters import Filters

    records, freed = prune_images(store, all_, Filters.parse(filters))
    lines = [f"{kind.lower()}: {value}" for r in records for kind, value in r.items()]
    if lines:
        flags.echo("Deleted Images:\n" + "\n".join(lines) + "\n")
    flags.echo(f"Total reclaimed space: {human_size(freed)}")


@flags.group("system")
def system_group() -> None:
    """Manage dockyard."""


def _rootless_lines(info: dict[str, Any]) -> str:
    """``rootless`` under Security Options, as docker info says it, then what dockyard
    chose for this user."""
    r = info.get("Rootless")
    if not r:
        return ""
    return (f"  rootless\n Rootless:\n  ID mapping: {r['IDMapping']}\n  Snapshotter: {r['Snapshotter']}\n"
            f"  Network: {r['Network']}\n  Ports: {r['Ports']}\n  Cgroups: {r['Cgroups']}\n"
            f"  State: {r['State']}\n  Runtime directory: {r['RunDir']}\n")  # fmt: skip


@flags.command("info")
@flags.option(
    "-f", "--format", "fmt", default=None, help="Format the output using the given Go template"
)
@flags.pass_context
def info_cmd(ctx: flags.Context, fmt: str | None) -> None:
    """Display system-wide information."""
    from dockyard import __version__
    from dockyard.cli._context import engine as _engine
    from dockyard.engine.system import info as system_info
    from dockyard.runtime import cgroups

    engine = _engine(ctx)
    info = system_info(engine)
    host = cgroups.detect()
    pretty = info["OperatingSystem"]
    if fmt:
        from dockyard.cli.containers import print_inspected

        print_inspected([info], fmt)
        return
    flags.echo(
        f"Server:\n Containers: {info['Containers']}\n  Running: {info['ContainersRunning']}\n"
        f"  Paused: {info['ContainersPaused']}\n  Stopped: {info['ContainersStopped']}\n"
        f" Images: {info['Images']}\n Server Version: {__version__} (dockyard)\n"
        f" Storage Driver: {info['Driver']}\n Cgroup Driver: {info['CgroupDriver']}\n"
        f" Cgroup Version: {info['CgroupVersion']}{' (hybrid)' if host == 'hybrid' else ''}\n"
        f" Runtimes: dockyard-runtime runc crun\n Default Runtime: dockyard-runtime\n"
        f" Security Options:\n  seccomp\n   Profile: builtin\n{_rootless_lines(info)}"
        f" Kernel Version: {info['KernelVersion']}\n Operating System: {pretty}\n OSType: linux\n"
        f" Architecture: {info['Architecture']}\n CPUs: {info['NCPU']}\n"
        f" Total Memory: {info['MemTotal'] / (1 << 30):.2f}GiB\n Name: {info['Name']}\n"
        f" Docker Root Dir: {engine.root}"
    )  # fmt: skip


@system_group.command("prune")
@flags.option(
    "-a", "--all", "all_", is_flag=True, help="Remove all unused images not just dangling ones"
)
@flags.option("--volumes", is_flag=True, help="Prune anonymous volumes")
@flags.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@flags.pass_context
def system_prune_cmd(ctx: flags.Context, all_: bool, volumes: bool, force: bool) -> None:
    """Remove unused data: stopped containers, unused networks, dangling (or all unused) images,
    build cache, and with --volumes anonymous volumes."""
    from dockyard.cli._context import engine as _engine

    if not force:
        what = ["all stopped containers", "all networks not used by at least one container"]
        what += ["all anonymous volumes not used by at least one container"] if volumes else []
        what += ["all images without at least one container associated to them" if all_ else "all dangling images",
                 "all build cache" if all_ else "unused build cache"]  # fmt: skip
        if not flags.confirm("WARNING! This will remove:\n" + "".join(f"  - {w}\n" for w in what)
                             + "\nAre you sure you want to continue?"):  # fmt: skip
            return
    from dockyard.engine.system import prune

    sections, freed = prune(_engine(ctx), all_, volumes)
    for title, items in sections:
        if items:
            flags.echo(f"{title}:\n" + "\n".join(items) + "\n")
    flags.echo(f"Total reclaimed space: {human_size(freed)}")


@system_group.command("df")
@flags.option("-v", "--verbose", is_flag=True, help="Show detailed information on space usage")
@flags.pass_context
def system_df_cmd(ctx: flags.Context, verbose: bool) -> None:
    """Show dockyard disk usage: measured on disk, shared layers counted once."""
    store = _store(ctx)
    from dockyard.cli._context import engine

    usage = engine(ctx).disk_usage()
    images = list(store.images())
    rows = [["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]]
    for kind, u in usage.items():
        pct = (
            f" ({round(100 * u['reclaimable'] / u['size']) if u['size'] else 0}%)"
            if u["size"]
            else ""
        )
        rows.append([kind, str(u["total"]), str(u["active"]), human_size(u["size"]),
                     human_size(u["reclaimable"]) + pct])  # fmt: skip
    flags.echo(table(rows), nl=False)
    if verbose:
        flags.echo("\nImages space usage:\n")
        detail = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]]
        for row in images:
            for ref in store.tags_of(row["id"]) or [None]:
                repo, tag = _split_tag(ref) if ref else ("<none>", "<none>")
                detail.append(
                    [repo, tag, _short(row["id"]), since(row["created"]), human_size(row["size"])]
                )
        flags.echo(table(detail), nl=False)


@flags.command("layers")
@flags.argument("name")
@flags.option("--format", "fmt", default="table", help="'table' or 'json'")
@flags.pass_context
def layers_cmd(ctx: flags.Context, name: str, fmt: str) -> None:
    """Per layer: files added, changed and deleted, and bytes wasted on files later layers replace."""
    from dockyard.image.forensics import layer_reports

    store = _store(ctx)
    reports = layer_reports(store, store.resolve(name))
    if fmt == "json":
        flags.echo(json.dumps([r.as_json() for r in reports], indent=2))
        return
    rows = [["LAYER", "DIFF ID", "SIZE", "ADDED", "CHANGED", "DELETED", "WASTED", "CREATED BY"]]
    for i, r in enumerate(reports):
        created_by = r.created_by if len(r.created_by) <= 45 else r.created_by[:44] + "…"
        rows.append([str(i), _short(r.diff_id), human_size(r.size), str(len(r.added)), str(len(r.changed)),
                     str(len(r.deleted)), human_size(r.wasted), created_by])  # fmt: skip
    flags.echo(table(rows), nl=False)
    total = sum(r.wasted for r in reports)
    flags.echo(f"\nTotal wasted: {human_size(total)} (files a later layer overwrites or deletes)")


@flags.command("diff")
@flags.argument("first")
@flags.argument("second")
@flags.option("--format", "fmt", default="table", help="'table' or 'json'")
@flags.pass_context
def image_diff_cmd(ctx: flags.Context, first: str, second: str, fmt: str) -> None:
    """Compare two images file by file (A added, C changed, D deleted going from FIRST to SECOND)."""
    from dockyard.image.forensics import image_diff

    store = _store(ctx)
    changes = image_diff(store, store.resolve(first), store.resolve(second))
    if fmt == "json":
        flags.echo(json.dumps([{"Kind": k, "Path": p} for k, p in changes], indent=2))
        return
    for kind, path in changes:
        flags.echo(f"{kind} {path}")


@system_group.command("check")
@flags.option("--repair", is_flag=True, help="Remove what a crash left behind")
@flags.option(
    "--verify", is_flag=True, help="Also re-hash every blob and compare every layer with its blob"
)
@flags.pass_context
def system_check_cmd(ctx: flags.Context, repair: bool, verify: bool) -> None:
    """Check the store and networking for what a crash or reboot left (orphan blobs, half-unpacked layers,
    records without files, missing bridges, DNS servers or firewall rules)."""
    from dockyard.busy import exclusive
    from dockyard.cli._context import engine
    from dockyard.engine.networking import check as check_network
    from dockyard.image.check import Finding, check

    with exclusive(engine(ctx).root, "system check" + (" --repair" if repair else "")):
        findings: list[Any] = list(check(_store(ctx), repair=repair, verify=verify))
        findings += [
            Finding(kind, what) for kind, what in check_network(engine(ctx), repair=repair)
        ]
    for finding in findings:
        if repair:
            flags.echo(("repaired " if finding.repairable else "cannot repair ") + str(finding))
        else:
            flags.echo(str(finding))
    if not findings:
        flags.echo("no problems found")
    elif not repair:
        again = "--verify --repair" if verify else "--repair"
        flags.echo(f"{len(findings)} problem(s); run 'dockyard system check {again}' to fix them",
                   err=True)  # fmt: skip
        ctx.exit(1)
    elif not all(f.repairable for f in findings):
        ctx.exit(1)


@flags.group("image")
def image_group() -> None:
    """Manage images."""


@image_group.command("bootstrap")
@flags.argument("kind", type=flags.Choice(["busybox"]))
@flags.option("-t", "--tag", default="busybox:latest", show_default=True, help="Name the image")
@flags.pass_context
def bootstrap_cmd(ctx: flags.Context, kind: str, tag: str) -> None:
    """Build a base image from the host (busybox: Debian's busybox-static)."""
    from dockyard.image.bootstrap import bootstrap_busybox

    image_id = bootstrap_busybox(_store(ctx), tag)
    flags.echo(image_id)


def register(cli: flags.Group) -> None:
    for cmd in (images_cmd, tag_cmd, rmi_cmd, history_cmd, save_cmd, load_cmd, import_cmd):
        cli.add_command(cmd)
    subcommands = {
        "ls": images_cmd, "list": images_cmd, "inspect": image_inspect_cmd, "tag": tag_cmd, "rm": rmi_cmd,
        "history": history_cmd, "save": save_cmd, "load": load_cmd, "import": import_cmd, "prune": prune_cmd,
        "layers": layers_cmd, "diff": image_diff_cmd,
    }  # fmt: skip
    for name, cmd in subcommands.items():
        image_group.add_command(cmd, name)
    cli.add_command(image_group)
    cli.add_command(system_group)
    cli.add_command(info_cmd)
    system_group.add_command(info_cmd, "info")
