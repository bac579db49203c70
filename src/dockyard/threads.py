"""Work on several items at once, a thread each, for what is mostly waiting (containers
stopping, pods going)."""

from __future__ import annotations

import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["each_in_a_thread"]


def each_in_a_thread(work: Callable[[Any], object], items: list[Any]) -> None:
    """``work(item)`` for every item, each in a thread of its own (threads, not a pool: the
    pool module imports logging, ~9 ms of a command); the first error once all are done."""
    errors: list[BaseException] = []

    def one(item: Any) -> None:
        try:
            work(item)
        except BaseException as err:  # kept for the caller, raised once every item is done
            errors.append(err)

    threads = [threading.Thread(target=one, args=(item,)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
