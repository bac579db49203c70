"""The user namespace, mount namespace and network namespace of a rootless user's
dockyard, held by one process of that user's, and joined by every command.

The holder is made once (under ``ns.lock`` in the user's run directory): a child that
unshares its user namespace, is given its ID maps by ``newuidmap``/``newgidmap`` (the
user's ranges in ``/etc/subuid`` and ``/etc/subgid``; without any, only the user's own
ID, written directly, with a warning), then unshares a mount namespace and a network
namespace and waits. slirp4netns, started from outside with the holder's PID, gives
that network namespace a tap device to the host's network, and ends with the holder
(its ``--exit-fd`` is a pipe only the holder writes to). ``ns.json`` records the
holder's PID and start time, so a reused PID is not mistaken for it.

``enter`` then joins the user namespace and the mount namespace (not the network one:
commands stay on the host's network, where registries on the host's loopback are).
"""

from __future__ import annotations

import os

from dockyard import _json as json
from dockyard.rootless import RootlessError, private_dir, run_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["enter", "holder", "state", "subordinate_ranges"]

_STATE = "ns.json"


def subordinate_ranges(path: str, uid: int, name: str) -> list[tuple[int, int]]:
    """The (start, count) ranges ``path`` (``/etc/subuid`` or ``/etc/subgid``) gives this
    user, by name or by number, in file order."""
    out: list[tuple[int, int]] = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (name, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count > 0:
            out.append((start, count))
    return out


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(b")", 1)[1].split()
    if fields[0] in (b"Z", b"X"):  # dead, not yet reaped
        return None
    return fields[19].decode()


def state(rdir: str | None = None) -> dict[str, Any] | None:
    """The live holder's record, or None when there is none (never made, or dead)."""
    rdir = rdir or run_dir()
    try:
        with open(os.path.join(rdir, _STATE), "rb") as f:
            rec = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or _start_time(int(rec.get("pid") or 0)) != rec.get("start"):
        return None
    return rec


def _user() -> tuple[int, int, str]:
    import pwd

    uid, gid = os.getuid(), os.getgid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return uid, gid, name


def _maps(pid: int) -> str:
    """Write the holder's ID maps; "subordinate" or "single" (only the user's own ID)."""
    import shutil
    import subprocess

    uid, gid, name = _user()
    uids = subordinate_ranges("/etc/subuid", uid, name)
    gids = subordinate_ranges("/etc/subgid", uid, name)
    tools = shutil.which("newuidmap"), shutil.which("newgidmap")
    if uids and gids and all(tools):
        for tool, own, ranges in ((tools[0], uid, uids), (tools[1], gid, gids)):
            args = [str(pid), "0", str(own), "1"]
            inside = 1
            for start, count in ranges:
                args += [str(inside), str(start), str(count)]
                inside += count
            proc = subprocess.run([tool, *args], capture_output=True)  # type: ignore[list-item]
            if proc.returncode:
                text = proc.stderr.decode(errors="replace").strip().splitlines()
                raise RootlessError(
                    f"{os.path.basename(str(tool))}: {text[-1] if text else 'failed'}"
                )
        return "subordinate"
    import sys

    why = ("newuidmap/newgidmap are not installed (Debian: apt-get install uidmap)" if uids and gids
           else f"no subordinate IDs for {name} in /etc/subuid and /etc/subgid")  # fmt: skip
    sys.stderr.write(f"WARNING: {why}: only your own ID is mapped, and files in images "
                     "owned by other IDs become yours\n")  # fmt: skip
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(f"0 {uid} 1\n")
    with open(f"/proc/{pid}/setgroups", "w") as f:
        f.write("deny")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(f"0 {gid} 1\n")
    return "single"


def _hold(to_parent: int, from_parent: int, keep: int) -> None:
    """The holder's life: namespaces, then waiting until killed."""
    from dockyard.linux import syscalls as sc

    try:
        os.setsid()
        sc.unshare(sc.CLONE_NEWUSER)
        os.write(to_parent, b"u")
        if os.read(from_parent, 1) != b"m":
            os._exit(1)
        sc.unshare(sc.CLONE_NEWNS | sc.CLONE_NEWNET)
        # mounts made here never reach the host's namespace (it would refuse them anyway)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_SLAVE)
        os.write(to_parent, b"n")
    except BaseException as err:
        try:
            os.write(to_parent, f"!{err}".encode())
        finally:
            os._exit(1)
    os.close(to_parent)
    os.close(from_parent)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    import _signal

    for sig in (_signal.SIGHUP, _signal.SIGINT, _signal.SIGPIPE):
        _signal.signal(sig, _signal.SIG_IGN)
    # held open until this process ends: slirp4netns's --exit-fd
    os.set_inheritable(keep, True)
    # sleep keeps the descriptors it inherits (catatonit -P closes them), in half a MiB
    # where an interpreter takes ten; nothing is its child, so there is nothing to reap
    for pause in ("/usr/bin/sleep", "/bin/sleep"):
        try:
            os.execv(pause, [pause, "infinity"])
        except OSError:
            pass
    while True:
        try:
            os.wait()
        except ChildProcessError:
            _signal.pause()
        except InterruptedError:
            pass


def _slirp(rdir: str, pid: int, exit_fd: int) -> int:
    """slirp4netns for the holder's network namespace: tap0, 10.0.2.100/24 by DHCP-less
    ``--configure``; the host's loopback is not reachable from it (as podman and Docker's
    rootless mode default)."""
    import shutil
    import subprocess

    binary = shutil.which("slirp4netns")
    if binary is None:
        raise RootlessError(
            "rootless networking needs slirp4netns (Debian: apt-get install slirp4netns)"
        )
    ready_r, ready_w = os.pipe()
    log = os.open(
        os.path.join(rdir, "slirp4netns.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
    )
    try:
        proc = subprocess.Popen(
            [binary, "--configure", "--mtu=65520", "--disable-host-loopback", "--enable-sandbox",
             "--enable-seccomp", f"--ready-fd={ready_w}", f"--exit-fd={exit_fd}", str(pid), "tap0"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(ready_w, exit_fd),
            start_new_session=True,
        )  # fmt: skip
    finally:
        os.close(ready_w)
        os.close(log)
    import select

    ready, _, _ = select.select([ready_r], [], [], 10)
    got = os.read(ready_r, 1) if ready else b""
    os.close(ready_r)
    if got != b"1":
        proc.kill()
        with open(os.path.join(rdir, "slirp4netns.log"), errors="replace") as f:
            lines = [ln for ln in f.read().splitlines() if ln.strip() and "WARNING" not in ln]
        raise RootlessError(f"slirp4netns did not start: {lines[-1] if lines else 'no output'}")
    return proc.pid


def holder(rdir: str | None = None) -> dict[str, Any]:
    """The live holder's record, made first if there is none."""
    import fcntl

    rdir = rdir or run_dir()
    uid = os.getuid()
    private_dir(rdir, uid)
    rec = state(rdir)
    if rec is not None:
        return rec
    lock = os.open(os.path.join(rdir, "ns.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rec = state(rdir)  # made by a command that held the lock first
        if rec is None:
            rec = _make(rdir)
            tmp = os.path.join(rdir, _STATE + ".tmp")
            with open(tmp, "w") as f:
                f.write(json.dumps(rec))
            os.rename(tmp, os.path.join(rdir, _STATE))
        return rec
    finally:
        os.close(lock)


def _make(rdir: str) -> dict[str, Any]:
    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()
    exit_r, exit_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(up_r)
        os.close(down_w)
        os.close(exit_r)
        _hold(up_w, down_r, exit_w)
        os._exit(0)
    os.close(up_w)
    os.close(down_r)
    os.close(exit_w)
    try:
        if os.read(up_r, 1) != b"u":
            raise RootlessError(
                "could not create a user namespace (is kernel.unprivileged_userns_clone off?)"
            )
        mapping = _maps(pid)
        os.write(down_w, b"m")
        got = os.read(up_r, 4096)
        if got != b"n":
            raise RootlessError(
                f"the namespace holder failed: {got[1:].decode(errors='replace') or 'no reason'}"
            )
        slirp = _slirp(rdir, pid, exit_r)
    except BaseException:
        import _signal

        try:
            os.kill(pid, _signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(up_r)
        os.close(down_w)
        os.close(exit_r)
    # the holder outlives this command: nobody waits for it but init (or a subreaper)
    return {"pid": pid, "start": _start_time(pid), "slirp": slirp, "mapping": mapping,
            "network": "slirp4netns", "netns": f"/proc/{pid}/ns/net"}  # fmt: skip


def enter() -> dict[str, Any]:
    """Join the user's namespaces (made first if needed); the holder's record. The
    process must still have one thread: a threaded process cannot join a user namespace."""
    from dockyard import rootless
    from dockyard.linux import syscalls as sc

    rdir = run_dir()
    rec = holder(rdir)
    cwd = None
    try:
        cwd = os.getcwd()
    except OSError:
        pass
    pid = rec["pid"]
    user = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.setns(user, sc.CLONE_NEWUSER)
        sc.setns(mnt, sc.CLONE_NEWNS)
    except OSError as err:
        raise RootlessError(
            f"cannot join the rootless namespaces of process {pid}: {err.strerror}"
        ) from None
    finally:
        os.close(user)
        os.close(mnt)
    if cwd is not None:  # joining a mount namespace moves to its root
        try:
            os.chdir(cwd)
        except OSError:
            pass
    rootless._active = True
    # after the join this process is uid 0: what the user's own paths were is passed on
    os.environ["_DOCKYARD_RUN_DIR"] = rdir
    os.environ["_DOCKYARD_ROOTLESS_NETNS"] = rec["netns"]
    return rec
