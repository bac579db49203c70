"""What every command needs from the invocation: the engine, and where an archive goes."""

from __future__ import annotations

import os
import sys

from dockyard.cli import flags
from dockyard.engine.containers import Engine
from dockyard.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

__all__ = ["change_option", "engine", "write_archive"]


def engine(ctx: flags.Context) -> Engine:
    """One Engine (and so one image store and database connection) per invocation."""
    obj = ctx.find_root().obj
    if "engine" not in obj:
        obj["engine"] = Engine(obj["root"], obj.get("snapshotter", "overlay"))
    return obj["engine"]


def write_archive(output: str | None, write: Callable[[BinaryIO], object]) -> None:
    """Run ``write`` on ``output`` (or STDOUT): under a temp name first, so a failed save
    leaves no half-written archive under the name asked for."""
    if output is None:
        if sys.stdout.isatty():
            raise InvalidArgument(
                "cowardly refusing to save to a terminal. Use the -o flag or redirect"
            )
        write(sys.stdout.buffer)
        return
    tmp = f"{output}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as out:
            write(out)
        os.rename(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


change_option = flags.option("-c", "--change", "changes", multiple=True,
                             help="Apply Dockerfile instruction to the created image")  # fmt: skip
