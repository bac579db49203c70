"""Published ports of a rootless user's containers: one forwarder process per user.

As root, a published port is a DNAT rule in the host's firewall. A user without root
has no say over the host's firewall, and the containers' bridges live in the user's
own network namespace, so a process of the user's listens on the host's side instead
(as rootlesskit's and podman's port forwarders do): it holds a listening socket per
published port in the host's network namespace, and for each connection makes one in
the user's namespace, to the container's address, and moves the bytes between the two
with ``splice`` (no copy through the process).

The engine gives it the whole table at each change (``reconcile``), over a Unix socket
in the user's run directory, and learns in the answer whether every port could be
bound. Ports no longer in the table stop listening, while connections already made
finish, as conntrack lets them finish as root; with an empty table and no connection
left, the forwarder exits. The client's source address is not kept: the container
sees connections come from its network's gateway.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

from dockyard import _json as json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["reconcile", "serve"]

_SOCK = "ports.sock"
_PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031


def _key(p: dict[str, Any]) -> tuple[str, str, int]:
    return (p["proto"], p.get("host_ip") or "0.0.0.0", int(p["host_port"]))


def reconcile(run_dir: str, ports: list[dict[str, Any]]) -> None:
    """Make the forwarder listen on exactly ``ports`` (rows with proto, host_ip,
    host_port, ip, container_port); start it when there is none. A port that cannot be
    bound fails here, in one line."""
    from dockyard.errors import Conflict, DockyardError

    table = [{"proto": p["proto"], "host_ip": p.get("host_ip") or "", "host_port": int(p["host_port"]),
              "ip": p["ip"], "port": int(p["container_port"])} for p in ports]  # fmt: skip
    path = os.path.join(run_dir, _SOCK)
    answer = _ask(path, table)
    if answer is None:
        if not table:
            return
        _start(run_dir)
        answer = _ask(path, table)
        if answer is None:
            raise DockyardError("the port forwarder did not start")
    if answer.startswith("bind "):
        raise Conflict(answer)
    if answer != "ok":
        raise DockyardError(f"port forwarder: {answer}")


def _ask(path: str, table: list[dict[str, Any]]) -> str | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.settimeout(10)
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        s.sendall(json.dumps(table).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                return None  # it was exiting: an empty table had reached it
            reply += chunk
        return reply.decode(errors="replace").strip()
    finally:
        s.close()


def _start(run_dir: str) -> None:
    import subprocess

    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.rootless.ports", run_dir, str(w)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            pass_fds=(w,), start_new_session=True)  # fmt: skip
    os.close(w)
    try:
        os.read(r, 1)  # closed once its control socket listens (or it failed)
    finally:
        os.close(r)
    del proc  # it outlives this command


# -- the forwarder process


class _Forwarder:
    def __init__(self, run_dir: str, netns: str) -> None:
        self.run_dir = run_dir
        self.netns = netns
        self.listeners: dict[tuple[str, str, int], tuple[socket.socket, list[Any]]] = {}
        self.lock = threading.Lock()
        self.relays = 0
        self.done = threading.Condition(self.lock)

    def apply(self, table: list[dict[str, Any]]) -> str:
        wanted = {_key(p): p for p in table}
        with self.lock:
            for key in [k for k in self.listeners if k not in wanted]:
                sock, _ = self.listeners.pop(key)
                sock.close()
            for key, p in wanted.items():
                if key in self.listeners:
                    self.listeners[key][1][:] = [p["ip"], p["port"]]
                    continue
                if key[0] != "tcp":
                    return f"rootless: {key[0]} ports cannot be published yet (tcp only)"
                try:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((key[1], key[2]))
                    sock.listen(128)
                except OSError as err:
                    sock.close()
                    return f"bind {key[1]}:{key[2]} failed: {err.strerror}"
                target = [p["ip"], p["port"]]
                self.listeners[key] = (sock, target)
                threading.Thread(target=self._accept, args=(sock, target), daemon=True).start()
            return "ok"

    def idle(self) -> bool:
        with self.lock:
            return not self.listeners and not self.relays

    def _accept(self, sock: socket.socket, target: list[Any]) -> None:
        while True:
            try:
                client, _ = sock.accept()
            except OSError:
                return  # closed: the port left the table
            with self.lock:
                self.relays += 1
            threading.Thread(target=self._relay, args=(client, tuple(target)), daemon=True).start()

    def _relay(self, client: socket.socket, target: tuple[str, int]) -> None:
        from dockyard.linux.nsthread import run_in

        def connect() -> socket.socket:
            up = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                up.connect(target)
            except OSError:
                up.close()
                raise
            return up

        try:
            try:
                upstream = run_in(self.netns, connect)  # made in the user's namespace
            except OSError:
                return
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()
            upstream.close()
        finally:
            client.close()
            with self.lock:
                self.relays -= 1
                self.done.notify_all()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Bytes from ``src`` to ``dst`` through a pipe, until ``src`` ends; then ``dst``'s
    writing half is shut."""
    r, w = os.pipe()
    try:
        try:
            import fcntl

            fcntl.fcntl(w, _F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:
            pass
        s, d = src.fileno(), dst.fileno()
        while True:
            try:
                n = os.splice(s, w, _PIPE_SIZE)
            except OSError:
                break
            if n == 0:
                break
            while n:
                try:
                    n -= os.splice(r, d, n)
                except OSError:
                    return
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    finally:
        os.close(r)
        os.close(w)


def serve(run_dir: str, ready_fd: int) -> None:
    netns = os.environ.get("_DOCKYARD_ROOTLESS_NETNS")
    if not netns:
        sys.exit("dockyard.rootless.ports: not in a rootless dockyard's namespaces")
    fwd = _Forwarder(run_dir, netns)
    path = os.path.join(run_dir, _SOCK)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    old = os.umask(0o177)
    try:
        control.bind(path)
    finally:
        os.umask(old)
    control.listen(16)
    os.close(ready_fd)
    while True:
        conn, _ = control.accept()
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            try:
                table = json.loads(data)
                answer = fwd.apply(table)
            except ValueError as err:
                answer = f"bad table: {err}"
            if answer == "ok" and not table:
                # nothing to listen on: stop taking requests first, so that a new table
                # starts a new forwarder instead of reaching this one on its way out
                os.unlink(path)
                control.close()
                conn.sendall(b"ok\n")
                break
            conn.sendall(answer.encode() + b"\n")
    with fwd.lock:
        while fwd.relays:
            fwd.done.wait()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
