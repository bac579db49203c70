"""The Engine API's routes: a table of (method, path pattern) -> handler.

Handlers are thin: they read Docker's request (query, JSON body), call the same engine
functions the CLI calls, and write Docker's response. Each module of this package adds
its routes with ``@route``; ``Router`` dispatches a request to the first that matches.
"""

from __future__ import annotations

import re

from dockyard.errors import DockyardError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from dockyard.api.http import Request
    from dockyard.engine.containers import Engine

__all__ = ["API", "MethodNotAllowed", "Router", "route"]

_ROUTES: list[tuple[str, re.Pattern[str], Callable[..., None]]] = []


def route(method: str, pattern: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a handler ``(api, req, **groups)`` for ``method`` on a path pattern."""

    def add(fn: Callable[..., None]) -> Callable[..., None]:
        _ROUTES.append((method, re.compile(f"^{pattern}/?$"), fn))
        return fn

    return add


class MethodNotAllowed(DockyardError):
    http_status = 405


class API:
    """What the handlers share: the engine, and the attach clients waiting for a start."""

    def __init__(self, engine: Engine) -> None:
        import threading

        self.engine = engine
        self.lock = threading.Lock()
        self.waiting_attach: dict[str, list[Any]] = {}


class Router:
    def __init__(self, api: API) -> None:
        # importing the handler modules fills the table
        from dockyard.api import containers, execs, images, networks, system, volumes  # noqa: F401

        self.api = api
        # the routes a path's first segment can reach, in the table's order: a pattern that
        # starts with a literal segment is tried only for paths that start with it
        keyed: dict[str, list[tuple[str, re.Pattern[str], Callable[..., None]]]] = {}
        anywhere = []
        for entry in _ROUTES:
            first = _LITERAL_HEAD.match(entry[1].pattern)
            if first is None:
                anywhere.append(entry)
                for routes in keyed.values():
                    routes.append(entry)
            else:
                keyed.setdefault(first.group(1), list(anywhere)).append(entry)
        self._keyed = keyed
        self._anywhere = anywhere

    def __call__(self, req: Request) -> None:
        fn, groups = self.resolve(req.method, req.path)
        fn(self.api, req, **groups)

    def resolve(self, method: str, path: str) -> tuple[Callable[..., None], dict[str, str]]:
        """The handler for ``method`` on ``path`` and the path's groups: the first route of
        the table that matches, as a scan of the whole table would find it."""
        allowed = False
        head = path[1:].partition("/")[0]
        for want, pattern, fn in self._keyed.get(head, self._anywhere):
            match = pattern.match(path)
            if match is None:
                continue
            if want != method and not (want == "GET" and method == "HEAD"):
                allowed = True
                continue
            return fn, match.groupdict()
        if allowed:
            raise MethodNotAllowed(f"method {method} not allowed for {path}")
        raise NotFound(f"page not found: {method} {path}")


_LITERAL_HEAD = re.compile(r"^\^/([A-Za-z_]+)/")
