"""Exec routes: create, start (hijacked or detached, with or without a tty), resize, inspect.

A tty exec gets the hijacked socket itself as its standard streams (the runtime copies
between its pty and them), so nothing here copies its bytes. Without a tty, stdout and
stderr must reach the client as separate frames: the exec writes to two pipes that this
thread frames, and reads its input from a third fed from the socket.
"""

from __future__ import annotations

import os
import select
import threading

from dockyard.api.routes import route
from dockyard.engine import execs
from dockyard.engine import stream as frames
from dockyard.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any

    from dockyard.api.http import Request
    from dockyard.api.routes import API

__all__: list[str] = []

_EXEC = r"(?P<exec_id>[^/]+)"


@route("POST", r"/containers/(?P<ref>[^/]+)/exec")
def create(api: API, req: Request, ref: str) -> None:
    body = req.json({}) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("json: cannot unmarshal into Go value of type container.ExecOptions")
    cmd = body.get("Cmd")
    if isinstance(cmd, str):
        cmd = [cmd]
    if not isinstance(cmd, list) or not all(isinstance(c, str) for c in cmd):
        raise InvalidArgument("No exec command specified")
    config = {"Cmd": cmd, "Tty": bool(body.get("Tty")), "AttachStdin": bool(body.get("AttachStdin")),
              "AttachStdout": bool(body.get("AttachStdout")), "AttachStderr": bool(body.get("AttachStderr")),
              "User": body.get("User") or "", "WorkingDir": body.get("WorkingDir") or "",
              "Env": list(body.get("Env") or []), "Privileged": bool(body.get("Privileged"))}  # fmt: skip
    req.send_json(201, {"Id": execs.create(api.engine, ref, config)})


@route("GET", rf"/exec/{_EXEC}/json")
def inspect(api: API, req: Request, exec_id: str) -> None:
    req.send_json(200, execs.inspect(api.engine, exec_id))


@route("POST", rf"/exec/{_EXEC}/resize")
def resize(api: API, req: Request, exec_id: str) -> None:
    height, width = req.int_arg("h"), req.int_arg("w")
    if height is None or width is None:
        raise InvalidArgument("resize needs h and w")
    execs.resize(api.engine, exec_id, height, width)
    req.send_empty(201)


@route("POST", rf"/exec/{_EXEC}/start")
def start(api: API, req: Request, exec_id: str) -> None:
    body = req.json({}) or {}
    if not isinstance(body, dict):
        raise InvalidArgument(
            "json: cannot unmarshal into Go value of type container.ExecStartOptions"
        )
    info = execs.inspect(api.engine, exec_id)
    if body.get("Detach"):
        execs.start(api.engine, exec_id, detach=True)
        req.send_empty(200)
        return
    tty = bool(info["ProcessConfig"]["tty"])
    sock = req.hijack(
        "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"
    )
    try:
        if tty:
            fd = sock.fileno()
            execs.start(api.engine, exec_id, stdio=(fd, fd, fd))
        else:
            _framed(api, exec_id, sock, info)
    except OSError:
        pass  # the client went away
    finally:
        try:
            sock.shutdown(2)
        except OSError:
            pass
        sock.close()


def _framed(api: API, exec_id: str, sock: socket.socket, info: dict[str, Any]) -> None:
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    want_in = info["OpenStdin"]
    if not want_in:
        os.close(in_w)
        in_w = -1
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["code"] = execs.start(api.engine, exec_id, stdio=(in_r, out_w, err_w))
        except Exception as err:  # reported to the client below, as a start error would be
            result["error"] = err
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)  # the exec holds its own copies; EOF comes when it ends

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    open_outs = {out_r: frames.STDOUT, err_r: frames.STDERR}
    watch: list[Any] = [out_r, err_r, sock]
    try:
        while open_outs:
            ready, _, _ = select.select(watch, [], [])
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    watch.remove(sock)
                    if in_w >= 0:
                        os.close(in_w)
                        in_w = -1
                elif in_w >= 0:
                    try:
                        frames.send_all(in_w, data)
                    except BrokenPipeError:
                        os.close(in_w)
                        in_w = -1
            for fd in [f for f in ready if f in open_outs]:
                data = os.read(fd, 65536)
                if data:
                    sock.sendall(frames.frame(open_outs[fd], data))
                else:
                    del open_outs[fd]
                    watch.remove(fd)
                    os.close(fd)
        runner.join()
        if "error" in result:
            sock.sendall(frames.frame(frames.STDERR, f"{result['error']}\n".encode()))
    finally:
        for fd in [*open_outs, in_w]:
            if fd >= 0:
                os.close(fd)
