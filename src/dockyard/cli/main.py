"""Entry point of ``dockyard``: Docker's command line, Docker's exit codes.

Errors are one line, ``dockyard: <message>``, with the exit code that the
exception class carries (125 for dockyard's own failures); a traceback is
shown only with ``--debug``.
"""

from __future__ import annotations

import os
import sys

from dockyard import __version__
from dockyard.cli import flags
from dockyard.errors import DockyardError
from dockyard.rootless import RootlessError

__all__ = ["cli", "main"]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


@flags.group(context_settings=CONTEXT_SETTINGS, invoke_without_command=True)
@flags.version_option(__version__, "-v", "--version", message="dockyard version %(version)s")
@flags.option("--root", envvar="DOCKYARD_ROOT", default="/var/lib/dockyard", show_default=True,
              help="Root directory of dockyard's state.")  # fmt: skip
@flags.option("--debug", "-D", is_flag=True, help="Show tracebacks of errors.")
@flags.option("--snapshotter", envvar="DOCKYARD_SNAPSHOTTER", default="overlay", show_default=True,
              type=flags.Choice(["overlay", "fuse-overlayfs", "copy"]), help="How image layers are stored.")  # fmt: skip
@flags.pass_context
def cli(ctx: flags.Context, root: str, debug: bool, snapshotter: str) -> None:
    """A self-sufficient runtime for containers."""
    ctx.obj = {"root": root, "debug": debug, "snapshotter": snapshotter}
    if ctx.invoked_subcommand is None:
        flags.echo(ctx.get_help())


@cli.command("version")
def version_cmd() -> None:
    """Show the dockyard version information."""
    from dockyard.runtime.state import OCI_VERSION

    flags.echo(f"Client: dockyard\n Version:     {__version__}\n OCI runtime: dockyard-runtime "
               f"(runtime-spec {OCI_VERSION})\n Python:      {sys.version.split()[0]}")  # fmt: skip


def _register() -> None:
    def container_commands() -> None:
        from dockyard.cli import containers

        containers.register(cli)

    cli.defer(container_commands)  # first: `run` finds itself after one registration
    cli.defer(_register_the_rest)

    def compose_group() -> flags.Command:
        from dockyard.cli import compose

        return compose.compose_group

    cli.add_command(
        flags.LazyCommand("compose", "Define and run multi-container applications", compose_group)
    )

    def pod_group() -> flags.Command:
        from dockyard.cli import pods

        return pods.pod_group

    cli.add_command(flags.LazyCommand("pod", "Manage pods", pod_group))

    def kube_group() -> flags.Command:
        from dockyard.cli import kube

        return kube.kube_group

    cli.add_command(
        flags.LazyCommand("kube", "Kubernetes manifests from containers and pods", kube_group)
    )


def _register_the_rest() -> None:
    """Image, build and registry commands: registered only when the word is not a
    container command (``run`` does not pay for them)."""
    from dockyard.cli import build, images, registry

    images.register(cli)

    def service_cmd() -> flags.Command:
        from dockyard.cli import service

        return service.service_cmd

    images.system_group.add_command(flags.LazyCommand("service", "Serve the Docker Engine API on a Unix socket",
                                                      service_cmd))  # fmt: skip
    build.register(cli)
    registry.register(cli)


_register()


def _only_reads_help(args: list[str]) -> bool:
    """``--help`` and ``--version`` need no namespaces (nor a user who may make them)."""
    return (
        not args
        or any(a in ("-h", "--help", "-v", "--version") for a in args[:1])
        or args[-1:] in (["--help"], ["-h"])
    )


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"dockyard: {message}\n")
    return code


# Docker's CLI exits 125 for an error of the daemon only where the status could be the
# container's own (run, create, start, exec); every other command exits 1.
_CONTAINER_STATUS_VERBS = frozenset({"run", "create", "start", "exec"})


def _verb(args: list[str]) -> list[str]:
    """The command words of ``args``, global flags skipped."""
    words: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--root", "--snapshotter"):
            skip = True
        elif arg.startswith("-"):
            if words:
                break
        else:
            words.append(arg)
            if len(words) == 2:
                break
    return words


def _daemon_status(args: list[str], code: int) -> int:
    if code != 125:
        return code
    words = _verb(args)
    verb = (
        words[1] if words[:1] == ["container"] and len(words) > 1 else (words[0] if words else "")
    )
    return code if verb in _CONTAINER_STATUS_VERBS else 1


def _root_of(args: list[str]) -> str:
    for i, arg in enumerate(args):
        if arg == "--root" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--root="):
            return arg.split("=", 1)[1]
    return os.environ["DOCKYARD_ROOT"]


def _rootless(args: list[str]) -> None:
    """A user without root: the same engine inside the user's namespaces, with state
    under the user's XDG directories (``dockyard.rootless``)."""
    from dockyard import rootless
    from dockyard.rootless import userns

    if "DOCKYARD_ROOT" not in os.environ:
        root = rootless.data_root()
        rootless.private_dir(root, os.getuid())
        os.environ["DOCKYARD_ROOT"] = root
    userns.enter()
    if "DOCKYARD_SNAPSHOTTER" not in os.environ and not any(a.startswith("--snapshotter") for a in args):
        # native overlay where this kernel allows it in a user namespace, else copies
        os.environ["DOCKYARD_SNAPSHOTTER"] = rootless.snapshotter(_root_of(args))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or "-D" in args or bool(os.environ.get("DOCKYARD_DEBUG"))
    try:
        if os.geteuid() != 0 and not _only_reads_help(args):
            _rootless(args)
        code = cli.main(args, prog_name="dockyard")
        if isinstance(code, int) and code:
            return code
    except flags.UsageError as err:
        return _fail(str(err), 125)
    except flags.Exit as err:
        return err.exit_code
    except flags.Abort:
        return _fail("aborted", 130)
    except DockyardError as err:
        if debug:
            raise
        return _fail(str(err), _daemon_status(args, err.exit_code))
    except RootlessError as err:
        return _fail(str(err), 125)
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a bug: still one line, but say how to see more
        if debug:
            raise
        return _fail(f"internal error: {err} (run with --debug for details)", 125)
    return 0


def run_and_exit() -> None:
    """``main()``, then leave without the interpreter's shutdown (several ms with the engine
    loaded); nothing here needs finalising beyond the stdio buffers: SQLite commits are
    durable when they return."""
    from dockyard.runtime.cli import leave

    leave(main())


if __name__ == "__main__":
    run_and_exit()
