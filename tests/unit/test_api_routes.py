"""The Engine API's route index finds what a scan of the whole table finds."""

from __future__ import annotations

import pytest

from dockyard.api import routes
from dockyard.errors import NotFound

PATHS = [
    "/_ping",
    "/_ping/",
    "/version",
    "/info",
    "/events",
    "/auth",
    "/build",
    "/build/prune",
    "/containers/json",
    "/containers/create",
    "/containers/prune",
    "/containers/abc/json",
    "/containers/abc/archive",
    "/containers/abc/exec",
    "/containers/abc/logs",
    "/containers/json/json",
    "/containers",
    "/images/json",
    "/images/create",
    "/images/get",
    "/images/a/b:1/json",
    "/images/a/b/push",
    "/images/busybox",
    "/images/a/b/history",
    "/networks",
    "/networks/create",
    "/networks/n1",
    "/networks/n1/connect",
    "/volumes",
    "/volumes/v1",
    "/volumes/create",
    "/volumes/prune",
    "/exec/e1/json",
    "/exec/e1/start",
    "/swarm",
    "/swarm/init",
    "/services",
    "/services/x/update",
    "/nodes",
    "/plugins",
    "/system/df",
    "/session",
    "/grpc",
    "/nothing",
    "/",
    "",
    "/containersx/json",
]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE"]


def scan(method: str, path: str) -> object:
    """What the table says, read from its start: the handler, 405 or 404."""
    allowed = False
    for want, pattern, fn in routes._ROUTES:
        match = pattern.match(path)
        if match is None:
            continue
        if want != method and not (want == "GET" and method == "HEAD"):
            allowed = True
            continue
        return fn, match.groupdict()
    return 405 if allowed else 404


def indexed(router: routes.Router, method: str, path: str) -> object:
    try:
        return router.resolve(method, path)
    except routes.MethodNotAllowed:
        return 405
    except NotFound:
        return 404


@pytest.mark.parametrize("method", METHODS)
def test_index_agrees_with_a_scan_of_the_table(method: str) -> None:
    router = routes.Router(routes.API(None))  # type: ignore[arg-type]
    for path in PATHS:
        assert indexed(router, method, path) == scan(method, path), (method, path)


def test_index_keys_most_routes_by_their_first_segment() -> None:
    router = routes.Router(routes.API(None))  # type: ignore[arg-type]
    assert {"containers", "images", "_ping", "exec"} <= set(router._keyed)
    assert len(router._anywhere) < len(routes._ROUTES) // 10
    fn, groups = router.resolve("GET", "/images/a/b:1/json")
    assert groups == {"name": "a/b:1"} and fn.__module__ == "dockyard.api.images"
