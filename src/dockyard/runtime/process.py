"""The last steps before execve: rlimits, identity, capabilities, seccomp, exec.

Shared by the container's init and by ``exec``. Order matters and follows
runc: rlimits and oom_score_adj while still privileged; seccomp early unless
noNewPrivileges asks for it late; bounding set, then setgroups/setgid/setuid
with keep-caps, then the remaining capability sets; execve last.
"""

from __future__ import annotations

import errno
import os
import resource

from dockyard.linux import capabilities as caps
from dockyard.linux import signals
from dockyard.linux import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ProcessError",
    "apply_identity",
    "apply_oom_score",
    "apply_rlimits",
    "exec_prepared",
    "exec_process",
    "lookpath",
    "prepare",
]


class ProcessError(Exception):
    """A process attribute cannot be applied; ``kind`` helps callers choose an exit code."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


def apply_rlimits(rlimits: list[dict[str, Any]]) -> None:
    for rl in rlimits or ():
        name = rl["type"]
        num = getattr(resource, name, None)
        if num is None:
            raise ProcessError(f"unknown rlimit: {name}")
        soft, hard = rl["soft"], rl["hard"]
        _soft, cur_hard = resource.getrlimit(num)
        try:
            resource.setrlimit(num, (soft, hard))
        except (ValueError, OSError) as err:
            inf = resource.RLIM_INFINITY
            if cur_hard != inf and (hard == inf or hard > cur_hard):
                raise ProcessError(
                    f"cannot raise {name} hard limit to {hard}: the current hard limit is "
                    f"{cur_hard} and raising it needs CAP_SYS_RESOURCE"
                ) from None
            raise ProcessError(f"setrlimit {name} soft={soft} hard={hard}: {err}") from None


def apply_oom_score(value: int | None) -> None:
    if value is None:
        return
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as err:
        raise ProcessError(
            f"setting oomScoreAdj to {value}: {err.strerror}"
            + (" (lowering it needs CAP_SYS_RESOURCE)" if err.errno == errno.EACCES else "")
        ) from None


_PR_SET_DUMPABLE = 4


def _rootless() -> bool:
    from dockyard import rootless

    return rootless.active()


def apply_identity(process: dict[str, Any], last_cap: int | None = None) -> None:
    """Groups, gid, uid, then the five capability sets."""
    last = caps.cap_last() if last_cap is None else last_cap
    cs = process.get("capabilities")
    user = process.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    if cs is not None:
        keep = caps.mask(cs.get("bounding"), last)
        for n in range(last + 1):
            if not keep & (1 << n):
                try:
                    sc.prctl(sc.PR_CAPBSET_DROP, n)
                except OSError as err:
                    if err.errno != errno.EINVAL:
                        raise
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    try:
        os.setgroups(list(user.get("additionalGids") or ()))
    except PermissionError:
        # A user namespace whose gid map was written with setgroups=deny.
        if user.get("additionalGids"):
            raise
    os.setgid(gid)
    os.setuid(uid)
    sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    if (uid or gid) and _rootless():
        # A rootless runtime forks without exec, so this process's memory belongs to the
        # host's user namespace; changed IDs would make it non-dumpable, and then only the
        # host's root may open its /proc entries (the network namespace the engine
        # plumbs) until it execs. Its execve sets the flag as it would anyway.
        sc.prctl(_PR_SET_DUMPABLE, 1)
    if cs is None:
        return
    eff = caps.mask(cs.get("effective"), last)
    perm = caps.mask(cs.get("permitted"), last)
    inh = caps.mask(cs.get("inheritable"), last)
    sc.capset(eff, perm, inh)
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    for name in cs.get("ambient") or ():
        n = caps.cap_number(name)
        if n <= last:
            try:
                sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, n)
            except OSError:
                # Ambient needs the cap in permitted and inheritable; runc ignores it too.
                pass


def env_path(env: list[str]) -> str:
    for item in env:
        if item.startswith("PATH="):
            return item[5:]
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def lookpath(name: str, env: list[str]) -> str:
    """Resolve ``name`` as execvp would, in the current root; errors worded as runc's."""
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(d or ".", name) for d in env_path(env).split(":")]
    denied = None
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_mode & 0o170000 != 0o100000:  # not a regular file
            denied = path
            continue
        if st.st_mode & 0o111:
            return path
        denied = path
    if denied is not None:
        raise ProcessError(f'exec: "{name}": permission denied', "not-executable")
    if "/" in name:
        raise ProcessError(f'exec: "{name}": no such file or directory', "not-found")
    raise ProcessError(f'exec: "{name}": executable file not found in $PATH', "not-found")


def exec_process(path: str, args: list[str], env: list[str]) -> None:
    """execve with the signal state a fresh process expects; never returns on success."""
    # Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive execve.
    for name in ("SIGPIPE", "SIGXFSZ", "SIGINT"):
        signals.set_handler(signals.NAMES[name], signals.SIG_DFL)
    signals.pthread_sigmask(signals.SIG_SETMASK, ())
    envmap = {}
    for item in env:
        key, _, value = item.partition("=")
        envmap[key] = value
    os.execve(path, args, envmap)


def prepare(
    proc: dict[str, Any], seccomp_profile: Any, last_cap: int | None, preserve_fds: int
) -> tuple[str, list[str]]:
    """Apply every attribute of ``proc`` to this process short of execve.

    Returns (resolved path, env) for ``exec_prepared``. A seccomp profile is
    loaded here unless noNewPrivileges defers it to just before execve (runc's
    order: without no_new_privs the load needs CAP_SYS_ADMIN, so it must come
    before the capabilities are dropped).
    """
    apply_oom_score(proc.get("oomScoreAdj"))
    apply_rlimits(proc.get("rlimits") or [])
    env = proc.get("env") or []
    os.chdir(proc.get("cwd") or "/")
    path = lookpath(proc["args"][0], env)
    nnp = bool(proc.get("noNewPrivileges"))
    if seccomp_profile and not nnp:
        _load_seccomp(seccomp_profile, False)
    apply_identity(proc, last_cap)
    if nnp:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    if "umask" in (proc.get("user") or {}):
        os.umask(proc["user"]["umask"])
    for fd in range(3, 3 + preserve_fds):
        os.set_inheritable(fd, True)
    return path, env


def exec_prepared(path: str, proc: dict[str, Any], env: list[str], seccomp_profile: Any) -> None:
    """The late seccomp load (with noNewPrivileges), then execve."""
    if seccomp_profile and proc.get("noNewPrivileges"):
        _load_seccomp(seccomp_profile, True)
    exec_process(path, proc["args"], env)


def compiled_seccomp(profile: Any, nnp: bool, root: str) -> Any:
    """``profile`` compiled to BPF on the host side, through the cache in the state root
    (one compile per profile, not one per container or exec); the profile itself where it
    cannot be (filter flags), None without one."""
    if not profile:
        return None
    from dockyard.linux import seccomp
    from dockyard.runtime.lifecycle import ContainerError

    try:
        return seccomp.cached_bpf(profile, nnp, os.path.join(root, ".seccomp")) or profile
    except seccomp.SeccompError as err:
        raise ContainerError(str(err)) from None


def _load_seccomp(profile: Any, nnp: bool) -> None:
    """``profile``: a filter compiled beforehand (bytes, see ``seccomp.cached_bpf``) or an
    OCI ``linux.seccomp`` object for libseccomp to compile now."""
    from dockyard.linux import seccomp

    if isinstance(profile, bytes):
        seccomp.load_bpf(profile)
    else:
        seccomp.load(profile, nnp)
