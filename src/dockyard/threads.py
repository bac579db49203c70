"""Work on several items at once, a thread each, for what is mostly waiting (containers
stopping, pods going)."""

from __future__ import annotations

import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["Job", "Workers", "each_in_a_thread"]


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


class Job:
    """The outcome of work handed to ``Workers``: ``result()`` waits for it."""

    def __init__(self, work: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._work, self._args = work, args
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._value = self._work(*self._args)
        except BaseException as err:  # handed to whoever asks for the result
            self._error = err
        finally:
            self._done.set()

    def result(self) -> Any:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


class Workers:
    """At most ``count`` threads working through submitted jobs in order; leaving the
    ``with`` block waits for every job. concurrent.futures' pool without its import of
    logging (~10 ms of a pull or push)."""

    def __init__(self, count: int) -> None:
        import queue

        self._count = max(1, count)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, work: Callable[..., Any], *args: Any) -> Job:
        """Queue ``work(*args)``; a thread is started for each of the first ``count`` jobs."""
        job = Job(work, args)
        self._jobs.put(job)
        if len(self._threads) < self._count:
            thread = threading.Thread(target=self._serve, daemon=True)
            self._threads.append(thread)
            thread.start()
        return job

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            job._run()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
