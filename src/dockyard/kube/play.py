"""``kube play``: Kubernetes objects run locally, each pod of them a dockyard pod.

Pod, Deployment (one pod per replica, ``<name>-pod-<n>``), DaemonSet (one pod: this is one
node) and Job (a pod that runs to completion) become pods; a Service publishes its ports
on the host from the first pod it selects (``port`` on the host to ``targetPort``); a
PersistentVolumeClaim is a named volume; a ConfigMap or Secret is a directory of files
mounted read-only where a pod mounts it, and environment values where a container takes
them. What is not supported — a kind, or a field — is refused in one line naming it, and a
failed play removes what it had made.
"""

from __future__ import annotations

import base64
import os
import re

from dockyard.errors import DockyardError, InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.engine.containers import Engine

__all__ = ["down", "load", "play"]

KINDS = (
    "Pod",
    "Deployment",
    "DaemonSet",
    "Job",
    "Service",
    "ConfigMap",
    "Secret",
    "PersistentVolumeClaim",
)
# the fields read, per place; any other is refused
_CONTAINER = {"name", "image", "command", "args", "env", "envFrom", "ports", "resources", "securityContext",
              "volumeMounts", "workingDir", "livenessProbe", "readinessProbe", "startupProbe", "imagePullPolicy",
              "tty", "stdin", "terminationMessagePath", "terminationMessagePolicy"}  # fmt: skip
_POD_SPEC = {"containers", "initContainers", "volumes", "restartPolicy", "hostname",
             "terminationGracePeriodSeconds", "dnsPolicy", "securityContext"}  # fmt: skip
_QUANTITY = {
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
}
_RESTART = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}
_DNS_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def load(text: str, where: str) -> list[dict[str, Any]]:
    """The documents of a YAML stream, each a mapping with a supported kind and a name."""
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise InvalidArgument(
            f"{where}{at}: invalid YAML: {getattr(err, 'problem', err)}"
        ) from None
    if not docs:
        raise InvalidArgument(f"{where}: no Kubernetes objects in it")
    names: set[tuple[str, str]] = set()
    for doc in docs:
        if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
            raise InvalidArgument(f"{where}: each object needs kind and metadata")
        kind, name = doc.get("kind"), doc["metadata"].get("name")
        if kind not in KINDS:
            raise InvalidArgument(f"{where}: kind {kind} is not supported ({', '.join(KINDS)})")
        if not name:
            raise InvalidArgument(f"{where}: a {kind} without metadata.name")
        if not isinstance(name, str) or not _DNS_NAME.fullmatch(name) or len(name) > 253:
            # as Kubernetes requires; names also become paths under the state root
            raise InvalidArgument(
                f"{where}: {kind} {name!r}: a name is lower-case letters, digits, '-' and '.'"
            )
        if (kind, name) in names:
            raise InvalidArgument(f"{where}: {kind} {name} is given twice")
        names.add((kind, name))
    return docs


def _check(fields: dict[str, Any], allowed: set[str], path: str) -> None:
    for key in fields:
        if key not in allowed:
            raise InvalidArgument(f"{path}.{key} is not supported")


def _bytes(q: Any) -> int:
    text = str(q)
    for suffix, size in _QUANTITY.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * size)
    return int(float(text))


def _cpus(q: Any) -> int:
    text = str(q)
    return int(text[:-1]) * 1_000_000 if text.endswith("m") else int(float(text) * 1e9)


def _files_dir(engine: Engine, kind: str, name: str) -> str:
    return os.path.join(engine.root, "kube", kind.lower(), name)


def _write_files(engine: Engine, doc: dict[str, Any]) -> dict[str, str]:
    """A ConfigMap's or Secret's keys as files (0444: a container's user may not be root);
    its key -> value."""
    data = {k: str(v) for k, v in (doc.get("data") or {}).items()}
    if doc["kind"] == "Secret":
        data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        data.update({k: str(v) for k, v in (doc.get("stringData") or {}).items()})
    d = _files_dir(engine, doc["kind"], doc["metadata"]["name"])
    os.makedirs(d, mode=0o700, exist_ok=True)
    for key, value in data.items():
        if "/" in key or key in (".", ".."):
            raise InvalidArgument(
                f"{doc['kind']} {doc['metadata']['name']}: key {key!r} is not a file name"
            )
        with open(
            os.open(os.path.join(d, key), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444), "w"
        ) as f:
            f.write(value)
    return data


def _probe(probe: dict[str, Any], path: str) -> dict[str, Any]:
    """A probe as Docker's Healthcheck: exec as it is, tcpSocket as ``nc -z``."""
    if "exec" in probe:
        test = ["CMD", *probe["exec"]["command"]]
    elif "tcpSocket" in probe:
        test = ["CMD", "nc", "-z", "127.0.0.1", str(probe["tcpSocket"]["port"])]
    else:
        raise InvalidArgument(f"{path}: only exec and tcpSocket probes are supported")
    second = 1_000_000_000
    return {"Test": test, "Interval": int(probe.get("periodSeconds", 10)) * second,
            "Timeout": int(probe.get("timeoutSeconds", 1)) * second,
            "Retries": int(probe.get("failureThreshold", 3)),
            "StartPeriod": int(probe.get("initialDelaySeconds", 0)) * second}  # fmt: skip


def _container_request(engine: Engine, spec: dict[str, Any], volumes: dict[str, dict[str, Any]],
                       maps: dict[tuple[str, str], dict[str, str]], path: str) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """(Config, HostConfig) of one container spec."""
    _check(spec, _CONTAINER, path)
    config: dict[str, Any] = {"Image": spec["image"], "Labels": {}}
    if spec.get("command"):
        config["Entrypoint"] = list(spec["command"])
    if spec.get("args"):
        config["Cmd"] = list(spec["args"])
    env = []
    for src in spec.get("envFrom") or []:
        ref = src.get("configMapRef") or src.get("secretRef") or {}
        kind = "ConfigMap" if "configMapRef" in src else "Secret"
        if (kind, ref.get("name")) not in maps:
            raise InvalidArgument(f"{path}.envFrom: no {kind} {ref.get('name')} in the file")
        env += [f"{k}={v}" for k, v in maps[(kind, ref["name"])].items()]
    for e in spec.get("env") or []:
        if "valueFrom" in e:
            ref = e["valueFrom"].get("configMapKeyRef") or e["valueFrom"].get("secretKeyRef")
            kind = "ConfigMap" if "configMapKeyRef" in e["valueFrom"] else "Secret"
            if (
                not ref
                or (kind, ref.get("name")) not in maps
                or ref.get("key") not in maps[(kind, ref["name"])]
            ):
                raise InvalidArgument(
                    f"{path}.env.{e.get('name')}: its valueFrom names nothing in the file"
                )
            env.append(f"{e['name']}={maps[(kind, ref['name'])][ref['key']]}")
        else:
            env.append(f"{e['name']}={e.get('value', '')}")
    if env:
        config["Env"] = env
    if spec.get("workingDir"):
        config["WorkingDir"] = spec["workingDir"]
    host: dict[str, Any] = {"Mounts": []}
    limits = (spec.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        host["Memory"] = _bytes(limits["memory"])
    if "cpu" in limits:
        host["NanoCpus"] = _cpus(limits["cpu"])
    sec = spec.get("securityContext") or {}
    if "runAsUser" in sec:
        config["User"] = str(sec["runAsUser"]) + (
            f":{sec['runAsGroup']}" if "runAsGroup" in sec else ""
        )
    caps = sec.get("capabilities") or {}
    host["CapAdd"], host["CapDrop"] = list(caps.get("add") or []), list(caps.get("drop") or [])
    host["ReadonlyRootfs"] = bool(sec.get("readOnlyRootFilesystem"))
    host["Privileged"] = bool(sec.get("privileged"))
    for n, m in enumerate(spec.get("volumeMounts") or []):
        vol = volumes.get(m.get("name"))
        if vol is None:
            raise InvalidArgument(f"{path}.volumeMounts[{n}]: no volume {m.get('name')} in the pod")
        ro = bool(m.get("readOnly"))
        if "persistentVolumeClaim" in vol:
            host["Mounts"].append({"Type": "volume", "Source": vol["persistentVolumeClaim"]["claimName"],
                                   "Target": m["mountPath"], "ReadOnly": ro})  # fmt: skip
        elif "hostPath" in vol:
            host["Mounts"].append({"Type": "bind", "Source": vol["hostPath"]["path"], "Target": m["mountPath"],
                                   "ReadOnly": ro})  # fmt: skip
        elif "emptyDir" in vol:
            host["Mounts"].append({"Type": "tmpfs", "Source": "", "Target": m["mountPath"]})
        else:
            kind = "ConfigMap" if "configMap" in vol else "Secret"
            name = (vol.get("configMap") or {}).get("name") or (vol.get("secret") or {}).get(
                "secretName"
            )
            if (kind, name) not in maps:
                raise InvalidArgument(f"{path}.volumeMounts[{n}]: no {kind} {name} in the file")
            host["Mounts"].append({"Type": "bind", "Source": _files_dir(engine, kind, name),
                                   "Target": m["mountPath"], "ReadOnly": True})  # fmt: skip
    probe = spec.get("livenessProbe") or spec.get("readinessProbe") or spec.get("startupProbe")
    if probe:
        check = _probe(probe, f"{path}.livenessProbe")
        startup = spec.get("startupProbe")
        if startup and probe is not startup:
            # the startup probe's extra failures are the time a start may take: Docker's
            # start period (what kube generate writes it from)
            extra = int(startup.get("failureThreshold", 3)) - int(probe.get("failureThreshold", 3))
            check["StartPeriod"] = (
                max(extra, 0) * int(startup.get("periodSeconds", 10)) * 1_000_000_000
            )
        config["Healthcheck"] = check
        if spec.get("livenessProbe"):
            from dockyard.engine.health import LIVENESS_LABEL

            config["Labels"][LIVENESS_LABEL] = "restart"  # a failing liveness probe kills it
    return config, host


def _pod_spec(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], str]:
    """(pod spec, its labels, the path to name in messages) of a workload."""
    kind, name = doc["kind"], doc["metadata"]["name"]
    if kind == "Pod":
        return doc.get("spec") or {}, dict(doc["metadata"].get("labels") or {}), f"Pod {name}: spec"
    template = (doc.get("spec") or {}).get("template") or {}
    return (template.get("spec") or {}, dict((template.get("metadata") or {}).get("labels") or {}),
            f"{kind} {name}: spec.template.spec")  # fmt: skip


def _pod_names(doc: dict[str, Any]) -> list[str]:
    """podman's names: a Pod's own; ``<name>-pod-<n>`` per replica of a Deployment;
    ``<name>-pod`` for a DaemonSet or Job."""
    name = doc["metadata"]["name"]
    if doc["kind"] == "Deployment":
        return [f"{name}-pod-{n}" for n in range(int((doc.get("spec") or {}).get("replicas", 1)))]
    return [name] if doc["kind"] == "Pod" else [f"{name}-pod"]


def play(engine: Engine, docs: list[dict[str, Any]]) -> list[str]:
    """Make what ``docs`` describe and start its pods; the pods' names. A failure removes
    what this call made."""
    from dockyard.engine import pods

    made_pods: list[str] = []
    made_volumes: list[str] = []
    made_dirs: list[str] = []
    try:
        maps = {}
        for doc in docs:
            if doc["kind"] in ("ConfigMap", "Secret"):
                made_dirs.append(_files_dir(engine, doc["kind"], doc["metadata"]["name"]))
                maps[(doc["kind"], doc["metadata"]["name"])] = _write_files(engine, doc)
            elif doc["kind"] == "PersistentVolumeClaim":
                try:
                    engine.volumes.get(doc["metadata"]["name"])
                except NotFound:
                    engine.volumes.create(doc["metadata"]["name"], {"io.dockyard.kube": "true"})
                    made_volumes.append(doc["metadata"]["name"])
        services = [d for d in docs if d["kind"] == "Service"]
        for doc in docs:
            if doc["kind"] not in ("Pod", "Deployment", "DaemonSet", "Job"):
                continue
            spec, labels, path = _pod_spec(doc)
            _check(spec, _POD_SPEC, path)
            if not spec.get("containers"):
                raise InvalidArgument(f"{path}.containers: a pod needs a container")
            volumes = {v["name"]: v for v in spec.get("volumes") or []}
            restart = spec.get("restartPolicy") or ("Never" if doc["kind"] == "Job" else "Always")
            for index, pod_name in enumerate(_pod_names(doc)):
                publish: dict[str, list[dict[str, str]]] = {}
                for c in spec["containers"]:
                    for p in c.get("ports") or []:
                        if p.get("hostPort") and index == 0:
                            publish.setdefault(f"{p['containerPort']}/{str(p.get('protocol', 'TCP')).lower()}", []).append(
                                {"HostIp": p.get("hostIP", ""), "HostPort": str(p["hostPort"])})  # fmt: skip
                for svc in services:
                    selector = (svc.get("spec") or {}).get("selector") or {}
                    if (
                        index
                        or not selector
                        or any(labels.get(k) != v for k, v in selector.items())
                    ):
                        continue
                    for p in (svc.get("spec") or {}).get("ports") or []:
                        target = p.get("targetPort", p["port"])
                        publish.setdefault(f"{target}/{str(p.get('protocol', 'TCP')).lower()}", []).append(
                            {"HostIp": "", "HostPort": str(p.get("nodePort") or p["port"])})  # fmt: skip
                pods.create(engine, pod_name, publish, hostname=spec.get("hostname") or "",
                            labels={**labels, "io.dockyard.kube": doc["kind"]}, restart=_RESTART.get(restart, "no"))  # fmt: skip
                made_pods.append(pod_name)
                for kind, key in (("always", "initContainers"), ("", "containers")):
                    for n, c in enumerate(spec.get(key) or []):
                        config, host = _container_request(
                            engine, c, volumes, maps, f"{path}.{key}[{n}]"
                        )
                        pods.add_member(engine, pod_name, config, host, kind)
                        engine.create(config["Image"], config, host, f"{pod_name}-{c['name']}")
        _start_all(engine, made_pods)
    except BaseException:
        for name in made_pods:
            try:
                pods.remove(engine, name, force=True)
            except DockyardError:
                pass
        for name in made_volumes:
            try:
                engine.volumes.remove(name)
            except DockyardError:
                pass
        from dockyard.fsutil import remove_tree

        for d in made_dirs:
            remove_tree(d, ignore_errors=True)
        raise
    return made_pods


def _start_all(engine: Engine, names: list[str]) -> None:
    """``pods.start`` of every pod at once, each in a forked child where this process runs
    one thread (a child of one thread forks its containers' monitors, where a thread would
    have to spawn interpreters for them); in turn otherwise. The first failure is raised."""
    import sys

    from dockyard.engine import pods

    threading = sys.modules.get("threading")
    if len(names) < 2 or (threading is not None and threading.active_count() > 1):
        for name in names:
            pods.start(engine, name)
        return
    from dockyard.engine.containers import Engine as EngineClass

    children = []
    for name in names:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(read_end)
                pods.start(
                    EngineClass(engine.root, engine.snapshotter), name
                )  # a connection of its own
                code = 0
            except BaseException as err:  # the parent raises it
                os.write(write_end, str(err).encode(errors="replace"))
            finally:
                os._exit(code)
        os.close(write_end)
        children.append((pid, read_end))
    problems = []
    for pid, read_end in children:
        with os.fdopen(read_end, "rb") as f:
            message = f.read().decode(errors="replace")
        _pid, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            problems.append(message or "a pod did not start")
    if problems:
        raise DockyardError(problems[0])


def down(engine: Engine, docs: list[dict[str, Any]], volumes: bool = False) -> list[str]:
    """Remove the pods ``docs`` made, their ConfigMaps' and Secrets' files, and with
    ``volumes`` their claims' volumes; the pods' names."""
    from dockyard.engine import pods
    from dockyard.fsutil import remove_tree
    from dockyard.threads import each_in_a_thread

    names = [
        n
        for doc in docs
        if doc["kind"] in ("Pod", "Deployment", "DaemonSet", "Job")
        for n in _pod_names(doc)
    ]
    found: dict[str, bool] = {}

    def take_down(name: str) -> None:  # each pod in a thread: most of it is waiting for exits
        try:
            pods.remove(engine, name, force=True)
            found[name] = True
        except pods.PodNotFound:
            pass

    each_in_a_thread(take_down, names)
    gone = [n for n in names if found.get(n)]
    for doc in docs:
        if doc["kind"] in ("ConfigMap", "Secret"):
            remove_tree(
                _files_dir(engine, doc["kind"], doc["metadata"]["name"]), ignore_errors=True
            )
    if volumes:
        for doc in docs:
            if doc["kind"] == "PersistentVolumeClaim":
                try:
                    engine.volumes.remove(doc["metadata"]["name"])
                except NotFound:
                    pass
    return gone
