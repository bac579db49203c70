"""Registry credentials and authentication, as the docker CLI keeps and uses them.

Credentials live in a ``~/.docker/config.json``-compatible file (``DOCKER_CONFIG``
or ``--config`` choose the directory): ``auths`` (base64 ``user:password``),
``credsStore`` and ``credHelpers`` (``docker-credential-<name> get``), so an
existing Docker login works. Docker Hub's names are folded as Docker does
(``docker.io``, ``index.docker.io`` -> ``https://index.docker.io/v1/``).

Challenges: ``Basic`` sends the credentials; ``Bearer realm=,service=,scope=``
fetches a token from the realm (with the credentials if any) and retries.
"""

from __future__ import annotations

import base64
import os

from dockyard import _json as json
from dockyard.errors import DockyardError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Credentials", "config_dir", "load", "parse_challenge", "remove", "store"]

_HUB = "https://index.docker.io/v1/"


class AuthError(DockyardError):
    pass


def config_dir() -> str:
    return os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")


def _config_path() -> str:
    return os.path.join(config_dir(), "config.json")


def _read() -> dict[str, Any]:
    try:
        with open(_config_path()) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise AuthError(f"{_config_path()}: not valid JSON ({err})") from None


def _write(cfg: dict[str, Any]) -> None:
    os.makedirs(config_dir(), mode=0o700, exist_ok=True)
    tmp = _config_path() + ".tmp"
    import json as stdjson  # the tab indent the docker CLI writes

    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        stdjson.dump(cfg, f, indent="\t")
    os.rename(tmp, _config_path())


def server_key(registry: str) -> str:
    """The key Docker files a registry's credentials under."""
    return (
        _HUB
        if registry in ("docker.io", "index.docker.io", "registry-1.docker.io", _HUB)
        else registry
    )


class Credentials:
    def __init__(self, username: str = "", password: str = "", token: str = "") -> None:
        self.username, self.password, self.identity_token = username, password, token

    def __bool__(self) -> bool:
        return bool(self.username or self.identity_token)


def _helper(name: str, action: str, payload: str) -> str:
    import subprocess

    try:
        proc = subprocess.run([f"docker-credential-{name}", action], input=payload, capture_output=True,
                              text=True, timeout=30)  # fmt: skip
    except FileNotFoundError:
        raise AuthError(f"credential helper docker-credential-{name} not found") from None
    if proc.returncode != 0:
        if "credentials not found" in (proc.stdout + proc.stderr).lower():
            return ""
        raise AuthError(
            f"docker-credential-{name} {action}: {(proc.stderr or proc.stdout).strip()}"
        )
    return proc.stdout


def load(registry: str) -> Credentials:
    cfg = _read()
    key = server_key(registry)
    helper = (cfg.get("credHelpers") or {}).get(registry) or (cfg.get("credHelpers") or {}).get(key) \
        or cfg.get("credsStore")  # fmt: skip
    if helper:
        out = _helper(helper, "get", key)
        if out:
            data = json.loads(out)
            user, secret = data.get("Username", ""), data.get("Secret", "")
            return Credentials(token=secret) if user == "<token>" else Credentials(user, secret)
    entry = (
        (cfg.get("auths") or {}).get(key) or (cfg.get("auths") or {}).get(f"https://{key}") or {}
    )
    if entry.get("auth"):
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        return Credentials(user, password)
    if entry.get("identitytoken"):
        return Credentials(token=entry["identitytoken"])
    return Credentials()


def store(registry: str, creds: Credentials) -> str:
    """Save credentials where Docker would; returns where (the file, or the helper)."""
    cfg = _read()
    key = server_key(registry)
    helper = (cfg.get("credHelpers") or {}).get(registry) or cfg.get("credsStore")
    if helper:
        _helper(
            helper,
            "store",
            json.dumps({"ServerURL": key, "Username": creds.username, "Secret": creds.password}),
        )
        cfg.setdefault("auths", {})[key] = {}
        _write(cfg)
        return f"the {helper} credential helper"
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    cfg.setdefault("auths", {})[key] = {"auth": token}
    _write(cfg)
    return _config_path()


def remove(registry: str) -> bool:
    cfg = _read()
    key = server_key(registry)
    helper = (cfg.get("credHelpers") or {}).get(registry) or cfg.get("credsStore")
    if helper:
        _helper(helper, "erase", key)
    found = key in (cfg.get("auths") or {})
    if found:
        del cfg["auths"][key]
        _write(cfg)
    return found or bool(helper)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://auth",service="reg",scope="repo:x:pull"`` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().strip(",").strip()
        if rest[eq + 1 : eq + 2] == '"':
            end = rest.find('"', eq + 2)
            end = len(rest) if end < 0 else end
            params[key.lower()] = rest[eq + 2 : end]
            i = end + 1
        else:
            end = rest.find(",", eq + 1)
            end = len(rest) if end < 0 else end
            params[key.lower()] = rest[eq + 1 : end].strip()
            i = end + 1
    return scheme.lower(), params
