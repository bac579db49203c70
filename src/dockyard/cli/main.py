"""Entry point of ``dockyard``: Docker's command line, Docker's exit codes.

Errors are one line, ``dockyard: <message>``, with the exit code that the
exception class carries (125 for dockyard's own failures); a traceback is
shown only with ``--debug``.
"""

from __future__ import annotations

import os
import sys

import click

from dockyard import __version__
from dockyard.errors import DockyardError

__all__ = ["cli", "main"]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT_SETTINGS, invoke_without_command=True)
@click.version_option(__version__, "-v", "--version", message="dockyard version %(version)s")
@click.option("--root", envvar="DOCKYARD_ROOT", default="/var/lib/dockyard", show_default=True,
              help="Root directory of dockyard's state.")  # fmt: skip
@click.option("--debug", "-D", is_flag=True, help="Show tracebacks of errors.")
@click.option("--snapshotter", envvar="DOCKYARD_SNAPSHOTTER", default="overlay", show_default=True,
              type=click.Choice(["overlay", "copy"]), help="How image layers are stored.")  # fmt: skip
@click.pass_context
def cli(ctx: click.Context, root: str, debug: bool, snapshotter: str) -> None:
    """A self-sufficient runtime for containers."""
    ctx.obj = {"root": root, "debug": debug, "snapshotter": snapshotter}
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.command("version")
def version_cmd() -> None:
    """Show the dockyard version information."""
    from dockyard.runtime.state import OCI_VERSION

    click.echo(f"Client: dockyard\n Version:     {__version__}\n OCI runtime: dockyard-runtime "
               f"(runtime-spec {OCI_VERSION})\n Python:      {sys.version.split()[0]}")  # fmt: skip


def _register() -> None:
    from dockyard.cli import containers, images

    images.register(cli)
    containers.register(cli)


_register()


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"dockyard: {message}\n")
    return code


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or "-D" in args or bool(os.environ.get("DOCKYARD_DEBUG"))
    try:
        # Without standalone mode click returns ctx.exit()'s code instead of exiting.
        code = cli.main(args=args, prog_name="dockyard", standalone_mode=False)
        if isinstance(code, int) and code:
            return code
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help() if err.ctx else str(err))
        return 0
    except click.NoSuchOption as err:
        return _fail(f"unknown flag: {err.option_name}", 125)
    except click.UsageError as err:
        message = err.format_message().rstrip(".")
        if message.startswith("No such command"):
            name = message.split("'")[1] if "'" in message else message
            message = f"'{name}' is not a dockyard command, see 'dockyard --help'"
        return _fail(message[0].lower() + message[1:], 125)
    except click.exceptions.Exit as err:
        return err.exit_code
    except click.Abort:
        return _fail("aborted", 130)
    except DockyardError as err:
        if debug:
            raise
        return _fail(str(err), err.exit_code)
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a bug: still one line, but say how to see more
        if debug:
            raise
        return _fail(f"internal error: {err} (run with --debug for details)", 125)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
