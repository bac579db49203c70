"""Containers as named objects: create, start, stop, kill, remove, list, inspect, wait.

The engine keeps each container's Docker-shaped Config and HostConfig and its
state in the database; a per-container monitor process (``engine.monitor``)
runs it. Reads reconcile the record with the kernel, so a killed monitor
never leaves ``ps`` lying.
"""

from __future__ import annotations

import os
import time

from dockyard import _json as json
from dockyard.busy import changing
from dockyard.clock import now_rfc3339
from dockyard.engine import states
from dockyard.errors import (
    Conflict,
    ContainerNotFound,
    DockyardError,
    ImageNotFound,
    InvalidArgument,
    NotFound,
    NotRunning,
)
from dockyard.fsutil import remove_tree
from dockyard.image import reference
from dockyard.image.store import ImageStore
from dockyard.metadata import IntegrityError
from dockyard.runtime import lifecycle

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.engine.records import ContainerRecord

__all__ = ["Engine"]

_NEVER = "0001-01-01T00:00:00Z"


class MonitorProcess:
    """The monitor as a child of this process (until this process exits and it is adopted)."""

    def __init__(self, pid: int, popen: Any = None) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.attach: Any = None  # with start(attach=True): our end of the attach socket
        self.started_before = ""  # the container's start time before this start
        self._popen = popen  # a spawned monitor is reaped by its Popen, never by waitpid here

    def poll(self) -> int | None:
        if self.returncode is None:
            if self._popen is not None:
                self.returncode = self._popen.poll()
            else:
                done, status = os.waitpid(self.pid, os.WNOHANG)
                if done == self.pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            if self._popen is not None:
                self.returncode = self._popen.wait()
            else:
                _pid, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


# processes spawned from a threaded process (monitors, exec waiters), polled by
# ``reap_spawned`` so that a long-running server leaves no zombies behind
_SPAWNED: list[Any] = []


def spawned(popen: Any) -> Any:
    """Register a child ``reap_spawned`` collects once it ends; returns it."""
    _SPAWNED.append(popen)
    return popen


def reap_spawned() -> None:
    for popen in list(_SPAWNED):
        if popen.poll() is not None:
            _SPAWNED.remove(popen)


def _start_monitor(
    args: list[str], keep: tuple[int, ...] = (), close_in_child: tuple[int, ...] = ()
) -> MonitorProcess:
    """A monitor for ``args``: forked where this process has one thread (the CLI: no new
    interpreter to start), spawned as a new interpreter where it has more (a server:
    forking a threaded process can copy a lock another thread holds, and the child would
    wait on it for ever). ``keep``: descriptors the monitor gets, at the same numbers."""
    import sys

    threading = sys.modules.get("threading")  # not imported: no thread was started from Python
    if threading is None or threading.active_count() == 1:
        return _fork_monitor(args, close_in_child)
    import subprocess

    popen = spawned(subprocess.Popen([sys.executable, "-m", "dockyard.engine.monitor", *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=keep,
                                     start_new_session=True))  # fmt: skip
    return MonitorProcess(popen.pid, popen)


def _fork_monitor(args: list[str], close_in_child: tuple[int, ...] = ()) -> MonitorProcess:
    """Start a monitor by forking this process: the engine is imported already, which saves
    a new interpreter's start-up on every container start. The child makes its own database
    connection (SQLite connections must not cross a fork) and soon execs the lean loop."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            from dockyard import busy

            busy.forget()  # the monitor takes its own hold, only while it starts the container
            for fd in close_in_child:
                os.close(fd)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            from dockyard.engine import monitor

            code = monitor.main(args)
        finally:
            os._exit(code)
    return MonitorProcess(pid)


def _alive(pid: int) -> bool:
    from dockyard.runtime.state import proc_start_time

    return pid > 0 and proc_start_time(pid) is not None


def _record_of(row: Any) -> ContainerRecord:
    rec: Any = dict(row)
    rec["config"] = json.loads(rec["config"])
    rec["host_config"] = json.loads(rec["host_config"])
    return rec


class Engine:
    """dockyard's state under ``root``; the Python API that the CLI (and later the API server) call."""

    def __init__(self, root: str, snapshotter: str = "overlay") -> None:
        self.root = root
        self.images = ImageStore(root, snapshotter)
        self.db = self.images.db
        self.snapshotter = snapshotter
        self.exec_root = os.path.join(root, "exec")
        from dockyard.engine.volumes import VolumeStore

        self.volumes = VolumeStore(root, self.db)
        self._networks: Any = None

    @property
    def networks(self) -> Any:
        """The NetworkStore (imported on first use: many commands never need it)."""
        if self._networks is None:
            from dockyard.network.store import NetworkStore

            self._networks = NetworkStore(self.root, self.db)
        return self._networks

    # -- paths
    def cdir(self, cid: str) -> str:
        return os.path.join(self.root, "containers", cid)

    def runtime(self, cid: str) -> Any:
        """The container's runtime driver (dockyard-runtime in-process, or runc/crun)."""
        from dockyard.engine.runtimes import runtime_for

        return runtime_for(self.record(cid)["host_config"].get("Runtime"), self.exec_root)

    # -- lookup
    def lookup(self, ref: str) -> str:
        """The ID of the container named or ID-prefixed by ``ref``; NotFound otherwise."""
        name = ref.lstrip("/")
        rows = self.db.query("SELECT id FROM containers WHERE name = ? OR id = ?", (name, ref))
        if not rows and ref and all(c in "0123456789abcdef" for c in ref):
            rows = self.db.query("SELECT id FROM containers WHERE id LIKE ?", (ref + "%",))
            if len(rows) > 1:
                raise Conflict(f"multiple containers found with provided prefix: {ref}")
        if not rows:
            raise ContainerNotFound(f"No such container: {ref}")
        return rows[0]["id"]

    def record(self, cid: str) -> ContainerRecord:
        rows = self.db.query(
            "SELECT c.*, s.* FROM containers c JOIN container_state s ON s.id = c.id WHERE c.id = ?",
            (cid,),
        )
        if not rows:
            raise ContainerNotFound(f"No such container: {cid}")
        return _record_of(rows[0])

    def find(self, ref: str) -> ContainerRecord:
        """The record of the container ``lookup`` finds: one query for a name or a full ID."""
        rows = self.db.query(
            "SELECT c.*, s.* FROM containers c JOIN container_state s ON s.id = c.id "
            "WHERE c.name = ? OR c.id = ?", (ref.lstrip("/"), ref))  # fmt: skip
        return _record_of(rows[0]) if rows else self.record(self.lookup(ref))

    def set_state(self, cid: str, **fields: Any) -> None:
        """Update the state record; a new ``status`` only by a move ``states.MOVES`` allows
        from the status the record holds at that moment (else Conflict naming it)."""
        cols = ", ".join(f"{k} = ?" for k in fields)
        if "status" not in fields:
            with self.db.tx() as c:
                c.execute(
                    f"UPDATE container_state SET {cols} WHERE id = ?", (*fields.values(), cid)
                )
            return
        froms = states.predecessors(fields["status"])
        with self.db.tx() as c:
            moved = c.execute(
                f"UPDATE container_state SET {cols} WHERE id = ? AND status IN ({', '.join('?' * len(froms))})",
                (*fields.values(), cid, *froms),
            ).rowcount
            if not moved:
                row = c.execute(
                    "SELECT status FROM container_state WHERE id = ?", (cid,)
                ).fetchone()
        if not moved:
            if row is None:
                raise ContainerNotFound(f"No such container: {cid}")
            raise Conflict(f"container {cid[:12]} cannot become {fields['status']}: it is {row[0]}")

    def refresh(self, cid: str) -> ContainerRecord:
        """The record, corrected from the kernel when its monitor died without saying so."""
        return self._reconciled(self.record(cid))

    def _reconciled(self, rec: ContainerRecord) -> ContainerRecord:
        cid = rec["id"]
        live = rec["status"] in states.LIVE
        if live and not _alive(rec["monitor_pid"]) and not _alive(rec["pid"]):
            # Monitor and container both gone: nobody recorded the exit, so say so. Only if
            # the record is still the one read: a monitor that recorded the exit and ended
            # between that read and the liveness check said it already.
            with self.db.tx() as c:
                changed = c.execute(
                    "UPDATE container_state SET status = 'exited', exit_code = ?, error = ?, finished_at = ?"
                    " WHERE id = ? AND status = ? AND monitor_pid = ? AND pid = ?",
                    (rec["exit_code"] or 255, "the container's monitor died", now_rfc3339(), cid,
                     rec["status"], rec["monitor_pid"], rec["pid"]),
                ).rowcount  # fmt: skip
            if changed:
                self.cleanup_runtime(cid)
            rec = self.record(cid)
        return rec

    # -- create
    @changing(lambda self, *_: self.root)
    def create(
        self,
        image: str,
        config: dict[str, Any],
        host: dict[str, Any],
        name: str | None = None,
        networking: dict[str, Any] | None = None,
    ) -> str:
        """A new container from ``image`` with Docker-shaped ``config`` and ``host`` settings;
        ``networking`` is Docker's NetworkingConfig (EndpointsConfig: Aliases, IPAMConfig)."""
        try:
            image_id = self.images.resolve(image)
        except NotFound:
            shown = reference.parse(image).familiar() if not image.startswith("sha256:") else image
            raise ImageNotFound(f"Unable to find image '{shown}' locally") from None
        img_cfg = self.images.config(image_id).get("config") or {}
        merged = dict(config)
        env = {e.partition("=")[0]: e for e in img_cfg.get("Env") or []}
        env.update({e.partition("=")[0]: e for e in config.get("Env") or []})
        merged["Env"] = list(env.values())
        if config.get("Entrypoint") is not None:
            merged["Cmd"] = config.get("Cmd") or []
        else:
            merged["Entrypoint"] = img_cfg.get("Entrypoint")
            merged["Cmd"] = config.get("Cmd") or img_cfg.get("Cmd")
        if config.get("Healthcheck") is None and img_cfg.get("Healthcheck"):
            merged["Healthcheck"] = img_cfg["Healthcheck"]
        for key in ("WorkingDir", "User", "StopSignal"):
            merged[key] = config.get(key) or img_cfg.get(key) or ""
        merged["Labels"] = {**(img_cfg.get("Labels") or {}), **(config.get("Labels") or {})}
        exposed = {**(img_cfg.get("ExposedPorts") or {}), **(config.get("ExposedPorts") or {})}
        for port in host.get("PortBindings") or {}:
            exposed.setdefault(port, {})
        if exposed:
            merged["ExposedPorts"] = exposed
        merged["Image"] = image
        if not (merged.get("Entrypoint") or merged.get("Cmd")):
            raise InvalidArgument("no command specified")
        cid = os.urandom(32).hex()
        generated = name is None
        if name is None:
            from dockyard.engine.names import random_name

            name = random_name()
            tries = 0
            while self.db.query("SELECT 1 FROM containers WHERE name = ?", (name,)):
                tries += 1
                name = random_name(tries)
        elif not name or not all(c.isalnum() or c in "_.-" for c in name) or not name[0].isalnum():
            raise InvalidArgument(
                f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )
        host = dict(host)
        # what a HostConfig that leaves them out means (and what inspect shows), for every face
        host["RestartPolicy"] = host.get("RestartPolicy") or {"Name": "no", "MaximumRetryCount": 0}
        if not (host.get("LogConfig") or {}).get("Type"):
            host["LogConfig"] = {
                "Type": "json-file",
                "Config": (host.get("LogConfig") or {}).get("Config") or {},
            }
        host["Runtime"] = host.get("Runtime") or "dockyard-runtime"
        if host.get("AutoRemove") and (host["RestartPolicy"].get("Name") or "no") not in ("no", ""):
            raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
        # dockyard gives every container a cgroup namespace unless asked for the host's (on
        # cgroup v1 too, where dockerd's default is the host's): the record says so
        host["CgroupnsMode"] = host.get("CgroupnsMode") or "private"
        host["Mounts"] = self._resolve_mounts(host, img_cfg)
        from dockyard.engine import sharing
        from dockyard.network import endpoints

        sharing.check(self, host)
        mode = endpoints.network_mode(host)
        if mode.startswith("container:"):
            self.lookup(mode.split(":", 1)[1])
        elif mode != "bridge":
            self.networks.get(mode)
        self.networks.get("bridge")  # the predefined networks exist before endpoints refer to them
        if mode == "host" and not config.get("Hostname"):
            merged["Hostname"] = os.uname().nodename
        endpoints_cfg = dict((networking or {}).get("EndpointsConfig") or {})
        merged.setdefault("Hostname", cid[:12])
        merged["Hostname"] = merged["Hostname"] or cid[:12]
        cdir = self.cdir(cid)
        os.makedirs(cdir, mode=0o711)
        layers = self.images.layers(image_id)
        try:
            self.images.snapshots.prepare(cid, layers[-1].chain_id if layers else None)
            hostname = merged["Hostname"]
            with open(os.path.join(cdir, "hostname"), "w") as f:
                f.write(hostname + "\n")
            with open(os.path.join(cdir, "hosts"), "w") as f:
                f.write(
                    f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
                )
            with open(os.path.join(cdir, "resolv.conf"), "w") as f:
                f.write("# written when the container starts, for the networks it is on\n")
            os.makedirs(os.path.join(cdir, "rootfs"))
            for attempt in range(20):
                try:
                    self._insert((cid, name, image_id, image, merged, host, endpoints_cfg))
                    break
                except IntegrityError:
                    # the name is the only unique column a new random ID can collide on
                    if not self.db.query("SELECT 1 FROM containers WHERE name = ?", (name,)):
                        raise
                    if generated and attempt < 19:
                        # a parallel create took the generated name since it was checked
                        from dockyard.engine.names import random_name

                        name = random_name(attempt + 1)
                        continue
                    holder = self.db.query("SELECT id FROM containers WHERE name = ?", (name,))
                    other = holder[0]["id"] if holder else "?"
                    raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                                   f'"{other}". You have to remove (or rename) that container to be able to '
                                   "reuse that name.") from None  # fmt: skip
        except BaseException:
            if self.images.snapshots.exists(cid):
                self.images.snapshots.remove(cid)
            remove_tree(cdir, ignore_errors=True)
            raise
        self.emit(cid, "create")
        return cid

    def _insert(self, args: tuple[Any, ...]) -> None:
        from dockyard.engine import networking

        cid, name, image_id, image, merged, host, endpoints_cfg = args
        with self.db.tx() as c:
            c.execute("INSERT INTO containers VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (cid, name, image_id, image, now_rfc3339(), json.dumps(merged), json.dumps(host)))  # fmt: skip
            c.execute("INSERT INTO container_state (id, status) VALUES (?, 'created')", (cid,))
            networking.record(c, self, cid, name, host, endpoints_cfg)
            for m in host["Mounts"]:
                if m["Type"] == "volume":
                    c.execute("INSERT INTO container_volumes VALUES (?, ?, ?, ?)",
                              (cid, m["Name"], m["Target"], int(m.get("ReadOnly", False))))  # fmt: skip

    def emit(self, cid: str, action: str, **extra: str) -> None:
        """A container event, with Docker's attributes (image, name, labels)."""
        try:
            rec = self.record(cid)
        except NotFound:
            return
        attrs = {
            "image": rec["image_ref"],
            "name": rec["name"],
            **(rec["config"].get("Labels") or {}),
            **extra,
        }
        self.db.emit("container", action, cid, **attrs)

    def _resolve_mounts(
        self, host: dict[str, Any], img_cfg: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """-v, --mount, --tmpfs and the image's VOLUMEs as one list of Docker mount points."""
        out: list[dict[str, Any]] = []

        def volume(name: str | None, target: str, ro: bool) -> None:
            anonymous = name is None
            name = self.volumes.create(name, anonymous=anonymous)
            out.append({"Type": "volume", "Name": name, "Source": self.volumes.path(name), "Target": target,
                        "ReadOnly": ro, "Anonymous": anonymous})  # fmt: skip

        for bind in host.get("Binds") or []:
            parts = bind.split(":")
            ro = len(parts) > 2 and "ro" in parts[2].split(",")
            if len(parts) == 1:
                volume(None, parts[0], False)
            elif parts[0].startswith("/"):
                if not os.path.exists(parts[0]):
                    os.makedirs(parts[0])  # as docker -v does for a missing host path
                out.append({"Type": "bind", "Source": parts[0], "Target": parts[1], "ReadOnly": ro})
            else:
                volume(parts[0], parts[1], ro)
        for spec in host.get("Mounts") or []:  # Docker's Mount objects (--mount, the API)
            if not isinstance(spec, dict):
                raise InvalidArgument(f"invalid mount: {spec!r}")
            kind = spec.get("Type") or "volume"
            target = spec.get("Target")
            if not target:
                raise InvalidArgument("invalid mount config: Target is required")
            ro = bool(spec.get("ReadOnly"))
            source = spec.get("Source") or None
            if kind == "bind":
                if not source or not os.path.exists(source):
                    raise InvalidArgument(f'invalid mount config for type "bind": bind source path does not '
                                          f"exist: {source}")  # fmt: skip
                out.append({"Type": "bind", "Source": source, "Target": target, "ReadOnly": ro})
            elif kind == "volume":
                volume(source, target, ro)
            elif kind == "tmpfs":
                out.append({"Type": "tmpfs", "Source": "", "Target": target, "ReadOnly": ro})
            else:
                raise InvalidArgument(f"invalid mount type: {kind}")
        taken = {m["Target"] for m in out}
        for target in img_cfg.get("Volumes") or {}:
            if target not in taken:
                volume(None, target, False)
        return out

    # -- start
    def start(self, cid: str, attach: bool = False) -> MonitorProcess:
        """Hand the container to a new monitor; with ``attach`` the monitor waits for a client.

        Without ``attach``, returns once the container runs (or raises its start error).
        """
        rec = self.refresh(cid)
        if rec["status"] in states.LIVE:
            return None  # type: ignore[return-value]  # docker start on a running container is a no-op
        states.check_verb("start", cid, rec["status"])
        if (rec["config"].get("Labels") or {}).get("io.dockyard.pod"):
            from dockyard.engine.pods import ensure_infra

            ensure_infra(self, rec)  # a pod's member joins the infra's namespaces
        self.set_state(cid, error="", stopped_by_user=0)
        args = [self.root, cid, self.snapshotter]
        sock = os.path.join(self.cdir(cid), "attach.sock")
        if os.path.exists(sock):
            os.unlink(sock)
        if attach:
            # The client's end of a socket pair is the monitor's first attached client from
            # the start: no socket file to wait for, no output missed.
            import _socket

            ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
            monitor = _start_monitor([*args, "--client-fd", str(theirs.fileno())], (theirs.fileno(),),
                                     (ours.fileno(),))  # fmt: skip
            theirs.close()
            monitor.attach = ours
            monitor.started_before = rec["started_at"]
            return monitor
        started_before = rec["started_at"]
        monitor = _start_monitor(args)
        return self.await_start(cid, monitor, started_before)

    def await_start(
        self, cid: str, monitor: MonitorProcess, started_before: str | None = None
    ) -> MonitorProcess:
        """Block until ``monitor`` has started the container, or raise its start error (for
        an attached start, whose client reads the output meanwhile: the API's)."""
        if started_before is None:
            started_before = monitor.started_before
        deadline = time.monotonic() + 60
        delay = 0.001
        while True:
            rec = self.record(cid)
            if rec["error"]:
                self._raise_start_error(cid)
            # started this time (a container started before has an old start time and an
            # exited status until the new monitor records the new start)
            if rec["started_at"] != started_before:
                return monitor
            if monitor.poll() is not None and self.record(cid)["started_at"] == started_before:
                self._raise_start_error(cid)
            if time.monotonic() > deadline:
                raise InvalidArgument(f"container {cid[:12]} did not start within 60s")
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def _raise_start_error(self, cid: str) -> None:
        from dockyard.errors import start_error

        rec = self.record(cid)
        if not rec["error"]:
            raise DockyardError("the container's monitor exited before starting it")
        raise start_error(rec["error"], rec["exit_code"] or 125)

    # -- signals
    def kill(self, cid: str, signal: str = "KILL") -> None:
        states.check_verb("kill", cid, self.refresh(cid)["status"])
        sig = lifecycle.parse_signal(signal)
        self.emit(cid, "kill", signal=str(sig))
        if sig == 9:
            self.set_state(cid, stopped_by_user=1)
        try:
            self.runtime(cid).kill(cid, sig)
        except NotRunning:
            pass  # it exited since the status was read: the signal has nothing left to reach

    def stop(self, cid: str, timeout: int | None = None) -> str:
        """Stop signal, then SIGKILL after ``timeout`` seconds; returns a note if it had to escalate."""
        rec = self.refresh(cid)
        if rec["status"] not in states.LIVE:
            return ""
        self.set_state(cid, stopped_by_user=1)
        self.emit(cid, "stop")
        stop_signal = rec["config"].get("StopSignal") or "SIGTERM"
        wait = timeout if timeout is not None else rec["config"].get("StopTimeout") or 10
        session = self._finishing_session(rec)
        try:
            try:
                self.runtime(cid).kill(cid, lifecycle.parse_signal(stop_signal))
            except Exception:  # a signal that cannot be sent is followed by SIGKILL
                pass
            if self._await_exit(cid, session, wait):
                return ""
            try:
                self.runtime(cid).kill(cid, 9)
            except NotRunning:
                pass  # it exited on its own after the wait ended
            self._await_exit(cid, session, 30)
        finally:
            if session is not None:
                session.close()
        if wait == 0:
            return ""  # a kill was asked for: nothing to explain
        args = rec["config"].get("Entrypoint") or rec["config"].get("Cmd") or []
        pid1 = args[0] if args else "?"
        return (f"sent {stop_signal}, no exit after {wait}s, sent SIGKILL; PID 1 is {pid1}, "
                "which ignores SIGTERM — use the exec form or --init")  # fmt: skip

    def restart(self, cid: str, timeout: int | None = None) -> str:
        """``docker restart``: stop (as ``stop``), then start again; a ``--rm`` container is not
        removed on the way, as in Docker. Returns ``stop``'s escalation note."""
        rec = self.refresh(cid)
        host = rec["host_config"]
        auto_remove = bool(host.get("AutoRemove"))
        if auto_remove:  # its monitor removes it at the exit it sees: not this time
            self.set_host_config(cid, {**host, "AutoRemove": False})
        try:
            note = self.stop(cid, timeout)
            # the old monitor's process, not its record: it clears the record's PID before
            # its last look at AutoRemove
            monitor = rec["monitor_pid"]
            deadline = time.monotonic() + 30
            while _alive(monitor) and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            if auto_remove:
                self.set_host_config(cid, host)
        self.start(cid)
        self.emit(cid, "restart")
        return note

    def set_host_config(self, cid: str, host: dict[str, Any]) -> None:
        """Replace the record's HostConfig (what the next start reads)."""
        with self.db.tx() as c:
            c.execute("UPDATE containers SET host_config = ? WHERE id = ?", (json.dumps(host), cid))

    def _finishing_session(self, rec: ContainerRecord) -> Any:
        """An attach session that has claimed the exit of the container about to be
        stopped, so that this process records it (no interpreter started for the
        monitor's finisher); None where the monitor keeps the end (a restart policy) or
        cannot be reached (then the exit is awaited in the record)."""
        if ((rec["host_config"].get("RestartPolicy") or {}).get("Name") or "no") != "no":
            return None
        from dockyard.engine.attach import AttachSession

        try:
            session = AttachSession(self, rec["id"])
        except OSError:
            return None
        try:
            session.claim_finish()
        except OSError:
            session.close()
            return None
        return session

    def _await_exit(self, cid: str, session: Any, timeout: float) -> bool:
        """Whether the container exited within ``timeout``: seen by ``session`` (which then
        recorded it), or in the record where there is none."""
        return session.wait(timeout) if session is not None else self._wait_exit(cid, timeout)

    def _wait_exit(self, cid: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.refresh(cid)["status"] not in states.LIVE:
                    return True
            except NotFound:
                return True  # exited, and removed by its monitor (--rm) meanwhile
            time.sleep(0.01)
        return False

    def wait(self, cid: str, condition: str = "not-running", stop: Any = None) -> int | None:
        """Block until the container is in ``condition`` (Docker's ``wait`` conditions:
        ``not-running``, ``next-exit`` — an exit after this call —, ``removed``); its exit
        code, or None when ``stop`` (a threading.Event) was set first."""
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        rec = self.refresh(cid)
        first_end = rec["finished_at"]
        code = rec["exit_code"]
        delay = 0.002
        while True:
            try:
                rec = self.refresh(cid)
            except ContainerNotFound:
                if condition == "not-running":
                    raise
                return self._last_exit(cid, code)  # removed: its last exit, as dockerd reports it
            stopped = rec["status"] not in states.LIVE and not _alive(rec["monitor_pid"])
            if stopped:
                code = rec["exit_code"]
                if condition == "not-running" or (
                    condition == "next-exit" and rec["finished_at"] != first_end
                ):
                    return code
            if stop is not None and stop.wait(delay):
                return None
            if stop is None:
                time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _last_exit(self, cid: str, default: int) -> int:
        """The exit code of the last ``die`` event of ``cid`` (a removed container's record
        is gone; its events stay)."""
        rows = self.db.query("SELECT attributes FROM events WHERE type = 'container' AND actor = ? "
                             "AND action = 'die' ORDER BY seq DESC LIMIT 1", (cid,))  # fmt: skip
        if not rows:
            return default
        try:
            return int(json.loads(rows[0]["attributes"]).get("exitCode", default))
        except (ValueError, TypeError):
            return default

    # -- removal
    def cleanup_runtime(self, cid: str) -> None:
        """Delete the runtime's container, release its network endpoints and unmount the rootfs;
        idempotent."""
        try:
            self.runtime(cid).delete(cid)
        except Exception:  # idempotent: the runtime may have deleted it already
            pass
        from dockyard.engine.networking import release
        from dockyard.engine.sharing import release_shm

        release(self, cid)
        release_shm(self, cid)
        from dockyard.snapshot.snapshotter import unmount

        unmount(os.path.join(self.cdir(cid), "rootfs"))
        # The engine's cgroups live under /dockyard; drop that parent once it is empty.
        from dockyard.runtime.cgroups import mounts

        for mountpoint, fstype, _opts in mounts():
            if fstype in ("cgroup", "cgroup2"):
                try:
                    os.rmdir(os.path.join(mountpoint, "dockyard"))
                except OSError:
                    pass

    @changing(lambda self, *_: self.root)
    def remove(self, cid: str, force: bool = False, volumes: bool = False) -> None:
        rec = self.refresh(cid)
        labels = rec["config"].get("Labels") or {}
        if labels.get("io.dockyard.pod.infra") and self.db.query(
            "SELECT 1 FROM pods WHERE id = ?", (labels.get("io.dockyard.pod"),)
        ):
            raise Conflict(f"container {cid} is the infra container of a pod and cannot be removed "
                           "without removing the pod")  # fmt: skip
        if rec["status"] in states.LIVE:
            if not force:
                states.check_verb("remove", cid, rec["status"])
            self.set_state(cid, stopped_by_user=1)
            session = self._finishing_session(rec)
            try:
                try:
                    self.runtime(cid).kill(cid, 9)
                except NotRunning:
                    pass  # it exited since the status was read: nothing left to kill
                self._await_exit(cid, session, 30)
            finally:
                if session is not None:
                    session.close()
        if _alive(rec["monitor_pid"]):
            deadline = time.monotonic() + 10
            while _alive(rec["monitor_pid"]) and time.monotonic() < deadline:
                time.sleep(0.01)
        if not self.db.query("SELECT 1 FROM containers WHERE id = ?", (cid,)):
            return  # the same, once its monitor is gone
        self.emit(cid, "destroy")
        self.set_state(cid, status="removing")
        self.cleanup_runtime(cid)
        if self.images.snapshots.exists(cid):
            self.images.snapshots.remove(cid)
        remove_tree(self.cdir(cid), ignore_errors=True)
        with self.db.tx() as c:
            c.execute("DELETE FROM containers WHERE id = ?", (cid,))
        anonymous = [
            m["Name"] for m in rec["host_config"].get("Mounts") or [] if m.get("Anonymous")
        ]
        if volumes or rec["host_config"].get("AutoRemove"):
            for name in anonymous:  # --rm and rm -v take the anonymous volumes along, as Docker
                try:
                    self.volumes.remove(name)
                except (Conflict, NotFound):
                    pass

    def mount_points(self, cid: str) -> frozenset[str]:
        """Paths the engine mounts over in the container, kept out of diff and commit."""
        host = self.record(cid)["host_config"]
        targets = {m["Target"] for m in host.get("Mounts") or []} | set(host.get("Tmpfs") or {})
        return frozenset({"/etc/hostname", "/etc/hosts", "/etc/resolv.conf", *targets})

    def disk_usage(self) -> dict[str, dict[str, int]]:
        from dockyard.engine.system import disk_usage

        return disk_usage(self)

    # -- more verbs
    def top(self, cid: str, ps_args: list[str] | None = None) -> dict[str, Any]:
        """Docker's ContainerTopOKBody: ``ps`` cut down to the container's processes."""
        from dockyard.runtime.commands import ps_table

        states.check_verb("top", cid, self.refresh(cid)["status"])
        titles, rows = ps_table(self.runtime(cid).cgroup(cid).pids(), list(ps_args or []))
        return {"Titles": titles, "Processes": rows}

    def resize(self, cid: str, height: int, width: int) -> None:
        """``POST /containers/{id}/resize``: a tty container's terminal takes the new size
        (one without a terminal has nothing to resize, as with dockerd)."""
        from dockyard.engine.execs import resize_terminal

        rec = self.refresh(cid)
        states.check_verb("resize", cid, rec["status"])
        if rec["config"].get("Tty"):
            resize_terminal(rec["pid"], height, width)

    def pause(self, cid: str) -> None:
        states.check_verb("pause", cid, self.refresh(cid)["status"])
        self.runtime(cid).pause(cid)
        self.set_state(cid, status="paused")
        self.emit(cid, "pause")

    def unpause(self, cid: str) -> None:
        states.check_verb("unpause", cid, self.refresh(cid)["status"])
        self.runtime(cid).resume(cid)
        self.set_state(cid, status="running")
        self.emit(cid, "unpause")

    def rename(self, cid: str, new_name: str) -> None:
        new_name = new_name.lstrip("/")
        if (
            not new_name
            or not new_name[0].isalnum()
            or not all(c.isalnum() or c in "_.-" for c in new_name)
        ):
            raise InvalidArgument(
                f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )
        holder = self.db.query("SELECT id FROM containers WHERE name = ?", (new_name,))
        if holder:
            raise Conflict(f'Conflict. The container name "/{new_name}" is already in use by container '
                           f'"{holder[0]["id"]}". You have to remove (or rename) that container to be able to '
                           "reuse that name.")  # fmt: skip
        from dockyard.engine import networking

        with self.db.tx() as c:
            c.execute("UPDATE containers SET name = ? WHERE id = ?", (new_name, cid))
            networking.rename(c, cid, new_name)
        self.emit(cid, "rename")

    def users_of_image(self, image_id: str) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT id FROM containers WHERE image_id = ?", (image_id,))
        return [self.refresh(r["id"]) for r in rows]

    def stats(self, cid: str) -> dict[str, Any]:
        from dockyard.engine.stats import figures

        return figures(self, cid)

    def update(self, cid: str, resources: dict[str, Any]) -> None:
        """Change a container's limits now (cgroup) and for its next start (HostConfig)."""
        rec = self.refresh(cid)
        host = rec["host_config"]
        host.update({k: v for k, v in resources.items() if v is not None})
        self.set_host_config(cid, host)
        if rec["status"] in ("running", "paused"):
            from dockyard.engine.spec import oci_spec

            spec = oci_spec(
                cid, rec["config"], host, os.path.join(self.cdir(cid), "rootfs"), self.cdir(cid)
            )
            res = {k: v for k, v in spec["linux"]["resources"].items() if k != "devices"}
            self.runtime(cid).cgroup(cid).apply(res)

    def prune(self) -> list[str]:
        """Remove every stopped container; their IDs."""
        gone = []
        for rec in self.list(all_=True):
            if rec["status"] in ("exited", "created", "dead"):
                self.remove(rec["id"])
                gone.append(rec["id"])
        return gone

    def rootfs_for_copy(self, cid: str) -> tuple[str, bool]:
        """The container's root on the host, mounting it if the container is not running;
        (path, whether the caller must unmount it)."""
        rootfs = os.path.join(self.cdir(cid), "rootfs")
        if os.path.ismount(rootfs):
            return rootfs, False
        self.images.snapshots.mount(cid, rootfs)
        return rootfs, True

    # -- listing
    def list(self, all_: bool = False) -> list[dict[str, Any]]:
        """Every record (running ones unless ``all_``), newest first, read in one query."""
        rows = self.db.query("SELECT c.*, s.* FROM containers c JOIN container_state s ON s.id = c.id "
                             "ORDER BY c.created DESC")  # fmt: skip
        out = []
        for row in rows:
            rec: Any = dict(row)
            rec["config"] = json.loads(rec["config"])
            rec["host_config"] = json.loads(rec["host_config"])
            rec = self._reconciled(rec)
            if all_ or rec["status"] in states.LIVE:
                out.append(rec)
        return out

    def inspect(self, ref: str) -> dict[str, Any]:
        """Docker's ContainerJSON of the container named or ID-prefixed by ``ref``."""
        from dockyard.engine.inspect import container_json

        return container_json(self, self._reconciled(self.find(ref)))
