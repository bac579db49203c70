"""The per-container monitor (what conmon is to podman and the shim to containerd).

``python -m dockyard.engine.monitor ROOT ID SNAPSHOTTER [--attach]``, started
in its own session by ``Engine.start``. It is the container's parent
(subreaper): it mounts the rootfs, runs dockyard-runtime's create and start in
process, copies the container's output into Docker's json-file log and to
attached clients, feeds their input to the container, waits for the exit,
records exit code and OOM kill, applies the restart policy, unmounts, and
removes the container when ``--rm`` asked for it. The command that started
it can go away at any time.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time
from typing import Any

from dockyard.engine import stream
from dockyard.engine.containers import Engine
from dockyard.image.store import now_rfc3339
from dockyard.linux import syscalls as sc

_CHUNK = 16 * 1024  # Docker splits log lines longer than 16 KiB


class LogWriter:
    """Docker's json-file driver: one JSON object per line, rotated by size."""

    def __init__(self, path: str, max_size: int = 10 << 20, max_files: int = 3) -> None:
        self.path = path
        self.max_size = max_size
        self.max_files = max_files
        self.f = open(path, "ab")  # noqa: SIM115 - lives as long as the monitor
        self.partial = {"stdout": b"", "stderr": b""}

    def write(self, name: str, data: bytes, final: bool = False) -> None:
        buf = self.partial[name] + data
        lines = buf.split(b"\n")
        self.partial[name] = lines.pop()
        for line in lines:
            self._emit(name, line + b"\n")
        while len(self.partial[name]) >= _CHUNK:
            self._emit(name, self.partial[name][:_CHUNK])
            self.partial[name] = self.partial[name][_CHUNK:]
        if final and self.partial[name]:
            self._emit(name, self.partial[name])
            self.partial[name] = b""

    def _emit(self, name: str, chunk: bytes) -> None:
        record = {"log": chunk.decode("utf-8", "replace"), "stream": name, "time": now_rfc3339()}
        self.f.write(json.dumps(record).encode() + b"\n")
        self.f.flush()
        if self.f.tell() >= self.max_size:
            self._rotate()

    def _rotate(self) -> None:
        self.f.close()
        for i in range(self.max_files - 1, 0, -1):
            src = self.path if i == 1 else f"{self.path}.{i - 1}"
            if os.path.exists(src):
                if i >= self.max_files:
                    os.unlink(src)
                else:
                    os.replace(src, f"{self.path}.{i}")
        if self.max_files <= 1:
            os.truncate(self.path, 0)
        self.f = open(self.path, "ab")  # noqa: SIM115


class Clients:
    """Attached clients on the container's attach socket."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []
        self.readers: dict[int, stream.FrameReader] = {}

    def add(self, sock: socket.socket) -> None:
        self.socks.append(sock)
        self.readers[sock.fileno()] = stream.FrameReader()

    def drop(self, sock: socket.socket) -> None:
        if sock in self.socks:
            self.socks.remove(sock)
            self.readers.pop(sock.fileno(), None)
            sock.close()

    def send(self, kind: int, payload: bytes) -> None:
        for sock in list(self.socks):
            try:
                sock.sendall(stream.frame(kind, payload))
            except OSError:
                self.drop(sock)


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


def run_once(engine: Engine, cid: str, rec: dict[str, Any], log: LogWriter, clients: Clients,
             listener: socket.socket | None) -> int:  # fmt: skip
    """Create, start and wait for the container once; its exit code (or a start error raised)."""
    from dockyard.engine.spec import oci_spec
    from dockyard.runtime import console
    from dockyard.runtime.container import create
    from dockyard.runtime.lifecycle import ContainerError, delete, start

    cdir = engine.cdir(cid)
    rootfs = os.path.join(cdir, "rootfs")
    if not os.path.ismount(rootfs):
        engine.images.snapshots.mount(cid, rootfs)
    config, host = rec["config"], rec["host_config"]
    from dockyard.runtime.rootfs import secure_join

    for m in host.get("Mounts") or []:
        if m["Type"] == "volume":
            engine.volumes.fill_from(m["Name"], secure_join(rootfs, m["Target"]))
    spec = oci_spec(cid, config, host, rootfs, cdir)
    with open(os.path.join(cdir, "config.json"), "w") as f:
        json.dump(spec, f)
    tty = bool(config.get("Tty"))
    opts = engine.runtime_opts()
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    ours = theirs = -1
    in_w = -1
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
        try:
            state = create(opts, cid, cdir, console_fd=theirs)
        except ContainerError as err:
            engine.set_state(cid, error=str(err), exit_code=_code_for(err))
            raise
    finally:
        for fd, target in zip(saved, (0, 1, 2), strict=True):
            os.dup2(fd, target)
            os.close(fd)
        if theirs >= 0:
            os.close(theirs)
    master = -1
    if tty:
        master = console.recv_master(ours)
        os.close(ours)
        outs = {master: "stdout"}
        in_w = master
    pid = state["pid"]
    engine.set_state(cid, status="running", pid=pid, monitor_pid=os.getpid(), started_at=now_rfc3339(),
                     finished_at="0001-01-01T00:00:00Z")  # fmt: skip
    start(opts, cid)
    code = _pump(pid, outs, in_w, tty, log, clients, listener)
    cg_stats: dict[str, Any] = {}
    try:
        from dockyard.runtime import cgroups
        from dockyard.runtime import state as st

        cg_stats = cgroups.from_state(st.load(opts.root, cid).get("cgroup") or {}).stats()
    except Exception:
        pass
    oom = bool((cg_stats.get("memory") or {}).get("oom_kill"))
    try:
        delete(opts, cid, force=True)
    except Exception:
        pass
    engine.set_state(
        cid, status="exited", pid=0, exit_code=code, oom_killed=int(oom), finished_at=now_rfc3339()
    )
    return code


def _code_for(err: Exception) -> int:
    kind = getattr(err, "kind", "")
    return {"not-found": 127, "not-executable": 126}.get(kind, 125)


def _pump(pid: int, outs: dict[int, str], in_w: int, tty: bool, log: LogWriter, clients: Clients,
          listener: socket.socket | None) -> int:  # fmt: skip
    """Copy output to log and clients, input from clients, until the container exits."""
    open_outs = dict(outs)
    exited: int | None = None
    while True:
        watch: list[Any] = list(open_outs) + clients.socks + ([listener] if listener else [])
        ready, _, _ = select.select(watch, [], [], 0.2)
        for item in ready:
            if item is listener:
                conn, _ = listener.accept()
                clients.add(conn)
            elif isinstance(item, socket.socket):
                try:
                    data = item.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    clients.drop(item)
                    continue
                for kind, payload in clients.readers[item.fileno()].feed(data):
                    if kind == stream.STDIN and in_w >= 0:
                        try:
                            stream.send_all(in_w, payload)
                        except OSError:
                            pass
                    elif kind == stream.STDIN_CLOSE and in_w >= 0 and not tty:
                        os.close(in_w)
                        in_w = -1
                    elif kind == stream.RESIZE and tty:
                        _resize(in_w, json.loads(payload))
            else:
                name = open_outs[item]
                try:
                    data = os.read(item, 65536)
                except OSError:
                    data = b""
                if not data:
                    log.write(name, b"", final=True)
                    del open_outs[item]
                    continue
                log.write(name, data)
                clients.send(stream.STDOUT if name == "stdout" else stream.STDERR, data)
        if exited is None:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                exited = os.waitstatus_to_exitcode(status)
                exited = 128 - exited if exited < 0 else exited
        if exited is not None and (not open_outs or tty):
            # drain what is still buffered, then finish
            for fd, name in list(open_outs.items()):
                try:
                    os.set_blocking(fd, False)
                    while chunk := os.read(fd, 65536):
                        log.write(name, chunk)
                        clients.send(stream.STDOUT if name == "stdout" else stream.STDERR, chunk)
                except OSError:
                    pass
                log.write(name, b"", final=True)
            for fd in outs:
                try:
                    os.close(fd)
                except OSError:
                    pass
            if in_w >= 0 and not tty:
                try:
                    os.close(in_w)
                except OSError:
                    pass
            return exited


def _resize(master: int, size: dict[str, int]) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size["h"], size["w"], 0, 0))


def main(argv: list[str]) -> int:
    root, cid, snapshotter = argv[:3]
    attach = "--attach" in argv
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    engine = Engine(root, snapshotter)
    rec = engine.record(cid)
    engine.set_state(cid, monitor_pid=os.getpid())
    log = LogWriter(os.path.join(engine.cdir(cid), f"{cid}-json.log"),
                    *_log_limits(rec["host_config"]))  # fmt: skip
    clients = Clients()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock_path = os.path.join(engine.cdir(cid), "attach.sock")
    tmp = sock_path + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    with stream.ShortPath(tmp) as short:
        listener.bind(short)
    listener.listen(8)
    os.rename(tmp, sock_path)  # appears only once it accepts
    if attach:
        listener.settimeout(30)
        try:
            conn, _ = listener.accept()
            clients.add(conn)
        except TimeoutError:
            pass
        listener.settimeout(None)
    restarts = rec["restart_count"]
    code = 0
    while True:
        try:
            code = run_once(engine, cid, engine.record(cid), log, clients, listener)
        except Exception as err:
            rec = engine.record(cid)
            if not rec["error"]:
                engine.set_state(cid, error=str(err) or type(err).__name__, exit_code=125)
            code = engine.record(cid)["exit_code"]
            engine.cleanup_runtime(cid)
            clients.send(
                stream.EXIT,
                json.dumps({"ExitCode": code, "Error": engine.record(cid)["error"]}).encode(),
            )
            break
        rec = engine.record(cid)
        if not _restart_wanted(rec["host_config"].get("RestartPolicy") or {}, code, restarts,
                               bool(rec["stopped_by_user"])):  # fmt: skip
            from dockyard.snapshot.snapshotter import unmount

            unmount(os.path.join(engine.cdir(cid), "rootfs"))
            clients.send(
                stream.EXIT,
                json.dumps({"ExitCode": code, "OOMKilled": bool(rec["oom_killed"])}).encode(),
            )
            break
        restarts += 1
        engine.set_state(cid, status="restarting", restart_count=restarts)
        time.sleep(min(0.1 * (2 ** min(restarts, 8)), 10))  # Docker's growing back-off
    for sock in list(clients.socks):
        clients.drop(sock)
    listener.close()
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    if engine.record(cid)["host_config"].get("AutoRemove"):
        engine.set_state(cid, monitor_pid=0)
        engine.remove(cid, force=True)
    else:
        engine.set_state(cid, monitor_pid=0)
    return 0


def _log_limits(host: dict[str, Any]) -> tuple[int, int]:
    opts = (host.get("LogConfig") or {}).get("Config") or {}
    size = opts.get("max-size", "10m")
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    max_size = int(size[:-1]) * units[size[-1].lower()] if size[-1].lower() in units else int(size)
    return max_size, int(opts.get("max-file", "3"))


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except Exception as err:
        sys.stderr.write(f"dockyard monitor: {err}\n")
        code = 1
    os._exit(code)
