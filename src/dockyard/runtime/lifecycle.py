"""Lifecycle of an existing container: start, state, signals, pause, delete.

Kept apart from ``container`` (create) so that these commands load no ctypes:
each is its own process, and its start-up is the bulk of its cost.
"""

from __future__ import annotations

import os
import time

from dockyard.linux import signals
from dockyard.runtime import cgroups
from dockyard.runtime import state as st
from dockyard.runtime.hooks import HookError, run_hooks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ContainerError",
    "Options",
    "delete",
    "kill",
    "parse_signal",
    "pause",
    "resume",
    "start",
    "state_json",
    "wait_exit",
]


class ContainerError(Exception):
    """A runtime command failed; the message is the one line a user sees."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


class Options:
    """Global flags shared by every command."""

    def __init__(
        self,
        root: str = "/run/dockyard-runtime",
        systemd_cgroup: bool = False,
        cgroup_manager: str = "auto",
        debug: bool = False,
    ) -> None:
        self.root = root
        self.systemd_cgroup = systemd_cgroup
        self.cgroup_manager = cgroup_manager
        self.debug = debug


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def _oci_state(state: dict[str, Any], status: str) -> dict[str, Any]:
    out = {
        "ociVersion": state.get("ociVersion", st.OCI_VERSION),
        "id": state["id"],
        "status": status,
        "pid": state["pid"] if status != "stopped" else 0,
        "bundle": state["bundle"],
    }
    if state.get("annotations"):
        out["annotations"] = state["annotations"]
    return out


def state_json(opts: Options, cid: str) -> dict[str, Any]:
    """What ``state`` prints: the OCI state plus runc's rootfs, created and owner."""
    state = st.load(opts.root, cid)
    out = _oci_state(state, st.status(opts.root, state))
    out.update(rootfs=state["rootfs"], created=state["created"], owner="")
    return out


def _write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _remove_tree(path: str) -> None:
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for name in names:
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            _remove_tree(full)
        else:
            os.unlink(full)
    os.rmdir(path)


def _wait_gone(pid: int, cg: cgroups.CgroupManager, timeout: float = 10.0) -> None:
    """Wait until ``pid`` and every process of the cgroup have exited."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while time.monotonic() < deadline:
        alive = pid > 0 and st.proc_start_time(pid) is not None
        if pid > 0 and alive:
            try:
                # Reap it if it is ours (``run`` is the subreaper).
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    alive = False
            except ChildProcessError:
                pass
        if not alive and not cg.pids():
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def start(opts: Options, cid: str) -> dict[str, Any]:
    """Let a created container's init exec its process."""
    state = st.load(opts.root, cid)
    status = st.status(opts.root, state)
    if status != "created":
        raise ContainerError(f"cannot start a container that is {status}: {cid}")
    fifo_path = os.path.join(st.state_dir(opts.root, cid), st.EXEC_FIFO)
    fd = os.open(fifo_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        delay = 0.0002
        while True:
            try:
                data = os.read(fd, 1)
            except BlockingIOError:
                data = b""
            if data:
                break
            if st.proc_start_time(state["pid"]) != state["init_start_time"]:
                raise ContainerError(f"container init exited before start: {cid}")
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
    finally:
        os.close(fd)
    os.unlink(fifo_path)
    spec = _spec_of(state)
    try:
        run_hooks(spec, "poststart", _oci_state(state, "running"))
    except HookError as err:
        _warn(str(err))
    return state


def _spec_of(state: dict[str, Any]) -> dict[str, Any]:
    from dockyard import _json

    try:
        with open(state["config"]) as f:
            return _json.loads(f.read())  # type: ignore[return-value]
    except (OSError, ValueError):
        return {}


def _warn(message: str) -> None:
    os.write(2, f"dockyard-runtime: warning: {message}\n".encode())


def parse_signal(value: str) -> int:
    try:
        return signals.number(value)
    except ValueError as err:
        raise ContainerError(str(err)) from None


def kill(opts: Options, cid: str, sig: int, all_processes: bool = False) -> None:
    state = st.load(opts.root, cid)
    status = st.status(opts.root, state)
    if status == "stopped":
        raise ContainerError(f"container not running: {cid}", "not-running")
    if all_processes:
        cg = cgroups.from_state(state.get("cgroup") or {})
        if cg.version:
            cg.kill_all(sig)
            return
    try:
        os.kill(state["pid"], sig)
    except ProcessLookupError:
        raise ContainerError(f"container not running: {cid}", "not-running") from None


def pause(opts: Options, cid: str) -> None:
    state = st.load(opts.root, cid)
    status = st.status(opts.root, state)
    if status != "running":
        raise ContainerError(f"container not running: {cid}", "not-running")
    try:
        cgroups.from_state(state.get("cgroup") or {}).freeze()
    except OSError as err:
        raise ContainerError(f"pause {cid}: {err.strerror or err}") from None


def resume(opts: Options, cid: str) -> None:
    state = st.load(opts.root, cid)
    if st.status(opts.root, state) != "paused":
        raise ContainerError(f"container not paused: {cid}")
    try:
        cgroups.from_state(state.get("cgroup") or {}).thaw()
    except OSError as err:
        raise ContainerError(f"resume {cid}: {err.strerror or err}") from None


def update(opts: Options, cid: str, resources: dict[str, Any]) -> None:
    """New limits (an OCI ``linux.resources`` object) for a created, running or paused
    container's cgroup, as ``runc update`` sets them."""
    state = st.load(opts.root, cid)
    if st.status(opts.root, state) == "stopped":
        raise ContainerError(f"container not running: {cid}", "not-running")
    try:
        cgroups.from_state(state.get("cgroup") or {}).apply(resources)
    except OSError as err:
        raise ContainerError(f"update {cid}: {err.strerror or err}") from None


def mounts_under(path: str) -> list[tuple[int, str]]:
    """(mount ID, mount point) of the mounts at or below ``path`` in this mount namespace,
    deepest first."""
    path = path.rstrip("/") or "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            target = fields[4].replace("\\040", " ")
            if target == path or target.startswith(path + "/"):
                out.append((int(fields[0]), target))
    return sorted(out, key=lambda m: (m[1].count("/"), m[0]), reverse=True)


def unmount_under(path: str, keep: list[int] | tuple[int, ...] = ()) -> None:
    """Unmount what is mounted at or below ``path``, but the mounts ``keep`` names (those
    that were there before the container was made); lazily: a process may still hold one."""
    from dockyard.linux import syscalls as sc

    for _ in range(8):  # stacked mounts come off one layer per pass
        targets = [t for mid, t in mounts_under(path) if mid not in keep]
        if not targets:
            return
        for target in targets:
            try:
                sc.umount2(target, sc.MNT_DETACH)
            except OSError:
                pass


def delete(opts: Options, cid: str, force: bool = False) -> None:
    """Remove a stopped (or, with ``force``, any) container: processes, cgroup, state."""
    try:
        state = st.load(opts.root, cid)
    except st.ContainerNotFound:
        if force:
            return
        raise
    status = st.status(opts.root, state)
    cg = cgroups.from_state(state.get("cgroup") or {})
    if status in ("running", "paused") and not force:
        raise ContainerError(f"cannot delete container {cid} that is not stopped: {status}")
    if status != "stopped":
        if cg.version:
            cg.kill_all(signals.SIGKILL)
            if status == "paused":
                try:
                    cg.thaw()
                except OSError:
                    pass
        try:
            os.kill(state["pid"], signals.SIGKILL)
        except ProcessLookupError:
            pass
    elif cg.version and cg.pids():
        # Init is gone but it left processes behind (no pid namespace): end them too.
        cg.kill_all(signals.SIGKILL)
    _wait_gone(state["pid"] if status != "stopped" else 0, cg)
    try:
        cg.destroy()
    except OSError as err:
        raise ContainerError(f"removing cgroup of {cid}: {err.strerror}") from None
    if state.get("hostMounts"):
        unmount_under(state["hostMounts"]["path"], state["hostMounts"]["keep"])
    spec = _spec_of(state)
    try:
        run_hooks(spec, "poststop", _oci_state(state, "stopped"))
    except HookError as err:
        _warn(str(err))
    _remove_tree(st.state_dir(opts.root, cid))


def wait_exit(pid: int) -> int:
    """Wait for our child ``pid``; its exit status the way a shell reports it."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 255
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status)
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)
