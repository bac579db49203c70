"""Container routes: create, list, inspect, lifecycle, logs, attach, wait, archive, stats.

An attach that arrives before its container starts (the docker CLI attaches, waits, then
starts) is held until the start: the start then asks the engine for a monitor with an
attached client from the first byte, and hands its socket to the waiting connection, so
no output is lost and ``--rm`` is finished by that client, as with the CLI's ``run``.
"""

from __future__ import annotations

import select
import threading

from dockyard.api.http import client_gone
from dockyard.api.routes import route
from dockyard.engine import states
from dockyard.engine import stream as frames
from dockyard.errors import (
    Conflict,
    ContainerNotFound,
    DockyardError,
    ImageNotFound,
    InvalidArgument,
    NotModified,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any

    from dockyard.api.http import Request
    from dockyard.api.routes import API

__all__: list[str] = []

_ID = r"(?P<ref>[^/]+)"
_MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
_RAW = "application/vnd.docker.raw-stream"
# HostConfig fields the engine keeps as given (the rest of Docker's HostConfig is ignored,
# as dockerd ignores fields it does not know)
_CONFIG_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
                "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck",
                "Image", "Volumes", "WorkingDir", "Entrypoint", "Labels", "StopSignal",
                "StopTimeout", "ArgsEscaped", "OnBuild", "Shell", "MacAddress", "NetworkDisabled")  # fmt: skip


def _cid(api: API, ref: str) -> str:
    return api.engine.lookup(ref)


def _dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"json: cannot unmarshal {type(value).__name__} into {what}")
    return value


def _list_of_str(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(
            f"json: cannot unmarshal {type(value).__name__} into {what} of type []string"
        )
    return value


@route("POST", r"/containers/create")
def create(api: API, req: Request) -> None:
    body = _dict(req.json(), "Go value of type container.CreateRequest")
    image = body.get("Image")
    if not image or not isinstance(image, str):
        raise InvalidArgument("Config cannot be empty in order to create a container")
    config = {k: body[k] for k in _CONFIG_KEYS if k in body}
    for key in ("Cmd", "Entrypoint"):
        if key in config:
            config[key] = _list_of_str(config[key], f"Config.{key}")
    config["Env"] = _list_of_str(config.get("Env"), "Config.Env") or []
    config["Labels"] = _dict(config.get("Labels"), "Config.Labels")
    host = dict(_dict(body.get("HostConfig"), "HostConfig"))
    for key in ("Binds", "Dns", "DnsSearch", "ExtraHosts", "CapAdd", "CapDrop", "SecurityOpt"):
        if key in host:
            host[key] = _list_of_str(host[key], f"HostConfig.{key}") or []
    if host.get("Mounts") is not None and not isinstance(host["Mounts"], list):
        raise InvalidArgument("json: cannot unmarshal into HostConfig.Mounts of type []mount.Mount")
    host["Mounts"] = list(host.get("Mounts") or [])
    host["Tmpfs"] = _dict(host.get("Tmpfs"), "HostConfig.Tmpfs")
    host["PortBindings"] = _dict(host.get("PortBindings"), "HostConfig.PortBindings")
    host["RestartPolicy"] = _dict(host.get("RestartPolicy"), "HostConfig.RestartPolicy")
    host["LogConfig"] = _dict(host.get("LogConfig"), "HostConfig.LogConfig")
    if host.get("MemorySwappiness") == -1:
        host["MemorySwappiness"] = None  # the docker CLI's "not set", which dockerd keeps as null
    networking = _dict(body.get("NetworkingConfig"), "NetworkingConfig") or None
    name = req.arg("name") or None
    try:
        cid = api.engine.create(image, config, host, name, networking)
    except ImageNotFound as err:
        raise ImageNotFound(f"No such image: {_image_shown(image)}") from err
    from dockyard.engine.spec import create_warnings

    req.send_json(201, {"Id": cid, "Warnings": create_warnings(host)})


def _image_shown(image: str) -> str:
    from dockyard.image import reference

    if image.startswith("sha256:"):
        return image
    try:
        return reference.parse(image).familiar()
    except DockyardError:
        return image


@route("GET", r"/containers/json")
def list_(api: API, req: Request) -> None:
    from dockyard.engine import listing
    from dockyard.filters import Filters

    recs = listing.containers(api.engine, req.flag("all"), Filters.from_json(req.arg("filters")),
                              req.int_arg("limit", -1) or -1)  # fmt: skip
    out = []
    for rec, summary in zip(recs, listing.container_summaries(api.engine, recs), strict=True):
        if req.flag("size"):
            from dockyard.image.store import du

            snaps = api.engine.images.snapshots
            summary["SizeRw"] = du(snaps.fs(rec["id"])) if snaps.exists(rec["id"]) else 0
        out.append(summary)
    req.send_json(200, out)


@route("GET", rf"/containers/{_ID}/json")
def inspect(api: API, req: Request, ref: str) -> None:
    req.send_json(200, api.engine.inspect(ref))


@route("GET", rf"/containers/{_ID}/top")
def top(api: API, req: Request, ref: str) -> None:
    args = (req.arg("ps_args") or "").split()
    req.send_json(200, api.engine.top(_cid(api, ref), args))


@route("POST", rf"/containers/{_ID}/start")
def start(api: API, req: Request, ref: str) -> None:
    engine = api.engine
    cid = _cid(api, ref)
    if engine.refresh(cid)["status"] in states.LIVE:
        raise NotModified("container already started")
    with api.lock:
        waiting = api.waiting_attach.pop(cid, [])
    if not waiting:
        engine.start(cid)
        req.send_empty(204)
        return
    monitor = engine.start(cid, attach=True)
    waiting[0].hand_over(monitor)
    try:
        engine.await_start(cid, monitor)  # a start error is this request's, as dockerd's
    except ContainerNotFound:
        # gone before its record could be read: --rm removed it, after a quick run (the
        # attached client saw its end) or a failed start (the monitor's exit frame said why)
        failed = waiting[0].start_failure(10)
        if failed is not None:
            raise failed from None
    finally:
        for other in waiting[1:]:
            other.hand_over(None)  # they connect to the running container's socket
    req.send_empty(204)


@route("POST", rf"/containers/{_ID}/stop")
def stop(api: API, req: Request, ref: str) -> None:
    cid = _cid(api, ref)
    if api.engine.refresh(cid)["status"] not in states.LIVE:
        raise NotModified("container already stopped")
    api.engine.stop(cid, req.int_arg("t"))
    req.send_empty(204)


@route("POST", rf"/containers/{_ID}/restart")
def restart(api: API, req: Request, ref: str) -> None:
    api.engine.restart(_cid(api, ref), req.int_arg("t"))
    req.send_empty(204)


@route("POST", rf"/containers/{_ID}/kill")
def kill(api: API, req: Request, ref: str) -> None:
    api.engine.kill(_cid(api, ref), req.arg("signal") or "KILL")
    req.send_empty(204)


@route("POST", rf"/containers/{_ID}/pause")
def pause(api: API, req: Request, ref: str) -> None:
    api.engine.pause(_cid(api, ref))
    req.send_empty(204)


@route("POST", rf"/containers/{_ID}/unpause")
def unpause(api: API, req: Request, ref: str) -> None:
    api.engine.unpause(_cid(api, ref))
    req.send_empty(204)


@route("POST", rf"/containers/{_ID}/rename")
def rename(api: API, req: Request, ref: str) -> None:
    name = req.arg("name")
    if not name:
        raise InvalidArgument("name cannot be empty")
    api.engine.rename(_cid(api, ref), name)
    req.send_empty(204)


@route("POST", rf"/containers/{_ID}/resize")
def resize(api: API, req: Request, ref: str) -> None:
    height, width = req.int_arg("h"), req.int_arg("w")
    if height is None or width is None:
        raise InvalidArgument("resize needs h and w")
    api.engine.resize(_cid(api, ref), height, width)
    req.send_empty(200)


@route("POST", rf"/containers/{_ID}/update")
def update(api: API, req: Request, ref: str) -> None:
    body = _dict(req.json({}), "container.UpdateConfig")
    changes = {
        key: body.get(key)
        for key in ("Memory", "NanoCpus", "CpuShares", "PidsLimit", "RestartPolicy")
    }
    api.engine.update(_cid(api, ref), changes)
    req.send_json(200, {"Warnings": []})


@route("DELETE", rf"/containers/{_ID}")
def remove(api: API, req: Request, ref: str) -> None:
    api.engine.remove(_cid(api, ref), force=req.flag("force"), volumes=req.flag("v"))
    req.send_empty(204)


@route("POST", r"/containers/prune")
def prune(api: API, req: Request) -> None:
    gone = api.engine.prune()
    req.send_json(200, {"ContainersDeleted": gone or None, "SpaceReclaimed": 0})


@route("POST", rf"/containers/{_ID}/wait")
def wait(api: API, req: Request, ref: str) -> None:
    condition = req.arg("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"invalid condition: {condition!r}")
    cid = _cid(api, ref)
    api.engine.refresh(cid)
    out = req.stream("application/json")  # headers at once: the client starts after them
    stop = req.until_gone()
    try:
        code = api.engine.wait(cid, condition, stop)
    except ContainerNotFound:
        code = 0
    finally:
        stop.set()
    if code is None:
        return  # the client went away
    try:
        out.json({"StatusCode": code, "Error": None})
        out.end()
    except OSError:
        pass


@route("GET", rf"/containers/{_ID}/logs")
def logs(api: API, req: Request, ref: str) -> None:
    from dockyard.engine.logs import records

    cid = _cid(api, ref)
    want = {"stdout": req.flag("stdout"), "stderr": req.flag("stderr")}
    if not any(want.values()):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    tail_text = req.arg("tail") or "all"
    tail = None if tail_text == "all" else req.int_arg("tail")
    since = _time(req.arg("since"))
    until = _time(req.arg("until"))
    tty = bool(api.engine.record(cid)["config"].get("Tty"))
    follow = req.flag("follow")
    stop = req.until_gone() if follow else threading.Event()
    try:  # the files open before the headers go: a refusal is an answer, not a cut stream
        items = records(api.engine, cid, since or None, until or None, tail, follow, stop)
    except BaseException:
        stop.set()
        raise
    out = req.stream(_RAW if tty else _MULTIPLEXED)
    stamps = req.flag("timestamps")
    batch: list[bytes] = []
    try:
        for record in items:
            if not want.get(record["stream"], False):
                continue
            text = record["log"].encode()
            if stamps:
                text = record["time"].encode() + b" " + text
            batch.append(
                text if tty else frames.frame(2 if record["stream"] == "stderr" else 1, text)
            )
            if len(batch) >= 256 or follow:
                out.write(b"".join(batch))
                batch = []
        out.write(b"".join(batch))
        out.end()
    except OSError:
        pass  # the client went away
    finally:
        stop.set()


def _time(value: str | None) -> float:
    if not value:
        return 0.0
    from dockyard.clock import time_bound

    return time_bound(value)


@route("GET", rf"/containers/{_ID}/stats")
def stats(api: API, req: Request, ref: str) -> None:
    from dockyard.engine import stats as engine_stats

    cid = _cid(api, ref)
    if not req.flag("stream", True) or req.flag("one-shot"):
        req.send_json(200, engine_stats.sample(api.engine, cid))
        return
    out = req.stream("application/json")
    stop = req.until_gone()
    try:
        for item in engine_stats.stream(api.engine, cid, stop=stop):
            out.json(item)
    except OSError:
        return
    finally:
        stop.set()
    out.end()


@route("GET", rf"/containers/{_ID}/changes")
def changes(api: API, req: Request, ref: str) -> None:
    from dockyard.image.commit import diff_snapshot

    engine = api.engine
    cid = _cid(api, ref)
    kinds = {"C": 0, "A": 1, "D": 2}
    found = diff_snapshot(
        engine.images, cid, engine.record(cid)["image_id"], engine.mount_points(cid)
    )
    req.send_json(200, [{"Path": path, "Kind": kinds[kind]} for kind, path in found] or None)


@route("GET", rf"/containers/{_ID}/export")
def export(api: API, req: Request, ref: str) -> None:
    from dockyard.image.commit import export_snapshot

    cid = _cid(api, ref)
    out = req.stream("application/x-tar")
    try:
        export_snapshot(api.engine.images, cid, out)  # type: ignore[arg-type]
        out.end()
    except OSError:
        pass


# -- attach


class _Attach:
    """One hijacked connection attached to a container: ``pump`` copies the container's
    output to it (frames without a tty, raw with one) and its input to the container."""

    def __init__(self, api: API, req: Request, cid: str) -> None:
        from dockyard.engine.attach import DetachKeys, parse_detach_keys

        self.api, self.cid = api, cid
        rec = api.engine.record(cid)
        self.tty = bool(rec["config"].get("Tty"))
        self.want_in = req.flag("stdin") and bool(rec["config"].get("OpenStdin"))
        self.want = {frames.STDOUT: req.flag("stdout"), frames.STDERR: req.flag("stderr")}
        self.keys = DetachKeys(
            parse_detach_keys(req.arg("detachKeys") or "ctrl-p,ctrl-q") if self.tty else b""
        )
        self.logs = req.flag("logs")
        self.sock: socket.socket | None = None
        self._handed = threading.Event()
        self._ended = threading.Event()
        self._failure: DockyardError | None = None
        self._monitor: Any = None

    def hand_over(self, monitor: Any) -> None:
        self._monitor = monitor
        self._handed.set()

    def start_failure(self, timeout: float) -> DockyardError | None:
        """The start error the monitor sent this client, once its session has ended."""
        self._ended.wait(timeout)
        return self._failure

    def _send(self, kind: int, data: bytes) -> None:
        assert self.sock is not None
        if self.want.get(kind):
            self.sock.sendall(data if self.tty else frames.frame(kind, data))

    def run(self, sock: socket.socket, wait_for_start: bool) -> None:
        from dockyard.engine.attach import AttachSession

        self.sock = sock
        try:
            if wait_for_start:
                while not self._handed.wait(0.25):
                    if client_gone(sock):
                        return
                    try:
                        self.api.engine.record(self.cid)
                    except ContainerNotFound:
                        return
            if self.logs:
                from dockyard.engine.logs import records

                for record in records(self.api.engine, self.cid):
                    self._send(frames.STDERR if record["stream"] == "stderr" else frames.STDOUT,
                               record["log"].encode())  # fmt: skip
            monitor_sock = self._monitor.attach if self._monitor is not None else None
            try:
                session = AttachSession(self.api.engine, self.cid, monitor_sock)
            except OSError:
                return  # no attach socket: the container has ended meanwhile
            try:
                self._pump(session, sock)
            except DockyardError as err:  # a start error: the start request answers with it
                self._failure = err
            finally:
                session.close()
                if self._monitor is not None:
                    self._monitor.wait()
        except OSError:
            pass  # the client went away
        finally:
            self._ended.set()
            try:
                sock.shutdown(2)
            except OSError:
                pass
            sock.close()

    def _pump(self, session: Any, sock: socket.socket) -> None:
        watch: list[Any] = [session, sock]
        while not session.done:
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:
                continue
            if sock in ready:
                data = sock.recv(65536)
                if not data:  # the client closed its half: stdin ends, output goes on
                    if self.want_in:
                        session.close_stdin()
                    watch.remove(sock)
                elif self.want_in:
                    data, detached = self.keys.feed(data)
                    session.send(data)
                    if detached:
                        return
            if session in ready:
                for kind, payload in session.read():
                    self._send(kind, payload)


@route("POST", rf"/containers/{_ID}/attach")
def attach(api: API, req: Request, ref: str) -> None:
    engine = api.engine
    cid = _cid(api, ref)
    rec = engine.refresh(cid)
    if not req.flag("stream") and not req.flag("logs"):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    client = _Attach(api, req, cid)
    running = rec["status"] in ("running", "paused")  # restarting: refused below
    if not running and rec["status"] not in ("created", "exited", "dead"):
        raise Conflict(f"Container {cid} is restarting, wait until the container is running")
    if not running:
        with api.lock:
            api.waiting_attach.setdefault(cid, []).append(client)
    sock = req.hijack(_RAW if client.tty else _MULTIPLEXED)
    try:
        client.run(sock, wait_for_start=not running)
    finally:
        with api.lock:
            held = api.waiting_attach.get(cid) or []
            if client in held:
                held.remove(client)
            if not held:
                api.waiting_attach.pop(cid, None)


# -- archive (docker cp)


@route("HEAD", rf"/containers/{_ID}/archive")
def archive_head(api: API, req: Request, ref: str) -> None:
    stat = _files(api, ref).stat(_path(req))
    req.send_empty(
        200,
        {"X-Docker-Container-Path-Stat": _stat_header(stat), "Content-Type": "application/x-tar"},
    )


@route("GET", rf"/containers/{_ID}/archive")
def archive_get(api: API, req: Request, ref: str) -> None:
    stat, chunks = _files(api, ref).get(_path(req))
    out = req.stream(
        "application/x-tar", headers={"X-Docker-Container-Path-Stat": _stat_header(stat)}
    )
    try:
        for chunk in chunks:
            out.write(chunk)
        out.end()
    except OSError:
        chunks.close()  # the client went away: the copying child is stopped


@route("PUT", rf"/containers/{_ID}/archive")
def archive_put(api: API, req: Request, ref: str) -> None:
    from dockyard.fsutil import ChunkReader

    _files(api, ref).put(_path(req), ChunkReader(req.body_chunks()), no_overwrite_dir_non_dir=req.flag("noOverwriteDirNonDir"),
              copy_uid_gid=req.flag("copyUIDGID"))  # fmt: skip
    req.send_empty(200)


def _path(req: Request) -> str:
    path = req.arg("path")
    if not path:
        raise InvalidArgument("path is required")
    return path


def _files(api: API, ref: str) -> Any:
    """The container's files, every path resolved inside the container (``engine.copy``)."""
    from dockyard.engine.copy import ContainerFiles

    return ContainerFiles(api.engine, _cid(api, ref))


def _stat_header(stat: dict[str, Any]) -> str:
    import base64

    from dockyard import _json as json

    return base64.b64encode(json.dumps(stat).encode()).decode()
