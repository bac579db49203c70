"""Create, start, signal, pause and delete one container from an OCI bundle.

Process layout of ``create`` (as runc's nsexec, in three steps):

    runtime ──fork──▶ stage1: joins the cgroup and given namespaces, unshares
                      the user namespace (the runtime writes its id maps),
                      then the others, and forks
                      └──fork──▶ init: PID 1 of the new pid namespace; mounts,
                                 pivot_root, identity, then blocks on exec.fifo
                                 until ``start`` opens it, and execs the process

stage1 exits at once, so init is reparented to the nearest subreaper (the
engine's monitor, or ``run`` itself) or to the host's init. Errors on either
side of a fork travel back over a close-on-exec pipe (see ``_channel``).
"""

from __future__ import annotations

import os

from dockyard.linux import signals
from dockyard.linux import syscalls as sc
from dockyard.runtime import cgroups, namespaces, process, rootfs
from dockyard.runtime import state as st
from dockyard.runtime._channel import Channel, ChildError
from dockyard.runtime.hooks import HookError, run_hooks
from dockyard.runtime.lifecycle import (
    ContainerError,
    Options,
    _now,
    _oci_state,
    _remove_tree,
    _wait_gone,
    _write_pid_file,
)
from dockyard.runtime.spec import load_spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["create"]


def _write_maps(pid: int, spec: dict[str, Any]) -> None:
    linux = spec.get("linux") or {}
    for name, key in (("uid_map", "uidMappings"), ("gid_map", "gidMappings")):
        lines = "".join(
            f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in linux.get(key) or ()
        )
        if not lines:
            continue
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(lines)
        except OSError as err:
            raise ContainerError(f"writing {name} ({lines.strip()!r}): {err.strerror}") from None


def _report(chan: Channel, err: BaseException) -> None:
    """In a child: send the error up, then exit without running the parent's cleanups."""
    try:
        msg = str(err) or type(err).__name__
        if isinstance(err, OSError) and err.strerror:
            msg = f"{err.strerror} ({err.filename})" if err.filename else err.strerror
        errno = getattr(err, "errno", 0) or 0
        chan.send("error", message=msg, errno=errno, kind=getattr(err, "kind", ""))
    finally:
        os._exit(1)


def _preload(spec: dict[str, Any], terminal: bool) -> None:
    """Import what init needs after pivot_root, when the host's files are out of reach."""
    if (spec.get("linux") or {}).get("seccomp"):
        from dockyard.linux import seccomp

        seccomp._lib()
    if terminal:
        import socket  # noqa: F401

        from dockyard.runtime import console  # noqa: F401


def _init(
    chan: Channel,
    spec: dict[str, Any],
    bundle: str,
    ctx: dict[str, Any],
    state_dir: str,
    console_fd: int,
    no_pivot: bool,
    preserve_fds: int,
) -> None:
    """PID 1 of the container. Never returns."""
    try:
        go = chan.expect("go")
        os.setsid()
        proc = spec["process"]
        linux = spec.get("linux") or {}
        _preload(spec, bool(proc.get("terminal")))
        root = rootfs.prepare(spec, bundle, ctx)
        hooks = spec.get("hooks") or {}
        if hooks.get("prestart") or hooks.get("createRuntime"):
            chan.send("hooks")
            chan.expect("ok")
        run_hooks(spec, "createContainer", go["state"])
        dir_fd = os.open(state_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        rootfs.pivot(root, no_pivot or ctx["host_mounts"], chroot_only=ctx["host_mounts"])
        for key, value in (linux.get("sysctl") or {}).items():
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(str(value))
        if spec.get("hostname"):
            sc.sethostname(spec["hostname"])
        if spec.get("domainname"):
            sc.setdomainname(spec["domainname"])
        rootfs.finish(spec, ctx["host_mounts"])
        if proc.get("terminal"):
            from dockyard.runtime import console

            if console_fd < 0:
                raise ContainerError("process.terminal is set but no --console-socket was given")
            size = proc.get("consoleSize")
            console.become_terminal(console_fd, (size["height"], size["width"]) if size else None)
        seccomp_profile = ctx.get("seccomp_bpf") or linux.get("seccomp")
        path, env = process.prepare(proc, seccomp_profile, ctx["last_cap"], preserve_fds)
        chan.send("ready")
        chan.close()
    except BaseException as err:
        _report(chan, err)
    # From here on nobody listens on the channel: errors go to the container's stderr.
    try:
        fifo = os.open(st.EXEC_FIFO, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
        os.write(fifo, b"0")
        os.close(fifo)
        os.close(dir_fd)
        run_hooks(spec, "startContainer", go["state"])
        process.exec_prepared(path, proc, env, seccomp_profile)
    except BaseException as err:
        os.write(2, f"dockyard-runtime: {err}\n".encode(errors="replace"))
    os._exit(127)


def _stage1(
    chan: Channel,
    flags: int,
    joins: list[tuple[str, int]],
    procs_files: list[str],
    init_args: tuple[Any, ...],
) -> None:
    """The intermediate child. Never returns."""
    try:
        for path in procs_files:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            os.write(fd, b"0")
            os.close(fd)
        for kind, fd in joins:
            sc.setns(fd, namespaces.FLAGS[kind])
        if flags & sc.CLONE_NEWUSER:
            sc.unshare(sc.CLONE_NEWUSER)
            chan.send("userns")
            chan.expect("ok")
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        if flags & ~sc.CLONE_NEWUSER:
            sc.unshare(flags & ~sc.CLONE_NEWUSER)
        pid = os.fork()
        if pid == 0:
            _init(chan, *init_args)
        chan.send("pid", pid=pid)
    except BaseException as err:
        _report(chan, err)
    os._exit(0)


def create(
    opts: Options,
    cid: str,
    bundle: str,
    *,
    pid_file: str | None = None,
    console_socket: str | None = None,
    console_fd: int = -1,
    no_pivot: bool = False,
    preserve_fds: int = 0,
) -> dict[str, Any]:
    """Create container ``cid`` from ``bundle`` and leave its init waiting for ``start``.

    Raises ``ContainerError`` for every failure; nothing is left behind then.
    """
    bundle = os.path.abspath(bundle)
    try:
        spec = load_spec(bundle)
    except Exception as err:
        raise ContainerError(str(err)) from None
    try:
        sdir = st.state_dir(opts.root, cid)
    except ValueError as err:
        raise ContainerError(str(err)) from None
    os.makedirs(opts.root, mode=0o711, exist_ok=True)
    try:
        os.mkdir(sdir, 0o711)
    except FileExistsError:
        raise ContainerError(f"container with id exists: {cid}", "conflict") from None
    os.chmod(sdir, 0o711)
    linux = spec.get("linux") or {}
    cg: cgroups.CgroupManager = cgroups.NullCgroup()
    init_pid = 0
    joins: list[tuple[str, int]] = []
    host_mounts = False
    state: dict[str, Any] = {}
    try:
        try:
            flags, joins = namespaces.plan(linux.get("namespaces") or [])
        except ValueError as err:
            raise ContainerError(str(err)) from None
        host_mounts = not (flags & sc.CLONE_NEWNS) and not any(k == "mount" for k, _ in joins)
        path = cgroups.resolve_path(linux.get("cgroupsPath"), cid, opts.systemd_cgroup)
        try:
            cg = cgroups.manager_for(opts.cgroup_manager, path)
            cg.create()
            cg.apply(linux.get("resources") or {})
        except OSError as err:
            cg = _rootless_cgroup(cg, err, linux.get("resources") or {})
        fifo = os.path.join(sdir, st.EXEC_FIFO)
        os.mkfifo(fifo, 0o622)
        os.chmod(fifo, 0o622)
        if spec["process"].get("terminal") and console_socket and console_fd < 0:
            console_fd = _connect_console(console_socket)
        host_mode = cgroups.detect()
        ctx = {
            "in_userns": bool(flags & sc.CLONE_NEWUSER)
            or any(k == "user" for k, _ in joins)
            or _runtime_in_userns(),
            "new_cgroupns": bool(flags & sc.CLONE_NEWCGROUP),
            "cgroup_mode": "v2" if cg.version == 2 or host_mode == "v2" else "v1",
            "cgroup_v1_paths": cg.to_state().get("paths"),
            "cgroup_v2_path": cg.to_state().get("path"),
            "last_cap": _last_cap(),
            # No mount namespace listed: the runtime's own is used (runtime spec), so the
            # container's mounts are made in it, and delete takes them away again.
            "host_mounts": host_mounts,
            "seccomp_bpf": process.compiled_seccomp(
                linux.get("seccomp"), bool(spec["process"].get("noNewPrivileges")), opts.root
            ),
        }
        state = {
            "ociVersion": spec.get("ociVersion", st.OCI_VERSION),
            "id": cid,
            "pid": 0,
            "bundle": bundle,
            "rootfs": _rootfs_path(spec, bundle),
            "created": _now(),
            "annotations": spec.get("annotations") or {},
            "cgroup": cg.to_state(),
            "config": os.path.join(bundle, "config.json"),
        }
        if host_mounts:
            from dockyard.runtime.lifecycle import mounts_under

            state["hostMounts"] = {"path": state["rootfs"],
                                   "keep": [mid for mid, _ in mounts_under(state["rootfs"])]}  # fmt: skip
        chan = Channel()
        init_args = (spec, bundle, ctx, sdir, console_fd, no_pivot, preserve_fds)
        stage1 = os.fork()
        if stage1 == 0:
            _stage1(chan.as_child(), flags, joins, cg.procs_files(), init_args)
        chan.as_parent()
        try:
            init_pid = _drive_create(chan, stage1, spec, state)
        finally:
            chan.close()
            os.waitpid(stage1, 0)
        st.save(opts.root, state)
        if pid_file:
            _write_pid_file(pid_file, init_pid)
        return state
    except BaseException:
        if init_pid:
            try:
                os.kill(init_pid, signals.SIGKILL)
            except ProcessLookupError:
                pass
        _wait_gone(init_pid, cg)
        try:
            cg.destroy()
        except OSError:
            pass
        if state.get("hostMounts"):
            from dockyard.runtime.lifecycle import unmount_under

            unmount_under(state["hostMounts"]["path"], state["hostMounts"]["keep"])
        _remove_tree(sdir)
        raise
    finally:
        for _kind, fd in joins:
            os.close(fd)
        if console_fd >= 0 and console_socket:
            os.close(console_fd)


def _runtime_in_userns() -> bool:
    from dockyard import rootless

    return rootless.active()


def _rootless_cgroup(
    cg: cgroups.CgroupManager, err: OSError, resources: dict[str, Any]
) -> cgroups.CgroupManager:
    """A user without root whose cgroups the host does not delegate runs its containers
    without a cgroup of their own, as runc does rootless; limits asked for are discarded
    with a warning, as dockerd discards those its host cannot enforce."""
    import errno

    from dockyard import rootless

    if not rootless.active() or err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise ContainerError(f"cgroup: {err.strerror or err}") from None
    try:
        cg.destroy()
    except OSError:
        pass
    if _limits(resources):  # as dockerd on a host without the controller: said, and discarded
        from dockyard.runtime.cgroups._files import warn

        warn(
            "this host does not delegate cgroups to this user (rootless): resource limits discarded"
        )

    return cgroups.NullCgroup()


def _limits(resources: dict[str, Any]) -> bool:
    """Whether ``resources`` sets anything beyond the device rules every spec carries."""
    return any(v for k, v in resources.items() if k != "devices")


def _drive_create(chan: Channel, stage1: int, spec: dict[str, Any], state: dict[str, Any]) -> int:
    """Answer the children's requests until init is ready; return init's pid."""
    init_pid = 0
    try:
        while True:
            msg = chan.recv()
            if msg is None:
                raise ContainerError("container init exited during create")
            kind = msg["type"]
            if kind == "userns":
                _write_maps(stage1, spec)
                chan.send("ok")
            elif kind == "pid":
                init_pid = msg["pid"]
                state["pid"] = init_pid
                state["init_start_time"] = st.proc_start_time(init_pid)
                chan.send("go", state=_oci_state(state, "creating"))
            elif kind == "hooks":
                hook_state = _oci_state(state, "created")
                run_hooks(spec, "prestart", hook_state)
                run_hooks(spec, "createRuntime", hook_state)
                chan.send("ok")
            elif kind == "ready":
                return init_pid
            elif kind == "error":
                raise ContainerError(msg["message"], msg.get("kind", ""))
    except HookError as err:
        raise ContainerError(str(err)) from None
    except ChildError as err:
        raise ContainerError(str(err), err.kind) from None
    finally:
        state["pid"] = init_pid


def _connect_console(path: str) -> int:
    from dockyard.runtime import console

    try:
        return console.connect(path)
    except OSError as err:
        raise ContainerError(str(err.strerror)) from None


def _last_cap() -> int:
    from dockyard.linux.capabilities import cap_last

    return cap_last()


def _rootfs_path(spec: dict[str, Any], bundle: str) -> str:
    path = spec["root"]["path"]
    return path if path.startswith("/") else os.path.join(bundle, path)
