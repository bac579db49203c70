"""``dockyard kube``: Kubernetes manifests out of containers and pods (``kube.generate``)."""

from __future__ import annotations

from dockyard.cli import flags
from dockyard.cli._context import engine as _engine

__all__ = ["kube_group"]


@flags.group("kube")
def kube_group() -> None:
    """Kubernetes manifests from containers and pods."""


@kube_group.command("generate")
@flags.option("-s", "--service", is_flag=True, help="Also a Service for the published ports")
@flags.option("-t", "--type", "kind", default="pod", help="pod, deployment, daemonset or job")
@flags.option("-f", "--filename", help="Write the YAML to this file instead of the output")
@flags.argument("names", nargs=-1, required=True)
@flags.pass_context
def generate_cmd(ctx: flags.Context, service: bool, kind: str, filename: str | None,
                 names: tuple[str, ...]) -> None:  # fmt: skip
    """Write Kubernetes YAML for containers or a pod."""
    from dockyard.kube.generate import manifests, to_yaml

    text = to_yaml(manifests(_engine(ctx), list(names), kind, service))
    if filename:
        with open(filename, "w") as f:
            f.write(text)
        return
    flags.echo(text, nl=False)


@kube_group.command("play")
@flags.option("--down", is_flag=True, help="Remove what the file made (named volumes stay)")
@flags.option("--replace", is_flag=True, help="Remove what the file made first, then play it again")
@flags.option("--force", is_flag=True, help="With --down: the claims' volumes go too")
@flags.argument("file")
@flags.pass_context
def play_cmd(ctx: flags.Context, down: bool, replace: bool, force: bool, file: str) -> None:
    """Run the pods, services, config maps, secrets and claims of a Kubernetes YAML file."""
    _play(ctx, down, replace, force, file)


def _play(ctx: flags.Context, down: bool, replace: bool, force: bool, file: str) -> None:
    import sys

    from dockyard.errors import InvalidArgument
    from dockyard.kube import play

    if file == "-":
        text = sys.stdin.read()
    else:
        try:
            with open(file) as f:
                text = f.read()
        except OSError as err:
            raise InvalidArgument(f"open {file}: {err.strerror}") from None
    docs = play.load(text, file)
    engine = _engine(ctx)
    if down or replace:
        for name in play.down(engine, docs, volumes=force and not replace):
            flags.echo(f"Pod {name} removed")
        if down:
            return
    for name in play.play(engine, docs):
        flags.echo(f"Pod {name} started")


@kube_group.command("down")
@flags.option("--force", is_flag=True, help="The claims' volumes go too")
@flags.argument("file")
@flags.pass_context
def down_cmd(ctx: flags.Context, force: bool, file: str) -> None:
    """Remove what ``kube play FILE`` made."""
    _play(ctx, True, False, force, file)
