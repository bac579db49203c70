"""Registry commands: pull, push, login, logout."""

from __future__ import annotations

import sys

from dockyard.cli import flags
from dockyard.cli._context import engine as _engine
from dockyard.errors import InvalidArgument

__all__ = ["register"]


@flags.command("pull")
@flags.option(
    "--platform", help="Set platform if server is multi-platform capable (os/arch[/variant])"
)
@flags.option("-a", "--all-tags", is_flag=True, help="Download all tagged images in the repository")
@flags.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@flags.argument("name")
@flags.pass_context
def pull_cmd(
    ctx: flags.Context, platform: str | None, all_tags: bool, quiet: bool, name: str
) -> None:
    """Download an image from a registry."""
    from contextlib import nullcontext

    from dockyard.jsonmessage import TextRenderer, discard
    from dockyard.registry.transfer import pull, pull_all

    with nullcontext(discard) if quiet else TextRenderer(sys.stdout) as progress:
        if all_tags:
            pull_all(_engine(ctx).images, name, platform, progress)
        else:
            pull(_engine(ctx).images, name, platform, progress)
    from dockyard.image.reference import parse

    flags.echo(parse(name, default_tag=None).name if all_tags else str(parse(name)))


@flags.command("push")
@flags.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@flags.option(
    "--compression",
    default="gzip",
    type=flags.Choice(["gzip", "zstd"]),
    help="How layers stored uncompressed travel (gzip, zstd)",
)
@flags.argument("name")
@flags.pass_context
def push_cmd(ctx: flags.Context, quiet: bool, compression: str, name: str) -> None:
    """Upload an image to a registry."""
    from contextlib import nullcontext

    from dockyard.jsonmessage import TextRenderer, discard
    from dockyard.registry.transfer import push

    with nullcontext(discard) if quiet else TextRenderer(sys.stdout) as progress:
        push(_engine(ctx).images, name, progress, compression)


@flags.command("login")
@flags.option("-u", "--username", help="Username")
@flags.option("-p", "--password", help="Password")
@flags.option("--password-stdin", is_flag=True, help="Take the password from stdin")
@flags.argument("server", required=False)
def login_cmd(
    username: str | None, password: str | None, password_stdin: bool, server: str | None
) -> None:
    """Log in to a registry."""
    from dockyard.registry import auth
    from dockyard.registry.client import Registry

    server = (server or "docker.io").removeprefix("https://").removeprefix("http://").rstrip("/")
    if password_stdin:
        if password:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.readline().rstrip("\n")
    if not username:
        sys.stdout.write("Username: ")
        sys.stdout.flush()
        username = sys.stdin.readline().strip()
    if not password:
        import getpass

        password = getpass.getpass("Password: ")
    if not username or not password:
        raise InvalidArgument("Username and password are required")
    creds = auth.Credentials(username, password)
    Registry(server, creds).ping()
    where = auth.store(server, creds)
    flags.echo(f"Login Succeeded (credentials saved in {where})")


@flags.command("logout")
@flags.argument("server", required=False)
def logout_cmd(server: str | None) -> None:
    """Log out from a registry."""
    from dockyard.registry import auth

    server = (server or "docker.io").removeprefix("https://").removeprefix("http://").rstrip("/")
    if auth.remove(server):
        flags.echo(f"Removing login credentials for {auth.server_key(server)}")
    else:
        flags.echo(f"Not logged in to {auth.server_key(server)}")


@flags.group("registry")
def registry_group() -> None:
    """Serve a registry of dockyard's own."""


@registry_group.command("serve")
@flags.option("--addr", default="127.0.0.1:5000", help="Address to listen on (HOST:PORT)")
@flags.option("--storage", help="Directory of the registry's data (default: ROOT/registry)")
@flags.option("--htpasswd", help="htpasswd file: require Basic auth (bcrypt or SHA-crypt entries)")
@flags.option("--tls-cert", help="Serve HTTPS with this certificate")
@flags.option("--tls-key", help="... and this key")
@flags.pass_context
def registry_serve_cmd(ctx: flags.Context, addr: str, storage: str | None, htpasswd: str | None,
                       tls_cert: str | None, tls_key: str | None) -> None:  # fmt: skip
    """Serve the distribution API (pull, push, tags, catalog, delete) until interrupted."""
    import os

    from dockyard.registry.server import serve

    if bool(tls_cert) != bool(tls_key):
        raise InvalidArgument("--tls-cert and --tls-key go together")
    root = ctx.find_root().obj["root"]
    storage = storage or os.path.join(root, "registry")

    def ready(address: tuple[str, int]) -> None:
        flags.echo(
            f"dockyard registry listening on {'https' if tls_cert else 'http'}://{address[0]}:{address[1]}"
        )

    try:
        serve(storage, addr, htpasswd, tls_cert, tls_key, ready)
    except OSError as err:
        raise InvalidArgument(f"registry serve {addr}: {err.strerror or err}") from None


def register(cli: flags.Group) -> None:
    for cmd in (pull_cmd, push_cmd, login_cmd, logout_cmd, registry_group):
        cli.add_command(cmd)
