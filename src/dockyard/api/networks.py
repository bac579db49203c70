"""Network routes: list, inspect, create (IPAM, Internal, Labels), connect, disconnect,
delete, prune."""

from __future__ import annotations

from dockyard.api.routes import route
from dockyard.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.api.http import Request
    from dockyard.api.routes import API

__all__: list[str] = []

_NET = r"(?P<ref>[^/]+)"


def _body(req: Request) -> dict[str, Any]:
    body = req.json({}) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("json: cannot unmarshal into a network request")
    return body


def _container(body: dict[str, Any]) -> str:
    container = body.get("Container")
    if not isinstance(container, str) or not container:
        raise InvalidArgument("Container is required")
    return container


@route("GET", r"/networks")
def list_(api: API, req: Request) -> None:
    from dockyard.engine import listing
    from dockyard.filters import Filters

    nets = listing.networks(api.engine, Filters.from_json(req.arg("filters")))
    req.send_json(200, [api.engine.networks.inspect(n["id"]) for n in nets])


@route("GET", rf"/networks/{_NET}")
def inspect(api: API, req: Request, ref: str) -> None:
    req.send_json(200, api.engine.networks.inspect(ref))


@route("POST", r"/networks/create")
def create(api: API, req: Request) -> None:
    body = _body(req)
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("network name is required")
    ipam = body.get("IPAM") or {}
    configs = (ipam.get("Config") or []) if isinstance(ipam, dict) else []
    first = configs[0] if configs and isinstance(configs[0], dict) else {}
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict):
        raise InvalidArgument("Labels must be an object")
    nid = api.engine.networks.create(name, first.get("Subnet") or None, first.get("Gateway") or None,
                                     bool(body.get("Internal")), labels, body.get("Driver") or "bridge")  # fmt: skip
    req.send_json(201, {"Id": nid, "Warning": ""})


@route("POST", rf"/networks/{_NET}/connect")
def connect(api: API, req: Request, ref: str) -> None:
    from dockyard.engine.networking import connect as engine_connect

    body = _body(req)
    container = _container(body)
    endpoint = body.get("EndpointConfig") or {}
    aliases = list(endpoint.get("Aliases") or [])
    ip = (endpoint.get("IPAMConfig") or {}).get("IPv4Address") or ""
    engine_connect(api.engine, ref, container, aliases, ip)
    req.send_empty(200)


@route("POST", rf"/networks/{_NET}/disconnect")
def disconnect(api: API, req: Request, ref: str) -> None:
    from dockyard.engine.networking import disconnect as engine_disconnect

    body = _body(req)
    container = _container(body)
    engine_disconnect(api.engine, ref, container, bool(body.get("Force")))
    req.send_empty(200)


@route("DELETE", rf"/networks/{_NET}")
def remove(api: API, req: Request, ref: str) -> None:
    api.engine.networks.remove(ref)
    req.send_empty(204)


@route("POST", r"/networks/prune")
def prune(api: API, req: Request) -> None:
    req.send_json(200, {"NetworksDeleted": api.engine.networks.prune() or None})
