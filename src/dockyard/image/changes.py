"""Dockerfile instructions applied to an image config: ``import -c`` and ``commit -c``.

Docker accepts CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL,
USER, VOLUME and WORKDIR there; so does dockyard, with Docker's JSON and
shell forms.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from dockyard.errors import InvalidArgument

__all__ = ["apply_changes"]

_ALLOWED = {
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
}


def _exec_form(arg: str) -> list[str]:
    """JSON array form as is; shell form wrapped in /bin/sh -c, as the builder does."""
    text = arg.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", text]


def _pairs(arg: str, instruction: str) -> list[tuple[str, str]]:
    words = shlex.split(arg)
    if not words:
        raise InvalidArgument(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        # legacy "ENV key value with spaces"
        key, _, value = arg.strip().partition(" ")
        return [(key, value.strip())]
    out = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{instruction} names must be key=value: {word}")
        out.append((key, value))
    return out


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Return ``config`` (an image config's ``config`` object) with ``changes`` applied."""
    cfg = dict(config)
    for change in changes:
        instruction, _, arg = change.strip().partition(" ")
        name = instruction.upper()
        if name not in _ALLOWED:
            raise InvalidArgument(f"{instruction} is not a valid change command")
        if name == "CMD":
            cfg["Cmd"] = _exec_form(arg)
        elif name == "ENTRYPOINT":
            cfg["Entrypoint"] = _exec_form(arg)
        elif name == "ENV":
            env = [e for e in cfg.get("Env") or []]
            for key, value in _pairs(arg, name):
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
            cfg["Env"] = env
        elif name == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(_pairs(arg, name))
            cfg["Labels"] = labels
        elif name == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for port in arg.split():
                ports[port if "/" in port else f"{port}/tcp"] = {}
            cfg["ExposedPorts"] = ports
        elif name == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            form = _exec_form(arg)
            for path in arg.split() if form[:2] == ["/bin/sh", "-c"] else form:
                vols[path] = {}
            cfg["Volumes"] = vols
        elif name == "ONBUILD":
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), arg.strip()]
        elif name == "STOPSIGNAL":
            cfg["StopSignal"] = arg.strip()
        elif name == "USER":
            cfg["User"] = arg.strip()
        elif name == "WORKDIR":
            cfg["WorkingDir"] = arg.strip()
    return cfg
