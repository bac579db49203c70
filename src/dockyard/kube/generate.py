"""``kube generate``: what runs on dockyard, written as Kubernetes objects a cluster
accepts — a Pod (or a Deployment, DaemonSet or Job around the same pod template) with
its containers' command, environment, ports, limits, security settings, mounts and
health checks, a PersistentVolumeClaim per named volume, and with ``service`` a Service
for the published ports.

Where Docker and Kubernetes differ the choice is Kubernetes' closest: a health check is
a liveness and a readiness probe (and a startup probe when it has a start period); a
bind mount is a hostPath; a tmpfs an emptyDir in memory; ``--restart`` the pod's
restartPolicy (a Deployment's or DaemonSet's is always Always).
"""

from __future__ import annotations

import re

from dockyard.errors import InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.engine.containers import Engine

__all__ = ["KINDS", "manifests", "to_yaml"]

KINDS = ("pod", "deployment", "daemonset", "job")
_RESTART = {
    "always": "Always",
    "unless-stopped": "Always",
    "on-failure": "OnFailure",
    "no": "Never",
    "": "Never",
}


def dns_name(text: str) -> str:
    """A DNS-1123 label (what Kubernetes names must be) as close to ``text`` as can be."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return name or "dockyard"


def _duration(ns: int | None, default: int) -> int:
    return max(int((ns or 0) // 1_000_000_000), 1) if ns else default


def _probe(check: dict[str, Any]) -> dict[str, Any] | None:
    test = check.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    command = (
        ["/bin/sh", "-c", test[1]]
        if test[0] == "CMD-SHELL"
        else list(test[1:] if test[0] == "CMD" else test)
    )
    return {"exec": {"command": command}, "periodSeconds": _duration(check.get("Interval"), 30),
            "timeoutSeconds": _duration(check.get("Timeout"), 30),
            "failureThreshold": int(check.get("Retries") or 3)}  # fmt: skip


def _container(
    engine: Engine, rec: dict[str, Any], claims: dict[str, str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the container's spec, the pod volumes it needs)."""
    cfg, host = rec["config"], rec["host_config"]
    image_cfg = (
        (engine.images.config(rec["image_id"]).get("config") or {}) if rec["image_id"] else {}
    )
    spec: dict[str, Any] = {"name": dns_name(rec["name"]), "image": rec["image_ref"]}
    if cfg.get("Entrypoint") and cfg.get("Entrypoint") != image_cfg.get("Entrypoint"):
        spec["command"] = list(cfg["Entrypoint"])
    if cfg.get("Cmd") and (cfg.get("Cmd") != image_cfg.get("Cmd") or "command" in spec):
        spec["args"] = list(cfg["Cmd"])
    own_env = [e for e in cfg.get("Env") or [] if e not in (image_cfg.get("Env") or [])]
    if own_env:
        spec["env"] = [{"name": e.partition("=")[0], "value": e.partition("=")[2]} for e in own_env]
    if cfg.get("WorkingDir") and cfg["WorkingDir"] != image_cfg.get("WorkingDir"):
        spec["workingDir"] = cfg["WorkingDir"]
    ports = []
    bindings = host.get("PortBindings") or {}
    for key in sorted({*(cfg.get("ExposedPorts") or {}), *bindings}):
        number, _, proto = key.partition("/")
        port: dict[str, Any] = {"containerPort": int(number), "protocol": (proto or "tcp").upper()}
        published = [b for b in bindings.get(key) or [] if b.get("HostPort")]
        if published:
            port["hostPort"] = int(published[0]["HostPort"])
        ports.append(port)
    if ports:
        spec["ports"] = ports
    limits = {}
    if host.get("Memory"):
        limits["memory"] = _quantity(host["Memory"])
    if host.get("NanoCpus"):
        limits["cpu"] = f"{host['NanoCpus'] // 1_000_000}m"
    if limits:
        spec["resources"] = {"limits": limits}
    security: dict[str, Any] = {}
    user, _, group = str(cfg.get("User") or "").partition(":")
    if user.isdigit():
        security["runAsUser"] = int(user)
    if group.isdigit():
        security["runAsGroup"] = int(group)
    caps = {k: sorted(c.upper().removeprefix("CAP_") for c in host.get(f"Cap{k.capitalize()}") or [])
            for k in ("add", "drop")}  # fmt: skip
    if caps["add"] or caps["drop"]:
        security["capabilities"] = {k: v for k, v in caps.items() if v}
    if host.get("ReadonlyRootfs"):
        security["readOnlyRootFilesystem"] = True
    if host.get("Privileged"):
        security["privileged"] = True
    if security:
        spec["securityContext"] = security
    volumes, mounts = [], []
    for n, m in enumerate(host.get("Mounts") or []):
        vol_name = dns_name(f"{rec['name']}-{m['Type']}-{n}")
        if m["Type"] == "volume":
            claim = claims.setdefault(m["Name"], dns_name(m["Name"]))
            volumes.append({"name": vol_name, "persistentVolumeClaim": {"claimName": claim}})
        elif m["Type"] == "bind":
            volumes.append({"name": vol_name, "hostPath": {"path": m["Source"]}})
        elif m["Type"] == "tmpfs":
            volumes.append({"name": vol_name, "emptyDir": {"medium": "Memory"}})
        else:
            continue
        mounts.append(
            {
                "name": vol_name,
                "mountPath": m["Target"],
                **({"readOnly": True} if m.get("ReadOnly") else {}),
            }
        )
    for n, target in enumerate(sorted(host.get("Tmpfs") or {})):
        vol_name = dns_name(f"{rec['name']}-tmpfs-{n + len(mounts)}")
        volumes.append({"name": vol_name, "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": vol_name, "mountPath": target})
    if mounts:
        spec["volumeMounts"] = mounts
    check = cfg.get("Healthcheck") or {}
    probe = _probe(check)
    if probe is not None:
        spec["livenessProbe"] = dict(probe)
        spec["readinessProbe"] = dict(probe)
        if check.get("StartPeriod"):
            # as Docker: failures in the start period do not count; the startup probe then
            # allows that long before liveness takes over
            period = probe["periodSeconds"]
            spec["startupProbe"] = {
                **probe,
                "failureThreshold": max(_duration(check["StartPeriod"], 0) // period, 1)
                + probe["failureThreshold"],
            }
    return spec, volumes


def manifests(
    engine: Engine, refs: list[str], kind: str = "pod", service: bool = False
) -> list[dict[str, Any]]:
    """The objects for ``refs`` — containers, or one pod — in the order a cluster takes them:
    claims, then the workload, then the Service."""
    from dockyard.engine.pods import INFRA_LABEL, INIT_LABEL, PodNotFound, lookup, members

    if kind not in KINDS:
        raise InvalidArgument(f"invalid type {kind!r}: use {', '.join(KINDS)}")
    if not refs:
        raise InvalidArgument("kube generate needs a container or a pod")
    recs: list[dict[str, Any]] = []
    name = ""
    hostname = ""
    publish: dict[str, Any] = {}
    for ref in refs:
        try:
            pod = lookup(engine, ref)
        except PodNotFound:
            try:
                rec = engine.record(engine.lookup(ref))
            except NotFound:
                if len(refs) == 1:  # a Compose project, by name
                    return project_manifests(engine, ref)
                raise InvalidArgument(f"{ref} is neither a container nor a pod") from None
            if (rec["config"].get("Labels") or {}).get(INFRA_LABEL):
                raise InvalidArgument(
                    f"{ref} is a pod's infra container: generate the pod"
                ) from None
            recs.append(rec)
            name = name or f"{rec['name']}-pod"
            continue
        infra = engine.record(pod["infra_id"])
        recs += members(engine, pod["id"])
        name, hostname = pod["name"], infra["config"].get("Hostname") or ""
        publish = infra["host_config"].get("PortBindings") or {}
    name = dns_name(name)
    claims: dict[str, str] = {}
    containers, init, volumes = [], [], []
    for rec in recs:
        spec, vols = _container(engine, rec, claims)
        (init if (rec["config"].get("Labels") or {}).get(INIT_LABEL) else containers).append(spec)
        volumes += vols
    if not containers:
        raise InvalidArgument(f"{refs[0]}: a pod without containers has nothing to generate")
    if publish:  # the pod's ports (the infra's), shown on its first container as Kubernetes wants
        ports = []
        for key, items in publish.items():
            number, _, proto = key.partition("/")
            for b in items or []:
                port: dict[str, Any] = {
                    "containerPort": int(number),
                    "protocol": (proto or "tcp").upper(),
                }
                if b.get("HostPort"):
                    port["hostPort"] = int(b["HostPort"])
                ports.append(port)
        containers[0]["ports"] = [*(containers[0].get("ports") or []), *ports]
    policy = _RESTART.get(
        ((recs[0]["host_config"].get("RestartPolicy") or {}).get("Name") or ""), "Never"
    )
    labels = {"app": name}
    pod_spec: dict[str, Any] = {"containers": containers}
    if init:
        pod_spec["initContainers"] = init
    if volumes:
        pod_spec["volumes"] = volumes
    if hostname and hostname != name:
        pod_spec["hostname"] = dns_name(hostname)
    out: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "labels": {"app": name}},
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
        for claim in claims.values()
    ]  # fmt: skip
    if kind == "pod":
        out.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
                    "spec": {**pod_spec, "restartPolicy": policy}})  # fmt: skip
    else:
        template = {"metadata": {"labels": labels}, "spec": pod_spec}
        if kind == "job":
            template["spec"]["restartPolicy"] = "OnFailure" if policy == "OnFailure" else "Never"
            out.append({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": labels},
                        "spec": {"template": template}})  # fmt: skip
        else:
            template["spec"]["restartPolicy"] = "Always"
            body: dict[str, Any] = {"selector": {"matchLabels": labels}, "template": template}
            if kind == "deployment":
                body = {"replicas": 1, **body}
            out.append({"apiVersion": "apps/v1", "kind": "Deployment" if kind == "deployment" else "DaemonSet",
                        "metadata": {"name": name, "labels": labels}, "spec": body})  # fmt: skip
    if service:
        ports = [p for c in containers for p in c.get("ports") or [] if p.get("hostPort")]
        if not ports:
            raise InvalidArgument(f"{refs[0]}: --service needs a published port")
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
                    "spec": {"selector": labels, "ports": [
                        {"name": f"{p['protocol'].lower()}-{p['hostPort']}", "port": p["hostPort"],
                         "targetPort": p["containerPort"], "protocol": p["protocol"]} for p in ports]}})  # fmt: skip
    return out


def to_yaml(objects: list[dict[str, Any]]) -> str:
    import yaml

    class Plain(yaml.SafeDumper):  # every object written out where it stands: no &anchors
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return "---\n".join(yaml.dump(o, Dumper=Plain, sort_keys=False) for o in objects)


def _quantity(n: int) -> str:
    """Bytes as a Kubernetes quantity: 64Mi rather than 67108864 where it divides."""
    for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


COMPOSE = "com.docker.compose."


def project_manifests(engine: Engine, project: str) -> list[dict[str, Any]]:
    """A Compose project running here as Kubernetes objects: per service a Deployment (as
    many replicas as it has containers) and, where it exposes ports, a Service of its name
    (how its peers found it by name); configs and secrets as ConfigMaps and Secrets
    mounted where the service has them; ``depends_on`` with ``service_healthy`` as an init
    container that waits until the dependency's Service answers — Kubernetes starts a
    pod's containers only after its init containers, and a Service leads only to pods
    that are ready, so the order Compose keeps holds on a cluster too."""
    import base64

    from dockyard.compose.model import load

    recs = [r for r in engine.list(all_=True) if (r["config"].get("Labels") or {}).get(COMPOSE + "project") == project
            and (r["config"].get("Labels") or {}).get(COMPOSE + "oneoff") != "True"]  # fmt: skip
    if not recs:
        raise InvalidArgument(f"{project} is neither a container, a pod nor a Compose project")
    labels0 = recs[0]["config"]["Labels"]
    files = [f for f in (labels0.get(COMPOSE + "project.config_files") or "").split(",") if f]
    model = load(files or None, project, labels0.get(COMPOSE + "project.working_dir") or None)
    by_service: dict[str, list[dict[str, Any]]] = {}
    for rec in sorted(
        recs, key=lambda r: int(r["config"]["Labels"].get(COMPOSE + "container-number") or 0)
    ):
        by_service.setdefault(rec["config"]["Labels"][COMPOSE + "service"], []).append(rec)
    claims: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    kinds = {"configs": "ConfigMap", "secrets": "Secret"}
    for kind, key in kinds.items():
        for name, source in getattr(model, kind).items():
            if source.get("file"):
                with open(source["file"], "rb") as f:
                    data = f.read()
            else:
                data = source["content"].encode()
            obj: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": key,
                "metadata": {"name": dns_name(name)},
            }
            if key == "Secret":
                obj["data"] = {name: base64.b64encode(data).decode()}
            else:
                obj["data"] = {name: data.decode(errors="replace")}
            out.append(obj)
    services: list[dict[str, Any]] = []
    workloads: list[dict[str, Any]] = []
    ports_of: dict[str, int] = {}
    for service, members in by_service.items():
        rec = members[0]
        spec, volumes = _container(engine, rec, claims)
        spec["name"] = dns_name(service)
        svc_model = model.services.get(service) or {}
        # configs and secrets: their bind mounts become ConfigMap and Secret volumes
        refs = {
            ref["target"]: (kind, ref["source"])
            for kind in kinds
            for ref in svc_model.get(kind) or []
        }
        kept_mounts, kept_volumes = [], []
        by_name = {v["name"]: v for v in volumes}
        for mount in spec.get("volumeMounts") or []:
            if mount["mountPath"] in refs:
                kind, source = refs[mount["mountPath"]]
                vol_name = dns_name(f"{kind}-{source}")
                ref_key = "configMap" if kind == "configs" else "secret"
                body = (
                    {"name": dns_name(source)}
                    if ref_key == "configMap"
                    else {"secretName": dns_name(source)}
                )
                kept_volumes.append(
                    {
                        "name": vol_name,
                        ref_key: {**body, "items": [{"key": source, "path": source}]},
                    }
                )
                kept_mounts.append(
                    {
                        "name": vol_name,
                        "mountPath": mount["mountPath"],
                        "subPath": source,
                        "readOnly": True,
                    }
                )
            else:
                kept_mounts.append(mount)
                kept_volumes.append(by_name[mount["name"]])
        if kept_mounts:
            spec["volumeMounts"] = kept_mounts
        for p in spec.get("ports") or []:
            p.pop("hostPort", None)  # a Service publishes them on a cluster
        ports = [p["containerPort"] for p in spec.get("ports") or []]
        if ports:
            ports_of[service] = ports[0]
            services.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": dns_name(service)},
                             "spec": {"selector": {"app": dns_name(service)}, "ports": [
                                 {"name": f"port-{p}", "port": p, "targetPort": p} for p in ports]}})  # fmt: skip
        deps = [
            d.split(":")
            for d in (rec["config"]["Labels"].get(COMPOSE + "depends_on") or "").split(",")
            if d
        ]
        pod_spec: dict[str, Any] = {"containers": [spec]}
        waits = [(dep, cond) for dep, cond, *_ in deps if cond == "service_healthy"]
        if waits:
            pod_spec["_waits"] = [dep for dep, _ in waits]
        if kept_volumes:
            pod_spec["volumes"] = kept_volumes
        labels = {"app": dns_name(service)}
        pod_spec["restartPolicy"] = "Always"
        workloads.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": dns_name(service), "labels": labels},
                          "spec": {"replicas": len(members), "selector": {"matchLabels": labels},
                                   "template": {"metadata": {"labels": labels}, "spec": pod_spec}}})  # fmt: skip
    for workload in workloads:
        pod_spec = workload["spec"]["template"]["spec"]
        waits = pod_spec.pop("_waits", [])
        init = []
        for dep in waits:
            if dep not in ports_of:
                raise InvalidArgument(f"service {dep}: a service others wait on (service_healthy) needs a port "
                                      "for its Service, to be waited for on a cluster")  # fmt: skip
            init.append({"name": dns_name(f"wait-for-{dep}"), "image": "busybox",
                         "command": ["sh", "-c", f"until nc -z {dns_name(dep)} {ports_of[dep]}; do sleep 1; done"]})  # fmt: skip
        if init:
            pod_spec["initContainers"] = init
    claims_out = [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
        for claim in claims.values()
    ]  # fmt: skip
    return [*out, *claims_out, *workloads, *services]
