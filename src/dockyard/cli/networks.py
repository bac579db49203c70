"""Network commands: network create/ls/inspect/rm/prune/connect/disconnect, and port."""

from __future__ import annotations

from dockyard.cli import flags
from dockyard.cli._context import engine as _engine
from dockyard.cli.format import table
from dockyard.errors import DockyardError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["register"]


@flags.group("network")
def network_group() -> None:
    """Manage networks."""


@network_group.command("create")
@flags.option("-d", "--driver", default="bridge", help="Driver to manage the Network")
@flags.option("--subnet", help="Subnet in CIDR format that represents a network segment")
@flags.option("--gateway", help="IPv4 Gateway for the master subnet")
@flags.option("--internal", is_flag=True, help="Restrict external access to the network")
@flags.option("--label", multiple=True, help="Set metadata on a network")
@flags.argument("name")
@flags.pass_context
def network_create_cmd(ctx: flags.Context, driver: str, subnet: str | None, gateway: str | None,
                       internal: bool, label: tuple[str, ...], name: str) -> None:  # fmt: skip
    """Create a network."""
    labels = dict(item.partition("=")[::2] for item in label)
    flags.echo(_engine(ctx).networks.create(name, subnet, gateway, internal, labels, driver))


@network_group.command("ls")
@flags.option("-q", "--quiet", is_flag=True, help="Only display network IDs")
@flags.option("--no-trunc", is_flag=True, help="Do not truncate the output")
@flags.option(
    "-f", "--filter", "filters", multiple=True, help="Provide filter values (e.g. 'driver=bridge')"
)
@flags.option("--format", "fmt", default=None, help="Format the output using the given Go template")
@flags.pass_context
def network_ls_cmd(
    ctx: flags.Context, quiet: bool, no_trunc: bool, filters: tuple[str, ...], fmt: str | None
) -> None:
    """List networks."""
    from dockyard.engine import listing
    from dockyard.filters import Filters

    nets = listing.networks(_engine(ctx), Filters.parse(filters))
    if quiet:
        for n in nets:
            flags.echo(n["id"] if no_trunc else n["id"][:12])
        return
    if fmt:
        from dockyard.cli.format import templated

        records = [{"ID": n["id"] if no_trunc else n["id"][:12], "Name": n["name"], "Driver": n["driver"],
                    "Scope": "local", "IPv6": "false", "Internal": str(bool(n.get("internal"))).lower(),
                    "Labels": ",".join(f"{k}={v}" for k, v in sorted(n["labels"].items()))}
                   for n in nets]  # fmt: skip
        headers = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
                   "Internal": "INTERNAL", "Labels": "LABELS"}  # fmt: skip
        flags.echo(templated(records, fmt, headers), nl=False)
        return
    rows = [["NETWORK ID", "NAME", "DRIVER", "SCOPE"]]
    rows += [[n["id"] if no_trunc else n["id"][:12], n["name"], n["driver"], "local"] for n in nets]
    flags.echo(table(rows), nl=False)


@network_group.command("inspect")
@flags.argument("networks", nargs=-1, required=True)
@flags.option(
    "-f", "--format", "fmt", default=None, help="Format the output using the given Go template"
)
@flags.pass_context
def network_inspect_cmd(ctx: flags.Context, networks: tuple[str, ...], fmt: str | None) -> None:
    """Display detailed information on one or more networks."""
    store = _engine(ctx).networks
    out: list[Any] = []
    missing = None
    for ref in networks:
        try:
            out.append(store.inspect(ref))
        except NotFound:
            missing = ref
    from dockyard.cli.containers import print_inspected

    print_inspected(out, fmt)
    if missing:
        flags.echo(f"dockyard: Error: No such network: {missing}", err=True)
        ctx.exit(1)


@network_group.command("rm")
@flags.argument("networks", nargs=-1, required=True)
@flags.pass_context
def network_rm_cmd(ctx: flags.Context, networks: tuple[str, ...]) -> None:
    """Remove one or more networks."""
    store = _engine(ctx).networks
    failed = False
    for ref in networks:
        try:
            flags.echo(store.remove(ref))
        except DockyardError as err:
            flags.echo(f"dockyard: {err}", err=True)
            failed = True
    if failed:
        ctx.exit(1)


@network_group.command("prune")
@flags.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation")
@flags.pass_context
def network_prune_cmd(ctx: flags.Context, force: bool) -> None:
    """Remove all unused networks."""
    if not force and not flags.confirm("WARNING! This will remove all custom networks not used by at least one "
                                       "container.\nAre you sure you want to continue?"):  # fmt: skip
        return
    gone = _engine(ctx).networks.prune()
    if gone:
        flags.echo("Deleted Networks:\n" + "\n".join(gone) + "\n")


@network_group.command("connect")
@flags.option("--alias", multiple=True, help="Add network-scoped alias for the container")
@flags.option("--ip", default="", help="IPv4 address (e.g., 172.30.100.104)")
@flags.argument("network")
@flags.argument("container")
@flags.pass_context
def network_connect_cmd(
    ctx: flags.Context, alias: tuple[str, ...], ip: str, network: str, container: str
) -> None:
    """Connect a container to a network."""
    from dockyard.engine.networking import connect

    connect(_engine(ctx), network, container, list(alias), ip)


@network_group.command("disconnect")
@flags.option(
    "-f", "--force", is_flag=True, help="Force the container to disconnect from a network"
)
@flags.argument("network")
@flags.argument("container")
@flags.pass_context
def network_disconnect_cmd(ctx: flags.Context, force: bool, network: str, container: str) -> None:
    """Disconnect a container from a network."""
    from dockyard.engine.networking import disconnect

    disconnect(_engine(ctx), network, container, force)


@flags.command("port")
@flags.argument("container")
@flags.argument("private_port", required=False)
@flags.pass_context
def port_cmd(ctx: flags.Context, container: str, private_port: str | None) -> None:
    """List port mappings or a specific mapping for the container."""
    engine = _engine(ctx)
    cid = engine.lookup(container)
    rows = engine.db.query(
        "SELECT * FROM published_ports WHERE container_id = ? ORDER BY rowid", (cid,)
    )
    if private_port:
        number, _, proto = private_port.partition("/")
        proto = proto or "tcp"
        matches = [r for r in rows if str(r["container_port"]) == number and r["proto"] == proto]
        if not matches:
            raise NotFound(f"No public port '{number}/{proto}' published for {container}")
        for r in matches:
            flags.echo(f"{r['host_ip'] or '0.0.0.0'}:{r['host_port']}")
        return
    for r in rows:
        flags.echo(
            f"{r['container_port']}/{r['proto']} -> {r['host_ip'] or '0.0.0.0'}:{r['host_port']}"
        )


def register(cli: flags.Group, container_group: flags.Group) -> None:
    network_group.add_command(network_ls_cmd, "list")
    cli.add_command(network_group)
    cli.add_command(port_cmd)
    container_group.add_command(port_cmd)
