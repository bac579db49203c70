"""The state root in use: a command that changes the store holds a shared lock on
``<root>/busy.lock`` while it works; ``system check --repair`` takes it exclusively, so
that it never removes what a pull, load, import, build, commit or a starting container
is making (a blob not yet referenced, a snapshot not yet named, an address not yet used),
and refuses in one line while such a command runs.

Shared holds nest within a process. A forked monitor drops what it inherited
(``forget``): a container that runs for days must not keep repair out.
"""

from __future__ import annotations

import os

from dockyard.errors import Conflict

__all__ = ["changing", "exclusive", "forget", "in_use"]

_held: dict[str, list[int]] = {}  # root -> [fd, depth]


def _open(root: str) -> int:
    os.makedirs(root, exist_ok=True)
    return os.open(os.path.join(root, "busy.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


class in_use:
    """``with in_use(root):`` the store is being changed by this process."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)

    def __enter__(self) -> None:
        import fcntl

        entry = _held.get(self.root)
        if entry is not None:
            entry[1] += 1
            return
        fd = _open(self.root)
        fcntl.flock(fd, fcntl.LOCK_SH)
        _held[self.root] = [fd, 1]

    def __exit__(self, *exc: object) -> None:
        entry = _held.get(self.root)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            os.close(entry[0])
            del _held[self.root]


class exclusive:
    """``with exclusive(root, what):`` no other command changes the store meanwhile;
    Conflict at once if one does."""

    def __init__(self, root: str, what: str) -> None:
        self.root, self.what = os.path.realpath(root), what
        self.fd = -1

    def __enter__(self) -> None:
        import fcntl

        self.fd = _open(self.root)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = -1
            raise Conflict(f"{self.what}: other dockyard commands are changing the store now "
                           "(pull, load, build, a starting container...); run it again when they are done") from None  # fmt: skip
        _held[self.root] = [self.fd, 1]  # what this process does meanwhile nests inside

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            _held.pop(self.root, None)
            os.close(self.fd)
            self.fd = -1


def forget() -> None:
    """In a forked child: let go of the holds inherited from the parent (the parent's stay)."""
    for fd, _depth in _held.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


def changing(root_of):  # type: ignore[no-untyped-def]
    """Decorator: the function holds ``in_use(root_of(*args))`` while it runs."""
    import functools

    def wrap(fn):  # type: ignore[no-untyped-def]
        @functools.wraps(fn)
        def inner(*args, **kw):  # type: ignore[no-untyped-def]
            with in_use(root_of(*args)):
                return fn(*args, **kw)

        return inner

    return wrap
