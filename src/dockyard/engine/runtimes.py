"""The OCI runtime a container runs with: dockyard-runtime in-process, or runc/crun by command.

``--runtime`` picks it per container, as Docker and podman allow. The engine
and the monitor speak to either through one small driver interface
(``RuntimeDriver``); the external one drives the runc command line (which
dockyard-runtime shares), each runtime with its own state root under the
engine's exec root. This is the seam where runtime errors join the engine's
tree: whatever a driver raises is a ``DockyardError`` (``NotRunning`` for a
container that is not running, ``RuntimeFailed`` with the runtime's ``kind``
otherwise) or an ``OSError``.
"""

from __future__ import annotations

import os

from dockyard import _json as json
from dockyard.errors import DockyardError, InvalidArgument, NotRunning

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import Any, Protocol

    from dockyard.runtime.cgroups import CgroupManager as Cgroup

    class RuntimeDriver(Protocol):
        """What the engine asks of a runtime (dockyard-runtime, runc, crun)."""

        name: str

        def create(self, cid: str, bundle: str, console_fd: int = -1) -> int: ...
        def start(self, cid: str) -> None: ...
        def kill(self, cid: str, sig: int) -> None: ...
        def delete(self, cid: str) -> None: ...
        def pause(self, cid: str) -> None: ...
        def resume(self, cid: str) -> None: ...
        def cgroup(self, cid: str) -> Cgroup: ...
        def exec(self, cid: str, proc: dict[str, Any], detach: bool,
                 pid_file: str | None = None) -> int: ...  # fmt: skip


__all__ = [
    "ExternalRuntime",
    "InProcessRuntime",
    "RuntimeDriver",
    "RuntimeFailed",
    "command_kind",
    "runtime_for",
]

_BUILTIN = ("dockyard-runtime", "dockyard", "")


class RuntimeFailed(DockyardError):
    """runc or crun failed; ``kind`` says why where dockyard could tell (``not-found``,
    ``not-executable``), as dockyard-runtime's own errors carry it."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


def command_kind(bundle: str) -> str:
    """Why the bundle's command cannot run, found in its root the way execvp would look
    (not read from the runtime's words): ``not-found``, ``not-executable``, or "" when it
    can run and the failure is something else."""
    import stat

    from dockyard.inroot import Root
    from dockyard.runtime.process import env_path

    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    proc = spec.get("process") or {}
    args = proc.get("args") or []
    if not args:
        return ""
    name = args[0]
    if "/" in name:
        candidates = [name if name.startswith("/") else os.path.join(proc.get("cwd") or "/", name)]
    else:
        candidates = [
            os.path.join(d or ".", name) for d in env_path(proc.get("env") or []).split(":")
        ]
    root_path = (spec.get("root") or {}).get("path") or "rootfs"
    denied = False
    with Root(os.path.join(bundle, root_path)) as root:
        for path in candidates:
            try:
                st = root.stat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
                return ""
            denied = True
    return "not-executable" if denied else "not-found"


def _classified(err: DockyardError, bundle: str) -> DockyardError:
    try:
        kind = command_kind(bundle)
    except (OSError, ValueError):  # an unreadable bundle: the runtime's own error says more
        return err
    return RuntimeFailed(str(err), kind) if kind else err


class _Seam:
    """Translates dockyard-runtime's own exceptions into the engine's tree, once, by class
    and by the ``kind`` they carry: no message is read."""

    def __init__(self, cid: str) -> None:
        self.cid = cid

    def __enter__(self) -> None:
        return None

    def __exit__(self, _type: object, err: BaseException | None, _tb: object) -> bool:
        if err is None or isinstance(err, (DockyardError, OSError)):
            return False
        from dockyard.linux.seccomp import SeccompError
        from dockyard.runtime import state
        from dockyard.runtime._channel import ChildError
        from dockyard.runtime.hooks import HookError
        from dockyard.runtime.lifecycle import ContainerError
        from dockyard.runtime.process import ProcessError
        from dockyard.runtime.spec import SpecError

        if isinstance(err, state.ContainerNotFound) or (
            isinstance(err, ContainerError) and err.kind == "not-running"
        ):
            raise NotRunning(f"container {self.cid[:12]} is not running") from None
        runtime_errors = (
            ContainerError,
            SpecError,
            ProcessError,
            HookError,
            ChildError,
            SeccompError,
        )
        if isinstance(err, runtime_errors):
            raise RuntimeFailed(str(err), getattr(err, "kind", "")) from err
        return False


class InProcessRuntime:
    """dockyard-runtime's functions called directly: no process per operation."""

    name = "dockyard-runtime"

    def __init__(self, exec_root: str) -> None:
        from dockyard.runtime import lifecycle

        self.opts = lifecycle.Options(root=exec_root)

    def create(self, cid: str, bundle: str, console_fd: int = -1) -> int:
        from dockyard.runtime.container import create

        with _Seam(cid):
            return create(self.opts, cid, bundle, console_fd=console_fd)["pid"]

    def start(self, cid: str) -> None:
        from dockyard.runtime.lifecycle import start

        with _Seam(cid):
            start(self.opts, cid)

    def kill(self, cid: str, sig: int) -> None:
        from dockyard.runtime.lifecycle import kill

        with _Seam(cid):
            kill(self.opts, cid, sig)

    def delete(self, cid: str) -> None:
        from dockyard.runtime.lifecycle import delete

        with _Seam(cid):
            delete(self.opts, cid, force=True)

    def pause(self, cid: str) -> None:
        from dockyard.runtime.lifecycle import pause

        with _Seam(cid):
            pause(self.opts, cid)

    def resume(self, cid: str) -> None:
        from dockyard.runtime.lifecycle import resume

        with _Seam(cid):
            resume(self.opts, cid)

    def cgroup(self, cid: str) -> Cgroup:
        from dockyard.runtime import cgroups
        from dockyard.runtime import state as st

        with _Seam(cid):
            return cgroups.from_state(st.load(self.opts.root, cid).get("cgroup") or {})

    def exec(
        self, cid: str, proc: dict[str, Any], detach: bool, pid_file: str | None = None
    ) -> int:
        from dockyard.runtime.exec import exec_process

        with _Seam(cid):
            return exec_process(self.opts, cid, proc, detach=detach, pid_file=pid_file)


class ExternalRuntime:
    """runc, crun or any runtime with runc's command line."""

    def __init__(self, name: str, binary: str, exec_root: str) -> None:
        self.name = name
        self.binary = binary
        self.root = os.path.join(exec_root, name)

    def _run(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        import subprocess
        import tempfile

        with tempfile.TemporaryFile() as err:
            proc = subprocess.run([self.binary, "--root", self.root, *args], stderr=err, **kw)
            if proc.returncode != 0:
                err.seek(0)
                lines = err.read().decode(errors="replace").strip().splitlines() or [
                    f"exit {proc.returncode}"
                ]
                raise DockyardError(f"{self.name} {args[0]}: {lines[-1]}")
        return proc

    def create(self, cid: str, bundle: str, console_fd: int = -1) -> int:
        import shutil
        import subprocess
        import tempfile

        pid_file = os.path.join(bundle, "runtime.pid")
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_fd >= 0:
            # runc wants a socket path to send the pty to; we pass the pty on to our console fd.
            # A short directory of its own: AF_UNIX paths stop at 108 bytes.
            import socket

            tmpdir = tempfile.mkdtemp(prefix="dy-console-")
            sock_path = os.path.join(tmpdir, "console.sock")
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(sock_path)
            listener.listen(1)
            listener.settimeout(30)
            try:
                proc = subprocess.Popen([self.binary, "--root", self.root, *args, "--console-socket", sock_path, cid],
                                        stdin=subprocess.DEVNULL)  # fmt: skip
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    proc.kill()
                    raise DockyardError(f"{self.name} create sent no console") from None
                _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
                conn.close()
                if proc.wait() != 0:
                    raise _classified(DockyardError(f"{self.name} create failed"), bundle)
                from dockyard.runtime.console import send_master

                send_master(console_fd, fds[0], "/dev/ptmx")
                os.close(fds[0])
            finally:
                listener.close()
                shutil.rmtree(tmpdir, ignore_errors=True)
        else:
            try:
                self._run(*args, cid)
            except DockyardError as err:
                raise _classified(err, bundle) from None
        with open(pid_file) as f:
            return int(f.read())

    def start(self, cid: str) -> None:
        self._run("start", cid)

    def kill(self, cid: str, sig: int) -> None:
        try:
            self._run("kill", cid, str(sig))
        except DockyardError:
            # runc says why only in text: ask its state instead, which is what matters
            if self._status(cid) in ("stopped", None):
                raise NotRunning(f"container {cid[:12]} is not running") from None
            raise

    def _status(self, cid: str) -> str | None:
        """The runtime's status of ``cid``; None when it does not know the container."""
        import subprocess

        proc = subprocess.run([self.binary, "--root", self.root, "state", cid], capture_output=True)
        if proc.returncode != 0:
            return None
        return json.loads(proc.stdout).get("status")

    def delete(self, cid: str) -> None:
        self._run("delete", "--force", cid)

    def pause(self, cid: str) -> None:
        self._run("pause", cid)

    def resume(self, cid: str) -> None:
        self._run("resume", cid)

    def cgroup(self, cid: str) -> Cgroup:
        from dockyard.runtime import cgroups

        return cgroups.manager_for("auto", f"/dockyard/{cid}")

    def exec(
        self, cid: str, proc: dict[str, Any], detach: bool, pid_file: str | None = None
    ) -> int:
        import subprocess
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(proc, f)
            f.flush()
            args = [self.binary, "--root", self.root, "exec", "--process", f.name]
            args += ["--detach"] if detach else []
            args += ["--pid-file", pid_file] if pid_file else []
            return subprocess.run([*args, cid]).returncode


def runtime_for(name: str | None, exec_root: str) -> RuntimeDriver:
    """The driver for ``--runtime NAME`` (dockyard-runtime, runc, crun, or a path)."""
    if (name or "") in _BUILTIN:
        return InProcessRuntime(exec_root)
    import shutil

    binary = name if name and name.startswith("/") else shutil.which(name or "")
    if not binary or not os.access(binary, os.X_OK):
        raise InvalidArgument(f"unknown or invalid runtime name: {name}")
    return ExternalRuntime(os.path.basename(binary), binary, exec_root)
