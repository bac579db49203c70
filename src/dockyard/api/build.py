"""``POST /build``: the classic builder's endpoint, driven by the same ``Builder`` as
``dockyard build``.

The body is the context as a tar (plain or compressed); it is unpacked where the CLI
unpacks a context read from stdin (``<root>/tmp/build-ctx-*``, under a flock, through
the in-root unpacker), the Dockerfile is opened inside it, and the build's progress
lines go out as ``{"stream": ...}`` messages, the image ID as ``{"aux": {"ID": ...}}``
and a failure as ``errorDetail``, as dockerd's classic builder sends them.
"""

from __future__ import annotations

import os
import tempfile

from dockyard import _json as json
from dockyard.errors import DockyardError, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dockyard.api.http import Request, Stream
    from dockyard.api.routes import API

__all__ = ["run_build"]


def _json_map(req: Request, name: str) -> dict[str, str]:
    raw = req.arg(name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid JSON in {name}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{name} must be a JSON object")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


class _Lines:
    """The builder's progress text as ``stream`` messages."""

    def __init__(self, out: Stream) -> None:
        self.out = out

    def write(self, text: str) -> int:
        if text:
            self.out.json({"stream": text})
        return len(text)

    def flush(self) -> None:
        pass


def run_build(api: API, req: Request) -> None:
    from dockyard.builder.context import BuildContext
    from dockyard.builder.stages import Builder, BuildOptions
    from dockyard.fsutil import scratch_dir
    from dockyard.image.reference import parse
    from dockyard.inroot import Root
    from dockyard.snapshot.apply import apply_layer

    engine = api.engine
    if req.arg("remote"):
        raise InvalidArgument("remote build contexts are not supported: send the context as a tar")
    tags = req.args("t")
    for tag in tags:
        parse(tag)  # a bad name fails before any work
    network = req.arg("networkmode") or "default"
    if network not in ("default", "bridge", "none", "host"):
        raise InvalidArgument(
            f"network mode {network!r} is not supported for builds (default, none, host)"
        )
    name = req.arg("dockerfile") or "Dockerfile"
    quiet = req.flag("q")
    with scratch_dir(os.path.join(engine.root, "tmp"), "build-ctx-") as work:
        with tempfile.TemporaryFile(dir=os.path.dirname(work)) as body:
            for chunk in req.body_chunks():
                body.write(chunk)
            body.seek(0)
            if body.read(1):
                body.seek(0)
                apply_layer(body, work, mode="plain")
        try:
            with Root(work) as root:
                fd = root.open(name, os.O_RDONLY)
            with os.fdopen(fd) as f:
                text = f.read()
        except (FileNotFoundError, NotADirectoryError):
            raise InvalidArgument(f"Cannot locate specified Dockerfile: {name}") from None
        options = BuildOptions(tags=tags, build_args=_json_map(req, "buildargs"), target=req.arg("target") or None,
                               no_cache=req.flag("nocache"), labels=_json_map(req, "labels"), quiet=quiet,
                               network="default" if network == "bridge" else network, pull=req.flag("pull"),
                               dockerfile_name=os.path.basename(name), platform=req.arg("platform") or "")  # fmt: skip
        out = req.stream("application/json")
        try:
            image_id = Builder(
                engine, BuildContext(work, engine.db), options, out=_Lines(out)
            ).build(text)  # type: ignore[arg-type]
        except (DockyardError, OSError) as err:
            message = str(err) or type(err).__name__
            try:
                out.json({"errorDetail": {"message": message}, "error": message})
                out.end()
            except OSError:
                pass
            return
        try:
            out.json({"aux": {"ID": image_id}})
            if quiet:
                out.json({"stream": image_id + "\n"})
            else:
                out.json(
                    {"stream": f"Successfully built {image_id.removeprefix('sha256:')[:12]}\n"}
                )
                for tag in tags:
                    out.json({"stream": f"Successfully tagged {parse(tag).familiar()}\n"})
            out.end()
        except OSError:
            pass
