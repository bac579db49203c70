"""The instructions that change an image's config only (ENV, LABEL, EXPOSE, CMD, ENTRYPOINT,
USER, WORKDIR, VOLUME, STOPSIGNAL, SHELL, ONBUILD, HEALTHCHECK, MAINTAINER): the new config and
the canonical text the cache key and the history take."""

from __future__ import annotations

import os

from dockyard import _json as json
from dockyard.builder import dockerfile as df
from dockyard.builder.expand import process_word, process_words
from dockyard.errors import InvalidArgument
from dockyard.units import duration_ns

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.builder.options import StageState

__all__ = ["configure", "healthcheck"]


def configure(
    state: StageState, cmd: Any, env: dict[str, str], esc: str
) -> tuple[str, dict[str, Any]]:
    """(canonical text, new config) for a config-only instruction."""
    kind = cmd.cmd
    cfg = dict(state.config)
    words = list(cmd.value)

    def pairs() -> list[tuple[str, str]]:
        # the parser gives name, value, name, value... for both ENV A=1 and ENV A 1
        if len(words) % 2:
            raise InvalidArgument(f"{kind} names can not be blank")
        return [(process_word(words[i], env, esc), process_word(words[i + 1], env, esc))
                for i in range(0, len(words), 2)]  # fmt: skip

    if kind == "ENV":
        current = dict(item.partition("=")[::2] for item in cfg.get("Env") or [])
        for name, value in pairs():
            current[name] = value
            env[name] = value
        cfg["Env"] = [f"{k}={v}" for k, v in current.items()]
        text = "ENV " + " ".join(f"{k}={v}" for k, v in pairs())
    elif kind == "LABEL":
        labels = dict(cfg.get("Labels") or {})
        for name, value in pairs():
            labels[name] = value
        cfg["Labels"] = labels
        text = "LABEL " + " ".join(f"{k}={v}" for k, v in pairs())
    elif kind == "MAINTAINER":
        text = "MAINTAINER " + " ".join(words)
    elif kind == "EXPOSE":
        ports = dict(cfg.get("ExposedPorts") or {})
        for word in words:
            port = process_word(word, env, esc)
            ports[port if "/" in port else f"{port}/tcp"] = {}
        cfg["ExposedPorts"] = ports
        text = "EXPOSE " + " ".join(sorted(ports))
    elif kind in ("CMD", "ENTRYPOINT"):
        value = (
            list(words) if cmd.json else [*(cfg.get("Shell") or ["/bin/sh", "-c"]), " ".join(words)]
        )
        cfg["Cmd" if kind == "CMD" else "Entrypoint"] = value
        if kind == "ENTRYPOINT" and not state.cmd_set:
            cfg["Cmd"] = None  # ENTRYPOINT resets an inherited CMD, as Docker does
        text = f"{kind} {json.dumps(value)}"
    elif kind == "USER":
        cfg["User"] = process_word(words[0], env, esc)
        text = f"USER {cfg['User']}"
    elif kind == "WORKDIR":
        path = process_word(words[0], env, esc)
        cfg["WorkingDir"] = os.path.normpath(os.path.join(cfg.get("WorkingDir") or "/", path))
        text = f"WORKDIR {cfg['WorkingDir']}"
    elif kind == "VOLUME":
        vols = dict(cfg.get("Volumes") or {})
        for word in words:
            for v in process_words(word, env, esc) if not cmd.json else [word]:
                vols[v] = {}
        cfg["Volumes"] = vols
        text = "VOLUME " + json.dumps(sorted(vols))
    elif kind == "STOPSIGNAL":
        cfg["StopSignal"] = process_word(words[0], env, esc)
        text = f"STOPSIGNAL {cfg['StopSignal']}"
    elif kind == "SHELL":
        if not cmd.json:
            raise InvalidArgument("SHELL requires the arguments to be in JSON form")
        cfg["Shell"] = list(words)
        text = f"SHELL {json.dumps(words)}"
    elif kind == "ONBUILD":
        trigger = cmd.original.split(None, 1)[1]
        if trigger.split(None, 1)[0].upper() in ("ONBUILD", "FROM", "MAINTAINER"):
            raise InvalidArgument(
                f"{trigger.split(None, 1)[0].upper()} isn't allowed as an ONBUILD trigger"
            )
        cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), trigger]
        text = f"ONBUILD {trigger}"
    elif kind == "HEALTHCHECK":
        cfg["Healthcheck"] = healthcheck(cmd)
        text = f"HEALTHCHECK {json.dumps(cfg['Healthcheck'], sort_keys=True)}"
    else:
        raise InvalidArgument(f"unknown instruction: {kind}")
    return text, cfg


def healthcheck(cmd: Any) -> dict[str, Any]:
    words = list(cmd.value)
    if words and words[0].upper() == "NONE":
        return {"Test": ["NONE"]}
    if not words or words[0].upper() != "CMD":
        raise InvalidArgument("HEALTHCHECK must be NONE or CMD ...")
    rest = words[1:]
    test = ["CMD", *rest] if cmd.json else ["CMD-SHELL", " ".join(rest)]
    hc: dict[str, Any] = {"Test": test}
    for name, key in (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
    ):
        value = df.flag(cmd, name)
        if value:
            hc[key] = duration_ns(value)
    retries = df.flag(cmd, "retries")
    if retries:
        hc["Retries"] = int(retries)
    return hc
