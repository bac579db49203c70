"""Run another process inside a running container (``dockyard-runtime exec``).

The runtime forks a child that joins the container's cgroup and namespaces,
then forks again so the process lands inside the pid namespace, applies the
process spec and execs. The close-on-exec channel tells the runtime whether
the execve succeeded.
"""

from __future__ import annotations

import os

from dockyard.linux import syscalls as sc
from dockyard.runtime import cgroups, namespaces, process
from dockyard.runtime import state as st
from dockyard.runtime._channel import Channel, ChildError
from dockyard.runtime.container import _connect_console, _preload, _report
from dockyard.runtime.lifecycle import ContainerError, Options, _spec_of, _write_pid_file, wait_exit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["exec_process"]


def _ns_joins(init_pid: int) -> list[tuple[str, int]]:
    """fds of every namespace of init that differs from ours, in join order."""
    joins = []
    for kind, name in namespaces.PROC_NAMES.items():
        theirs = f"/proc/{init_pid}/ns/{name}"
        try:
            if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            joins.append((kind, os.open(theirs, os.O_RDONLY | os.O_CLOEXEC)))
        except FileNotFoundError:
            continue
    joins.sort(key=lambda j: namespaces.join_order(j[0]))
    return joins


def _exec_child(
    chan: Channel, proc: dict[str, Any], seccomp_profile: Any, console_fd: int, preserve: int
) -> None:
    """The process to become the user's program. Never returns."""
    try:
        if proc.get("terminal"):
            from dockyard.runtime import console

            os.setsid()
            console.become_terminal(console_fd)
        path, env = process.prepare(proc, seccomp_profile, None, preserve)
        process.exec_prepared(path, proc, env, seccomp_profile)
    except BaseException as err:
        _report(chan, err)


def exec_process(
    opts: Options,
    cid: str,
    proc: dict[str, Any],
    *,
    detach: bool = False,
    pid_file: str | None = None,
    console_socket: str | None = None,
    preserve_fds: int = 0,
    ignore_paused: bool = False,
) -> int:
    """Start ``proc`` in container ``cid``; the exit status if not ``detach``, else 0."""
    state = st.load(opts.root, cid)
    status = st.status(opts.root, state)
    if status == "stopped":
        raise ContainerError(f"cannot exec in a stopped container: {cid}")
    if status == "paused" and not ignore_paused:
        raise ContainerError(f"cannot exec in a paused container: {cid}")
    spec = _spec_of(state)
    seccomp_profile = process.compiled_seccomp(
        (spec.get("linux") or {}).get("seccomp"), bool(proc.get("noNewPrivileges")), opts.root
    )
    cg = cgroups.from_state(state.get("cgroup") or {})
    joins = _ns_joins(state["pid"])
    console_fd = ours = -1
    if proc.get("terminal"):
        if console_socket:
            console_fd = _connect_console(console_socket)
        elif detach:
            raise ContainerError(
                "cannot allocate tty if runtime is detached without --console-socket"
            )
        else:
            from dockyard.runtime import console

            ours, console_fd = console.socketpair()
    _preload(spec, bool(proc.get("terminal")))
    if not detach:
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    chan = Channel()
    child = os.fork()
    if child == 0:
        chan.as_child()
        try:
            for path in cg.procs_files():
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                os.write(fd, b"0")
                os.close(fd)
            for kind, fd in joins:
                sc.setns(fd, namespaces.FLAGS[kind])
            pid = os.fork()
            if pid == 0:
                _exec_child(chan, proc, seccomp_profile, console_fd, preserve_fds)
            chan.send("pid", pid=pid)
        except BaseException as err:
            _report(chan, err)
        os._exit(0)
    chan.as_parent()
    for _kind, fd in joins:
        os.close(fd)
    try:
        pid = chan.expect("pid")["pid"]
        os.waitpid(child, 0)
        msg = chan.recv()  # EOF: execve succeeded and closed the channel
        if msg is not None and msg["type"] == "error":
            os.waitpid(pid, 0)
            raise ContainerError(msg["message"], msg.get("kind", ""))
    except ChildError as err:
        raise ContainerError(str(err), err.kind) from None
    finally:
        chan.close()
        if console_fd >= 0:
            os.close(console_fd)
    if pid_file:
        _write_pid_file(pid_file, pid)
    if detach:
        return 0
    if ours >= 0:
        from dockyard.runtime import console

        console.forward(ours)
    return wait_exit(pid)
