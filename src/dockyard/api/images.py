"""Image routes: list, inspect, history, pull and import (``/images/create``), push, tag,
delete, prune, save (``get``) and load, and the classic builder (``POST /build``).

Progress (pull, push, build) goes out as Docker's JSON messages, one per chunk, written
by the same ``Progress`` callbacks the CLI's renderer reads.
"""

from __future__ import annotations

import base64
import tempfile

from dockyard import _json as json
from dockyard.api.routes import route
from dockyard.errors import DockyardError, InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.api.http import Request, Stream
    from dockyard.api.routes import API
    from dockyard.registry.auth import Credentials

__all__: list[str] = []

_NAME = r"(?P<name>.+?)"


def _credentials(req: Request) -> Credentials | None:
    """X-Registry-Auth: base64url JSON of {username, password} (or an identity token)."""
    header = req.headers.get("X-Registry-Auth")
    if not header:
        return None
    from dockyard.registry.auth import Credentials

    try:
        padded = header + "=" * (-len(header) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, UnicodeDecodeError):
        return None  # dockerd ignores an unreadable header too
    if not isinstance(body, dict):
        return None
    creds = Credentials(
        body.get("username") or "", body.get("password") or "", body.get("identitytoken") or ""
    )
    return creds if creds else None


class _Progress:
    """Docker's JSON messages to a chunked response; an error ends the stream as dockerd's
    do, with ``errorDetail``."""

    def __init__(self, out: Stream) -> None:
        self.out = out

    def __call__(self, message: dict[str, Any]) -> None:
        self.out.json(message)

    def error(self, err: BaseException) -> None:
        text = str(err) or type(err).__name__
        self.out.json({"errorDetail": {"message": text}, "error": text})


@route("GET", r"/images/json")
def list_(api: API, req: Request) -> None:
    from dockyard.engine import listing
    from dockyard.filters import Filters

    store = api.engine.images
    flt = Filters.from_json(req.arg("filters"))
    if req.arg("filter"):  # API < 1.41: a reference as its own parameter
        flt = Filters({**flt.as_dict(), "reference": [req.arg("filter") or ""]})
    users: dict[str, int] = {}
    for row in api.engine.db.query("SELECT image_id FROM containers"):
        users[row[0]] = users.get(row[0], 0) + 1
    out = [listing.image_summary(store, row, tags, users.get(row["id"], 0))
           for row, tags in listing.images(store, flt, req.flag("all"))]  # fmt: skip
    req.send_json(200, out)


@route("GET", rf"/images/{_NAME}/json")
def inspect(api: API, req: Request, name: str) -> None:
    from dockyard.engine.images import inspect as image_inspect

    store = api.engine.images
    req.send_json(200, image_inspect(store, _resolve(api, name)))


def _resolve(api: API, name: str) -> str:
    from dockyard.errors import ImageNotFound

    try:
        return api.engine.images.resolve(name)
    except NotFound:
        raise ImageNotFound(f"No such image: {name}") from None


@route("GET", rf"/images/{_NAME}/history")
def history(api: API, req: Request, name: str) -> None:
    from dockyard.engine.images import history as image_history

    req.send_json(200, image_history(api.engine.images, _resolve(api, name)))


@route("POST", rf"/images/{_NAME}/tag")
def tag(api: API, req: Request, name: str) -> None:
    repo = req.arg("repo")
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    target = f"{repo}:{req.arg('tag')}" if req.arg("tag") else repo
    api.engine.images.tag(_resolve(api, name), target)
    req.send_empty(201)


@route("DELETE", rf"/images/{_NAME}")
def remove(api: API, req: Request, name: str) -> None:
    from dockyard.engine.images import remove as image_remove

    _resolve(api, name)
    req.send_json(200, image_remove(api.engine, name, req.flag("force"), not req.flag("noprune")))


@route("POST", r"/images/prune")
def prune(api: API, req: Request) -> None:
    from dockyard.engine.images import prune as image_prune
    from dockyard.filters import Filters

    flt = Filters.from_json(req.arg("filters"))
    dangling = flt.bool_value("dangling") if "dangling" in flt else True
    rest = Filters({k: v for k, v in flt.as_dict().items() if k != "dangling"})
    records, freed = image_prune(api.engine.images, not dangling, rest)
    req.send_json(200, {"ImagesDeleted": records or None, "SpaceReclaimed": freed})


@route("POST", r"/images/create")
def create(api: API, req: Request) -> None:
    """``docker pull`` (``fromImage``) and ``docker import`` (``fromSrc``)."""
    source = req.arg("fromSrc")
    if source is not None:
        _import(api, req, source)
        return
    image = req.arg("fromImage")
    if not image:
        raise InvalidArgument("fromImage or fromSrc is required")
    tag_ = req.arg("tag") or ""
    ref = (
        image
        if not tag_
        else (f"{image}@{tag_}" if tag_.startswith("sha256:") else f"{image}:{tag_}")
    )
    from dockyard.registry.transfer import pull

    creds = _credentials(req)
    out = req.stream("application/json")
    progress = _Progress(out)
    try:
        pull(api.engine.images, ref, req.arg("platform") or None, progress, credentials=creds)
    except (DockyardError, OSError) as err:
        progress.error(err)
    out.end()


def _import(api: API, req: Request, source: str) -> None:
    from dockyard.image.commit import import_rootfs

    if source != "-":
        raise InvalidArgument(
            "import from a URL is not supported: dockyard reaches no network for it"
        )
    repo, tag_ = req.arg("repo"), req.arg("tag")
    ref = f"{repo}:{tag_}" if repo and tag_ else repo
    with tempfile.TemporaryFile(dir=api.engine.root) as f:
        for chunk in req.body_chunks():
            f.write(chunk)
        f.seek(0)
        out = req.stream("application/json")
        try:
            image_id = import_rootfs(api.engine.images, f, ref=ref, message=req.arg("message") or "",
                                     changes_=req.args("changes"))  # fmt: skip
            out.json({"status": image_id})
        except (DockyardError, OSError) as err:
            _Progress(out).error(err)
        out.end()


@route("POST", rf"/images/{_NAME}/push")
def push(api: API, req: Request, name: str) -> None:
    from dockyard.registry.transfer import push as registry_push

    ref = f"{name}:{req.arg('tag')}" if req.arg("tag") else name
    creds = _credentials(req)
    out = req.stream("application/json")
    progress = _Progress(out)
    try:
        registry_push(api.engine.images, ref, progress, credentials=creds)
    except (DockyardError, OSError) as err:
        progress.error(err)
    out.end()


@route("GET", r"/images/get")
def save_many(api: API, req: Request) -> None:
    _save(api, req, req.args("names"))


@route("GET", rf"/images/{_NAME}/get")
def save_one(api: API, req: Request, name: str) -> None:
    _save(api, req, [name])


def _save(api: API, req: Request, names: list[str]) -> None:
    from dockyard.image.archive import save

    if not names:
        raise InvalidArgument("no image names given")
    for name in names:
        _resolve(api, name)
    out = req.stream("application/x-tar")
    try:
        save(api.engine.images, names, out)  # type: ignore[arg-type]
        out.end()
    except OSError:
        pass


@route("POST", r"/images/load")
def load(api: API, req: Request) -> None:
    from dockyard.image.archive import load as archive_load

    with tempfile.TemporaryFile(dir=api.engine.root) as f:
        for chunk in req.body_chunks():
            f.write(chunk)
        f.seek(0)
        lines = archive_load(api.engine.images, f)
    out = req.stream("application/json")  # quiet or not: dockerd sends the "Loaded image" lines
    for line in lines:
        out.json({"stream": line + "\n"})
    out.end()


@route("POST", r"/build")
def build(api: API, req: Request) -> None:
    from dockyard.api.build import run_build

    run_build(api, req)


@route("POST", r"/build/prune")
def build_prune(api: API, req: Request) -> None:
    from dockyard.engine.system import prune_build_cache

    removed, freed = prune_build_cache(api.engine)
    req.send_json(200, {"CachesDeleted": removed or None, "SpaceReclaimed": freed})
