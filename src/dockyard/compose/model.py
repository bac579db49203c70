"""A Compose project as the Compose Specification reads it: files found and merged,
``.env`` and the environment interpolated, services checked key by key.

``load`` returns a ``Project``: its name, directory, and services/networks/volumes as
plain dicts in the specification's long syntax (ports, volumes, depends_on, networks
normalised), so what starts the containers reads one shape. An unknown key or a value of
the wrong type is refused in one line naming the file, the service and the key.
"""

from __future__ import annotations

import os
import re

from dockyard.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DEFAULT_FILES", "Project", "interpolate", "load", "project_name"]

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
_OVERRIDES = ("compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml",
              "docker-compose.override.yml")  # fmt: skip

# the service keys dockyard reads, and the type each must have (a tuple: any of them)
_SERVICE_KEYS: dict[str, tuple[type, ...]] = {
    "image": (str,), "build": (str, dict), "command": (str, list), "entrypoint": (str, list),
    "environment": (dict, list), "env_file": (str, list), "ports": (list,), "expose": (list,),
    "volumes": (list,), "networks": (list, dict), "depends_on": (list, dict),
    "healthcheck": (dict,), "restart": (str,), "deploy": (dict,), "labels": (dict, list),
    "user": (str, int), "working_dir": (str,), "hostname": (str,), "init": (bool,),
    "read_only": (bool,), "tmpfs": (str, list), "cap_add": (list,), "cap_drop": (list,),
    "security_opt": (list,), "stop_signal": (str,), "stop_grace_period": (str, int),
    "ulimits": (dict,), "extra_hosts": (list, dict), "dns": (str, list), "logging": (dict,),
    "container_name": (str,), "profiles": (list,), "scale": (int,), "stdin_open": (bool,),
    "tty": (bool,), "privileged": (bool,), "platform": (str,), "pull_policy": (str,),
    "domainname": (str,), "dns_search": (str, list), "mem_limit": (str, int), "cpus": (str, int, float),
    "pids_limit": (int,), "shm_size": (str, int), "sysctls": (dict, list), "extends": (dict, str),
    "configs": (list,), "secrets": (list,), "network_mode": (str,),
}  # fmt: skip
_TOP_KEYS = {"version", "name", "services", "networks", "volumes", "configs", "secrets", "include"}
_VAR = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class Project:
    """A loaded project: its name, directory, files, and the normalised model."""

    __slots__ = ("configs", "environment", "files", "name", "networks", "secrets", "services",
                 "volumes", "workdir")  # fmt: skip

    # a plain class, not a dataclass: the dataclasses module imports inspect (~8 ms of
    # every compose command)
    def __init__(self, name: str, workdir: str, files: list[str], services: dict[str, dict[str, Any]],
                 networks: dict[str, dict[str, Any]] | None = None, volumes: dict[str, dict[str, Any]] | None = None,
                 environment: dict[str, str] | None = None, configs: dict[str, dict[str, Any]] | None = None,
                 secrets: dict[str, dict[str, Any]] | None = None) -> None:  # fmt: skip
        self.name, self.workdir, self.files, self.services = name, workdir, files, services
        self.networks = networks if networks is not None else {}
        self.volumes = volumes if volumes is not None else {}
        self.environment = environment if environment is not None else {}
        self.configs = configs if configs is not None else {}
        self.secrets = secrets if secrets is not None else {}


def project_name(raw: str) -> str:
    """Compose's normalisation: lower case, only ``[a-z0-9_-]``, starting with a letter or digit."""
    name = re.sub(r"[^a-z0-9_-]", "", raw.lower())
    name = name.lstrip("_-")
    if not name:
        raise InvalidArgument(f"project name {raw!r} must contain a letter or a digit")
    return name


def _dotenv(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return out
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.removeprefix("export ").partition("=")
        if not eq or not key.strip():
            raise InvalidArgument(f"{path}:{n}: not KEY=VALUE: {line}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def interpolate(text: str, env: dict[str, str], where: str) -> str:
    """``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``,
    ``${VAR?error}``, ``${VAR:+alt}``; ``$$`` is a dollar sign."""

    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        if m.group(3):
            return env.get(m.group(3), "")
        body = m.group(2)
        op = re.search(r":?[-?+]", body)
        if not op:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", body):
                raise InvalidArgument(f"{where}: invalid interpolation format for ${{{body}}}")
            return env.get(body, "")
        name, sign, arg = body[: op.start()], op.group(), body[op.end() :]
        value = env.get(name)
        unset = value is None or (sign.startswith(":") and value == "")
        if sign.endswith("-"):
            return interpolate(arg, env, where) if unset else str(value)
        if sign.endswith("+"):
            return "" if unset else interpolate(arg, env, where)
        if unset:
            raise InvalidArgument(f"{where}: required variable {name} is missing a value: {arg}")
        return str(value)

    return _VAR.sub(one, text)


def _interpolate_all(node: Any, env: dict[str, str], where: str) -> Any:
    if isinstance(node, str):
        return interpolate(node, env, where)
    if isinstance(node, list):
        return [_interpolate_all(v, env, where) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_all(v, env, f"{where}.{k}") for k, v in node.items()}
    return node


def _merge(base: Any, over: Any, key: str = "") -> Any:
    """The specification's merge of a later file into an earlier one: mappings merged key
    by key, sequences of ports/expose/dns appended, other sequences and scalars replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v, k) if k in base else v
        return out
    if (
        isinstance(base, list)
        and isinstance(over, list)
        and key in ("ports", "expose", "dns", "cap_add", "cap_drop", "security_opt", "env_file")
    ):
        return base + [v for v in over if v not in base]
    return over


def _parse(data: bytes, path: str, cache: str | None) -> Any:
    """YAML to Python, through ``cache`` (a directory of documents by the SHA-256 of their
    bytes) where one is given: importing PyYAML and compiling its resolvers' patterns cost
    every compose command ~45 ms. A document that JSON cannot carry as it is (a date, a
    number as a key) is not cached."""
    from dockyard import _json as json
    from dockyard.digest import sha256_hex

    entry = os.path.join(cache, sha256_hex(data) + ".json") if cache else None
    if entry is not None:
        try:
            with open(entry, "rb") as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            pass
    import yaml

    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise InvalidArgument(f"{path}{at}: invalid YAML: {getattr(err, 'problem', err)}") from None
    if entry is not None:
        try:
            text = json.dumps(doc)
            if json.loads(text) == doc:
                os.makedirs(os.path.dirname(entry), mode=0o700, exist_ok=True)
                _trim(os.path.dirname(entry))
                tmp = f"{entry}.{os.getpid()}.tmp"
                with open(tmp, "w") as f:
                    f.write(text)
                os.rename(tmp, entry)
        except (TypeError, ValueError, OSError):
            pass  # not JSON's shape, or no room: parsed again next time
    return doc


def _trim(cache: str, keep: int = 256) -> None:
    """At most ``keep`` parsed documents: the oldest go (each edit of a file adds one)."""
    names = [n for n in os.listdir(cache) if n.endswith(".json")]
    if len(names) < keep:
        return
    names.sort(key=lambda n: os.stat(os.path.join(cache, n)).st_mtime)
    for name in names[: len(names) - keep + 1]:
        try:
            os.unlink(os.path.join(cache, name))
        except FileNotFoundError:
            pass


def _read(path: str, cache: str | None = None) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InvalidArgument(f"open {path}: no such file or directory") from None
    except OSError as err:
        raise InvalidArgument(f"open {path}: {err.strerror}") from None
    doc = _parse(data, path, cache)
    if doc is None:
        raise InvalidArgument(f"{path}: empty compose file")
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{path}: top-level object must be a mapping")
    for key in doc:
        if key not in _TOP_KEYS and not str(key).startswith("x-"):
            raise InvalidArgument(f"{path}: additional property {key} is not allowed")
    return doc


def find_files(workdir: str) -> list[str]:
    """The default file of ``workdir`` or the nearest parent (as Compose looks), and its override."""
    d = os.path.abspath(workdir)
    while True:
        for name in DEFAULT_FILES:
            if os.path.isfile(os.path.join(d, name)):
                found = [os.path.join(d, name)]
                found += [
                    os.path.join(d, o) for o in _OVERRIDES if os.path.isfile(os.path.join(d, o))
                ][:1]
                return found
        parent = os.path.dirname(d)
        if parent == d:
            raise InvalidArgument(
                f"no configuration file provided: not found (looked for {', '.join(DEFAULT_FILES)})"
            )
        d = parent


def _environment(base_dir: str, env_files: list[str] | None) -> dict[str, str]:
    """What interpolation reads: the env files (``.env`` of the project directory by
    default), then the shell's variables, which win."""
    env: dict[str, str] = {}
    for ef in env_files or [os.path.join(base_dir, ".env")]:
        if env_files and not os.path.exists(ef):
            raise InvalidArgument(f"couldn't find env file: {ef}")
        env.update(_dotenv(ef))
    env.update(os.environ)
    return env


def load(files: list[str] | None = None, project: str | None = None, workdir: str | None = None,
         env_files: list[str] | None = None, profiles: list[str] | None = None,
         cache: str | None = None) -> Project:  # fmt: skip
    """The project of ``files`` (or the default file found from ``workdir``); ``cache``: a
    directory where parsed files are kept by content (see ``_parse``)."""
    paths = [os.path.abspath(f) for f in files] if files else find_files(workdir or os.getcwd())
    base_dir = os.path.abspath(workdir) if workdir else os.path.dirname(paths[0])
    env = _environment(base_dir, env_files)
    active = set(profiles or [p for p in os.environ.get("COMPOSE_PROFILES", "").split(",") if p])
    parts = _parts(paths, base_dir, env, active, [], cache)
    first = os.path.basename(paths[0])
    name = (
        project
        or os.environ.get("COMPOSE_PROJECT_NAME")
        or parts["name"]
        or os.path.basename(base_dir)
    )
    services = parts["services"]
    if not services:
        raise InvalidArgument(f"{first}: no service defined (services: is empty)")
    for sname, svc in services.items():
        for dep in svc["depends_on"]:
            if dep not in services:
                raise InvalidArgument(f"service {sname} depends on undefined service {dep}")
    _check_cycles(services)
    networks, volumes = parts["networks"], parts["volumes"]
    for sname, svc in services.items():
        for net in svc["networks"]:
            if net != "default" and net not in networks:
                raise InvalidArgument(
                    f"service {sname} refers to undefined network {net}: invalid compose project"
                )
        for vol in svc["volumes"]:
            if vol["type"] == "volume" and vol.get("source") and vol["source"] not in volumes:
                raise InvalidArgument(
                    f"service {sname} refers to undefined volume {vol['source']}: invalid compose project"
                )
        for kind in ("configs", "secrets"):
            for ref in svc[kind]:
                if ref["source"] not in parts[kind]:
                    raise InvalidArgument(f"service {sname} refers to undefined {kind[:-1]} "
                                          f"{ref['source']}: invalid compose project")  # fmt: skip
                ref["digest"] = parts[kind][ref["source"]][
                    "digest"
                ]  # its content is part of the service
    if any("default" in s["networks"] for s in services.values()):
        networks.setdefault("default", {})
    return Project(project_name(str(name)), base_dir, paths, services, networks, volumes, env,
                   parts["configs"], parts["secrets"])  # fmt: skip


def _parts(paths: list[str], base_dir: str, env: dict[str, str], active: set[str],
           seen: list[str], cache: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The files at ``paths`` merged, their services normalised (paths made absolute from
    ``base_dir``), with what they ``include`` added: name, services, networks, volumes,
    configs, secrets."""
    merged: dict[str, Any] = {}
    for path in paths:
        merged = _merge(merged, _interpolate_all(_read(path, cache), env, os.path.basename(path)))
    first = os.path.basename(paths[0])
    services_raw = merged.get("services") or {}
    if not isinstance(services_raw, dict):
        raise InvalidArgument(f"{first}: services must be a mapping")
    services = {}
    for sname, svc in services_raw.items():
        where = f"{first}: service {sname}"
        if not isinstance(svc, dict):
            raise InvalidArgument(f"{where}: must be a mapping")
        svc = _extends(svc, services_raw, sname, where, os.path.dirname(paths[0]), env, cache)
        if svc.get("profiles") and not active & set(svc["profiles"]):
            continue
        services[sname] = _service(svc, where, base_dir)
    out: dict[str, Any] = {
        "name": merged.get("name"),
        "services": services,
        "networks": {k: dict(v or {}) for k, v in (merged.get("networks") or {}).items()},
        "volumes": {k: dict(v or {}) for k, v in (merged.get("volumes") or {}).items()},
    }
    for kind in ("configs", "secrets"):
        for k in merged.get(kind) or {}:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(k)):
                raise InvalidArgument(
                    f"{first}: {kind}.{k}: a name of letters, digits, '_', '.', '-'"
                )
        out[kind] = {k: _file_source(v, f"{first}: {kind}.{k}", base_dir, env)
                     for k, v in (merged.get(kind) or {}).items()}  # fmt: skip
    includes = merged.get("include") or []
    if not isinstance(includes, list):
        raise InvalidArgument(f"{first}: include must be a list")
    for item in includes:
        spec = {"path": item} if isinstance(item, str) else item
        if not isinstance(spec, dict) or not spec.get("path"):
            raise InvalidArgument(f"{first}: include: each entry needs a path")
        sub_paths = [os.path.normpath(os.path.join(base_dir, p)) for p in _listish(spec["path"])]
        if any(p in seen or p in paths for p in sub_paths):
            raise InvalidArgument(
                f"{first}: include cycle through {os.path.basename(sub_paths[0])}"
            )
        sub_dir = os.path.normpath(os.path.join(base_dir, spec.get("project_directory") or
                                                os.path.dirname(sub_paths[0])))  # fmt: skip
        env_files = [os.path.join(sub_dir, e) for e in _listish(spec.get("env_file"))] or None
        sub = _parts(
            sub_paths, sub_dir, _environment(sub_dir, env_files), active, [*seen, *paths], cache
        )
        for kind in ("services", "networks", "volumes", "configs", "secrets"):
            for key, value in sub[kind].items():
                if key in out[kind] and out[kind][key] != value:
                    raise InvalidArgument(f"{first}: include {spec['path']}: {kind[:-1]} {key} "
                                          "conflicts with one of the same name")  # fmt: skip
                out[kind][key] = value
    return out


def _file_source(spec: Any, where: str, base_dir: str, env: dict[str, str]) -> dict[str, Any]:
    """A top-level config or secret: ``file`` (made absolute), ``content`` or
    ``environment`` (read now); each with a digest of what it holds, so that a changed
    file recreates the services using it."""
    from dockyard.digest import sha256_hex

    if not isinstance(spec, dict):
        raise InvalidArgument(f"{where}: must be a mapping")
    if spec.get("external"):
        raise InvalidArgument(f"{where}: external configs and secrets live in a Swarm; "
                              "use file, content or environment")  # fmt: skip
    if spec.get("file") is not None:
        path = os.path.normpath(os.path.join(base_dir, os.path.expanduser(str(spec["file"]))))
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            raise InvalidArgument(f"{where}: file {path}: {err.strerror}") from None
        return {"file": path, "digest": sha256_hex(data)}
    if spec.get("content") is not None:
        text = str(spec["content"])
    elif spec.get("environment") is not None:
        if spec["environment"] not in env:
            raise InvalidArgument(f"{where}: environment variable {spec['environment']} is not set")
        text = env[spec["environment"]]
    else:
        raise InvalidArgument(f"{where}: needs file, content or environment")
    return {"content": text, "digest": sha256_hex(text.encode())}


def _extends(svc: dict[str, Any], all_services: dict[str, Any], name: str, where: str,
             file_dir: str, env: dict[str, str], cache: str | None = None) -> dict[str, Any]:  # fmt: skip
    """``svc`` with what it ``extends`` underneath: a service of this file, or of another
    (``file:``, relative to this one), whose relative paths then lead where they did there."""
    ext = svc.get("extends")
    if ext is None:
        return svc
    base_name = ext if isinstance(ext, str) else ext.get("service")
    if isinstance(ext, dict) and ext.get("file"):
        path = os.path.normpath(os.path.join(file_dir, str(ext["file"])))
        others = (
            _interpolate_all(_read(path, cache), env, os.path.basename(path)).get("services") or {}
        )
        if base_name not in others:
            raise InvalidArgument(f"{where}: extends an undefined service {base_name} of {path}")
        base = _extends(
            dict(others[base_name]), others, base_name, where, os.path.dirname(path), env, cache
        )
        base = _absolute_paths(base, os.path.dirname(path))
    else:
        if base_name not in all_services or base_name == name:
            raise InvalidArgument(f"{where}: extends an undefined service {base_name}")
        base = _extends(
            dict(all_services[base_name]), all_services, base_name, where, file_dir, env, cache
        )
    out = _merge({k: v for k, v in base.items() if k not in ("depends_on", "container_name")}, svc)
    out.pop("extends", None)
    return out


def _absolute_paths(svc: dict[str, Any], d: str) -> dict[str, Any]:
    """A service's relative paths (build context, env files, bind sources) made absolute
    from directory ``d``, for a service taken from a file in another directory."""

    def local(p: str) -> bool:
        return p.startswith((".", "/", "~"))

    out = dict(svc)
    build = svc.get("build")
    if isinstance(build, str):
        out["build"] = os.path.join(d, build)
    elif isinstance(build, dict):
        out["build"] = {**build, "context": os.path.join(d, str(build.get("context") or "."))}
    if svc.get("env_file") is not None:
        out["env_file"] = [os.path.join(d, e) for e in _listish(svc["env_file"])]
    vols = []
    for v in svc.get("volumes") or []:
        if isinstance(v, str) and local(v.split(":")[0]) and ":" in v:
            v = os.path.join(d, os.path.expanduser(v.split(":")[0])) + v[len(v.split(":")[0]) :]
        elif isinstance(v, dict) and v.get("type") == "bind" and v.get("source"):
            v = {**v, "source": os.path.join(d, os.path.expanduser(str(v["source"])))}
        vols.append(v)
    if vols:
        out["volumes"] = vols
    return out


def _check_cycles(services: dict[str, dict[str, Any]]) -> None:
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name]
            raise InvalidArgument(f"dependency cycle detected: {' -> '.join(cycle)}")
        if state.get(name) == 2:
            return
        state[name] = 1
        for dep in services[name]["depends_on"]:
            visit(dep, [*path, name])
        state[name] = 2

    for name in services:
        visit(name, [])


def _listish(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _mapping(value: Any, where: str) -> dict[str, str]:
    """``environment``/``labels``/``sysctls``/``extra_hosts``: a mapping, or ``K=V`` items."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in value.items()}  # fmt: skip
    out = {}
    for item in value:
        key, _, val = str(item).partition("=")
        out[key] = val
    return out


def _service(svc: dict[str, Any], where: str, base_dir: str) -> dict[str, Any]:
    for key, value in svc.items():
        if key.startswith("x-"):
            continue
        if key not in _SERVICE_KEYS:
            raise InvalidArgument(f"{where}: additional property {key} is not allowed")
        if not isinstance(value, _SERVICE_KEYS[key]) or (
            isinstance(value, bool) and bool not in _SERVICE_KEYS[key]
        ):
            want = " or ".join(t.__name__ for t in _SERVICE_KEYS[key])
            raise InvalidArgument(f"{where}: {key} must be a {want}")
    if "image" not in svc and "build" not in svc:
        raise InvalidArgument(f"{where}: has neither an image nor a build context specified")
    out = dict(svc)
    build = svc.get("build")
    if build is not None:
        build = {"context": build} if isinstance(build, str) else dict(build)
        build["context"] = os.path.normpath(
            os.path.join(base_dir, str(build.get("context") or "."))
        )
        out["build"] = build
    out["environment"] = _mapping(svc.get("environment"), where)
    for env_file in _listish(svc.get("env_file")):
        path = os.path.join(base_dir, env_file)
        if not os.path.exists(path):
            raise InvalidArgument(f"{where}: env file {path} not found")
        out["environment"] = {**_dotenv(path), **out["environment"]}
    out["labels"] = _mapping(svc.get("labels"), where)
    out["ports"] = [_port(p, where) for p in svc.get("ports") or []]
    out["volumes"] = [_volume(v, where, base_dir) for v in svc.get("volumes") or []]
    nets = svc.get("networks")
    if nets is None:
        nets = {} if svc.get("network_mode") else {"default": {}}
    out["networks"] = (
        {n: {} for n in nets}
        if isinstance(nets, list)
        else {k: dict(v or {}) for k, v in nets.items()}
    )
    deps = svc.get("depends_on") or {}
    out["depends_on"] = ({d: {"condition": "service_started", "required": True} for d in deps}
                         if isinstance(deps, list) else
                         {k: {"condition": "service_started", "required": True, **(v or {})} for k, v in deps.items()})  # fmt: skip
    for dep, spec in out["depends_on"].items():
        if spec["condition"] not in (
            "service_started",
            "service_healthy",
            "service_completed_successfully",
        ):
            raise InvalidArgument(
                f"{where}: depends_on.{dep}.condition: unknown condition {spec['condition']}"
            )
    for key in ("command", "entrypoint"):
        if isinstance(svc.get(key), str):
            import shlex

            out[key] = shlex.split(svc[key])
    for kind in ("configs", "secrets"):
        refs = []
        for ref in svc.get(kind) or []:
            ref = {"source": ref} if isinstance(ref, str) else dict(ref)
            if not ref.get("source"):
                raise InvalidArgument(f"{where}: {kind}: each entry needs a source")
            target = str(ref.get("target") or ref["source"])
            if kind == "secrets" and not target.startswith("/"):
                target = f"/run/secrets/{target}"
            refs.append({"source": str(ref["source"]), "target": "/" + target.lstrip("/")})
        out[kind] = refs
    ulimits = []
    for uname, value in (svc.get("ulimits") or {}).items():
        if isinstance(value, dict):
            soft, hard = value.get("soft"), value.get("hard")
        else:
            soft = hard = value
        if not isinstance(soft, int) or not isinstance(hard, int) or soft > hard:
            raise InvalidArgument(
                f"{where}: ulimits.{uname}: soft and hard must be numbers, soft <= hard"
            )
        ulimits.append({"Name": str(uname), "Soft": soft, "Hard": hard})
    out["ulimits"] = ulimits
    replicas = (svc.get("deploy") or {}).get("replicas")
    out["replicas"] = int(replicas if replicas is not None else svc.get("scale", 1))
    return out


def _port(spec: Any, where: str) -> dict[str, Any]:
    if isinstance(spec, int):
        return {"target": spec, "published": "", "host_ip": "", "protocol": "tcp"}
    if isinstance(spec, dict):
        return {"target": int(spec["target"]), "published": str(spec.get("published") or ""),
                "host_ip": spec.get("host_ip") or "", "protocol": spec.get("protocol") or "tcp"}  # fmt: skip
    text = str(spec)
    rest, _, proto = text.partition("/")
    parts = rest.rsplit(":", 2)
    try:
        if len(parts) == 1:
            return {
                "target": int(parts[0]),
                "published": "",
                "host_ip": "",
                "protocol": proto or "tcp",
            }
        if len(parts) == 2:
            return {
                "target": int(parts[1]),
                "published": parts[0],
                "host_ip": "",
                "protocol": proto or "tcp",
            }
        return {"target": int(parts[2]), "published": parts[1], "host_ip": parts[0].strip("[]"),
                "protocol": proto or "tcp"}  # fmt: skip
    except ValueError:
        raise InvalidArgument(f"{where}: ports: invalid port {text!r}") from None


def _volume(spec: Any, where: str, base_dir: str) -> dict[str, Any]:
    if isinstance(spec, dict):
        v = dict(spec)
        if "target" not in v:
            raise InvalidArgument(f"{where}: volumes: target is required")
        v.setdefault("type", "volume")
    else:
        parts = str(spec).split(":")
        mode = parts[2] if len(parts) > 2 else ""
        if len(parts) == 1:
            v = {"type": "volume", "source": "", "target": parts[0]}
        else:
            source = parts[0]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            v = {
                "type": kind,
                "source": source,
                "target": parts[1],
                "read_only": "ro" in mode.split(","),
            }
    if v["type"] == "bind":
        v["source"] = os.path.normpath(
            os.path.join(base_dir, os.path.expanduser(str(v.get("source") or "")))
        )
    return v
