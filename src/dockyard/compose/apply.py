"""A Compose project made real through the engine: networks, volumes, images, then the
containers in ``depends_on`` order, each waiting for what it depends on (started,
healthy, or completed successfully); and taken down again.

Names and labels are Compose v2's (``project-service-1``, ``project_default``,
``com.docker.compose.project`` and its siblings), so ``docker compose`` pointed at
dockyard's Engine API sees the same project. A service whose resolved configuration
(its hash, in ``com.docker.compose.config-hash``) is unchanged keeps its containers.
"""

from __future__ import annotations

import os
import time

from dockyard import _json as json
from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.units import duration_ns, ram_in_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from dockyard.compose.model import Project
    from dockyard.engine.containers import Engine

__all__ = ["build_images", "down", "one_off", "order", "project_containers", "pull_images", "push_images",
           "remove_images", "up"]  # fmt: skip

P = "com.docker.compose."
VERSION = "dockyard"  # com.docker.compose.version: which tool made the object


def order(project: Project, only: list[str] | None = None) -> list[str]:
    """Services in start order (dependencies first); with ``only``, those and what they need."""
    out: list[str] = []

    def visit(name: str) -> None:
        if name in out:
            return
        for dep in project.services[name]["depends_on"]:
            visit(dep)
        out.append(name)

    for name in only or list(project.services):
        if name not in project.services:
            raise InvalidArgument(f"no such service: {name}")
        visit(name)
    return out


def _network_name(project: Project, key: str) -> str:
    spec = project.networks.get(key) or {}
    return spec.get("name") or (key if spec.get("external") else f"{project.name}_{key}")


def _volume_name(project: Project, key: str) -> str:
    spec = project.volumes.get(key) or {}
    return spec.get("name") or (key if spec.get("external") else f"{project.name}_{key}")


def config_hash(service: dict[str, Any]) -> str:
    from dockyard.digest import sha256_hex

    return sha256_hex(json.dumps(service, sort_keys=True).encode())


def project_containers(engine: Engine, project: str, service: str | None = None,
                       oneoff: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """The project's container records (of one service), oldest number first; one-off
    (``compose run``) containers only with ``oneoff``."""
    recs = [r for r in engine.list(all_=True)
            if (r["config"].get("Labels") or {}).get(P + "project") == project
            and (service is None or r["config"]["Labels"].get(P + "service") == service)
            and (oneoff or r["config"]["Labels"].get(P + "oneoff") != "True")]  # fmt: skip
    return sorted(recs, key=lambda r: (r["config"]["Labels"].get(P + "service", ""),
                                       int(r["config"]["Labels"].get(P + "container-number", "0") or 0)))  # fmt: skip


def _ensure_networks(engine: Engine, project: Project, say: Callable[[str], None]) -> None:
    used = {n for s in project.services.values() for n in s["networks"]}
    for key in sorted(used):
        spec = project.networks.get(key) or {}
        name = _network_name(project, key)
        try:
            engine.networks.get(name)
            continue
        except NotFound:
            if spec.get("external"):
                raise InvalidArgument(
                    f"network {name} declared as external, but could not be found"
                ) from None
        ipam = (spec.get("ipam") or {}).get("config") or [{}]
        labels = {**{str(k): str(v) for k, v in (spec.get("labels") or {}).items()},
                  P + "network": key, P + "project": project.name, P + "version": VERSION,
                  P + "config-hash": config_hash(spec)}  # fmt: skip
        engine.networks.create(name, ipam[0].get("subnet"), ipam[0].get("gateway"), bool(spec.get("internal")),
                               labels, spec.get("driver") or "bridge")  # fmt: skip
        say(f" Network {name}  Created")


def _ensure_volumes(engine: Engine, project: Project, say: Callable[[str], None]) -> None:
    used = {v["source"] for s in project.services.values() for v in s["volumes"]
            if v["type"] == "volume" and v.get("source")}  # fmt: skip
    for key in sorted(used):
        spec = project.volumes.get(key) or {}
        name = _volume_name(project, key)
        try:
            engine.volumes.get(name)
            continue
        except NotFound:
            if spec.get("external"):
                raise InvalidArgument(f"external volume {name} not found") from None
        labels = {**{str(k): str(v) for k, v in (spec.get("labels") or {}).items()},
                  P + "volume": key, P + "project": project.name, P + "version": VERSION,
                  P + "config-hash": config_hash(spec)}  # fmt: skip
        engine.volumes.create(name, labels)
        say(f" Volume {name}  Created")


def _image(engine: Engine, project: Project, name: str, svc: dict[str, Any], build: bool,
           say: Callable[[str], None]) -> str:  # fmt: skip
    """The service's image reference, built (when it has a build section and ``build`` or no
    image yet) or pulled when missing."""
    ref = svc.get("image") or f"{project.name}-{name}"
    spec = svc.get("build")
    if spec is not None:
        try:
            engine.images.resolve(ref)
            have = True
        except NotFound:
            have = False
        if build or not have:
            _build(engine, ref, spec, say)
        return ref
    try:
        engine.images.resolve(ref)
    except NotFound:
        from dockyard.registry.transfer import pull

        say(f" {name} Pulling")
        pull(engine.images, ref, svc.get("platform"), implicit=True)
    return ref


def _build(engine: Engine, ref: str, spec: dict[str, Any], say: Callable[[str], None]) -> None:
    from dockyard.builder.context import BuildContext, read_dockerfile
    from dockyard.builder.stages import Builder, BuildOptions

    context = spec["context"]
    dockerfile = spec.get("dockerfile") or "Dockerfile"
    path = dockerfile if os.path.isabs(dockerfile) else os.path.join(context, dockerfile)
    text = read_dockerfile(path, path)
    args = spec.get("args") or {}
    args = {str(k): str(v) for k, v in (args.items() if isinstance(args, dict) else
                                          (a.partition("=")[::2] for a in args))}  # fmt: skip
    options = BuildOptions(tags=[ref], build_args=args, target=spec.get("target"), quiet=True,
                           dockerfile_name=os.path.basename(dockerfile))  # fmt: skip
    say(f" Image {ref}  Building")
    Builder(engine, BuildContext(context, engine.db), options).build(text)
    say(f" Image {ref}  Built")


def _healthcheck(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("disable"):
        return {"Test": ["NONE"]}
    test = spec.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    out: dict[str, Any] = {"Test": list(test or [])}
    for key, name in (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start_period", "StartPeriod"),
    ):
        if spec.get(key):
            out[name] = duration_ns(str(spec[key]))
    if spec.get("retries") is not None:
        out["Retries"] = int(spec["retries"])
    return out


def _files_dir(engine: Engine, project: Project) -> str:
    """Where configs and secrets given as content or environment are written, to be
    bind-mounted; ``down`` removes it."""
    return os.path.join(engine.root, "compose", project.name)


def _file_mounts(project: Project, svc: dict[str, Any], files_dir: str) -> list[dict[str, Any]]:
    """The service's configs and secrets as read-only bind mounts (Compose without Swarm
    does the same): a file source as it is, content written under ``files_dir`` first."""
    mounts = []
    for kind in ("configs", "secrets"):
        for ref in svc.get(kind) or []:
            source = getattr(project, kind)[ref["source"]]
            path = source.get("file")
            if path is None:
                d = os.path.join(files_dir, kind)
                os.makedirs(d, mode=0o700, exist_ok=True)
                path = os.path.join(d, ref["source"])
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444), "w") as f:
                    f.write(source["content"])
                os.rename(tmp, path)
            mounts.append(
                {"Type": "bind", "Source": path, "Target": ref["target"], "ReadOnly": True}
            )
    return mounts


def _documents(project: Project, name: str, svc: dict[str, Any], image: str, number: int,
               digest: str, files_dir: str, image_id: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:  # fmt: skip
    """(Config, HostConfig, NetworkingConfig, container name) for replica ``number``."""
    cname = svc.get("container_name") or f"{project.name}-{name}-{number}"
    # Compose's "dependency:condition:restart", sorted (Compose joins them in map order)
    deps = ",".join(f"{dep}:{spec['condition']}:{str(bool(spec.get('restart'))).lower()}"
                    for dep, spec in sorted(svc["depends_on"].items()))  # fmt: skip
    labels = {**svc["labels"], P + "project": project.name, P + "service": name,
              P + "container-number": str(number), P + "oneoff": "False", P + "config-hash": digest,
              P + "project.working_dir": project.workdir, P + "depends_on": deps, P + "image": image_id,
              P + "project.config_files": ",".join(project.files), P + "version": VERSION}  # fmt: skip
    config: dict[str, Any] = {
        "Image": image, "Labels": labels, "Hostname": svc.get("hostname") or "",
        "Env": [f"{k}={v}" for k, v in svc["environment"].items()], "User": str(svc.get("user") or ""),
        "WorkingDir": svc.get("working_dir") or "", "Tty": bool(svc.get("tty")),
        "OpenStdin": bool(svc.get("stdin_open")), "StopSignal": svc.get("stop_signal") or "",
        "Domainname": svc.get("domainname") or "",
    }  # fmt: skip
    if svc.get("command") is not None:
        config["Cmd"] = svc["command"]
    if svc.get("entrypoint") is not None:
        config["Entrypoint"] = svc["entrypoint"]
    if svc.get("healthcheck"):
        config["Healthcheck"] = _healthcheck(svc["healthcheck"])
    exposed = {f"{p}/tcp" if "/" not in str(p) else str(p): {} for p in svc.get("expose") or []}
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in svc["ports"]:
        key = f"{port['target']}/{port['protocol']}"
        exposed[key] = {}
        bindings.setdefault(key, []).append(
            {"HostIp": port["host_ip"], "HostPort": port["published"]}
        )
    if exposed:
        config["ExposedPorts"] = exposed
    mounts = []
    for v in svc["volumes"]:
        if v["type"] == "tmpfs":
            mounts.append({"Type": "tmpfs", "Target": v["target"], "Source": ""})
            continue
        source = v.get("source") or ""
        if v["type"] == "volume" and source:
            source = _volume_name(project, source)
        mounts.append({"Type": v["type"], "Source": source, "Target": v["target"],
                       "ReadOnly": bool(v.get("read_only"))})  # fmt: skip
    mounts += _file_mounts(project, svc, files_dir)
    tmpfs = {
        t: ""
        for t in ([svc["tmpfs"]] if isinstance(svc.get("tmpfs"), str) else svc.get("tmpfs") or [])
    }
    restart = svc.get("restart") or "no"
    policy_name, _, retries = restart.partition(":")
    limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    memory = limits.get("memory") or svc.get("mem_limit")
    cpus = limits.get("cpus") or svc.get("cpus")
    networks = list(svc["networks"])
    host: dict[str, Any] = {
        "RestartPolicy": {"Name": policy_name, "MaximumRetryCount": int(retries or 0)},
        "PortBindings": bindings, "Mounts": mounts, "Tmpfs": tmpfs, "Binds": [],
        "NetworkMode": svc.get("network_mode") or (_network_name(project, networks[0]) if networks else "none"),
        "CapAdd": list(svc.get("cap_add") or []), "CapDrop": list(svc.get("cap_drop") or []),
        "SecurityOpt": list(svc.get("security_opt") or []), "Init": bool(svc.get("init")),
        "ReadonlyRootfs": bool(svc.get("read_only")), "Privileged": bool(svc.get("privileged")),
        "ExtraHosts": [f"{k}:{v}" for k, v in (svc.get("extra_hosts") or {}).items()]
        if isinstance(svc.get("extra_hosts"), dict) else list(svc.get("extra_hosts") or []),
        "Dns": [svc["dns"]] if isinstance(svc.get("dns"), str) else list(svc.get("dns") or []),
        "LogConfig": {"Type": (svc.get("logging") or {}).get("driver") or "json-file",
                      "Config": (svc.get("logging") or {}).get("options") or {}},
        "Memory": ram_in_bytes(str(memory)) if memory else 0, "NanoCpus": int(float(cpus) * 1e9) if cpus else 0,
        "PidsLimit": svc.get("pids_limit"), "Ulimits": list(svc.get("ulimits") or []),
    }  # fmt: skip
    endpoints = {}
    for key in networks:
        spec = svc["networks"][key] or {}
        endpoint: dict[str, Any] = {"Aliases": [name, cname, *(spec.get("aliases") or [])]}
        if spec.get("ipv4_address"):
            endpoint["IPAMConfig"] = {"IPv4Address": spec["ipv4_address"]}
        endpoints[_network_name(project, key)] = endpoint
    return config, host, {"EndpointsConfig": endpoints}, cname


def _wait_for(
    engine: Engine, project: Project, name: str, dep: str, condition: str, timeout: float
) -> None:
    """Until service ``dep`` meets ``condition`` for ``name`` (or one line why not)."""
    deadline = time.monotonic() + timeout
    while True:
        recs = project_containers(engine, project.name, dep)
        if not recs:
            raise InvalidArgument(f"service {name} depends on {dep}, which has no container")
        if condition == "service_started" and all(
            r["status"] in ("running", "exited") for r in recs
        ):
            return
        if condition == "service_healthy":
            states = [json.loads(r["health"])["Status"] if r.get("health") else "" for r in recs]
            if all(s == "healthy" for s in states):
                return
            if not any(r["config"].get("Healthcheck") for r in recs):
                raise InvalidArgument(
                    f"dependency failed to start: container {recs[0]['name']} has no healthcheck configured"
                )
            if any(r["status"] == "exited" for r in recs):
                raise InvalidArgument(
                    f"dependency failed to start: container {recs[0]['name']} exited ({recs[0]['exit_code']})"
                )
            if any(s == "unhealthy" for s in states):
                raise InvalidArgument(
                    f"dependency failed to start: container {recs[0]['name']} is unhealthy"
                )
        if condition == "service_completed_successfully" and all(
            r["status"] == "exited" for r in recs
        ):
            bad = [r for r in recs if r["exit_code"] != 0]
            if bad:
                raise InvalidArgument(
                    f"service {dep} didn't complete successfully: exit {bad[0]['exit_code']}"
                )
            return
        if time.monotonic() > deadline:
            raise InvalidArgument(f"service {name}: timed out waiting for {dep} ({condition})")
        time.sleep(0.1)


def plan(engine: Engine, project: Project, names: list[str], images: dict[str, str],
         force_recreate: bool = False) -> list[tuple[str, str, list[str]]]:  # fmt: skip
    """(service, keep|create|recreate|scale, reasons) for what ``up`` would do, the reasons
    from the project's last revision."""
    from dockyard.compose import revisions

    why = revisions.differences(revisions.latest(engine, project.name), project, images,
                                {n: s.get("image") or "" for n, s in project.services.items()})  # fmt: skip
    out = []
    for name in names:
        svc = project.services[name]
        digest = config_hash({**svc, "_image": images.get(name, "")})
        recs = project_containers(engine, project.name, name)
        if not recs:
            out.append((name, "create", why.get(name) or []))
        elif force_recreate:
            out.append((name, "recreate", ["--force-recreate"]))
        elif any(r["config"]["Labels"].get(P + "config-hash") != digest for r in recs):
            out.append((name, "recreate", why.get(name) or ["configuration changed"]))
        elif len(recs) != svc["replicas"]:
            out.append((name, "scale", [f"{len(recs)} -> {svc['replicas']} containers"]))
        else:
            out.append((name, "keep", []))
    return out


def describe(steps: list[tuple[str, str, list[str]]]) -> list[str]:
    """``up --dry-run``'s lines: ``web: recreate — image app:2 replaces app:1``."""
    return [f"{name}: {action}" + (f" — {'; '.join(reasons)}" if reasons else " — unchanged" if action == "keep" else "")
            for name, action, reasons in steps]  # fmt: skip


def up(engine: Engine, project: Project, services: list[str] | None = None, build: bool = False,
       force_recreate: bool = False, no_deps: bool = False, wait_timeout: float = 120,
       say: Callable[[str], None] = lambda _line: None, dry_run: bool = False,
       pinned: dict[str, str] | None = None, rollout: bool = False, remove_orphans: bool = False) -> list[str]:  # fmt: skip
    """Bring the project (or ``services``) up, detached; the container IDs it runs (with
    ``dry_run``: the plan's lines, and nothing changed). ``pinned``: image IDs per service
    to use as they are (a rollback's)."""
    from dockyard.compose import revisions

    names = [s for s in services or []] if no_deps and services else order(project, services)
    if dry_run:
        found = {}
        for name in names:
            try:
                ref = (
                    (pinned or {}).get(name)
                    or project.services[name].get("image")
                    or f"{project.name}-{name}"
                )
                found[name] = engine.images.resolve(ref)
            except NotFound:
                found[name] = "(to be built or pulled)"
        return describe(plan(engine, project, names, found, force_recreate))
    _ensure_networks(engine, project, say)
    _ensure_volumes(engine, project, say)
    if pinned:
        images = {name: pinned[name] for name in names}
    else:
        images = {
            name: _image(engine, project, name, project.services[name], build, say)
            for name in names
        }
    ids = {name: engine.images.resolve(ref) for name, ref in images.items()}
    steps = plan(engine, project, names, ids, force_recreate)
    orphans = [r for r in project_containers(engine, project.name)
               if r["config"]["Labels"].get(P + "service") not in project.services]  # fmt: skip
    for rec in orphans:
        if remove_orphans:
            engine.remove(rec["id"], force=True)
            say(f" Container {rec['name']}  Removed (orphan)")
        else:
            say(
                f" Found orphan container {rec['name']} for this project; remove it with --remove-orphans"
            )
    running: list[str] = []
    for name in names:
        svc = project.services[name]
        for dep, spec in svc["depends_on"].items():
            if dep in names or not no_deps:
                _wait_for(engine, project, name, dep, spec["condition"], wait_timeout)
        image_id = engine.images.resolve(images[name])
        digest = config_hash({**svc, "_image": image_id})
        existing = {int(r["config"]["Labels"].get(P + "container-number", 0)): r
                    for r in project_containers(engine, project.name, name)}  # fmt: skip
        rollout_spec = _rollout_of(svc, rollout)
        stale = [
            r for r in existing.values() if r["config"]["Labels"].get(P + "config-hash") != digest
        ]
        if rollout_spec is not None and stale and not force_recreate:
            running += _roll_out(
                engine, project, name, svc, images[name], digest, existing, rollout_spec, say
            )
            continue
        # the replicas there are, by number (a rollout leaves 3 and 4, say), then new numbers
        current = [existing[n] for n in sorted(existing)]
        next_number = max(existing, default=0)
        for index in range(svc["replicas"]):
            rec = current[index] if index < len(current) else None
            if rec is not None:
                number = int(rec["config"]["Labels"].get(P + "container-number", 0))
                existing.pop(number, None)
            else:
                next_number += 1
                number = next_number
            if (
                rec is not None
                and rec["config"]["Labels"].get(P + "config-hash") == digest
                and not force_recreate
            ):
                if rec["status"] not in ("running", "paused"):
                    engine.start(rec["id"])
                    say(f" Container {rec['name']}  Started")
                running.append(rec["id"])
                continue
            if rec is not None:
                engine.stop(rec["id"], _grace(svc))
                engine.remove(rec["id"], force=True)
                say(f" Container {rec['name']}  Recreated")
            config, host, networking, cname = _documents(
                project,
                name,
                svc,
                images[name],
                number,
                digest,
                _files_dir(engine, project),
                image_id,
            )
            cid = engine.create(images[name], config, host, cname, networking)
            say(f" Container {cname}  Created")
            engine.start(cid)
            say(f" Container {cname}  Started")
            running.append(cid)
        for rec in existing.values():  # scaled down
            engine.stop(rec["id"], _grace(svc))
            engine.remove(rec["id"], force=True)
            say(f" Container {rec['name']}  Removed")
    changed = [s for s in steps if s[1] != "keep"]
    if changed and not services:
        revisions.record(engine, project, ids, "; ".join(describe(changed)))
    return running


_DRAIN = 0.5  # seconds an old replica keeps serving after it left DNS


class WaitFailed(DockyardError):
    """``up --wait``: a service did not come up healthy. Exit status 1, as Compose's."""

    exit_code = 1


def wait_healthy(engine: Engine, ids: list[str], timeout: float) -> None:
    """``up --wait``: until every container is running and healthy (those with a check);
    WaitFailed names the first that is not, with its check's output and last log lines."""
    deadline = time.monotonic() + timeout
    for cid in ids:
        problem = _ready(engine, cid, timeout, deadline)
        if problem is not None:
            raise WaitFailed(problem + _last_lines(engine, cid))


def _last_lines(engine: Engine, cid: str, count: int = 5) -> str:
    """The container's last log lines, for an error that names it."""
    from dockyard.engine.logs import records

    try:
        lines = [r["log"].rstrip("\n") for r in records(engine, cid, tail=count)]
    except DockyardError:
        return ""
    return ("\nlast output:\n" + "\n".join(f"  {line}" for line in lines)) if lines else ""


class RolloutFailed(DockyardError):
    """A new container failed its health check: the rollout was undone. Exit status 1."""

    exit_code = 1


def _rollout_of(svc: dict[str, Any], asked: bool) -> dict[str, Any] | None:
    """The rollout settings of a service: ``up --rollout`` or ``x-dockyard: {rollout: ...}``."""
    spec = (svc.get("x-dockyard") or {}).get("rollout")
    if spec is None and not asked:
        return None
    spec = {} if spec in (None, True) else dict(spec)
    timeout = spec.get("timeout", "60s")
    return {"parallelism": int(spec.get("parallelism", 1)),
            "timeout": duration_ns(str(timeout)) / 1e9 if not isinstance(timeout, (int, float)) else float(timeout)}  # fmt: skip


def _ready(engine: Engine, cid: str, timeout: float, deadline: float | None = None) -> str | None:
    """None once the container serves (healthy, or running when it has no health check);
    else why not, with its last health-check output. ``deadline``: a shared one, for
    several containers within one ``timeout``."""
    deadline = time.monotonic() + timeout if deadline is None else deadline
    while True:
        rec = engine.refresh(cid)
        health = json.loads(rec["health"]) if rec.get("health") else {}
        status = health.get("Status", "")
        checked = (rec["config"].get("Healthcheck") or {}).get("Test") not in (None, [], ["NONE"])
        if rec["status"] == "running" and (status == "healthy" or not checked):
            return None
        if rec["status"] not in ("running", "paused", "restarting") or status == "unhealthy":
            last = ((health.get("Log") or [{}])[-1].get("Output") or "").strip()
            state = status or f"{rec['status']} ({rec['exit_code']})"
            return f"container {rec['name']} is {state}" + (f": {last}" if last else "")
        if time.monotonic() > deadline:
            return f"container {rec['name']} was not healthy within {timeout:g}s"
        time.sleep(0.1)


def _roll_out(engine: Engine, project: Project, name: str, svc: dict[str, Any], image: str, digest: str,
              existing: dict[int, dict[str, Any]], spec: dict[str, Any],
              say: Callable[[str], None]) -> list[str]:  # fmt: skip
    """Replace the service's containers a few at a time: start new ones, wait until they
    are healthy, then take old ones out of DNS and stop them. A new container that fails
    ends the rollout: the new ones go, the old ones keep serving, and ``RolloutFailed``
    says which check failed and how."""
    from dockyard.engine.networking import admit, publish, withdraw

    old = sorted(
        existing.values(), key=lambda r: int(r["config"]["Labels"].get(P + "container-number", 0))
    )
    number = max(existing, default=0)
    made: list[str] = []
    kept = list(old)
    try:
        while len(made) < svc["replicas"]:
            batch = []
            for _ in range(min(spec["parallelism"], svc["replicas"] - len(made))):
                number += 1
                config, host, networking, cname = _documents(
                    project,
                    name,
                    svc,
                    image,
                    number,
                    digest,
                    _files_dir(engine, project),
                    engine.images.resolve(image),
                )
                # A fixed host port is the old container's until this one is healthy: it is
                # published then, taken over from the old one (see below)
                fixed = {
                    k: [b for b in v if b["HostPort"]] for k, v in host["PortBindings"].items()
                }
                fixed = {k: v for k, v in fixed.items() if v}
                loose = {
                    k: [b for b in v if not b["HostPort"]] for k, v in host["PortBindings"].items()
                }
                host["PortBindings"] = {k: v for k, v in loose.items() if v}
                cid = engine.create(image, config, host, cname, networking)
                withdraw(
                    engine, cid
                )  # in DNS only once healthy: names lead only to ones that answer
                engine.start(cid)
                say(f" Container {cname}  Started (rollout)")
                batch.append((cid, fixed))
                made.append(cid)
            for cid, _fixed in batch:
                problem = _ready(engine, cid, spec["timeout"])
                if problem is not None:
                    raise RolloutFailed(
                        f"rollout of {name} stopped: {problem}; the previous containers keep serving"
                    )
            for cid, fixed in batch:  # as many old ones out as new ones came in
                rec = kept.pop(0) if kept else None
                if fixed:
                    # new connections to the published ports reach the new container from
                    # here on; the old one's finish while it drains
                    publish(engine, cid, fixed, taking_from=rec["id"] if rec else None)
                admit(engine, cid)
                say(f" Container {engine.record(cid)['name']}  Healthy")
                if rec is not None:
                    withdraw(engine, rec["id"])  # out of DNS before it stops answering,
                    time.sleep(_DRAIN)  # and time for what already found it to finish
                    engine.stop(rec["id"], _grace(svc))
                    engine.remove(rec["id"], force=True)
                    say(f" Container {rec['name']}  Replaced")
        for rec in kept:  # scaled down meanwhile
            withdraw(engine, rec["id"])
            engine.stop(rec["id"], _grace(svc))
            engine.remove(rec["id"], force=True)
    except BaseException:
        for cid in made:
            engine.remove(cid, force=True)
        raise
    return made


def _grace(svc: dict[str, Any]) -> int:
    value = svc.get("stop_grace_period")
    if value is None:
        return 10
    return (
        max(int(duration_ns(str(value)) // 1_000_000_000), 0)
        if not isinstance(value, int)
        else value
    )


def down(engine: Engine, project: Project, volumes: bool = False, timeout: int | None = None,
         say: Callable[[str], None] = lambda _line: None, remove_orphans: bool = False,
         rmi: str = "") -> None:  # fmt: skip
    """Stop and remove the project's containers (those of services the file no longer has
    only with ``remove_orphans``, as Compose), then its networks (and with ``volumes`` its
    named volumes, with ``rmi`` its images): whatever carries the project's label, so a
    failed ``up`` is undone."""
    recs = []
    for rec in project_containers(engine, project.name, oneoff=True):
        if rec["config"]["Labels"].get(P + "service") in project.services or remove_orphans:
            recs.append(rec)
        else:
            say(
                f" Found orphan container {rec['name']} for this project; remove it with --remove-orphans"
            )

    def take_down(rec: dict[str, Any]) -> None:
        grace = _grace(project.services.get(rec["config"]["Labels"].get(P + "service"), {}))
        engine.stop(rec["id"], timeout if timeout is not None else grace)
        say(f" Container {rec['name']}  Stopped")
        engine.remove(rec["id"], force=True)
        say(f" Container {rec['name']}  Removed")

    from dockyard.threads import each_in_a_thread

    each_in_a_thread(take_down, recs)  # as Compose: each may wait its whole grace period
    for net in engine.networks.list():
        if (net.get("labels") or {}).get(P + "project") == project.name:
            try:
                engine.networks.remove(net["id"])
                say(f" Network {net['name']}  Removed")
            except DockyardError as err:
                say(f" Network {net['name']}  {err}")
    from dockyard.fsutil import remove_tree

    remove_tree(_files_dir(engine, project), ignore_errors=True)
    if rmi:
        remove_images(engine, project, rmi, say)
    if volumes:
        for vol in engine.volumes.list():
            labels = json.loads(vol["labels"]) if isinstance(vol["labels"], str) else vol["labels"]
            if (labels or {}).get(P + "project") == project.name:
                engine.volumes.remove(vol["name"])
                say(f" Volume {vol['name']}  Removed")


def build_images(engine: Engine, project: Project, services: list[str] | None,
                 say: Callable[[str], None]) -> None:  # fmt: skip
    """``compose build``: every (asked) service with a build section, built again."""
    for name in services or list(project.services):
        svc = project.services.get(name)
        if svc is None:
            raise InvalidArgument(f"no such service: {name}")
        if svc.get("build") is not None:
            _build(engine, svc.get("image") or f"{project.name}-{name}", svc["build"], say)


def pull_images(engine: Engine, project: Project, services: list[str] | None,
                say: Callable[[str], None]) -> None:  # fmt: skip
    """``compose pull``: the images of (asked) services without a build section."""
    from dockyard.registry.transfer import pull

    for name in services or list(project.services):
        svc = project.services.get(name)
        if svc is None:
            raise InvalidArgument(f"no such service: {name}")
        if svc.get("image") and svc.get("build") is None:
            say(f" {name} Pulling")
            pull(engine.images, svc["image"], svc.get("platform"), implicit=True)
            say(f" {name} Pulled")


def push_images(engine: Engine, project: Project, services: list[str] | None, ignore_failures: bool,
                say: Callable[[str], None]) -> None:  # fmt: skip
    """``compose push``: the image of every (asked) service that names one, as Compose
    (a service without ``image:`` has no name to push to)."""
    from dockyard.registry.transfer import push

    for name in services or list(project.services):
        svc = project.services.get(name)
        if svc is None:
            raise InvalidArgument(f"no such service: {name}")
        if not svc.get("image"):
            continue
        say(f" {name} Pushing")
        try:
            push(engine.images, svc["image"])
        except DockyardError as err:
            if not ignore_failures:
                raise
            say(f" {name} Push failed: {err}")
            continue
        say(f" {name} Pushed")


def remove_images(engine: Engine, project: Project, which: str, say: Callable[[str], None]) -> None:
    """``down --rmi``: ``local`` — the images made for services without an ``image:`` name;
    ``all`` — every service's image. One still used by another container stays."""
    if which not in ("local", "all"):
        raise InvalidArgument(f'invalid --rmi value "{which}": use local or all')
    refs = []
    for name, svc in project.services.items():
        if svc.get("image") and which == "all":
            refs.append(svc["image"])
        elif not svc.get("image"):
            refs.append(f"{project.name}-{name}")
    from dockyard.engine.images import remove

    for ref in dict.fromkeys(refs):
        try:
            remove(engine, ref)
        except NotFound:
            continue
        except DockyardError as err:
            say(f" Image {ref}  {err}")
            continue
        say(f" Image {ref}  Removed")


def one_off(engine: Engine, project: Project, name: str, command: list[str] | None, env: dict[str, str],
            remove: bool, tty: bool, no_deps: bool, say: Callable[[str], None]) -> str:  # fmt: skip
    """``compose run``: the service's dependencies up (unless ``no_deps``), then a created
    one-off container of it (``project-service-run-<id>``, ``oneoff=True``); its ID."""
    if name not in project.services:
        raise InvalidArgument(f"no such service: {name}")
    svc = dict(project.services[name])
    deps = [d for d in order(project, [name]) if d != name]
    if deps and not no_deps:
        up(engine, project, deps, say=say)
    _ensure_networks(engine, project, say)
    _ensure_volumes(engine, project, say)
    image = _image(engine, project, name, svc, False, say)
    svc["environment"] = {**svc["environment"], **env}
    if command:
        svc["command"] = command
    svc["ports"] = []  # as Compose: a one-off publishes nothing unless asked
    suffix = os.urandom(6).hex()
    config, host, networking, _cname = _documents(project, name, svc, image, 1, config_hash(svc),
                                                  _files_dir(engine, project), engine.images.resolve(image))  # fmt: skip
    config["Labels"][P + "oneoff"] = "True"
    config["Labels"].pop(P + "container-number", None)
    config["Tty"] = tty
    config["OpenStdin"] = config["AttachStdin"] = True
    config["StdinOnce"] = True
    host["AutoRemove"] = remove
    host["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
    cname = f"{project.name}-{name}-run-{suffix}"
    for endpoint in networking["EndpointsConfig"].values():
        endpoint["Aliases"] = [a for a in endpoint["Aliases"] if a != _cname]
    return engine.create(image, config, host, cname, networking)
