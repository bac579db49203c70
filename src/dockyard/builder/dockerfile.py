"""Dockerfiles parsed with BuildKit's own parser (the ``dockerfile`` package wraps it), cut
into stages.

The parser handles directives (``# syntax``, ``# escape``), line continuations,
comments, JSON and shell forms and heredocs; this module adds what BuildKit's
front end checks next: known instructions, FROM first (after ARGs), stage names,
and errors that name the line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["INSTRUCTIONS", "Dockerfile", "Stage", "parse"]

INSTRUCTIONS = frozenset({
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
})  # fmt: skip


class DockerfileError(InvalidArgument):
    """A Dockerfile that cannot be built as written; exit status 1, as ``docker build``'s."""

    exit_code = 1


@dataclass
class Stage:
    index: int
    base: str  # as written; expanded with the meta ARGs when built
    name: str | None
    line: int
    platform: str | None = None
    commands: list[Any] = field(default_factory=list)


@dataclass
class Dockerfile:
    meta_args: list[Any]  # ARGs before the first FROM
    stages: list[Stage]
    escape: str = "\\"

    def stage(self, ref: str) -> Stage | None:
        """A stage by name (case-insensitive, as Docker) or by index."""
        for stage in self.stages:
            if stage.name and stage.name.lower() == ref.lower():
                return stage
        if ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        return None


def _escape_directive(text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        key, eq, value = stripped[1:].partition("=")
        if eq and key.strip().lower() == "escape" and value.strip() in ("\\", "`"):
            return value.strip()
    return "\\"


def parse(text: str, name: str = "Dockerfile") -> Dockerfile:
    import dockerfile

    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as err:
        raise DockerfileError(f"failed to parse {name}: {err}") from None
    meta: list[Any] = []
    stages: list[Stage] = []
    for cmd in commands:
        if cmd.cmd not in INSTRUCTIONS:
            raise DockerfileError(f"{name}:{cmd.start_line}: unknown instruction: {cmd.cmd}")
        if cmd.cmd == "FROM":
            words = list(cmd.value)
            platform = next(
                (f.split("=", 1)[1] for f in cmd.flags if f.startswith("--platform=")), None
            )
            if len(words) == 3 and words[1].lower() == "as":
                stage_name = words[2]
                if not stage_name[0].isalpha() or not all(
                    ch.isalnum() or ch in "_.-" for ch in stage_name
                ):
                    raise DockerfileError(f"{name}:{cmd.start_line}: invalid name for build stage: "
                                          f'"{stage_name}", name can\'t start with a number or contain symbols')  # fmt: skip
                if any(s.name and s.name.lower() == stage_name.lower() for s in stages):
                    raise DockerfileError(
                        f"{name}:{cmd.start_line}: duplicate stage name {stage_name!r}"
                    )
            elif len(words) == 1:
                stage_name = None
            else:
                raise DockerfileError(
                    f"{name}:{cmd.start_line}: FROM requires either one or three arguments"
                )
            stages.append(Stage(len(stages), words[0], stage_name, cmd.start_line, platform))
            continue
        if not stages:
            if cmd.cmd != "ARG":
                raise DockerfileError(f"{name}:{cmd.start_line}: no build stage in current context "
                                      f"({cmd.cmd} before the first FROM)")  # fmt: skip
            meta.append(cmd)
            continue
        if (
            cmd.cmd in ("RUN", "CMD", "ENTRYPOINT", "WORKDIR", "USER", "STOPSIGNAL", "SHELL")
            and not cmd.value
        ):
            raise DockerfileError(
                f"{name}:{cmd.start_line}: {cmd.cmd} requires at least one argument"
            )
        stages[-1].commands.append(cmd)
    if not stages:
        raise DockerfileError(f"{name}: file with no instructions" if not commands else
                              f"{name}: no FROM instruction")  # fmt: skip
    return Dockerfile(meta, stages, _escape_directive(text))


def flag(cmd: Any, name: str) -> str | None:
    """The value of ``--name=value`` among an instruction's flags (last one wins)."""
    value = None
    for f in cmd.flags:
        key, eq, val = f.partition("=")
        if key == f"--{name}":
            value = val if eq else "true"
    return value


def flags_of(cmd: Any, name: str) -> list[str]:
    return [f.partition("=")[2] for f in cmd.flags if f.partition("=")[0] == f"--{name}"]


def check_flags(cmd: Any, allowed: tuple[str, ...], name: str = "Dockerfile") -> None:
    for f in cmd.flags:
        key = f.partition("=")[0].removeprefix("--")
        if key not in allowed:
            raise DockerfileError(f"{name}:{cmd.start_line}: unknown flag: --{key} (in {cmd.cmd})")
