"""``dockyard build`` and ``dockyard builder prune``."""

from __future__ import annotations

import os
import sys

from dockyard.cli import flags
from dockyard.cli._context import engine as _engine
from dockyard.errors import InvalidArgument

__all__ = ["register"]


def _pairs(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        out[key] = value if eq else os.environ.get(key, "")
    return out


def _stdin_context(work: str) -> tuple[str, str | None]:
    """CONTEXT ``-``: a tar (plain or compressed) becomes the context; anything else is the
    Dockerfile, with an empty context. Returns (context dir, Dockerfile text or None)."""
    data = sys.stdin.buffer.read()
    head = data[:262]
    is_tar = (head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00"
              or head[:4] == b"\x28\xb5\x2f\xfd" or head[257:262] == b"ustar")  # fmt: skip
    if not is_tar:
        return work, data.decode()
    import io

    from dockyard.snapshot.apply import apply_layer

    apply_layer(io.BytesIO(data), work, mode="plain")
    return work, None


@flags.command("build")
@flags.option("-t", "--tag", "tags", multiple=True, help="Name and optionally a tag (name:tag)")
@flags.option("-f", "--file", "file", help="Name of the Dockerfile (default: PATH/Dockerfile)")
@flags.option("--build-arg", multiple=True, help="Set build-time variables")
@flags.option("--target", help="Set the target build stage to build")
@flags.option("--no-cache", is_flag=True, help="Do not use cache when building the image")
@flags.option(
    "--pull",
    is_flag=True,
    help="Always attempt to pull a newer version of the image",
)
@flags.option("--label", multiple=True, help="Set metadata for an image")
@flags.option(
    "-q", "--quiet", is_flag=True, help="Suppress the build output and print image ID on success"
)
@flags.option(
    "--progress",
    default="auto",
    type=flags.Choice(["auto", "plain", "tty"]),
    help="Set type of progress output (auto, plain, tty)",
)
@flags.option("--iidfile", help="Write the image ID to the file")
@flags.option(
    "--network",
    default="default",
    help="Networking mode for the RUN instructions (default, none, host)",
)
@flags.option(
    "--explain-cache",
    is_flag=True,
    help="Print each step's cache key and, on a miss, which input changed",
)
@flags.option("--platform", default="", help="Set target platform for build (this host's only)")
@flags.argument("context")
@flags.pass_context
def build_cmd(ctx: flags.Context, tags: tuple[str, ...], file: str | None, build_arg: tuple[str, ...],
              target: str | None, no_cache: bool, pull: bool, label: tuple[str, ...], quiet: bool,
              progress: str, iidfile: str | None, network: str, explain_cache: bool, platform: str,
              context: str) -> None:  # fmt: skip
    """Build an image from a Dockerfile."""
    from dockyard.builder.context import BuildContext, read_dockerfile
    from dockyard.builder.stages import Builder, BuildOptions

    engine = _engine(ctx)
    for tag in tags:
        from dockyard.image.reference import parse

        parse(tag)  # a bad name fails before any work
    from dockyard.fsutil import scratch_dir

    with scratch_dir(os.path.join(engine.root, "tmp"), "build-ctx-") as work:
        text = None
        if context == "-":
            context, text = _stdin_context(work)
        elif not os.path.isdir(context):
            raise InvalidArgument(f'unable to prepare context: path "{context}" not found')
        name = file or "Dockerfile"
        if text is None:
            if context == work:  # a tar on stdin: -f names a file inside it
                path = os.path.join(work, name)
            elif file and (os.path.isabs(file) or os.path.exists(file)):
                path = file
            else:
                path = os.path.join(context, name)
            text = read_dockerfile(path, name)
        options = BuildOptions(tags=list(tags), build_args=_pairs(build_arg), target=target, no_cache=no_cache,
                               labels=_pairs(label), quiet=quiet, explain_cache=explain_cache, network=network, pull=pull,
                               dockerfile_name=os.path.basename(name), platform=platform)  # fmt: skip
        live = None
        if not quiet and (progress == "tty" or (progress == "auto" and sys.stderr.isatty())):
            from dockyard.builder.tty_progress import TtyProgress

            live = TtyProgress(sys.stderr)
        try:
            image_id = Builder(engine, BuildContext(context, engine.db), options, out=live).build(
                text
            )  # type: ignore[arg-type]
        finally:
            if live is not None:
                live.close()
    if iidfile:
        with open(iidfile, "w") as f:
            f.write(image_id)
    if quiet:
        flags.echo(image_id)


@flags.group("builder")
def builder_group() -> None:
    """Manage builds."""


@builder_group.command("prune")
@flags.option(
    "-a", "--all", "all_", is_flag=True, help="Remove all unused build cache (the default here)"
)
@flags.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@flags.pass_context
def builder_prune_cmd(ctx: flags.Context, all_: bool, force: bool) -> None:
    """Remove build cache."""
    from dockyard.engine.system import prune_build_cache as prune

    if not force and not flags.confirm(
        "WARNING! This will remove all dangling build cache.\nAre you sure you want to continue?"
    ):
        return
    removed, freed = prune(_engine(ctx))
    if removed:
        flags.echo("Deleted build cache objects:\n" + "\n".join(removed))
    from dockyard.cli.format import human_size

    flags.echo(f"Total reclaimed space: {human_size(freed)}")


def register(cli: flags.Group) -> None:
    cli.add_command(build_cmd)
    cli.add_command(builder_group)
