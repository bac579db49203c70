"""Volume routes: list, create, inspect, delete, prune."""

from __future__ import annotations

from dockyard.api.routes import route
from dockyard.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.api.http import Request
    from dockyard.api.routes import API

__all__: list[str] = []


@route("GET", r"/volumes")
def list_(api: API, req: Request) -> None:
    from dockyard.engine import listing
    from dockyard.filters import Filters

    vols = listing.volumes(api.engine, Filters.from_json(req.arg("filters")))
    req.send_json(
        200, {"Volumes": [api.engine.volumes.inspect(v["name"]) for v in vols], "Warnings": []}
    )


@route("POST", r"/volumes/create")
def create(api: API, req: Request) -> None:
    body = req.json({}) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("json: cannot unmarshal into a volume request")
    if (body.get("Driver") or "local") != "local":
        raise InvalidArgument(
            f'plugin "{body["Driver"]}" not found: dockyard has the local driver only'
        )
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict):
        raise InvalidArgument("Labels must be an object")
    name = api.engine.volumes.create(body.get("Name") or None, labels)
    req.send_json(201, api.engine.volumes.inspect(name))


@route("GET", r"/volumes/(?P<name>[^/]+)")
def inspect(api: API, req: Request, name: str) -> None:
    req.send_json(200, api.engine.volumes.inspect(name))


@route("DELETE", r"/volumes/(?P<name>[^/]+)")
def remove(api: API, req: Request, name: str) -> None:
    api.engine.volumes.remove(name, req.flag("force"))
    req.send_empty(204)


@route("POST", r"/volumes/prune")
def prune(api: API, req: Request) -> None:
    from dockyard.filters import Filters

    flt = Filters.from_json(req.arg("filters"))
    gone, freed = api.engine.volumes.prune(flt.bool_value("all") or False)
    req.send_json(200, {"VolumesDeleted": gone or None, "SpaceReclaimed": freed})
