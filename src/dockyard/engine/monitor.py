"""The per-container monitor (what conmon is to podman and the shim to containerd).

``python -m dockyard.engine.monitor ROOT ID SNAPSHOTTER [--client-fd FD]``, started
in its own session by ``Engine.start``. It is the container's parent
(subreaper) for the container's whole life, in two shapes of one process:

1. this module sets up: mounts the rootfs, fills empty volumes, writes
   config.json, runs dockyard-runtime's create and start in-process with the
   container's stdio on pipes (or a pty), then execs
2. ``engine.lean`` (``python -I -S``, C modules only) which copies output to
   the json-file log and attached clients and waits for the exit, then execs
   this module again with ``--finish CODE`` to record the exit code and OOM
   kill, delete the runtime container, and restart or remove it as asked.

The command that started it can go away at any time; so can this process:
the engine then reads the truth from the kernel (``Engine.refresh``).
"""

from __future__ import annotations

import _socket
import os
import sys
import time

from dockyard import _json as json
from dockyard.clock import now_rfc3339
from dockyard.engine import stream
from dockyard.engine.containers import Engine
from dockyard.errors import DockyardError, exit_code_for_kind
from dockyard.linux import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_LEAN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lean.py")


def lean_interpreter() -> str:
    """The Python the idle loop runs under: the distribution's ``/usr/bin/python3`` when it
    is our version (distribution builds link libpython statically, which leaves ~300 KiB
    less relocated, dirty data per process than a ``--enable-shared`` build such as
    pyenv's), else our own. The loop uses C modules only, so either runs it."""
    system = os.path.realpath("/usr/bin/python3")
    if os.path.basename(system) == f"python{sys.version_info[0]}.{sys.version_info[1]}":
        return system
    return sys.executable


def lean_program(root: str) -> str:
    """lean.py compiled, kept under the engine's root: an interpreter that runs a script
    from source compiles it first, and the compiler's leftovers stay in the heap (about
    1 MiB of every idle monitor's memory here). Keyed by the source's size and mtime."""
    st = os.stat(_LEAN)
    cache = os.path.join(root, "cache")
    path = os.path.join(
        cache, f"lean-{sys.implementation.cache_tag}-{st.st_mtime_ns}-{st.st_size}.pyc"
    )
    if not os.path.exists(path):
        import py_compile

        os.makedirs(cache, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        py_compile.compile(_LEAN, cfile=tmp, doraise=True)
        os.rename(tmp, path)
    return path


def _restart_wanted(policy: dict[str, Any], code: int, restarts: int, stopped: bool) -> bool:
    name = (policy or {}).get("Name") or "no"
    if stopped or name == "no":
        return False
    if name in ("always", "unless-stopped"):
        return True
    if name == "on-failure":
        limit = policy.get("MaximumRetryCount") or 0
        return code != 0 and (limit == 0 or restarts < limit)
    return False


def _log_path(host: dict[str, Any], cdir: str, cid: str) -> str:
    """The json-file log, or "" for the ``none`` driver (the lean loop then keeps nothing)."""
    if ((host.get("LogConfig") or {}).get("Type") or "json-file") == "none":
        return ""
    return os.path.join(cdir, f"{cid}-json.log")


def _log_limits(host: dict[str, Any]) -> tuple[int, int]:
    opts = (host.get("LogConfig") or {}).get("Config") or {}
    size = opts.get("max-size", "10m")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    max_size = int(size[:-1]) * units[size[-1].lower()] if size[-1].lower() in units else int(size)
    return max_size, int(opts.get("max-file", "3"))


def launch(
    engine: Engine, cid: str, snapshotter: str, listener: _socket.socket, clients: list[int]
) -> None:
    """Create and start the container, then become the lean loop. Returns only by raising."""
    from dockyard.engine.spec import oci_spec
    from dockyard.runtime import console
    from dockyard.runtime.rootfs import secure_join

    rec = engine.record(cid)
    cdir = engine.cdir(cid)
    rootfs = os.path.join(cdir, "rootfs")
    config, host = rec["config"], rec["host_config"]
    if not os.path.ismount(rootfs):
        # A container removed at exit (or a build step, committed right after) needs no
        # sync of its writes: podman mounts --rm containers volatile too.
        volatile = bool(host.get("AutoRemove") or host.get("Volatile"))
        engine.images.snapshots.mount(cid, rootfs, volatile=volatile)
    for m in host.get("Mounts") or []:
        if m["Type"] == "volume":
            engine.volumes.fill_from(m["Name"], secure_join(rootfs, m["Target"]))
    from dockyard.engine import networking, sharing

    eps = networking.prepare(engine, cid)
    with open(os.path.join(cdir, "config.json"), "w") as f:
        json.dump(
            oci_spec(
                cid,
                config,
                host,
                rootfs,
                cdir,
                netns=networking.netns_for(engine, cid),
                joins=sharing.joins(engine, cid),
                shm=sharing.shm_for(engine, cid),
            ),
            f,
        )
    tty = bool(config.get("Tty"))
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    ours = theirs = in_w = -1
    outs: dict[int, str] = {}
    try:
        if tty:
            ours, theirs = console.socketpair()
        else:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            if config.get("OpenStdin"):
                in_r, in_w = os.pipe()
            else:
                in_r = os.open(os.devnull, os.O_RDONLY)
            for fd, target in ((in_r, 0), (out_w, 1), (err_w, 2)):
                os.dup2(fd, target)  # the container inherits 0, 1 and 2
            for fd in (in_r, out_w, err_w):
                os.close(fd)
            outs = {out_r: "stdout", err_r: "stderr"}
        runtime = engine.runtime(cid)
        try:
            pid = runtime.create(cid, cdir, console_fd=theirs)
            networking.plumb(engine, cid, pid, eps)
        except (DockyardError, OSError) as err:  # the runtime's errors join the tree at its driver
            engine.set_state(
                cid, error=str(err), exit_code=exit_code_for_kind(getattr(err, "kind", ""))
            )
            raise
    finally:
        for fd, target in zip(saved, (0, 1, 2), strict=True):
            os.dup2(fd, target)
            os.close(fd)
        if theirs >= 0:
            os.close(theirs)
        from dockyard.runtime.cgroups._files import take_warnings

        for warning in take_warnings():  # the starting client's stderr, as docker prints them
            sys.stderr.write(f"WARNING: {warning}\n")
        sys.stderr.flush()
    if tty:
        in_w = console.recv_master(ours)
        os.close(ours)
        outs = {in_w: "stdout"}
    from dockyard.engine.health import health_config

    hc = health_config(config)
    health = json.dumps({"Status": "starting", "FailingStreak": 0, "Log": []}) if hc else ""
    log_path = _log_path(host, cdir, cid)
    if log_path:
        # there before anyone is told it runs: a follow opened from then on holds the file
        # the lean loop appends to, even when the container is removed right at its exit
        os.close(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640))
    engine.set_state(cid, status="running", pid=pid, monitor_pid=os.getpid(), health=health,
                     started_at=now_rfc3339(), finished_at="0001-01-01T00:00:00Z")  # fmt: skip
    runtime.start(cid)
    engine.emit(cid, "start")
    for fd in [*outs, in_w, listener.fileno(), *clients]:
        if fd >= 0:
            os.set_inheritable(fd, True)
    max_size, max_files = _log_limits(host)
    # Without a restart policy an attached client may record the exit itself.
    client_finish = ((host.get("RestartPolicy") or {}).get("Name") or "no") == "no"
    me = ["-m", "dockyard.engine.monitor", engine.root, cid, snapshotter]
    lean_python = lean_interpreter()
    args = [lean_python, "-I", "-S", lean_program(engine.root), sys.executable, json.dumps(me), str(pid), "1" if tty else "0",
            str(in_w), str(listener.fileno()), log_path, str(max_size),
            str(max_files), "1" if client_finish else "0", str(hc["Interval"] if hc else 0),
            *[f"{fd}:{name}" for fd, name in outs.items()], *[f"{fd}:client" for fd in clients]]  # fmt: skip
    from dockyard import busy

    busy.forget()  # started: the store is no longer being changed here
    if clients:
        from dockyard.engine import lean

        lean.main(args[4:], in_process=args[:4])  # execs or exits
    os.execv(lean_python, args)


def warm_finish() -> None:
    """Import what ``finish_by_client`` needs. A client attached to a starting container
    calls this while it waits (the start runs in other processes, on another core), so that
    recording the exit does not start with ~2 ms of imports."""
    from dockyard.engine import networking, runtimes, sharing  # noqa: F401
    from dockyard.network import plumbing  # noqa: F401
    from dockyard.runtime.cgroups import v1, v2  # noqa: F401


def finish_by_client(engine: Engine, cid: str, code: int) -> None:
    """The attached client's share of the end: what the monitor would have done after the exit."""
    from dockyard import busy
    from dockyard.snapshot.snapshotter import unmount

    with busy.in_use(engine.root):
        finish(engine, cid, code)
        unmount(os.path.join(engine.cdir(cid), "rootfs"))
        engine.set_state(cid, monitor_pid=0)


def finish(engine: Engine, cid: str, code: int) -> None:
    """Record the exit: OOM kill from the cgroup, then delete the runtime container."""
    runtime = engine.runtime(cid)
    oom = False
    try:
        oom = runtime.cgroup(cid).oom_kills() > 0
    except Exception:  # no cgroup left to read: the exit is recorded without OOM
        pass
    try:
        runtime.delete(cid)
    except Exception:  # the exit must be recorded even where the runtime fails
        pass
    from dockyard.engine.networking import release
    from dockyard.engine.sharing import release_shm

    release(engine, cid)
    release_shm(engine, cid)
    if oom:
        engine.emit(cid, "oom")
    engine.set_state(
        cid, status="exited", pid=0, exit_code=code, oom_killed=int(oom), finished_at=now_rfc3339()
    )
    engine.emit(cid, "die", exitCode=str(code))


def _send(clients: list[int], kind: int, payload: bytes) -> None:
    for fd in clients:
        try:
            stream.send_all(fd, stream.frame(kind, payload))
        except OSError:
            pass


def _option(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name]


def main(argv: list[str]) -> int:
    from dockyard import busy

    root, cid, snapshotter = argv[:3]
    engine = Engine(root, snapshotter)
    finishing = _option(argv, "--finish")
    clients = [int(fd) for fd in _option(argv, "--client-fd")]
    sock_path = os.path.join(engine.cdir(cid), "attach.sock")
    if finishing:
        listener = _socket.socket(fileno=int(_option(argv, "--listen-fd")[0]))
        with busy.in_use(root):  # releasing addresses, unmounting: not beside a repair
            finish(engine, cid, int(finishing[0]))
    else:
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        engine.set_state(cid, monitor_pid=os.getpid())
        listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        tmp = sock_path + ".tmp"
        if os.path.exists(tmp):
            os.unlink(tmp)
        with stream.ShortPath(tmp) as short:
            listener.bind(short)
        listener.listen(8)
        os.rename(tmp, sock_path)  # appears only once it accepts
    while True:
        rec = engine.record(cid)
        if not finishing or _restart_wanted(rec["host_config"].get("RestartPolicy") or {}, rec["exit_code"],
                                            rec["restart_count"], bool(rec["stopped_by_user"])):  # fmt: skip
            if finishing:
                engine.set_state(cid, status="restarting", restart_count=rec["restart_count"] + 1)
                time.sleep(
                    min(0.1 * (2 ** min(rec["restart_count"] + 1, 8)), 10)
                )  # Docker's back-off
            try:
                with busy.in_use(root):  # until it runs; the lean loop it execs holds nothing
                    launch(engine, cid, snapshotter, listener, clients)  # execs the lean loop
            except Exception as err:
                if not engine.record(cid)["error"]:
                    engine.set_state(cid, error=str(err) or type(err).__name__, exit_code=125)
                engine.cleanup_runtime(cid)
                rec = engine.record(cid)
                _send(
                    clients,
                    stream.EXIT,
                    json.dumps({"ExitCode": rec["exit_code"], "Error": rec["error"]}).encode(),
                )
                break
        from dockyard.snapshot.snapshotter import unmount

        unmount(os.path.join(engine.cdir(cid), "rootfs"))
        _send(
            clients,
            stream.EXIT,
            json.dumps(
                {"ExitCode": rec["exit_code"], "OOMKilled": bool(rec["oom_killed"])}
            ).encode(),
        )
        break
    for fd in clients:
        os.close(fd)
    listener.close()
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    engine.set_state(cid, monitor_pid=0)
    if engine.record(cid)["host_config"].get("AutoRemove"):
        engine.remove(cid, force=True)
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except Exception as err:
        sys.stderr.write(f"dockyard monitor: {err}\n")
        code = 1
    os._exit(code)
