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

    def __call__(self, req: Request) -> None:
        allowed = False
        for method, pattern, fn in _ROUTES:
            match = pattern.match(req.path)
            if match is None:
                continue
            if method != req.method and not (method == "GET" and req.method == "HEAD"):
                allowed = True
                continue
            fn(self.api, req, **match.groupdict())
            return
        if allowed:
            raise MethodNotAllowed(f"method {req.method} not allowed for {req.path}")
        raise NotFound(f"page not found: {req.method} {req.path}")
