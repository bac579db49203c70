"""``dockyard system service``: serve the Docker Engine API (podman's verb)."""

from __future__ import annotations

from dockyard.cli import flags

__all__ = ["service_cmd"]


@flags.command("service")
@flags.option("-t", "--time", "idle", type=int, default=5, show_default=True,
              help="Seconds without a request before the service ends (0: never)")  # fmt: skip
@flags.option("--tlsverify", is_flag=True, help="Use TLS and verify the client's certificate")
@flags.option("--tlscacert", help="Trust certs signed only by this CA")
@flags.option("--tlscert", help="Path to the TLS certificate file")
@flags.option("--tlskey", help="Path to the TLS key file")
@flags.option("--insecure-tcp", is_flag=True, help="Allow plain TCP on a loopback address")
@flags.argument("uri", required=False)
@flags.pass_context
def service_cmd(ctx: flags.Context, idle: int, tlsverify: bool, tlscacert: str | None, tlscert: str | None,
                tlskey: str | None, insecure_tcp: bool, uri: str | None) -> None:  # fmt: skip
    """Serve the Docker Engine API on a Unix socket (default unix:///run/dockyard/dockyard.sock;
    without root, dockyard.sock in the user's run directory)."""
    import sys

    from dockyard.api.service import default_uri, serve

    def ready(where: str) -> None:
        sys.stderr.write(f"dockyard: serving the Docker Engine API on {where}\n")
        sys.stderr.flush()

    tls = {"verify": tlsverify, "cacert": tlscacert, "cert": tlscert, "key": tlskey}
    serve(
        ctx.obj["root"],
        ctx.obj["snapshotter"],
        uri or default_uri(),
        float(idle),
        tls,
        insecure_tcp,
        ready,
    )
