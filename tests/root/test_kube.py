"""``kube generate``: a pod (and a lone container) written as Kubernetes objects that the
schemas of recent Kubernetes versions accept, strictly, with what the containers run
with carried over."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from .conftest import Dy, engine_for_module, http_get, until

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def dy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dy]:
    yield from engine_for_module(tmp_path_factory, "kube")


def _valid(text: str) -> list[dict]:  # type: ignore[type-arg]
    """The documents of ``text``, each checked against the three newest schemas
    kubernetes-validate has, strictly (no field the API does not know). kubectl's
    client-side dry run is not used: it asks a cluster's API server for its resource list
    first, and there is no cluster here."""
    import kubernetes_validate as kv

    newest = kv.latest_version()
    major, minor, _patch = newest.split(".")
    versions = [f"{major}.{int(minor) - n}.0" for n in range(3)]
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        for version in versions:
            kv.validate(doc, version, strict=True)
    return docs


def _full_pod(
    dy: Dy, pod: str, name: str, volume: str, port: int, host_dir: str, health: str
) -> None:
    """A pod publishing ``port`` and a container in it with most of what a pod spec can
    say: env, a named volume, a bind, a tmpfs, limits, user, capabilities, a read-only
    root, a health check with a start period."""
    dy("volume", "create", volume)
    dy("pod", "create", "--name", pod, "-p", f"127.0.0.1:{port}:80")
    dy("create", "--pod", pod, "--name", name, "-e", "MODE=prod", "-v", f"{volume}:/data",
       "-v", f"{host_dir}:/hosttmp:ro", "--tmpfs", "/scratch", "-m", "64m", "--cpus", "0.5",
       "--user", "1000:1000", "--cap-drop", "NET_RAW", "--cap-add", "SYS_TIME", "--read-only",
       "--health-cmd", health, "--health-interval", "5s", "--health-start-period", "20s",
       "busybox", "httpd", "-f", "-p", "80")  # fmt: skip


def test_generate_a_pod_and_a_container(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    try:
        _full_pod(dy, "kapp", "kweb", "kdata", 18081, str(tmp_path), "test -f /tmp/ok")
        dy(
            "create",
            "--pod",
            "kapp",
            "--init-ctr",
            "once",
            "--name",
            "kinit",
            "busybox",
            "echo",
            "init",
        )
        docs = _valid(dy("kube", "generate", "--service", "kapp").stdout)
        assert [d["kind"] for d in docs] == ["PersistentVolumeClaim", "Pod", "Service"]
        claim, pod, service = docs
        assert claim["metadata"]["name"] == "kdata"
        spec = pod["spec"]
        (web,) = spec["containers"]
        assert (pod["metadata"]["name"], web["name"], web["image"]) == ("kapp", "kweb", "busybox")
        assert web["args"] == ["httpd", "-f", "-p", "80"] and "command" not in web
        assert web["env"] == [{"name": "MODE", "value": "prod"}]
        assert web["resources"] == {"limits": {"memory": "64Mi", "cpu": "500m"}}
        assert web["securityContext"] == {"runAsUser": 1000, "runAsGroup": 1000, "readOnlyRootFilesystem": True,
                                          "capabilities": {"add": ["SYS_TIME"], "drop": ["NET_RAW"]}}  # fmt: skip
        assert web["ports"] == [{"containerPort": 80, "protocol": "TCP", "hostPort": 18081}]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in web["volumeMounts"]}
        assert mounts["/data"]["persistentVolumeClaim"] == {"claimName": "kdata"}
        assert mounts["/hosttmp"]["hostPath"] == {"path": str(tmp_path)}
        assert mounts["/scratch"]["emptyDir"] == {"medium": "Memory"}
        probe = {"exec": {"command": ["/bin/sh", "-c", "test -f /tmp/ok"]}, "periodSeconds": 5,
                 "timeoutSeconds": 30, "failureThreshold": 3}  # fmt: skip
        assert web["livenessProbe"] == probe and web["readinessProbe"] == probe
        assert (
            web["startupProbe"]["failureThreshold"] == 20 // 5 + 3
        )  # the start period, then the retries
        assert [c["name"] for c in spec["initContainers"]] == ["kinit"]
        assert spec["restartPolicy"] == "Never"
        assert service["spec"]["selector"] == pod["metadata"]["labels"] == {"app": "kapp"}
        assert service["spec"]["ports"] == [
            {"name": "tcp-18081", "port": 18081, "targetPort": 80, "protocol": "TCP"}
        ]
        for kind, restart in (("deployment", "Always"), ("daemonset", "Always"), ("job", "Never")):
            (_claim, workload) = _valid(dy("kube", "generate", "--type", kind, "kapp").stdout)
            assert (
                workload["kind"].lower() == kind
                and workload["spec"]["template"]["spec"]["restartPolicy"] == restart
            )
        # a lone container: a pod named after it, its own command and restart policy
        dy(
            "create",
            "--name",
            "lone",
            "--restart",
            "on-failure",
            "--entrypoint",
            "sh",
            "busybox",
            "-c",
            "echo hi",
        )
        (lone,) = _valid(dy("kube", "generate", "lone").stdout)
        assert (
            lone["metadata"]["name"] == "lone-pod" and lone["spec"]["restartPolicy"] == "OnFailure"
        )
        assert lone["spec"]["containers"][0]["command"] == ["sh"]
        assert lone["spec"]["containers"][0]["args"] == ["-c", "echo hi"]
        out = tmp_path / "lone.yaml"
        dy("kube", "generate", "-f", str(out), "lone")
        assert yaml.safe_load(out.read_text())["kind"] == "Pod"
        for args, message in (
            (("nosuch",), "nosuch is neither a container, a pod nor a Compose project"),
            (
                ("--type", "cronjob", "kapp"),
                "invalid type 'cronjob': use pod, deployment, daemonset, job",
            ),
            (("--service", "lone"), "lone: --service needs a published port"),
        ):
            proc = dy("kube", "generate", *args, ok=False)
            assert proc.returncode == 1 and proc.stderr.strip() == f"dockyard: {message}", (
                proc.stderr
            )
    finally:
        dy("pod", "rm", "-f", "kapp", ok=False)
        dy("rm", "-f", "lone", ok=False)
        dy("volume", "rm", "kdata", ok=False)


def test_play_runs_a_file_and_down_removes_it(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A ConfigMap (environment and files), a Secret (an env value and files), a claim, a
    two-container Pod talking over localhost with a probe, a Deployment of three and a
    Service publishing it on the host; --down takes it away (the claim's volume stays),
    --replace brings it back; bad files are refused in one line and leave nothing."""
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from pathlib import Path

    source = (Path(__file__).parent / "kube_play.yaml").read_text().replace("{PORT}", str(port))
    path = tmp_path / "app.yaml"
    path.write_text(source)
    try:
        played = dy("kube", "play", str(path)).stdout.split("\n")
        assert played[:4] == [
            "Pod two started",
            "Pod web-pod-0 started",
            "Pod web-pod-1 started",
            "Pod web-pod-2 started",
        ]
        assert sorted(line.split()[1] for line in dy("pod", "ls").stdout.splitlines()[1:]) == [
            "two", "web-pod-0", "web-pod-1", "web-pod-2"]  # fmt: skip
        until("the Service answers on the host", lambda: http_get(port) != "")
        assert (
            http_get(port) == "web-pod-0"
        )  # the first replica's host name, through the Service's port
        probe = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 8080 | tail -1"
        until("srv answers inside the pod",
               lambda: dy("exec", "two-side", "sh", "-c", probe, ok=False).stdout.strip() == "hello-from-configmap")  # fmt: skip
        seen = dy(
            "exec",
            "two-side",
            "sh",
            "-c",
            "cat /etc/app/app.conf; cat /run/creds/token; echo; echo $TOKEN",
        ).stdout
        assert seen.split() == ["level=debug", "s3cret", "s3cret"]
        assert (
            dy("inspect", "-f", "{{index .Config.Healthcheck.Test 1}}", "two-srv").stdout.strip()
            == "nc"
        )
        assert "webdata" in dy("volume", "ls", "-q").stdout.split()
        gone = dy("kube", "play", "--down", str(path)).stdout.split("\n")
        assert gone[:4] == [
            "Pod two removed",
            "Pod web-pod-0 removed",
            "Pod web-pod-1 removed",
            "Pod web-pod-2 removed",
        ]
        assert dy("pod", "ls", "-q").stdout == "" and dy("ps", "-aq").stdout == ""
        assert (
            "webdata" in dy("volume", "ls", "-q").stdout.split()
        )  # data outlives --down, as podman
        assert not os.path.exists(os.path.join(dy.root, "kube", "configmap", "settings"))
        dy("kube", "play", str(path))
        again = dy("kube", "play", "--replace", str(path)).stdout.split("\n")
        assert (
            again[:2] == ["Pod two removed", "Pod web-pod-0 removed"]
            and "Pod web-pod-2 started" in again
        )
        dy("kube", "down", "--force", str(path))
        assert "webdata" not in dy("volume", "ls", "-q").stdout.split()
        # bad input: one line each, nothing half played
        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            held.listen()
            taken = held.getsockname()[1]
            cases = {
                "kind: Ingress\nmetadata: {name: x}\n": "kind Ingress is not supported",
                # names become paths under the state root: Kubernetes' rule keeps them there
                "kind: ConfigMap\nmetadata: {name: ../../escape}\ndata: {a: b}\n": "a name is lower-case letters",
                "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: busybox, lifecycle: {}}]}\n":
                    "Pod p: spec.containers[0].lifecycle is not supported",
                "kind: Pod\nmetadata: {name: p}\n  bad: [\n": "invalid YAML",
                "kind: Pod\nmetadata: {name: p}\n---\nkind: Pod\nmetadata: {name: p}\n": "Pod p is given twice",
                "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: nosuch-image}]}\n": "nosuch-image",
                "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: busybox, command: [sleep, '9']},"
                " {name: c, image: busybox}]}\n": "is already in use",
                source.replace(f"port: {port}", f"port: {taken}"): "port is already allocated",
            }  # fmt: skip
            for n, (text, message) in enumerate(cases.items()):
                bad = tmp_path / f"bad{n}.yaml"
                bad.write_text(text)
                proc = dy("kube", "play", str(bad), ok=False)
                assert (
                    proc.returncode != 0
                    and message in proc.stderr
                    and len(proc.stderr.splitlines()) == 1
                ), (
                    n,
                    proc.stderr,
                )
                assert dy("pod", "ls", "-q").stdout == "" and dy("ps", "-aq").stdout == "", n
    finally:
        dy("kube", "down", "--force", str(path), ok=False)


def test_a_generated_file_plays_back_the_same(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The round trip: a pod written out by ``kube generate`` and run again by ``kube play``
    has containers set up as the first ones were."""
    import json

    def shape(name: str) -> dict:  # type: ignore[type-arg]
        rec = dy.record(name)
        cfg, host = rec["Config"], rec["HostConfig"]
        test = cfg["Healthcheck"]["Test"]
        if test[0] == "CMD-SHELL":
            test = ["CMD", "/bin/sh", "-c", test[1]]
        tmpfs = sorted(
            {
                *(host.get("Tmpfs") or {}),
                *(m["Destination"] for m in rec["Mounts"] if m["Type"] == "tmpfs"),
            }
        )
        return {"image": cfg["Image"], "cmd": cfg["Cmd"], "env": sorted(e for e in cfg["Env"] if e.startswith("MODE")),
                "user": cfg["User"], "memory": host["Memory"], "cpus": host["NanoCpus"], "caps": (host["CapAdd"], host["CapDrop"]),
                "ro": host["ReadonlyRootfs"], "health": (test, cfg["Healthcheck"]["Interval"], cfg["Healthcheck"]["StartPeriod"]),
                "tmpfs": tmpfs,  # --tmpfs is HostConfig.Tmpfs, a tmpfs mount one of Mounts: the same to a user
                "mounts": sorted((m["Type"], m.get("Name") or m["Source"], m["Destination"], m["RW"])
                                 for m in rec["Mounts"] if m["Type"] != "tmpfs" and m["Destination"] != "/dev/shm")}  # fmt: skip

    try:
        _full_pod(dy, "rt", "rt-web", "rtdata", 18082, str(tmp_path), "true")
        dy("pod", "start", "rt")
        before = shape("rt-web")
        out = tmp_path / "rt.yaml"
        dy("kube", "generate", "-f", str(out), "rt")
        dy("pod", "rm", "-f", "rt")
        assert dy("kube", "play", str(out)).stdout.strip() == "Pod rt started"
        after = shape("rt-rt-web")  # the container's name in the pod: <pod>-<container>
        assert after == before, (after, before)
        assert json.loads(dy("pod", "inspect", "rt").stdout)["InfraConfig"]["PortBindings"] == {
            "80/tcp": [{"HostIp": "", "HostPort": "18082"}]}  # fmt: skip
    finally:
        dy("pod", "rm", "-f", "rt", ok=False)
        dy("volume", "rm", "rtdata", ok=False)


def test_a_compose_project_as_deployments(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A Compose project: a Deployment and a Service per service, a config as a ConfigMap
    mounted where the service has it, and ``depends_on: service_healthy`` as an init
    container that waits for the dependency's Service — valid for the newest schemas."""
    (tmp_path / "app.conf").write_text("level=debug\n")
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  store:\n    image: busybox\n    command: sh -c \"trap 'exit 0' TERM; sleep 300 & wait\"\n"
        "    expose: ['6379']\n    healthcheck: {test: ['CMD', 'true'], interval: 1s}\n"
        "  web:\n    image: busybox\n    command: sh -c \"trap 'exit 0' TERM; sleep 300 & wait\"\n"
        "    ports: ['127.0.0.1::8080']\n    depends_on: {store: {condition: service_healthy}}\n"
        "    configs: [{source: appconf, target: /etc/app.conf}]\n    deploy: {replicas: 2}\n"
        "configs:\n  appconf: {file: ./app.conf}\n"
    )
    d = str(tmp_path)
    try:
        dy("compose", "-p", "kproj", "up", "-d", "--wait", cwd=d)
        docs = _valid(dy("kube", "generate", "kproj").stdout)
        by = {(x["kind"], x["metadata"]["name"]): x for x in docs}
        assert set(by) == {("ConfigMap", "appconf"), ("Deployment", "store"), ("Deployment", "web"),
                           ("Service", "store"), ("Service", "web")}  # fmt: skip
        assert by[("ConfigMap", "appconf")]["data"] == {"appconf": "level=debug\n"}
        web = by[("Deployment", "web")]["spec"]
        assert web["replicas"] == 2
        pod = web["template"]["spec"]
        (wait,) = pod["initContainers"]
        assert wait["command"] == ["sh", "-c", "until nc -z store 6379; do sleep 1; done"]
        (mount,) = [
            m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/etc/app.conf"
        ]
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["configMap"]["name"] == "appconf" and mount["subPath"] == "appconf"
        assert by[("Service", "store")]["spec"]["ports"][0]["port"] == 6379
        assert by[("Service", "web")]["spec"]["ports"][0]["targetPort"] == 8080
    finally:
        dy("compose", "-p", "kproj", "down", "-t", "1", cwd=d, ok=False)


def test_play_enforces_a_liveness_probe(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A container whose liveness probe fails is killed and, as its pod's restartPolicy
    says, started again (Docker would only mark it unhealthy); a readiness probe alone
    kills nothing."""
    import time

    (tmp_path / "count").write_text("")
    spec = (
        "kind: Pod\nmetadata: {name: live}\nspec:\n  restartPolicy: Always\n"
        "  volumes: [{name: out, hostPath: {path: %s}}]\n  containers:\n"
        '  - name: c\n    image: busybox\n    command: [sh, -c, "echo start >> /out/count; exec sleep 300"]\n'
        "    volumeMounts: [{name: out, mountPath: /out}]\n"
        "    %s: {exec: {command: [test, -f, /tmp/never]}, periodSeconds: 1, failureThreshold: 1}\n"
    )
    try:
        (tmp_path / "live.yaml").write_text(spec % (tmp_path, "livenessProbe"))
        dy("kube", "play", str(tmp_path / "live.yaml"))
        until(
            "restarted by its probe",
            lambda: (tmp_path / "count").read_text().split().count("start") >= 2,
            30,
        )
        dy("kube", "down", str(tmp_path / "live.yaml"))
        (tmp_path / "count").write_text("")
        (tmp_path / "ready.yaml").write_text(spec % (tmp_path, "readinessProbe"))
        dy("kube", "play", str(tmp_path / "ready.yaml"))
        until(
            "unhealthy",
            lambda: (
                dy("inspect", "-f", "{{.State.Health.Status}}", "live-c").stdout.strip()
                == "unhealthy"
            ),
        )
        time.sleep(2)
        assert (tmp_path / "count").read_text().split() == ["start"]  # marked, not killed
    finally:
        dy("kube", "down", str(tmp_path / "live.yaml"), ok=False)
        dy("pod", "rm", "-f", "live", ok=False)
