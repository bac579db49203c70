"""What a build is asked for and the types its steps share: options, the one-line error,
the state a stage's steps move along, the platform ARGs."""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.errors import DockyardError
from dockyard.platforms import host_platform

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DEFAULT_PATH", "BuildError", "BuildOptions", "StageState", "platform_args"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BuildError(DockyardError):
    """A step failed; the message names the step and, for RUN, the exit code and output's tail.
    Exit status 1, as ``docker build``'s."""

    exit_code = 1


@dataclass
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    quiet: bool = False
    explain_cache: bool = False
    dockerfile_name: str = "Dockerfile"
    network: str = "default"  # RUN's network: default (the bridge), none, host
    pull: bool = False  # pull every FROM image, even one the store has
    platform: str = ""  # --platform: this host's only (no emulation)


def platform_args(wanted: str) -> dict[str, str]:
    """BuildKit's automatic platform ARGs; a platform other than this host's is refused."""
    host = host_platform()
    target = wanted or host
    if target.split("/")[:2] != host.split("/")[:2]:
        raise BuildError(
            f"building for {target} is not supported: this host is {host} (no emulation)"
        )
    os_, arch, *variant = target.split("/")
    return {"TARGETPLATFORM": target, "TARGETOS": os_, "TARGETARCH": arch,
            "TARGETVARIANT": variant[0] if variant else "", "BUILDPLATFORM": host, "BUILDOS": "linux",
            "BUILDARCH": host.split("/")[1], "BUILDVARIANT": ""}  # fmt: skip


@dataclass
class StageState:
    """Where a stage stands: its current image and what the next steps see."""

    image_id: str
    config: dict[str, Any]
    args: dict[str, str] = field(default_factory=dict)  # ARGs declared in this stage, with values
    cmd_set: bool = False  # a CMD in this stage (then ENTRYPOINT keeps it)

    def env(self) -> dict[str, str]:
        out = dict(self.args)
        for item in self.config.get("Env") or []:
            key, _, value = item.partition("=")
            out[key] = value
        return out
