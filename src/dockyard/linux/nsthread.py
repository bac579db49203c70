"""Work done in another network namespace from a thread of its own.

A thread may join a network namespace, but a user without root (rootless mode) may not
join the host's again afterwards: the host's namespace belongs to the host's user
namespace. So such work runs in a thread that joins the namespace and then ends,
taking its namespace with it; sockets made there stay in that namespace, and
processes forked there start in it.
"""

from __future__ import annotations

import os
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")

__all__ = ["at_home", "engine_netns", "run_in"]

_local = threading.local()


def run_in(netns_path: str, fn: Callable[[], T]) -> T:
    """``fn()`` in a thread that has joined the network namespace at ``netns_path``; its
    result or its exception. Called from such a thread for the same namespace, it runs
    ``fn`` there directly."""
    if getattr(_local, "netns", None) == netns_path:
        return fn()
    from dockyard.linux import syscalls as sc

    target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    out: list[T] = []
    failed: list[BaseException] = []

    def work() -> None:
        try:
            sc.setns(target, sc.CLONE_NEWNET)
            _local.netns = netns_path
            out.append(fn())
        except BaseException as err:
            failed.append(err)

    try:
        worker = threading.Thread(target=work, name="netns")
        worker.start()
        worker.join()
    finally:
        os.close(target)
    if failed:
        raise failed[0]
    return out[0]


def engine_netns() -> str | None:
    """The network namespace the engine's bridges live in when it is not the process's
    own: a rootless user's (``dockyard.rootless``), None as root."""
    return os.environ.get("_DOCKYARD_ROOTLESS_NETNS") or None


def at_home(fn: Callable[[], T]) -> T:
    """``fn()`` where the engine's bridges are: in the rootless user's network namespace,
    else right here."""
    path = engine_netns()
    return fn() if path is None else run_in(path, fn)
