"""Pods: containers that share a network namespace (they reach each other on localhost and
publish ports through the pod), IPC and UTS, held by an infra container — ``catatonit -P``
(podman's pause process, ~0.7 MiB PSS) that only waits and owns the namespaces, as
Kubernetes' pause container does.

A pod is a record (``pods``, migration 11) and its infra container; a member is an
ordinary container whose HostConfig joins the infra's namespaces (``container:<infra>``
network, IPC and UTS modes) and whose label ``io.dockyard.pod`` names the pod. Starting
a member starts the infra first; the pod's verbs act on the infra and every member
together.
"""

from __future__ import annotations

import os

from dockyard import _json as json
from dockyard.clock import now_rfc3339
from dockyard.engine import states
from dockyard.errors import Conflict, InvalidArgument, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.engine.containers import Engine

__all__ = [
    "POD_LABEL",
    "PodNotFound",
    "add_member",
    "create",
    "inspect",
    "kill",
    "list_pods",
    "lookup",
    "members",
    "remove",
    "restart",
    "start",
    "stop",
]  # fmt: skip

POD_LABEL = "io.dockyard.pod"
INFRA_LABEL = "io.dockyard.pod.infra"
INIT_LABEL = "io.dockyard.pod.init"  # an init container: "always" (each pod start) or "once"
# Kubernetes' restart policies, and Docker's words, as a pod may be given them
_RESTART = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}
INFRA_IMAGE = "dockyard/infra:latest"
SHARES = ("net", "ipc", "uts")
# the namespaces a member takes from the infra, by what the pod shares
_MODES = {"net": "NetworkMode", "ipc": "IpcMode", "uts": "UTSMode"}


class PodNotFound(NotFound):
    pass


def lookup(engine: Engine, ref: str) -> dict[str, Any]:
    """The pod named or ID-prefixed by ``ref``."""
    rows = engine.db.query("SELECT * FROM pods WHERE name = ? OR id = ?", (ref, ref))
    if not rows and ref and all(c in "0123456789abcdef" for c in ref):
        rows = engine.db.query("SELECT * FROM pods WHERE id LIKE ?", (ref + "%",))
        if len(rows) > 1:
            raise Conflict(f"more than one pod matches {ref}")
    if not rows:
        raise PodNotFound(f"no pod with name or ID {ref} found: no such pod")
    pod = dict(rows[0])
    pod["labels"], pod["share"] = json.loads(pod["labels"]), json.loads(pod["share"])
    return pod


def _infra_image(engine: Engine) -> str:
    try:
        return engine.images.resolve(INFRA_IMAGE)
    except NotFound:
        from dockyard.image.bootstrap import bootstrap_infra

        try:
            return bootstrap_infra(engine.images, INFRA_IMAGE)
        except FileNotFoundError as err:
            raise InvalidArgument(str(err)) from None


def create(engine: Engine, name: str | None = None, publish: dict[str, list[dict[str, str]]] | None = None,
           network: str = "", share: tuple[str, ...] = SHARES, labels: dict[str, str] | None = None,
           hostname: str = "", restart: str = "") -> str:  # fmt: skip
    """A new pod and its (created, not started) infra container; the pod's ID. ``publish``
    is HostConfig.PortBindings' shape: the pod's ports, published by the infra; ``restart``
    the policy its containers get (Docker's ``always``, ``on-failure[:N]``, ``no``,
    ``unless-stopped``, or Kubernetes' ``Always``, ``OnFailure``, ``Never``)."""
    from dockyard.engine.names import random_name

    restart = _RESTART.get(restart, restart)
    if restart and restart.partition(":")[0] not in (
        "no",
        "always",
        "on-failure",
        "unless-stopped",
    ):
        raise InvalidArgument(f"invalid restart policy '{restart}'")
    for kind in share:
        if kind not in SHARES:
            raise InvalidArgument(
                f"invalid kernel namespace to share: {kind} (use {', '.join(SHARES)})"
            )
    if "net" not in share and publish:
        raise InvalidArgument("a pod that does not share its network cannot publish ports")
    pod_id = os.urandom(32).hex()
    name = name or random_name()
    if not all(c.isalnum() or c in "_.-" for c in name) or not name[0].isalnum():
        raise InvalidArgument(
            f"invalid pod name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    if engine.db.query("SELECT 1 FROM pods WHERE name = ?", (name,)):
        raise Conflict(f"pod {name} already exists")
    _infra_image(engine)
    exposed = {port: {} for port in publish or {}}
    config = {"Hostname": hostname or name, "Labels": {POD_LABEL: pod_id, INFRA_LABEL: "true"},
              "ExposedPorts": exposed}  # fmt: skip
    host: dict[str, Any] = {
        "PortBindings": publish or {},
        "IpcMode": "shareable" if "ipc" in share else "",
    }
    if network:
        host["NetworkMode"] = network
    infra = engine.create(INFRA_IMAGE, config, host, f"{pod_id[:12]}-infra")
    try:
        with engine.db.tx() as c:
            c.execute("INSERT INTO pods (id, name, created, labels, share, infra_id, restart) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (pod_id, name, now_rfc3339(), json.dumps(labels or {}), json.dumps(list(share)), infra,
                       restart))  # fmt: skip
    except BaseException:
        engine.remove(infra, force=True)
        raise
    return pod_id


def add_member(engine: Engine, pod_ref: str, config: dict[str, Any], host: dict[str, Any],
               init: str = "") -> None:  # fmt: skip
    """Make a container about to be created a member of the pod: its labels, the namespaces
    it takes from the infra (a member's own ports or network are refused: they are the
    pod's) and the pod's restart policy where the container has none of its own. ``init``:
    ``always`` or ``once`` for an init container, which each ``pod start`` (``once``: the
    first only) runs to completion, in order, before the others."""
    pod = lookup(engine, pod_ref)
    if init not in ("", "always", "once"):
        raise InvalidArgument(f"invalid init container type {init!r}: use always or once")
    if init:
        config["Labels"] = {**(config.get("Labels") or {}), INIT_LABEL: init}
    elif (
        pod["restart"]
        and not host.get("AutoRemove")
        and ((host.get("RestartPolicy") or {}).get("Name") or "no") == "no"
    ):
        name, _, count = pod["restart"].partition(":")
        host["RestartPolicy"] = {"Name": name, "MaximumRetryCount": int(count or 0)}
    if "net" in pod["share"]:
        if host.get("PortBindings"):
            raise InvalidArgument("published ports belong to the pod: give them to pod create")
        if (host.get("NetworkMode") or "default") not in ("default", "bridge", ""):
            raise InvalidArgument(
                "a container in a pod that shares its network cannot choose a network"
            )
    for kind in pod["share"]:
        host[_MODES[kind]] = f"container:{pod['infra_id']}"
    config["Labels"] = {**(config.get("Labels") or {}), POD_LABEL: pod["id"]}
    if "uts" in pod["share"]:
        config.pop("Hostname", None)


def members(engine: Engine, pod_id: str) -> list[dict[str, Any]]:
    """The pod's containers other than its infra, oldest first."""
    recs = [r for r in engine.list(all_=True) if (r["config"].get("Labels") or {}).get(POD_LABEL) == pod_id
            and not (r["config"].get("Labels") or {}).get(INFRA_LABEL)]  # fmt: skip
    return sorted(recs, key=lambda r: r["created"])


def ensure_infra(engine: Engine, rec: dict[str, Any]) -> None:
    """Before a member starts: its pod's infra runs."""
    pod_id = (rec["config"].get("Labels") or {}).get(POD_LABEL)
    if not pod_id or (rec["config"].get("Labels") or {}).get(INFRA_LABEL):
        return
    pod = lookup(engine, pod_id)
    if engine.refresh(pod["infra_id"])["status"] not in states.LIVE:
        engine.start(pod["infra_id"])


def start(engine: Engine, ref: str) -> str:
    """The infra, then the init containers one after the other, each to a clean exit (a
    failing one stops the start, named with its code), then the others."""
    pod = lookup(engine, ref)
    if engine.refresh(pod["infra_id"])["status"] not in states.LIVE:
        engine.start(pod["infra_id"])
    regular = []
    for rec in members(engine, pod["id"]):
        kind = (rec["config"].get("Labels") or {}).get(INIT_LABEL)
        if not kind:
            regular.append(rec)
            continue
        if rec["status"] not in states.LIVE:
            engine.start(rec["id"])
        code = engine.wait(rec["id"])
        if code != 0:
            raise Conflict(f"init container {rec['name']} of pod {pod['name']} exited with {code}")
        if kind == "once":
            engine.remove(rec["id"], force=True)
    for rec in regular:
        if rec["status"] not in states.LIVE:
            engine.start(rec["id"])
    return pod["id"]


def stop(engine: Engine, ref: str, timeout: int | None = None) -> str:
    """Every member, then the infra (which holds their namespaces)."""
    from dockyard.threads import each_in_a_thread

    pod = lookup(engine, ref)
    each_in_a_thread(lambda r: engine.stop(r["id"], timeout), members(engine, pod["id"]))
    engine.stop(pod["infra_id"], 10)  # catatonit ends on SIGTERM at once
    return pod["id"]


def kill(engine: Engine, ref: str, signal: str = "SIGKILL") -> str:
    pod = lookup(engine, ref)
    for rec in [*members(engine, pod["id"]), engine.refresh(pod["infra_id"])]:
        if rec["status"] in ("running", "paused"):
            engine.kill(rec["id"], signal)
    return pod["id"]


def restart(engine: Engine, ref: str, timeout: int | None = None) -> str:
    stop(engine, ref, timeout)
    return start(engine, ref)


def remove(engine: Engine, ref: str, force: bool = False) -> str:
    """The pod, its members and its infra; a running pod only with ``force``."""
    pod = lookup(engine, ref)
    live = [r["name"] for r in members(engine, pod["id"]) if r["status"] in states.LIVE]
    if live and not force:
        raise Conflict(
            f"pod {pod['name']} has running containers ({', '.join(live)}): stop them or use -f"
        )
    for rec in members(engine, pod["id"]):
        engine.remove(rec["id"], force=True)
    with engine.db.tx() as c:  # first: the infra is removable once no pod holds it
        c.execute("DELETE FROM pods WHERE id = ?", (pod["id"],))
    try:
        engine.remove(pod["infra_id"], force=True)
    except NotFound:
        pass
    return pod["id"]


def status(engine: Engine, pod: dict[str, Any]) -> str:
    """Podman's words: Created, Running, Degraded (some members stopped), Exited."""
    infra = engine.refresh(pod["infra_id"])["status"]
    states_ = [r["status"] for r in members(engine, pod["id"])]
    if infra not in states.LIVE:
        return (
            "Created" if infra == "created" and all(s == "created" for s in states_) else "Exited"
        )
    if states_ and any(s not in states.LIVE for s in states_):
        return "Degraded"
    return "Running"


def list_pods(engine: Engine) -> list[dict[str, Any]]:
    return [
        lookup(engine, r["id"])
        for r in engine.db.query("SELECT id FROM pods ORDER BY created DESC")
    ]


def inspect(engine: Engine, ref: str) -> dict[str, Any]:
    """Podman's pod inspect shape (the keys a user reads)."""
    pod = lookup(engine, ref)
    infra = engine.refresh(pod["infra_id"])
    recs = [infra, *members(engine, pod["id"])]
    return {
        "Id": pod["id"], "Name": pod["name"], "Created": pod["created"], "State": status(engine, pod),
        "Hostname": infra["config"].get("Hostname") or "", "Labels": pod["labels"],
        "SharedNamespaces": list(pod["share"]), "InfraContainerID": pod["infra_id"],
        "RestartPolicy": pod["restart"] or "no",
        "NumContainers": len(recs),
        "Containers": [{"Id": r["id"], "Name": r["name"], "State": r["status"]} for r in recs],
        "InfraConfig": {"PortBindings": infra["host_config"].get("PortBindings") or {},
                        "NetworkMode": infra["host_config"].get("NetworkMode") or "bridge"},
    }  # fmt: skip
