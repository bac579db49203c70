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
