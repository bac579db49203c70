"""``dockyard cp``: the docker CLI's side of a copy.

The engine gives a container's files as tars (``engine.copy.ContainerFiles``); what
lands where on the host, and which tar goes into which container directory, follows
the docker CLI's rules (``cli/command/container/cp.go`` and moby's ``archive/copy.go``):

- SRC a file: DEST missing is created as that file (its parent must exist; a DEST
  ending in ``/`` must exist); DEST a file is overwritten; DEST a directory gets SRC in it.
- SRC a directory: DEST missing is created with SRC's contents; DEST a file is an
  error; DEST a directory gets SRC in it, or only SRC's contents when SRC ends in ``/.``.
- ``-`` as SRC reads a tar from stdin into the container directory DEST; as DEST, writes
  the tar to stdout.
"""

from __future__ import annotations

import os
import sys

from dockyard.errors import DockyardError, InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.engine.copy import ContainerFiles

__all__ = ["copy_from_container", "copy_to_container", "split_dir_entry"]

_GO_DIR, _GO_SYMLINK = 1 << 31, 1 << 27
_GO_TYPE = (1 << 31) | (1 << 27) | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)


class CopyError(DockyardError):
    """An error of the copy's host side (docker CLI's own messages, exit status 1)."""

    exit_code = 1


def split_dir_entry(path: str) -> tuple[str, str]:
    """moby's SplitPathDirEntry: (directory, last part) of the cleaned path, a last ``.``
    kept as the last part."""
    cleaned = os.path.normpath(path) if path else "."
    if os.path.basename(path) == ".":
        cleaned += "/."
    return os.path.dirname(cleaned) or ".", os.path.basename(cleaned) or "/"


def _asserts_directory(path: str) -> bool:
    return path.endswith("/") or path.endswith("/.") or path == "."


def _rebase_name(path: str, resolved: str) -> tuple[str, str]:
    """moby's GetRebaseName: keep the name the user wrote when a symlink resolved away."""
    rebase = ""
    if path.endswith("/."):
        resolved += "/."
    elif path.endswith("/"):
        resolved += "/"
    if os.path.basename(path.rstrip("/")) != os.path.basename(
        resolved.rstrip("/")
    ) and not path.endswith("/."):
        rebase = os.path.basename(path.rstrip("/"))
    return resolved, rebase


def _prepare(src_path: str, src_is_dir: bool, src_rebase: str, dst_path: str, dst_exists: bool,
             dst_is_dir: bool) -> tuple[str, tuple[str, str] | None]:  # fmt: skip
    """moby's PrepareArchiveCopy: (directory to extract into, (old, new) entry rename)."""
    dst_dir, dst_base = split_dir_entry(dst_path)
    _, src_base = split_dir_entry(src_path)
    if dst_exists and dst_is_dir:
        return dst_path, None
    if dst_exists and src_is_dir:
        raise CopyError("cannot copy directory")
    if not dst_exists and not src_is_dir and _asserts_directory(dst_path):
        raise CopyError("no such directory")
    return dst_dir, (src_rebase or src_base, dst_base)


def _stat_link(files: ContainerFiles, path: str) -> tuple[dict | None, str]:
    """(stat of container path ``path`` or None, where it leads if it is a symlink or "")."""
    try:
        info = files.stat(path)
    except NotFound:
        return None, ""
    if not info["mode"] & _GO_SYMLINK:
        return info, ""
    target = info["linkTarget"]
    if not target.startswith("/"):
        target = os.path.join(split_dir_entry(path)[0], target)
    return info, target


def copy_from_container(
    files: ContainerFiles, src_path: str, dst_path: str, follow_link: bool
) -> None:
    """``cp CONTAINER:SRC DEST``."""
    from dockyard.snapshot.apply import LayerError, apply_layer

    rebase = ""
    if follow_link:
        info, target = _stat_link(files, src_path)
        if target:
            src_path, rebase = _rebase_name(src_path, target)
    info, chunks = files.get(src_path)
    if dst_path == "-":
        out = sys.stdout.buffer
        for chunk in chunks:
            out.write(chunk)
        out.flush()
        return
    dst_exists, dst_is_dir = _host_destination(dst_path)
    pre: tuple[str, str] | None = None
    if rebase:
        pre = (split_dir_entry(src_path)[1], rebase)
    into, rename = _prepare(
        src_path, bool(info["mode"] & _GO_DIR), rebase, dst_path, dst_exists, dst_is_dir
    )
    if pre and rename:
        rename = (pre[0], rename[1])
    elif pre:
        rename = pre
    from dockyard.fsutil import ChunkReader

    reader = ChunkReader(chunks)
    try:
        apply_layer(reader, into, mode="plain", decompress=False,  # type: ignore[arg-type]
                    owner=(os.getuid(), os.getgid()), no_replace_kind=True, rebase=rename)  # fmt: skip
    except LayerError as err:
        raise CopyError(str(err)) from None
    finally:
        for _ in chunks:  # drain, so the copying process ends and its error (if any) shows
            pass


def _host_destination(path: str) -> tuple[bool, bool]:
    """moby's CopyInfoDestinationPath: (exists, is a directory); a missing one needs its parent."""
    target = path
    for _ in range(256):
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            parent = split_dir_entry(target)[0]
            try:
                if not os.path.isdir(parent):
                    raise CopyError("not a directory" if os.path.exists(parent) else
                                    f"lstat {parent}: no such file or directory")  # fmt: skip
            except OSError as err:
                raise CopyError(str(err)) from None
            return False, False
        import stat as st_

        if not st_.S_ISLNK(st.st_mode):
            return True, st_.S_ISDIR(st.st_mode)
        link = os.readlink(target)
        target = link if link.startswith("/") else os.path.join(os.path.dirname(target), link)
    raise CopyError(f"{path}: too many levels of symbolic links")


def copy_to_container(files: ContainerFiles, src_path: str, dst_path: str, follow_link: bool,
                      copy_uid_gid: bool) -> None:  # fmt: skip
    """``cp SRC CONTAINER:DEST``."""
    dst_info_path = dst_path
    info, target = _stat_link(files, dst_path)
    if target:
        dst_info_path = target
        try:
            info = files.stat(target)
        except NotFound:
            info = None
    if info is not None and info["mode"] & _GO_TYPE and not info["mode"] & _GO_DIR:
        raise CopyError(
            f'destination "{files.name}:{dst_path}" must be a directory or a regular file'
        )
    exists, is_dir = info is not None, bool(info and info["mode"] & _GO_DIR)
    if src_path == "-":
        if not is_dir:
            raise CopyError(f'destination "{files.name}:{dst_path}" must be a directory')
        files.put(
            dst_info_path,
            sys.stdin.buffer,
            copy_uid_gid=copy_uid_gid,
            no_overwrite_dir_non_dir=True,
        )
        return
    resolved, rebase = _host_source(src_path, follow_link)
    import stat as st_

    src_is_dir = st_.S_ISDIR(os.lstat(resolved).st_mode)
    into, rename = _prepare(resolved, src_is_dir, rebase, dst_info_path, exists, is_dir)
    src_dir, src_base = split_dir_entry(resolved)
    arc = src_base
    if rename is not None:
        arc = rename[1]
    elif rebase:
        arc = rebase
    tar = _host_tar(src_dir, src_base, arc)
    try:
        files.put(into, tar, copy_uid_gid=copy_uid_gid, no_overwrite_dir_non_dir=True)
    except NotFound:
        raise NotFound(f"Could not find the file {into} in container {files.name}") from None


def _host_source(path: str, follow_link: bool) -> tuple[str, str]:
    """moby's ResolveHostSourcePath: (path to read, name to give it in the tar)."""
    if not os.path.lexists(path):
        raise CopyError(f"lstat {os.path.abspath(path)}: no such file or directory")
    if follow_link:
        return _rebase_name(path, os.path.realpath(path))
    head, base = os.path.split(path)
    resolved = os.path.join(os.path.realpath(head) if head else ".", base)
    if path.endswith("/") and os.path.basename(path.rstrip("/")) != os.path.basename(
        resolved.rstrip("/")
    ):
        return resolved, os.path.basename(path.rstrip("/"))
    return resolved, ""


def _host_tar(src_dir: str, src_base: str, arc: str):  # type: ignore[no-untyped-def]
    """A stream of the tar of ``src_dir/src_base`` with its top entry named ``arc``
    (``.`` for the contents), written by a thread as it is read."""
    import threading

    from dockyard.engine.copy import FdWriter, tar_directory, tar_entry
    from dockyard.snapshot import tarstream as ts
    from dockyard.snapshot.tarstream import TarWriter

    dfd = os.open(src_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)

    def produce() -> None:
        try:
            writer = TarWriter(FdWriter(write_end))
            seen: dict[tuple[int, int], str] = {}
            if src_base == ".":
                st = os.stat(dfd)
                writer.add(arc, ts.DIR, mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid,
                           mtime=int(st.st_mtime))  # fmt: skip
                tar_directory(writer, dfd, arc, seen)
            else:
                tar_entry(writer, dfd, src_base, arc, seen)
            writer.close()
        except OSError:
            pass  # the reader went away; it reports why
        finally:
            os.close(write_end)
            os.close(dfd)

    threading.Thread(target=produce, daemon=True).start()
    return os.fdopen(read_end, "rb")


def check_args(src: str, dest: str) -> None:
    if ":" in src.split("/")[0] and ":" in dest.split("/")[0]:
        raise InvalidArgument("copying between containers is not supported")
