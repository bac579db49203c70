"""Filesystem helpers cheap enough for every command's start-up.

``shutil`` imports ``fnmatch`` and so ``re`` (about 10 ms here); removing a
container's directory is on the path of every ``run --rm``.
"""

from __future__ import annotations

import os

__all__ = ["remove_tree"]


def remove_tree(path: str, ignore_errors: bool = False) -> None:
    """``rm -rf path`` through directory file descriptors: a symlink inside is removed,
    never followed, so a tree a container could write to cannot redirect the removal."""
    try:
        for _root, dirs, files, dir_fd in os.fwalk(path, topdown=False, follow_symlinks=False):
            for name in files:
                os.unlink(name, dir_fd=dir_fd)
            for name in dirs:
                try:
                    os.rmdir(name, dir_fd=dir_fd)
                except NotADirectoryError:  # a symlink to a directory
                    os.unlink(name, dir_fd=dir_fd)
        os.rmdir(path)
    except FileNotFoundError:
        if not ignore_errors and not os.path.lexists(path):
            return
        if not ignore_errors:
            raise
    except OSError:
        if not ignore_errors:
            raise
