"""``dockyard-runtime``: the command line runc has, so engines can drive either.

The parser is hand-written: argparse alone costs milliseconds on every
container start, and the runtime is on the start-up path of every container.
Flags follow runc (urfave/cli): global flags before the command, command flags
before the positional arguments, ``--flag value`` or ``--flag=value``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["main", "run_and_exit"]

USAGE = """\
usage: dockyard-runtime [global options] COMMAND [options] ARGS

An OCI runtime (runtime-spec 1.1) with runc's command line.

Commands:
  spec       write a default config.json into the bundle
  create     create a container, its process waiting for start
  start      run the process of a created container
  run        create and start a container (and wait, unless --detach)
  state      print the state of a container as JSON
  kill       send a signal to a container's init (or all processes with --all)
  delete     delete a stopped container (--force: any container)
  exec       run a new process inside a container
  list       list containers
  ps         show the processes of a container
  pause      freeze every process of a container
  resume     thaw a paused container
  events     print resource usage of a container (--stats)
  update     set new resource limits (--resources FILE|-, or --memory, --pids-limit, ...)
  features   print the features this runtime supports as JSON

Global options:
  --root DIR             state directory (default /run/dockyard-runtime)
  --log FILE             also write errors to FILE
  --log-format text|json format of --log (default text)
  --debug                print tracebacks
  --systemd-cgroup       read linux.cgroupsPath as slice:prefix:name
  --cgroup-manager M     cgroupfs (auto), v1, v2 or disabled
  -v, --version          print the version
  -h, --help             this help
"""

# flag -> (destination, kind); kind: bool, str, int, list
_GLOBAL = {
    "--root": ("root", "str"),
    "--log": ("log", "str"),
    "--log-format": ("log_format", "str"),
    "--debug": ("debug", "bool"),
    "--systemd-cgroup": ("systemd_cgroup", "bool"),
    "--cgroup-manager": ("cgroup_manager", "str"),
    "--rootless": ("rootless", "str"),
    "--criu": ("criu", "str"),
}
_CREATE = {
    "--bundle": ("bundle", "str"),
    "-b": ("bundle", "str"),
    "--console-socket": ("console_socket", "str"),
    "--pid-file": ("pid_file", "str"),
    "--no-pivot": ("no_pivot", "bool"),
    "--no-new-keyring": ("no_new_keyring", "bool"),
    "--preserve-fds": ("preserve_fds", "int"),
}
_RUN = {
    **_CREATE,
    "--detach": ("detach", "bool"),
    "-d": ("detach", "bool"),
    "--keep": ("keep", "bool"),
}
_EXEC = {
    "--console-socket": ("console_socket", "str"),
    "--cwd": ("cwd", "str"),
    "--env": ("env", "list"),
    "-e": ("env", "list"),
    "--tty": ("tty", "bool"),
    "-t": ("tty", "bool"),
    "--user": ("user", "str"),
    "-u": ("user", "str"),
    "--additional-gids": ("gids", "list"),
    "-g": ("gids", "list"),
    "--process": ("process", "str"),
    "-p": ("process", "str"),
    "--detach": ("detach", "bool"),
    "-d": ("detach", "bool"),
    "--pid-file": ("pid_file", "str"),
    "--process-label": ("label", "str"),
    "--apparmor": ("apparmor", "str"),
    "--no-new-privs": ("no_new_privs", "bool"),
    "--cap": ("caps", "list"),
    "-c": ("caps", "list"),
    "--preserve-fds": ("preserve_fds", "int"),
    "--cgroup": ("cgroup", "list"),
    "--ignore-paused": ("ignore_paused", "bool"),
}
_COMMANDS: dict[str, dict[str, tuple[str, str]]] = {
    "spec": {"--bundle": ("bundle", "str"), "-b": ("bundle", "str"), "--rootless": ("rootless", "bool")},
    "create": _CREATE,
    "start": {},
    "run": _RUN,
    "state": {},
    "kill": {"--all": ("all", "bool"), "-a": ("all", "bool")},
    "delete": {"--force": ("force", "bool"), "-f": ("force", "bool")},
    "exec": _EXEC,
    "list": {"--format": ("format", "str"), "-f": ("format", "str"), "--quiet": ("quiet", "bool"), "-q": ("quiet", "bool")},
    "ps": {"--format": ("format", "str"), "-f": ("format", "str")},
    "pause": {},
    "resume": {},
    "events": {"--stats": ("stats", "bool"), "--interval": ("interval", "str")},
    "features": {},
    "update": {"--resources": ("resources", "str"), "-r": ("resources", "str"), "--memory": ("memory", "str"),
               "--memory-swap": ("memory_swap", "str"), "--memory-reservation": ("memory_reservation", "str"),
               "--cpu-period": ("cpu_period", "int"), "--cpu-quota": ("cpu_quota", "int"),
               "--cpu-share": ("cpu_share", "int"), "--cpuset-cpus": ("cpuset_cpus", "str"),
               "--cpuset-mems": ("cpuset_mems", "str"), "--pids-limit": ("pids_limit", "int"),
               "--blkio-weight": ("blkio_weight", "int")},
}  # fmt: skip


class UsageError(Exception):
    pass


def _parse(args: list[str], table: dict[str, tuple[str, str]]) -> tuple[dict[str, Any], list[str]]:
    """Parse flags up to the first positional argument (or ``--``)."""
    values: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return values, args[i + 1 :]
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, inline = arg.partition("=")
        if name not in table:
            if name in ("-h", "--help"):
                values["help"] = True
                i += 1
                continue
            raise UsageError(f"flag provided but not defined: {name}")
        dest, kind = table[name]
        if kind == "bool":
            values[dest] = inline.lower() not in ("false", "0") if eq else True
            i += 1
            continue
        if eq:
            value = inline
        else:
            if i + 1 >= len(args):
                raise UsageError(f"flag needs an argument: {name}")
            value = args[i + 1]
            i += 1
        i += 1
        if kind == "list":
            values.setdefault(dest, []).append(value)
        elif kind == "int":
            try:
                values[dest] = int(value)
            except ValueError:
                raise UsageError(f"invalid value {value!r} for flag {name}") from None
        else:
            values[dest] = value
    return values, args[i:]


def _need_id(pos: list[str], command: str) -> str:
    if not pos:
        raise UsageError(f'"{command}" requires a container id')
    return pos[0]


def _emit_error(message: str, g: dict[str, Any]) -> None:
    sys.stderr.write(f"dockyard-runtime: {message}\n")
    log = g.get("log")
    if not log:
        return
    try:
        with open(log, "a") as f:
            if g.get("log_format") == "json":
                import time

                from dockyard import _json

                now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                f.write(_json.dumps({"level": "error", "msg": message, "time": now}) + "\n")
            else:
                f.write(f"level=error msg={message!r}\n")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    g: dict[str, Any] = {}
    try:
        g, rest = _parse(
            args, {**_GLOBAL, "-v": ("version", "bool"), "--version": ("version", "bool")}
        )
        if g.get("version"):
            from dockyard import __version__
            from dockyard.runtime.state import OCI_VERSION

            sys.stdout.write(f"dockyard-runtime version {__version__}\nspec: {OCI_VERSION}\n")
            return 0
        if g.get("help") or not rest:
            sys.stdout.write(USAGE)
            return 0 if g.get("help") else 1
        command, rest = rest[0], rest[1:]
        if command not in _COMMANDS:
            raise UsageError(f"no such command: {command}")
        flags, pos = _parse(rest, _COMMANDS[command])
        if flags.get("help"):
            sys.stdout.write(USAGE)
            return 0
        from dockyard.runtime import commands
        from dockyard.runtime.cgroups._files import print_warnings_as_they_come

        print_warnings_as_they_come("dockyard-runtime: warning: ")
        return getattr(commands, "cmd_" + command)(g, flags, pos)
    except UsageError as err:
        _emit_error(str(err), g)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        if g.get("debug"):
            import traceback

            traceback.print_exc()
        _emit_error(_describe(err), g)
        return 1


def _describe(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    return str(err) or type(err).__name__


def run_and_exit() -> None:
    """``main()``, then leave without interpreter shutdown.

    Tearing down the interpreter (module dicts, GC) costs ~3 ms per command,
    and every container start runs at least one; the runtime holds nothing
    that needs finalising beyond its stdio buffers.
    """
    leave(main())


def leave(code: int) -> None:
    """Flush stdio and exit without tearing the interpreter down."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    run_and_exit()
