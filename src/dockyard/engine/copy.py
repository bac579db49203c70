"""A container's files as its processes see them: stat, a tar of a path, a tar put into a
directory — what ``cp`` and the Engine API's ``/containers/{id}/archive`` are made of.

Each operation runs in a child process whose filesystem is the container's:

- a running or paused container: the child joins its mount namespace (``setns``), so
  bind mounts and volumes are where the container has them and the host's files are not
  there at all;
- a stopped one: the child takes a private mount namespace, mounts the container's root
  with its volumes and bind mounts, and ``chroot``s into it.

Inside, every path is opened with ``RESOLVE_IN_ROOT`` (``dockyard.inroot``) and acted on
by name in an open directory: a container that swaps a directory for a symlink while the
copy runs (CVE-2018-15664) leads the copy somewhere else in the container at worst. Data
goes through a pipe as a tar; a control pipe carries the stat or the error as JSON.
"""

from __future__ import annotations

import os
import stat as st_

from dockyard import _json as json
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, BinaryIO

    from dockyard.engine.containers import Engine

__all__ = ["ContainerFiles", "FdWriter", "go_file_mode", "tar_directory", "tar_entry"]

_ERRORS: dict[str, type[DockyardError]] = {
    "NotFound": NotFound, "Conflict": Conflict, "InvalidArgument": InvalidArgument,
    "DockyardError": DockyardError,
}  # fmt: skip

# Go's os.FileMode bits, as the Engine API's X-Docker-Container-Path-Stat carries them.
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE, _GO_SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
_GO_SETUID, _GO_SETGID, _GO_CHARDEV, _GO_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


def go_file_mode(mode: int) -> int:
    """An ``st_mode`` as Go's ``os.FileMode``."""
    out = mode & 0o777
    kind = st_.S_IFMT(mode)
    out |= {st_.S_IFDIR: _GO_DIR, st_.S_IFLNK: _GO_SYMLINK, st_.S_IFIFO: _GO_PIPE,
            st_.S_IFSOCK: _GO_SOCKET, st_.S_IFBLK: _GO_DEVICE,
            st_.S_IFCHR: _GO_DEVICE | _GO_CHARDEV}.get(kind, 0)  # fmt: skip
    if mode & st_.S_ISUID:
        out |= _GO_SETUID
    if mode & st_.S_ISGID:
        out |= _GO_SETGID
    if mode & st_.S_ISVTX:
        out |= _GO_STICKY
    return out


def _rfc3339(seconds: float) -> str:
    import datetime

    t = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    frac = f"{t.microsecond:06d}".rstrip("0")
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def abs_path(path: str) -> str:
    """Docker's cleaned absolute container path, keeping a trailing ``/`` or ``/.``."""
    from dockyard.inroot import clean

    out = "/" + clean(path)
    if path.endswith("/.") and out != "/":
        return out + "/."
    if path.endswith("/") and out != "/":
        return out + "/"
    return out


class ContainerFiles:
    """The files of container ``cid`` (running, paused or stopped)."""

    def __init__(self, engine: Engine, cid: str, name: str | None = None) -> None:
        self.engine = engine
        self.cid = cid
        self.name = name or cid

    # -- the three operations
    def stat(self, path: str) -> dict[str, Any]:
        """Docker's ContainerPathStat of ``path``: name, size, mode (Go's bits), mtime,
        linkTarget (where a symlink leads, resolved inside the container)."""
        with _Child(self, "stat", abs_path(path)) as child:
            return child.result()

    def get(self, path: str) -> tuple[dict[str, Any], Iterator[bytes]]:
        """(stat, tar chunks) of ``path``: entries named from its last part (``.`` for a
        path ending in ``/.``, whose contents then come without the directory)."""
        child = _Child(self, "get", abs_path(path))
        child.__enter__()
        try:
            stat = child.result()
        except BaseException:
            child.__exit__()
            raise

        def chunks() -> Iterator[bytes]:
            try:
                while data := os.read(child.data, 1 << 20):
                    yield data
                child.result()  # an error half-way through
            finally:
                child.__exit__()

        return stat, chunks()

    def put(self, path: str, tar: BinaryIO | bytes, copy_uid_gid: bool = False,
            no_overwrite_dir_non_dir: bool = False) -> None:  # fmt: skip
        """Unpack ``tar`` into directory ``path`` (which must exist). Owners are the tar's,
        or with ``copy_uid_gid`` the container's user (Docker's rules)."""
        args = {"copy_uid_gid": copy_uid_gid, "no_replace": no_overwrite_dir_non_dir}
        if copy_uid_gid:
            args["user"] = self.engine.record(self.cid)["config"].get("User") or ""
        with _Child(self, "put", abs_path(path), args) as child:
            child.result()  # ready: the directory is there
            try:
                if isinstance(tar, bytes):
                    _write_all(child.data, tar)
                else:
                    while data := tar.read(1 << 20):
                        _write_all(child.data, data)
            except BrokenPipeError:
                pass  # the child stopped reading: its error says why
            finally:
                os.close(child.data)
                child.data = -1
            child.result()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Child:
    """The forked process of one operation, and the parent's ends of its pipes."""

    def __init__(
        self, files: ContainerFiles, op: str, path: str, args: dict[str, Any] | None = None
    ) -> None:
        self.files, self.op, self.path, self.args = files, op, path, args or {}
        self.pid = 0
        self.data = self.ctl = -1
        self._ctl_buf = b""

    def __enter__(self) -> _Child:
        engine, cid = self.files.engine, self.files.cid
        rec = engine.refresh(cid)
        pid = rec["pid"] if rec["status"] in ("running", "paused") and rec["pid"] else 0
        mounts = [
            m for m in rec["host_config"].get("Mounts") or [] if m["Type"] in ("bind", "volume")
        ]
        readonly = bool(rec["host_config"].get("ReadonlyRootfs"))
        ctl_r, ctl_w = os.pipe2(os.O_CLOEXEC)
        if self.op == "put":
            data_r, data_w = os.pipe2(os.O_CLOEXEC)
            keep, mine = data_r, data_w
        else:
            data_r, data_w = os.pipe2(os.O_CLOEXEC)
            keep, mine = data_w, data_r
        rootfs = os.path.join(engine.cdir(cid), "rootfs")
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                # Only its own pipes: a descriptor of the parent's (a pipe another thread
                # writes a tar into) held here would keep that pipe from ever ending.
                lo, hi = sorted((keep, ctl_w))
                os.closerange(3, lo)
                os.closerange(lo + 1, hi)
                os.closerange(hi + 1, 65536)
                _child_main(self.op, self.path, self.args, keep, ctl_w, pid, rootfs, mounts,
                            readonly, engine, cid, self.files.name)  # fmt: skip
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(ctl_w)
        os.close(keep)
        self.ctl, self.data = ctl_r, mine
        return self

    def result(self) -> Any:
        """The child's next message: its value, or its error raised here."""
        while b"\n" not in self._ctl_buf:
            chunk = os.read(self.ctl, 65536)
            if not chunk:
                raise DockyardError(f"copying {self.path}: the copying process ended unexpectedly")
            self._ctl_buf += chunk
        line, _, self._ctl_buf = self._ctl_buf.partition(b"\n")
        msg = json.loads(line)
        if "error" in msg:
            raise _ERRORS.get(msg.get("kind", ""), DockyardError)(msg["error"])
        return msg.get("value")

    def __exit__(self, *exc: object) -> None:
        for fd in (self.data, self.ctl):
            if fd >= 0:
                os.close(fd)
        self.data = self.ctl = -1
        if self.pid:
            os.waitpid(self.pid, 0)
            self.pid = 0


# -- the child's side


def _send(ctl: int, **msg: Any) -> None:
    _write_all(ctl, json.dumps(msg).encode() + b"\n")


def _child_main(op: str, path: str, args: dict[str, Any], data: int, ctl: int, pid: int,
                rootfs: str, mounts: list[dict[str, Any]], readonly: bool, engine: Engine, cid: str,
                name: str) -> None:  # fmt: skip
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    # Once inside, the host's files (dockyard's own modules among them) are out of reach.
    import datetime  # noqa: F401
    import errno  # noqa: F401

    import dockyard.inroot
    import dockyard.snapshot.apply
    import dockyard.snapshot.tarstream  # noqa: F401

    try:
        _enter(pid, rootfs, mounts, readonly, engine, cid)
        from dockyard.inroot import Root

        with Root("/") as root:
            if op == "stat":
                _send(ctl, value=_stat(root, path, name))
            elif op == "get":
                info = _stat(root, path, name)
                _send(ctl, value=info)
                _tar(root, path, data)
                os.close(data)
                _send(ctl, value=None)
            elif op == "put":
                _put(root, path, data, ctl, args, readonly, mounts)
                _send(ctl, value=None)
    except DockyardError as err:
        _send(ctl, error=str(err), kind=type(err).__name__)
        raise
    except OSError as err:
        _send(ctl, error=_os_message(err, path), kind="DockyardError")
        raise
    except Exception as err:  # a bug: say what it was rather than just end
        _send(
            ctl,
            error=f"copying {path}: internal error: {type(err).__name__}: {err}",
            kind="DockyardError",
        )
        raise


def _os_message(err: OSError, path: str) -> str:
    import errno

    if err.errno == errno.EROFS:
        return "container rootfs is marked read-only"
    where = f" {err.filename}" if err.filename else f" {path}"
    return f"copying{where}: {os.strerror(err.errno) if err.errno else err}"


def _enter(pid: int, rootfs: str, mounts: list[dict[str, Any]], readonly: bool, engine: Engine,
           cid: str) -> None:  # fmt: skip
    """Make this process's filesystem the container's."""
    from dockyard.linux import syscalls as sc

    if pid:
        fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            sc.setns(fd, sc.CLONE_NEWNS)  # root and cwd become the namespace's root
        finally:
            os.close(fd)
        os.chdir("/")
        return
    sc.unshare(sc.CLONE_NEWNS)
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)  # nothing here reaches the host
    engine.images.snapshots.mount(cid, rootfs, readonly=readonly)
    from dockyard.inroot import Root, proc_path

    with Root(rootfs) as root:
        for m in mounts:
            source = m["Source"]
            if not os.path.exists(source):
                continue
            if os.path.isdir(source):
                fd = root.makedirs(m["Target"])
            else:
                pfd, base = root.parent(m["Target"], create=True)
                try:
                    fd = os.open(
                        base,
                        os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                        0o644,
                        dir_fd=pfd,
                    )
                finally:
                    os.close(pfd)
            try:
                sc.mount(source, proc_path(fd), None, sc.MS_BIND | sc.MS_REC)
                if m.get("ReadOnly"):
                    sc.mount(None, proc_path(fd), None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)
            finally:
                os.close(fd)
    os.chroot(rootfs)
    os.chdir("/")


def _split(path: str) -> tuple[str, str]:
    """(directory, last part) of an absolute container path; the last part keeps ``.``."""
    from dockyard.inroot import clean

    if path.endswith("/."):
        return clean(path[:-2]), "."
    rel = clean(path)
    parent, _, base = rel.rpartition("/")
    return parent, base


def _stat(root: Any, path: str, name: str) -> dict[str, Any]:
    """Docker's ContainerPathStat; the last component followed only when ``path`` ends in
    ``/`` or ``/.``."""
    parent, base = _split(path)
    follow = path.endswith(("/", "/."))
    try:
        if base == "." or base == "" or follow:
            rel = parent if base == "." else (f"{parent}/{base}" if parent else base)
            st = root.stat(rel)
        else:
            st = root.lstat(f"{parent}/{base}" if parent else base)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(
            f"Could not find the file {path.rstrip('/') or '/'} in container {name}"
        ) from None
    link = ""
    if st_.S_ISLNK(st.st_mode):
        link = "/" + root.resolve(f"{parent}/{base}" if parent else base)
    return {"name": base or "/", "size": st.st_size, "mode": go_file_mode(st.st_mode),
            "mtime": _rfc3339(st.st_mtime), "linkTarget": link}  # fmt: skip


def _tar(root: Any, path: str, out: int) -> None:
    """Tar of ``path`` into ``out``, named from its last part; nothing below followed."""
    from dockyard.snapshot import tarstream as ts
    from dockyard.snapshot.tarstream import TarWriter

    parent, base = _split(path)
    writer = TarWriter(FdWriter(out))
    seen: dict[tuple[int, int], str] = {}
    if base in ("", "."):
        top = root.dir(parent if base == "." else "")
        try:
            if base == ".":
                st = os.stat(top)
                writer.add(".", ts.DIR, mode=st_.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                           mtime=int(st.st_mtime))  # fmt: skip
            tar_directory(writer, top, "." if base == "." else "", seen)
        finally:
            os.close(top)
    else:
        pfd = root.dir(parent)
        try:
            tar_entry(writer, pfd, base, base, seen)
        finally:
            os.close(pfd)
    writer.close()


class FdWriter:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        _write_all(self.fd, data)


def tar_entry(writer: Any, dfd: int, name: str, arc: str, seen: dict[tuple[int, int], str]) -> None:
    from dockyard.snapshot import tarstream as ts

    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    mode = st.st_mode
    common = {
        "mode": st_.S_IMODE(mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime": int(st.st_mtime),
    }
    if st_.S_ISDIR(mode):
        writer.add(arc, ts.DIR, **common)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            tar_directory(writer, fd, arc, seen)
        finally:
            os.close(fd)
    elif st_.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in seen:
            writer.add(arc, ts.LNK, linkname=seen[key], **common)
            return
        seen[key] = arc
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            size = os.fstat(fd).st_size
            writer.add(arc, ts.REG, size=size, source=fd, **common)
        finally:
            os.close(fd)
    elif st_.S_ISLNK(mode):
        writer.add(arc, ts.SYM, linkname=os.readlink(name, dir_fd=dfd), **common)
    elif st_.S_ISCHR(mode) or st_.S_ISBLK(mode):
        kind = ts.CHR if st_.S_ISCHR(mode) else ts.BLK
        writer.add(
            arc, kind, devmajor=os.major(st.st_rdev), devminor=os.minor(st.st_rdev), **common
        )
    elif st_.S_ISFIFO(mode):
        writer.add(arc, ts.FIFO, **common)
    # sockets are left out, as Docker's tar leaves them out


def tar_directory(writer: Any, fd: int, arc: str, seen: dict[tuple[int, int], str]) -> None:
    for child in sorted(os.listdir(fd)):
        tar_entry(writer, fd, child, f"{arc}/{child}" if arc else child, seen)


def _put(root: Any, path: str, data: int, ctl: int, args: dict[str, Any], readonly: bool,
         mounts: list[dict[str, Any]]) -> None:  # fmt: skip
    from dockyard.inroot import clean
    from dockyard.snapshot.apply import LayerError, apply_layer

    rel = clean(path)
    try:
        st = root.stat(rel)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"Could not find the file {path.rstrip('/') or '/'} in container") from None
    if not st_.S_ISDIR(st.st_mode):
        raise InvalidArgument("extraction point is not a directory")
    real = "/" + root.resolve(rel)
    for m in mounts:
        target = "/" + clean(m["Target"])
        if m.get("ReadOnly") and (real == target or real.startswith(target + "/")):
            raise InvalidArgument("mounted volume is marked read-only")
    if readonly and not any(real == "/" + clean(m["Target"]) or real.startswith("/" + clean(m["Target"]) + "/")
                            for m in mounts):  # fmt: skip
        raise InvalidArgument("container rootfs is marked read-only")
    owner = None
    if args.get("copy_uid_gid") and args.get("user"):
        owner = _user_ids(root, args["user"])
    _send(ctl, value=None)  # ready for the tar
    target = root.dir(rel)
    try:
        with os.fdopen(data, "rb", closefd=True) as stream:
            apply_layer(stream, target, mode="plain", decompress=True, owner=owner,  # type: ignore[arg-type]
                        no_replace_kind=bool(args.get("no_replace")))  # fmt: skip
    except LayerError as err:
        raise InvalidArgument(str(err)) from None
    finally:
        os.close(target)


def _user_ids(root: Any, user: str) -> tuple[int, int]:
    """``user[:group]`` (names or numbers) as the container's /etc/passwd and /etc/group say."""
    name, _, group = user.partition(":")

    def lookup(table: str, key: str, field: int) -> int | None:
        if key.isdigit():
            return int(key)
        try:
            fd = root.open(f"etc/{table}", os.O_RDONLY)
        except OSError:
            return None
        with os.fdopen(fd) as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) > field and parts[0] == key:
                    return int(parts[field])
        return None

    uid = lookup("passwd", name, 2)
    if uid is None:
        raise NotFound(f"unable to find user {name}: no matching entries in passwd file")
    gid = (
        lookup("group", group, 2)
        if group
        else lookup("passwd", name, 3)
        if not name.isdigit()
        else uid
    )
    return uid, gid if gid is not None else uid
