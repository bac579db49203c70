"""Exec instances as Docker has them: created with an ID, started attached or detached,
inspected (``Running``, ``ExitCode``, ``Pid``) by any face while and after they run.

An exec's record is a JSON file in its container's directory (``execs/<id>.json``),
replaced whole on each change, so the CLI, the API server and a test see the same state
from different processes with no daemon. A detached exec is run by a small waiter
process of its own (forked, or spawned where threads run, as the monitor is), which
records the exit status when the command ends.
"""

from __future__ import annotations

import os
import sys
import time

from dockyard import _json as json
from dockyard.engine import states
from dockyard.errors import (
    Conflict,
    DockyardError,
    InvalidArgument,
    NotFound,
    exit_code_for_kind,
    start_error,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.engine.containers import Engine

__all__ = ["create", "inspect", "resize", "resize_terminal", "start"]

_KEEP_SECONDS = 300


def _dir(engine: Engine, cid: str) -> str:
    return os.path.join(engine.cdir(cid), "execs")


def _find(engine: Engine, exec_id: str) -> tuple[str, dict[str, Any]]:
    """(path of the record, the record) of ``exec_id``, in whichever container holds it."""
    if not exec_id or not all(c in "0123456789abcdef" for c in exec_id):
        raise NotFound(f"No such exec instance: {exec_id}")
    for row in engine.db.query("SELECT id FROM containers"):
        path = os.path.join(_dir(engine, row["id"]), f"{exec_id}.json")
        try:
            with open(path) as f:
                return path, json.load(f)
        except FileNotFoundError:
            continue
    raise NotFound(f"No such exec instance: {exec_id}")


def _pid_path(path: str) -> str:
    return path.removesuffix(".json") + ".pid"


def _save(path: str, record: dict[str, Any]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.rename(tmp, path)


def create(engine: Engine, container: str, config: dict[str, Any]) -> str:
    """A new exec in running container ``container`` from Docker's ExecConfig (``Cmd``,
    ``Env``, ``User``, ``WorkingDir``, ``Tty``, ``AttachStdin``...); its ID."""
    from dockyard.engine.spec import resolve_user

    cid = engine.lookup(container)
    rec = engine.refresh(cid)
    states.check_verb("exec", cid, rec["status"])
    cmd = config.get("Cmd") or []
    if not cmd:
        raise InvalidArgument("No exec command specified")
    with open(os.path.join(engine.cdir(cid), "config.json")) as f:
        proc = dict(json.load(f)["process"])
    proc["args"] = list(cmd)
    proc["terminal"] = bool(config.get("Tty"))
    proc["env"] = list(proc.get("env") or []) + list(config.get("Env") or [])
    if config.get("WorkingDir"):
        proc["cwd"] = config["WorkingDir"]
    if config.get("User"):
        proc["user"] = resolve_user(os.path.join(engine.cdir(cid), "rootfs"), config["User"])
    exec_id = os.urandom(32).hex()
    os.makedirs(_dir(engine, cid), exist_ok=True)
    _forget_finished(_dir(engine, cid))
    _save(os.path.join(_dir(engine, cid), f"{exec_id}.json"), {
        "ID": exec_id, "ContainerID": cid, "Config": config, "Process": proc,
        "Running": False, "Started": False, "ExitCode": None, "Pid": 0,
    })  # fmt: skip
    return exec_id


def _forget_finished(directory: str) -> None:
    """Drop the records of execs that ended over five minutes ago (dockerd forgets them too)."""
    horizon = time.time() - _KEEP_SECONDS
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        try:
            if os.stat(path).st_mtime > horizon:
                continue
            if name.endswith(".json"):
                with open(path) as f:
                    if json.load(f).get("Running"):
                        continue
            os.unlink(path)
        except (OSError, ValueError):
            continue  # another process replaced or removed it meanwhile


def inspect(engine: Engine, exec_id: str) -> dict[str, Any]:
    """Docker's ExecInspect."""
    path, rec = _find(engine, exec_id)
    pid = rec["Pid"]
    if rec["Running"] and not pid:
        try:
            with open(_pid_path(path)) as f:
                pid = int(f.read() or 0)
        except (FileNotFoundError, ValueError):
            pid = 0
    cfg = rec["Config"]
    cmd = cfg.get("Cmd") or []
    return {
        "ID": rec["ID"], "ContainerID": rec["ContainerID"], "Running": rec["Running"],
        "ExitCode": rec["ExitCode"], "Pid": pid, "CanRemove": False, "DetachKeys": "",
        "OpenStdin": bool(cfg.get("AttachStdin")), "OpenStdout": bool(cfg.get("AttachStdout")),
        "OpenStderr": bool(cfg.get("AttachStderr")),
        "ProcessConfig": {"entrypoint": cmd[0] if cmd else "", "arguments": list(cmd[1:]),
                          "tty": bool(cfg.get("Tty")), "user": cfg.get("User") or "",
                          "privileged": bool(cfg.get("Privileged"))},
    }  # fmt: skip


def start(engine: Engine, exec_id: str, detach: bool = False,
          stdio: tuple[int, int, int] | None = None) -> int | None:  # fmt: skip
    """Run the exec: attached, on this process's stdio (or on ``stdio``'s three descriptors:
    an API server's hijacked connection, pipes), returning its exit status; or detached,
    returning once it runs (its status goes to the record)."""
    path, rec = _find(engine, exec_id)
    try:  # the claim: of two concurrent starts, exactly one creates it
        os.close(
            os.open(
                path.removesuffix(".json") + ".started", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
            )
        )
    except FileExistsError:
        rec = _find(engine, exec_id)[1]
        raise Conflict(f"Error: Exec command {exec_id} is already running" if rec["Running"] or not rec["Started"]
                       else f"Error: Exec command {exec_id} has already run") from None  # fmt: skip
    rec.update(Started=True, Running=True)
    _save(path, rec)
    # the runtime's exec makes its caller the subreaper of what it starts: it runs in a
    # child of its own, never in the caller (a server would collect every orphan as a zombie)
    waiter = _waiter(engine, path, rec, detach, stdio)
    if not detach:
        waiter.wait()
        _path, done = _find(engine, exec_id)
        if done.get("Error"):
            raise start_error(done["Error"], done["ExitCode"])
        return int(done["ExitCode"] if done["ExitCode"] is not None else 125)
    pid_path = _pid_path(path)
    deadline = time.monotonic() + 30
    while not os.path.exists(pid_path):
        if waiter.poll() is not None or time.monotonic() > deadline:
            break  # it ended (or failed) before a pid was written: the record says how
        time.sleep(0.005)
    return None


def _waiter(engine: Engine, path: str, rec: dict[str, Any], detach: bool,
            stdio: tuple[int, int, int] | None = None) -> Any:  # fmt: skip
    """The process that runs the exec and records its end: forked where one thread runs,
    spawned where more do. Attached, it has the caller's stdio or ``stdio``; detached, none."""
    threading = sys.modules.get("threading")
    if threading is None or threading.active_count() == 1:
        child = os.fork()
        if child == 0:
            code = 1
            try:
                if detach:
                    os.setsid()
                    null = os.open(os.devnull, os.O_RDWR)
                    for fd in (0, 1, 2):
                        os.dup2(null, fd)
                elif stdio is not None:
                    for fd, target in zip(stdio, (0, 1, 2), strict=True):
                        os.dup2(fd, target)
                from dockyard.engine.containers import Engine as EngineImpl

                code = _run(EngineImpl(engine.root, engine.snapshotter), path, rec)
            finally:
                os._exit(code & 0xFF)
        from dockyard.engine.containers import MonitorProcess  # a child reaped by its parent

        return MonitorProcess(child)
    import subprocess

    quiet = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
    }
    given = {} if stdio is None else {"stdin": stdio[0], "stdout": stdio[1], "stderr": stdio[2]}
    from dockyard.engine.containers import spawned

    return spawned(subprocess.Popen([sys.executable, "-m", "dockyard.engine.execs", engine.root, engine.snapshotter, path],
                                    start_new_session=detach, **(quiet if detach else given)))  # type: ignore[call-overload]  # fmt: skip


def resize(engine: Engine, exec_id: str, height: int, width: int) -> None:
    """``POST /exec/{id}/resize``: the exec's terminal takes the new size."""
    _path, rec = _find(engine, exec_id)
    if not rec["Running"]:
        raise Conflict(f"Exec {exec_id} is not running")
    if not rec["Config"].get("Tty"):
        raise InvalidArgument(f"Exec {exec_id} has no terminal to resize")
    resize_terminal(inspect(engine, exec_id)["Pid"], height, width)


def resize_terminal(pid: int, height: int, width: int) -> None:
    """Set the size of the terminal on ``pid``'s standard input (a pty's slave: the kernel
    then sends SIGWINCH to its foreground process group). The copy loop that holds the
    master lives in another process; the slave is reached through /proc, as root may."""
    import fcntl
    import struct
    import termios

    if not pid or not (0 < height < 65536 and 0 < width < 65536):
        raise InvalidArgument(f"cannot resize to {height}x{width}")
    try:
        fd = os.open(f"/proc/{pid}/fd/0", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Conflict(f"process {pid} has ended") from None
    try:
        if not os.isatty(fd):
            raise InvalidArgument(f"process {pid} has no terminal")
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
    finally:
        os.close(fd)


def _run(engine: Engine, path: str, rec: dict[str, Any]) -> int:
    """Run the exec here and record how it ended; its exit status."""
    cid = rec["ContainerID"]
    pid_path = _pid_path(path)
    try:
        code = engine.runtime(cid).exec(cid, rec["Process"], False, pid_file=pid_path)
    except DockyardError as err:  # the runtime's errors join the tree at its driver
        code = exit_code_for_kind(getattr(err, "kind", ""))
        rec.update(Running=False, ExitCode=code, Error=str(err))
        _save(path, rec)
        return code
    try:
        with open(pid_path) as f:
            rec["Pid"] = int(f.read() or 0)
    except (FileNotFoundError, ValueError):
        pass
    rec.update(Running=False, ExitCode=code)
    _save(path, rec)
    return code


if __name__ == "__main__":
    root, snapshotter, record_path = sys.argv[1:4]
    from dockyard.engine.containers import Engine as EngineImpl

    with open(record_path) as f:
        record = json.load(f)
    os._exit(_run(EngineImpl(root, snapshotter), record_path, record) & 0xFF)
