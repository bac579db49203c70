"""System routes: ``/_ping``, ``/version``, ``/info``, ``/system/df``, ``/auth``, ``/events``,
and the answers dockerd gives where it lacks a feature (plugins, swarm, sessions)."""

from __future__ import annotations

import platform
import sys

from dockyard.api.routes import route
from dockyard.errors import InvalidArgument, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.api.http import Request
    from dockyard.api.routes import API

__all__: list[str] = []

_SWARM = ("swarm", "services", "nodes", "tasks", "secrets", "configs")


@route("GET", r"/_ping")
def ping(api: API, req: Request) -> None:
    headers = {"Builder-Version": "1", "Docker-Experimental": "false", "Cache-Control": "no-cache, no-store, must-revalidate",
               "Pragma": "no-cache", "Swarm": "inactive"}  # fmt: skip
    req.send_text(200, "OK", headers)


@route("GET", r"/version")
def version(api: API, req: Request) -> None:
    from dockyard import __version__
    from dockyard.platforms import host_arch

    server = req.handler.server
    body = {
        "Platform": {"Name": "dockyard"},
        "Components": [{"Name": "Engine", "Version": __version__,
                        "Details": {"ApiVersion": server.api_version, "MinAPIVersion": "1.24",
                                    "Os": "linux", "Arch": host_arch(), "KernelVersion": platform.release(),
                                    "GoVersion": f"python{sys.version.split()[0]}"}}],
        "Version": __version__, "ApiVersion": server.api_version, "MinAPIVersion": "1.24",
        "GitCommit": "", "GoVersion": f"python{sys.version.split()[0]}", "Os": "linux",
        "Arch": host_arch(), "KernelVersion": platform.release(), "BuildTime": "",
    }  # fmt: skip
    req.send_json(200, body)


@route("GET", r"/info")
def info(api: API, req: Request) -> None:
    from dockyard.engine.system import info as engine_info

    body = engine_info(api.engine)
    body.update({"Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "",
                           "ControlAvailable": False, "Error": "", "RemoteManagers": None},
                 "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
                             "Authorization": None, "Log": ["json-file", "none"]},
                 "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": []},
                 "IndexServerAddress": "https://index.docker.io/v1/", "Debug": False,
                 "LoggingDriver": "json-file", "Labels": [], "ExperimentalBuild": False,
                 "Images": body["Images"]})  # fmt: skip
    req.send_json(200, body)


@route("GET", r"/system/df")
def disk_usage(api: API, req: Request) -> None:
    from dockyard.engine.system import df

    req.send_json(200, df(api.engine))


@route("POST", r"/auth")
def auth(api: API, req: Request) -> None:
    """``docker login``: the credentials are checked against the registry they name."""
    from dockyard.registry.auth import Credentials
    from dockyard.registry.client import Registry

    body = req.json({}) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("invalid auth configuration")
    server = (
        (body.get("serveraddress") or "docker.io").removeprefix("https://").removeprefix("http://")
    )
    server = server.rstrip("/").removesuffix("/v1").replace("index.docker.io", "docker.io")
    Registry(server, Credentials(body.get("username") or "", body.get("password") or "")).ping()
    req.send_json(200, {"Status": "Login Succeeded", "IdentityToken": ""})


@route("GET", r"/events")
def events(api: API, req: Request) -> None:
    from dockyard.clock import time_bound
    from dockyard.engine.events import stream
    from dockyard.filters import Filters

    since = time_bound(req.arg("since")) if req.arg("since") else None
    until = time_bound(req.arg("until")) if req.arg("until") else None
    flt = Filters.from_json(req.arg("filters"))
    stop = req.until_gone()
    try:
        messages = stream(api.engine.db, since, until, flt, stop)  # refusals before the headers
        out = req.stream("application/json")
        for message in messages:
            out.json(message)
    except OSError:
        return  # the client went away
    finally:
        stop.set()
    out.end()


@route("GET", r"/plugins")
def plugins(api: API, req: Request) -> None:
    req.send_json(200, [])


@route("GET", rf"/(?:{'|'.join(_SWARM)})(?:/.*)?")
def swarm_get(api: API, req: Request) -> None:
    _not_a_swarm()


@route("POST", rf"/(?:{'|'.join(_SWARM)})(?:/.*)?")
def swarm_post(api: API, req: Request) -> None:
    _not_a_swarm()


def _not_a_swarm() -> None:
    raise Unavailable("This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" "
                      "to connect this node to swarm and try again.")  # fmt: skip


@route("POST", r"/session")
def session(api: API, req: Request) -> None:
    raise InvalidArgument("dockyard has no BuildKit session: build with the classic builder "
                          "(DOCKER_BUILDKIT=0), which uses POST /build")  # fmt: skip


@route("POST", r"/grpc")
def grpc(api: API, req: Request) -> None:
    raise InvalidArgument("dockyard offers no BuildKit gRPC endpoint: build with the classic "
                          "builder (DOCKER_BUILDKIT=0)")  # fmt: skip
