"""``dockyard compose`` runs a real project through the engine: a service built from a
Dockerfile, a key-value store with a health check the others wait for, a worker; two
networks and a named volume. The same file under Compose v2 (through dockyard's Engine
API) sees the same containers, names and labels."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import DOCKYARD, Dy, engine_for_module, wait_for_port

pytestmark = pytest.mark.root

PROJECT = """\
services:
  store:
    image: busybox
    command: sh -c "echo store-up; sleep 1; touch /tmp/ready; exec sleep 300"
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      retries: 30
    volumes: [data:/data]
    networks: [back]
  web:
    build:
      context: ./web
      args: {GREETING: "${GREETING:-hello}"}
    depends_on:
      store: {condition: service_healthy}
    environment: {ROLE: web}
    networks: [back, front]
  worker:
    image: busybox
    command: sh -c "echo worker-$$ROLE; exec sleep 300"
    environment: [ROLE=worker]
    depends_on: [web]
    networks: [front]
volumes:
  data: {}
networks:
  back: {}
  front: {}
"""


@pytest.fixture(scope="module")
def dy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dy]:
    yield from engine_for_module(tmp_path_factory, "compose")


@pytest.fixture()
def project(tmp_path) -> str:  # type: ignore[no-untyped-def]
    (tmp_path / "web").mkdir()
    (tmp_path / "compose.yaml").write_text(PROJECT)
    (tmp_path / ".env").write_text("GREETING=bonjour\n")
    (tmp_path / "web" / "Dockerfile").write_text(
        "FROM busybox\nARG GREETING\nRUN echo $GREETING > /greeting\n"
        'CMD ["sh", "-c", "nslookup store >/dev/null && echo web-$(cat /greeting); exec sleep 300"]\n'
    )
    return str(tmp_path)


def _compose(dy: Dy, project: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return dy("compose", "-p", "kv", *args, cwd=project, ok=ok, timeout=180)


def _ids(dy: Dy) -> dict[str, str]:
    out = dy(
        "ps",
        "-a",
        "--filter",
        "label=com.docker.compose.project=kv",
        "--format",
        "{{.Names}} {{.ID}}",
    ).stdout
    return dict(line.split() for line in out.splitlines())


def test_a_project_up_changed_and_down(dy: Dy, project: str) -> None:
    try:
        up = _compose(dy, project, "up", "-d")
        assert (
            "Container kv-store-1  Started" in up.stderr and "Volume kv_data  Created" in up.stderr
        )
        first = _ids(dy)
        assert sorted(first) == ["kv-store-1", "kv-web-1", "kv-worker-1"]
        # web waited for the store's health check
        store, web = (json.loads(dy("inspect", n).stdout)[0] for n in ("kv-store-1", "kv-web-1"))
        assert store["State"]["Health"]["Status"] == "healthy"
        assert web["State"]["StartedAt"] > store["State"]["StartedAt"]
        labels = web["Config"]["Labels"]
        assert (labels["com.docker.compose.project"], labels["com.docker.compose.service"],
                labels["com.docker.compose.container-number"]) == ("kv", "web", "1")  # fmt: skip
        assert sorted(web["NetworkSettings"]["Networks"]) == ["kv_back", "kv_front"]
        deadline = time.monotonic() + 30
        while True:
            logs = _compose(dy, project, "logs").stdout
            if "web-bonjour" in logs and "worker-worker" in logs and "store-up" in logs:
                break  # the .env value reached the build argument; $$ kept a literal $
            assert time.monotonic() < deadline, logs
            time.sleep(0.2)
        assert "kv-web-1     | web-bonjour" in logs
        assert (
            _compose(
                dy,
                project,
                "exec",
                "-T",
                "web",
                "sh",
                "-c",
                "nslookup worker >/dev/null && echo ok",
            ).stdout
            == "ok\n"
        )
        # unchanged: nothing recreated; one service changed: only it
        assert _compose(dy, project, "up", "-d").stderr == ""
        assert _ids(dy) == first
        with open(os.path.join(project, "compose.yaml")) as f:
            text = f.read()
        with open(os.path.join(project, "compose.yaml"), "w") as f:
            f.write(text.replace("environment: [ROLE=worker]", "environment: [ROLE=worker2]"))
        changed = _compose(dy, project, "up", "-d").stderr
        assert "kv-worker-1  Recreated" in changed and "kv-web-1" not in changed
        now = _ids(dy)
        assert now["kv-worker-1"] != first["kv-worker-1"] and now["kv-web-1"] == first["kv-web-1"]
        assert [line.split()[0] for line in _compose(dy, project, "ps").stdout.splitlines()[1:]] == \
            ["kv-store-1", "kv-web-1", "kv-worker-1"]  # fmt: skip
    finally:
        _compose(dy, project, "down", "-v", "-t", "1", ok=False)
    assert _ids(dy) == {}
    assert "kv_" not in dy("network", "ls", "--format", "{{.Name}}").stdout
    assert "kv_data" not in dy("volume", "ls", "-q").stdout
    dy("rmi", "kv-web")


def test_bad_projects_are_refused_in_one_line(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cases = {
        "missing": (None, "no configuration file provided"),
        "cycle": ("services:\n  a: {image: busybox, depends_on: [b]}\n  b: {image: busybox, depends_on: [a]}\n",
                  "dependency cycle detected: a -> b -> a"),
        "unknown-key": ("services:\n  a: {image: busybox, colour: red}\n",
                        "compose.yaml: service a: additional property colour is not allowed"),
        "wrong-type": ("services:\n  a: {image: busybox, ports: 80}\n", "compose.yaml: service a: ports must be a list"),
        "undefined-network": ("services:\n  a: {image: busybox, networks: [nope]}\n",
                              "service a refers to undefined network nope"),
        "required-var": ("services:\n  a: {image: \"${NEEDED:?set NEEDED}\"}\n",
                         "required variable NEEDED is missing a value: set NEEDED"),
        "undefined-config": ("services:\n  a: {image: busybox, configs: [nope]}\n",
                             "service a refers to undefined config nope"),
        "missing-config-file": ("services:\n  a: {image: busybox}\nconfigs:\n  c: {file: ./gone.conf}\n",
                                "compose.yaml: configs.c: file "),
        "swarm-secret": ("services:\n  a: {image: busybox}\nsecrets:\n  s: {external: true}\n",
                         "external configs and secrets live in a Swarm"),
        "include-clash": ("include: [other.yaml]\nservices:\n  a: {image: busybox}\n",
                          "include other.yaml: service a conflicts with one of the same name"),
        "extends-missing": ("services:\n  a: {extends: {file: other.yaml, service: nope}}\n",
                            "extends an undefined service nope of"),
        "bad-ulimit": ("services:\n  a: {image: busybox, ulimits: {nofile: {soft: 9, hard: 1}}}\n",
                       "ulimits.nofile: soft and hard must be numbers, soft <= hard"),
    }  # fmt: skip
    for name, (text, message) in cases.items():
        d = tmp_path / name
        d.mkdir()
        if text is not None:
            (d / "compose.yaml").write_text(text)
            (d / "other.yaml").write_text("services:\n  a: {image: busybox:other}\n")
        proc = dy("compose", "config", cwd=str(d), ok=False)
        assert proc.returncode != 0 and message in proc.stderr, (name, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    # an image that fails to build: up fails in one line, down removes what up made
    d = tmp_path / "broken"
    (d / "app").mkdir(parents=True)
    (d / "compose.yaml").write_text("services:\n  db: {image: busybox, command: sleep 300}\n"
                                    "  app: {build: ./app, depends_on: [db]}\n")  # fmt: skip
    (d / "app" / "Dockerfile").write_text("FROM busybox\nRUN exit 3\n")
    failed = dy("compose", "-p", "broken", "up", "-d", cwd=str(d), ok=False)
    assert failed.returncode != 0 and "exit code: 3" in failed.stderr
    dy("compose", "-p", "broken", "down", "-t", "1", cwd=str(d))
    assert "broken" not in dy("ps", "-a", "--format", "{{.Names}}").stdout
    assert "broken_" not in dy("network", "ls", "--format", "{{.Name}}").stdout


def test_include_extends_configs_secrets_ulimits(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A service extending one from a file in another directory (its bind source leads where
    it did there), a service from an included file (interpolated with that directory's
    .env), configs and secrets as read-only files, ulimits; a changed config file recreates
    the service using it, and only it; down leaves nothing of the written secrets."""
    (tmp_path / "base" / "seed").mkdir(parents=True)
    (tmp_path / "base" / "seed" / "seed.txt").write_text("seeded\n")
    (tmp_path / "base" / "common.yaml").write_text(
        "services:\n  base:\n    image: busybox\n    environment: {FROM_BASE: 'yes'}\n"
        "    volumes: ['./seed:/data:ro']\n    stop_grace_period: 1s\n"
    )
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / ".env").write_text("DBNAME=from-lib\n")
    (tmp_path / "lib" / "db.yaml").write_text(
        "services:\n  db:\n    image: busybox\n    environment: {NAME: '${DBNAME}'}\n"
        "    command: sleep 300\n    stop_grace_period: 1s\n"
    )
    (tmp_path / "app.conf").write_text("conf-one\n")
    (tmp_path / "compose.yaml").write_text(
        "include:\n  - lib/db.yaml\n"
        "services:\n  app:\n    extends: {file: base/common.yaml, service: base}\n    depends_on: [db]\n"
        "    configs: [appconf, {source: greeting, target: /etc/greeting}]\n    secrets: [token]\n"
        "    ulimits: {nofile: {soft: 1024, hard: 2048}}\n"
        "    command: sh -c 'for f in /appconf /etc/greeting /run/secrets/token /data/seed.txt; do cat $$f; echo; done; "
        "ulimit -n; ulimit -Hn; touch /run/secrets/token 2>/dev/null || echo read-only; exec sleep 300'\n"
        "configs:\n  appconf: {file: ./app.conf}\n  greeting: {content: 'hello ${WHO:-world}'}\n"
        "secrets:\n  token: {environment: TOKEN}\n"
    )
    d = str(tmp_path)
    env = {**os.environ, "TOKEN": "s3cret", "WHO": "compose"}

    def c(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return dy("compose", "-p", "inc", *args, cwd=d, env=env, ok=ok)

    try:
        c("up", "-d")
        deadline = time.monotonic() + 20
        while "read-only" not in (out := c("logs", "--no-log-prefix", "app").stdout):
            assert time.monotonic() < deadline, out
            time.sleep(0.2)
        assert out.split() == [
            "conf-one",
            "hello",
            "compose",
            "s3cret",
            "seeded",
            "1024",
            "2048",
            "read-only",
        ]
        assert dy("exec", "inc-app-1", "sh", "-c", "echo $FROM_BASE").stdout.strip() == "yes"
        assert dy("exec", "inc-db-1", "sh", "-c", "echo $NAME").stdout.strip() == "from-lib"
        assert "s3cret" not in c("config").stdout
        (tmp_path / "app.conf").write_text("conf-two\n")
        assert c("up", "-d", "--dry-run").stdout.splitlines() == [
            "db: keep — unchanged",
            "app: recreate — configs changed",
        ]
        c("up", "-d")
        deadline = time.monotonic() + 20
        while "conf-two" not in c("logs", "app").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        c("down", "-t", "1", ok=False)
    assert not os.path.exists(os.path.join(dy.root, "compose", "inc"))


def test_push_events_logs_and_down_rmi(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``push`` sends the named images to a loopback registry (which then has them),
    ``events`` streams the project's container events (text and JSON), ``logs`` colours
    each container's prefix on a terminal and not elsewhere, ``down`` leaves an orphan
    unless asked and removes images with ``--rmi`` (``local``: the built one only)."""
    import pty
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    registry = subprocess.Popen([DOCKYARD, "--root", str(tmp_path / "reg-root"), "registry", "serve", "--addr",
                                 f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM busybox\nRUN echo built > /built\n")
    text = (
        "services:\n"
        f"  named: {{build: ./app, image: '127.0.0.1:{port}/team/named:1', command: sh -c 'echo one; exec sleep 300', "
        "stop_grace_period: 1s}\n"
        "  local: {build: ./app, command: sh -c 'echo two; exec sleep 300', stop_grace_period: 1s}\n"
    )
    (tmp_path / "compose.yaml").write_text(text)
    d = str(tmp_path)

    def c(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return dy("compose", "-p", "pev", *args, cwd=d, ok=ok)

    events = subprocess.Popen([DOCKYARD, "--root", dy.root, "compose", "-p", "pev", "events", "--json"], cwd=d,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for_port(port, registry)
        c("up", "-d")
        c("push")
        dy("rmi", f"127.0.0.1:{port}/team/named:1")
        dy("pull", f"127.0.0.1:{port}/team/named:1")  # the registry has it
        logs = c("logs").stdout  # not a terminal: plain prefixes
        assert "\x1b[" not in logs and "pev-local-1  | two" in logs and "pev-named-1  | one" in logs
        main, sub = pty.openpty()
        proc = subprocess.run([DOCKYARD, "--root", dy.root, "compose", "-p", "pev", "logs", "named", "local"], cwd=d,
                              stdout=sub, stderr=subprocess.PIPE, timeout=60)  # fmt: skip
        os.close(sub)
        out = b""
        try:
            while chunk := os.read(main, 4096):
                out += chunk
        except OSError:
            pass
        os.close(main)
        assert proc.returncode == 0
        assert (
            b"\x1b[36mpev-local-1  |\x1b[0m two" in out
            and b"\x1b[33mpev-named-1  |\x1b[0m one" in out
        ), out
        (tmp_path / "compose.yaml").write_text(text.split("  local:")[0])  # local is an orphan now
        down = c("down", "-t", "1", "--rmi", "local")
        assert "orphan container pev-local-1" in down.stderr
        assert dy("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["pev-local-1"]
        images = dy("images", "--format", "{{.Repository}}").stdout.split()
        assert f"127.0.0.1:{port}/team/named" in images  # --rmi local keeps the named image
        (tmp_path / "compose.yaml").write_text(text)
        c("down", "-t", "1", "--rmi", "all")
        assert dy("ps", "-a", "--format", "{{.Names}}").stdout.split() == []
        images = dy("images", "--format", "{{.Repository}}").stdout.split()
        assert "pev-local" not in images and f"127.0.0.1:{port}/team/named" not in images
        assert (
            c("down", "--rmi", "some", ok=False).stderr.strip()
            == 'dockyard: invalid --rmi value "some": use local or all'
        )
    finally:
        events.terminate()
        out_events = events.communicate(timeout=30)[0]
        registry.terminate()
        registry.wait(30)
        c("down", "-t", "1", "--remove-orphans", ok=False)
    seen = [json.loads(line) for line in out_events.splitlines()]
    actions = [(e["service"], e["action"]) for e in seen]
    for service in ("named", "local"):
        for action in ("create", "start", "die", "destroy"):
            assert (service, action) in actions, (service, action, actions)
    assert all(
        e["type"] == "container" and e["attributes"]["name"].startswith("pev-") for e in seen
    )


def test_compose_v2_sees_the_same_project(
    dy: Dy, project: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from .api_support import serving
    from .test_api_compose import PLUGIN

    if not os.path.exists(PLUGIN):
        pytest.fail("the Compose v2 plugin is missing (bash scripts/install.sh --test fetches it)")
    stack: Any = serving(dy.root, str(tmp_path_factory.mktemp("compose-v2")))
    _service, proxy, env = next(stack)
    try:
        plugins = os.path.join(env["DOCKER_CONFIG"], "cli-plugins")
        os.makedirs(plugins, exist_ok=True)
        os.symlink(os.path.realpath(PLUGIN), os.path.join(plugins, "docker-compose"))
        _compose(dy, project, "up", "-d")
        ours = _shape(dy)
        theirs = subprocess.run(["docker", "compose", "-p", "kv", "ps", "--format", "{{.Name}} {{.Service}}"],
                                cwd=project, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert theirs.returncode == 0, theirs.stderr
        assert sorted(theirs.stdout.split("\n")[:-1]) == [
            "kv-store-1 store",
            "kv-web-1 web",
            "kv-worker-1 worker",
        ]
        down = subprocess.run(["docker", "compose", "-p", "kv", "down", "-v", "-t", "1"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert down.returncode == 0, down.stderr
        assert _ids(dy) == {}
        assert "kv_" not in dy("network", "ls", "--format", "{{.Name}}").stdout
        assert "kv_data" not in dy("volume", "ls", "-q").stdout
        # the same file brought up by Compose v2: the same names, labels, networks, volumes
        up = subprocess.run(["docker", "compose", "-p", "kv", "up", "-d"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
        assert up.returncode == 0, up.stderr
        assert _shape(dy) == ours
        down = subprocess.run(["docker", "compose", "-p", "kv", "down", "-v", "-t", "1"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert down.returncode == 0, down.stderr
    finally:
        _compose(dy, project, "down", "-v", "-t", "1", ok=False)
        for _ in stack:
            pass
    assert not proxy.violations, proxy.violations
    dy("rmi", "kv-web", ok=False)


# labels whose values are each tool's own: the version that made the object, and the
# config hash (Compose hashes its Go structures; see docs/compose.md)
_OWN_VALUES = ("com.docker.compose.version", "com.docker.compose.config-hash")


def _shape(dy: Dy) -> dict[str, Any]:
    """What two tools running one file must agree on: per container its name, labels and
    networks (with aliases); the project's networks and volumes with their labels."""

    def labels(found: dict[str, str]) -> dict[str, str]:
        return {
            k: ("(own)" if k in _OWN_VALUES else v)
            for k, v in found.items()
            if k.startswith("com.docker.compose.")
        }

    containers = {}
    for name in _ids(dy):
        rec = dy.record(name)
        nets = rec["NetworkSettings"]["Networks"]
        containers[name] = {
            "labels": labels(rec["Config"]["Labels"]),
            "networks": {
                n: sorted(set(v["Aliases"] or []) - {rec["Id"][:12]}) for n, v in nets.items()
            },
            "image": rec["Config"]["Image"],
            "command": rec["Config"]["Cmd"],
            "mounts": sorted(
                (m["Type"], m.get("Name") or m["Source"], m["Destination"]) for m in rec["Mounts"]
            ),
        }
    networks = {}
    for line in dy("network", "ls", "--format", "{{.Name}}").stdout.split():
        if line.startswith("kv_"):
            networks[line] = labels(
                json.loads(dy("network", "inspect", line).stdout)[0]["Labels"] or {}
            )
    volumes = {}
    for line in dy("volume", "ls", "-q").stdout.split():
        if line.startswith("kv_"):
            volumes[line] = labels(
                json.loads(dy("volume", "inspect", line).stdout)[0]["Labels"] or {}
            )
    return {"containers": containers, "networks": networks, "volumes": volumes}


def test_revisions_dry_run_and_rollback(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each up that changes the project is a revision; --dry-run says what up would do and
    why; rollback brings the previous images back even when the tag has moved since."""
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo v2 > /v\n")
    dy("tag", "busybox", "rbapp:1")
    dy("build", "-q", "-t", "rbapp:2", str(tmp_path))
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: rbapp:${TAG:-1}\n    stop_grace_period: 1s\n"
        '    command: sh -c "cat /v 2>/dev/null || echo v1; exec sleep 300"\n'
        "  db:\n    image: busybox\n    command: sleep 300\n    stop_grace_period: 1s\n"
    )
    d = str(tmp_path)
    env = {**os.environ, "TAG": "2"}
    try:
        dy("compose", "-p", "rb", "up", "-d", cwd=d)
        v1 = dy.record("rb-web-1")["Image"]
        plan = dy("compose", "-p", "rb", "up", "--dry-run", cwd=d, env=env).stdout.splitlines()
        assert (
            plan[0].startswith("web: recreate — image rbapp:2 (")
            and "replaces rbapp:1 (" in plan[0]
        )
        assert plan[1] == "db: keep — unchanged"
        assert dy.record("rb-web-1")["Image"] == v1  # a dry run changes nothing
        dy("compose", "-p", "rb", "up", "-d", cwd=d, env=env)
        assert dy.record("rb-web-1")["Image"] != v1
        history = dy("compose", "-p", "rb", "history", cwd=d).stdout.splitlines()
        assert [line.split()[0] for line in history[1:]] == [
            "1",
            "2",
        ] and "web: recreate" in history[2]
        dy("tag", "rbapp:2", "rbapp:1")  # the tag moves; revision 1 pinned the image by ID
        dy("compose", "-p", "rb", "rollback", cwd=d)
        assert dy.record("rb-web-1")["Image"] == v1
        deadline = time.monotonic() + 20
        while "rb-web-1  | v1" not in dy("compose", "-p", "rb", "logs", "web", cwd=d).stdout:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        history = dy("compose", "-p", "rb", "history", cwd=d).stdout.splitlines()
        assert [line.split()[0] for line in history[1:]] == ["1", "2", "3"]
        refused = dy("compose", "-p", "rb", "rollback", "9", cwd=d, ok=False)
        assert refused.returncode != 0 and "project rb has no revision 9" in refused.stderr
    finally:
        dy("compose", "-p", "rb", "down", "-t", "1", cwd=d, ok=False)
        dy("rmi", "rbapp:1", "rbapp:2", ok=False)


ROLLOUT = """\
services:
  web:
    image: busybox
    environment: {VERSION: "${VERSION:-1}"}
    command: sh -c "mkdir -p /www && echo v$$VERSION > /www/index.html && exec httpd -f -p 8080 -h /www"
    deploy: {replicas: 2}
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD-SHELL", "test $$VERSION != 3 || { echo version 3 is broken; exit 1; }"]
      interval: 1s
      retries: 2
    x-dockyard:
      rollout: {parallelism: 1, timeout: 30s}
"""


def _count(probe_dir: Any) -> tuple[int, int]:
    """(answers, failures) the probe wrote last; (0, 0) before its first (or mid-write)."""
    try:
        words = (probe_dir / "count").read_text().split()
    except FileNotFoundError:
        return 0, 0
    return (int(words[0]), int(words[1])) if len(words) == 2 else (0, 0)


def test_a_rollout_keeps_answering_and_a_failing_one_is_undone(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """web's two replicas are replaced one at a time, each new one healthy before an old one
    leaves DNS and stops: a client asking for ``web`` by name throughout sees no failure.
    A version whose health check fails stops the rollout: the new container goes, the old
    ones keep serving, no revision is recorded, exit status 1 with the check's output."""
    d = str(tmp_path)
    (tmp_path / "compose.yaml").write_text(ROLLOUT)
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    probe = None
    try:
        dy("compose", "-p", "ro", "up", "-d", "--wait", cwd=d)
        probe = dy("run", "-d", "--network", "ro_default", "-v", f"{probe_dir}:/p", "busybox", "sh", "-c",
                   "ok=0; bad=0; while [ ! -f /p/stop ]; do "
                   "if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 web 8080 | grep -q '^v'; "
                   "then ok=$((ok+1)); else bad=$((bad+1)); fi; echo $ok $bad > /p/count; done").stdout.strip()  # fmt: skip
        deadline = time.monotonic() + 20
        while _count(probe_dir)[0] < 5:
            assert time.monotonic() < deadline, "the probe never reached web"
            time.sleep(0.1)
        before = {r["Name"] for r in (dy.record(n) for n in ("ro-web-1", "ro-web-2"))}
        rolled = dy("compose", "-p", "ro", "up", "-d", cwd=d, env={**os.environ, "VERSION": "2"})
        assert rolled.stderr.count("Healthy") == 2 and rolled.stderr.count("Replaced") == 2
        names = sorted(
            dy(
                "ps", "--filter", "label=com.docker.compose.service=web", "--format", "{{.Names}}"
            ).stdout.split()
        )
        assert len(names) == 2 and not set(names) & {n.lstrip("/") for n in before}
        failed = dy(
            "compose", "-p", "ro", "up", "-d", cwd=d, env={**os.environ, "VERSION": "3"}, ok=False
        )
        assert failed.returncode == 1 and "rollout of web stopped" in failed.stderr
        assert "version 3 is broken" in failed.stderr
        after = sorted(
            dy(
                "ps",
                "-a",
                "--filter",
                "label=com.docker.compose.service=web",
                "--format",
                "{{.Names}}",
            ).stdout.split()
        )
        assert after == names  # the new one went; the old ones serve on
        (probe_dir / "stop").touch()
        assert dy("wait", probe).stdout.strip() == "0"
        ok, bad = _count(probe_dir)
        assert ok > 10 and bad == 0, (ok, bad)
        history = dy("compose", "-p", "ro", "history", cwd=d).stdout.splitlines()
        assert [line.split()[0] for line in history[1:]] == ["1", "2"]  # the failed one left none
    finally:
        if probe:
            dy("rm", "-f", probe, ok=False)
        dy("compose", "-p", "ro", "down", "-t", "1", cwd=d, ok=False)


FRONT = """\
services:
  front:
    image: busybox
    environment: {VERSION: "${VERSION:-1}"}
    command: sh -c "mkdir -p /www && echo v$$VERSION > /www/index.html && exec httpd -f -p 8080 -h /www"
    ports: ["127.0.0.1:${PORT}:8080"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD-SHELL", "test $$VERSION != 3 || { echo version 3 is broken; exit 1; }"]
      interval: 1s
      retries: 2
    x-dockyard:
      rollout: {timeout: 30s}
"""


class _PortProbe:
    """A client on the host asking 127.0.0.1:PORT over and over, a new connection each
    time, counting answers by version and failures."""

    def __init__(self, port: int) -> None:
        import threading

        self.port, self.seen, self.failures = port, {}, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import socket

        while not self._stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=3) as s:
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    data = b""
                    while chunk := s.recv(4096):
                        data += chunk
                body = data.partition(b"\r\n\r\n")[2].decode().strip()
                if data.split(b" ", 2)[1:2] != [b"200"] or not body.startswith("v"):
                    raise OSError(f"answer {data[:60]!r}")
                self.seen[body] = self.seen.get(body, 0) + 1
            except OSError as err:
                self.failures.append(str(err))
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_rollout_hands_a_published_port_over(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One replica behind a fixed host port: the new container is healthy before it takes the
    port over (one firewall rewrite), and the old one drains before it stops — a client on
    the host's loopback sees v1, then v2, and never a failure. A failing version leaves the
    port with the container that serves."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = str(tmp_path)
    (tmp_path / "compose.yaml").write_text(FRONT)
    env = {**os.environ, "PORT": str(port)}
    probe = None
    try:
        dy("compose", "-p", "hand", "up", "-d", "--wait", cwd=d, env=env)
        probe = _PortProbe(port)
        deadline = time.monotonic() + 20
        while probe.seen.get("v1", 0) < 5:
            assert time.monotonic() < deadline, f"nothing answered on {port}: {probe.failures[-3:]}"
            time.sleep(0.05)
        rolled = dy("compose", "-p", "hand", "up", "-d", cwd=d, env={**env, "VERSION": "2"})
        assert "Replaced" in rolled.stderr
        deadline = time.monotonic() + 10
        while probe.seen.get("v2", 0) < 5:
            assert time.monotonic() < deadline, (
                f"v2 never answered: {probe.seen} {probe.failures[-3:]}"
            )
            time.sleep(0.05)
        (new,) = dy(
            "ps", "--filter", "label=com.docker.compose.project=hand", "--format", "{{.Names}}"
        ).stdout.split()
        assert new == "hand-front-2"
        assert (
            dy("compose", "-p", "hand", "port", "front", "8080", cwd=d, env=env).stdout.strip()
            == f"127.0.0.1:{port}"
        )
        bindings = dy.record(new)["HostConfig"]["PortBindings"]
        assert bindings == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        failed = dy(
            "compose", "-p", "hand", "up", "-d", cwd=d, env={**env, "VERSION": "3"}, ok=False
        )
        assert failed.returncode == 1 and "version 3 is broken" in failed.stderr
        v2 = probe.seen["v2"]
        deadline = time.monotonic() + 10
        while probe.seen["v2"] < v2 + 5:
            assert time.monotonic() < deadline, f"v2 stopped answering: {probe.failures[-3:]}"
            time.sleep(0.05)
        probe.stop()
        assert probe.failures == [] and set(probe.seen) == {"v1", "v2"}, (
            probe.seen,
            probe.failures[:3],
        )
    finally:
        if probe:
            probe.stop()
        dy("compose", "-p", "hand", "down", "-t", "1", cwd=d, env=env, ok=False)


def test_the_lifecycle_verbs(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "compose.yaml").write_text(
        "services:\n  app:\n    image: busybox\n    ports: ['127.0.0.1::8080']\n    stop_grace_period: 1s\n"
        "    command: sh -c \"trap 'exit 0' TERM; while true; do sleep 0.1; done\"\n"
    )
    d = str(tmp_path)

    def c(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return dy("compose", "-p", "verbs", *args, cwd=d, ok=ok)

    try:
        c("up", "-d")
        assert c("ls").stdout.splitlines()[1].split()[:2] == ["verbs", "running(1)"]
        host, port = c("port", "app", "8080").stdout.strip().rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        # the container's shell is always there (its sleep comes and goes every 0.1 s)
        assert "busybox" in c("images").stdout and "trap 'exit 0' TERM" in c("top").stdout
        c("stop")
        assert c("ps").stdout.splitlines()[1:] == [] and "exited(1)" in c("ls", "-a").stdout
        c("start")
        assert "Up" in c("ps").stdout
        c("restart", "-t", "1")
        c("kill")
        assert dy("wait", "verbs-app-1").stdout.strip() == "137"
        c("rm", "-f")
        assert c("ps", "-a").stdout.splitlines()[1:] == []
        # --scale, then back to the file's one replica; a service gone from the file is an orphan
        c("up", "-d", "--scale", "app=2")
        assert [line.split()[0] for line in c("ps").stdout.splitlines()[1:]] == [
            "verbs-app-1",
            "verbs-app-2",
        ]
        c("up", "-d")
        assert [line.split()[0] for line in c("ps").stdout.splitlines()[1:]] == ["verbs-app-1"]
        with open(os.path.join(d, "compose.yaml")) as f:
            text = f.read()
        with open(os.path.join(d, "compose.yaml"), "w") as f:
            f.write(text.replace("  app:", "  renamed:"))
        assert "Found orphan container verbs-app-1" in c("up", "-d").stderr
        assert "verbs-app-1  Removed (orphan)" in c("up", "-d", "--remove-orphans").stderr
        assert [line.split()[0] for line in c("ps").stdout.splitlines()[1:]] == ["verbs-renamed-1"]
    finally:
        c("down", "-t", "1", ok=False)


def test_run_build_and_pull(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "tool").mkdir()
    (tmp_path / "tool" / "Dockerfile").write_text("FROM busybox\nRUN echo tool > /tool\n")
    (tmp_path / "compose.yaml").write_text(
        "services:\n  db:\n    image: busybox\n    command: sleep 300\n    stop_grace_period: 1s\n"
        "  tool:\n    build: ./tool\n    depends_on: [db]\n    environment: {WHO: file}\n"
    )
    d = str(tmp_path)
    try:
        dy("compose", "-p", "oneoff", "build", cwd=d)
        assert dy("image", "inspect", "oneoff-tool", ok=False).returncode == 0
        out = dy("compose", "-p", "oneoff", "run", "--rm", "-T", "-e", "WHO=flag", "tool",
                 "sh", "-c", "cat /tool; echo $WHO; exit 4", cwd=d, ok=False)  # fmt: skip
        assert (out.returncode, out.stdout) == (4, "tool\nflag\n"), out.stderr
        # its dependency came up; the one-off went (--rm) and is not a replica of tool
        names = dy(
            "ps",
            "-a",
            "--filter",
            "label=com.docker.compose.project=oneoff",
            "--format",
            "{{.Names}}",
        ).stdout
        assert names.split() == ["oneoff-db-1"]
        # pull asks the image's registry (Docker Hub here, which the tests never contact)
        pulled = dy("compose", "-p", "oneoff", "pull", "db", cwd=d, ok=False)
        assert pulled.returncode != 0 and "registry-1.docker.io: not contacted" in pulled.stderr
    finally:
        dy("compose", "-p", "oneoff", "down", "-t", "1", cwd=d, ok=False)
        dy("rmi", "oneoff-tool", ok=False)


def test_up_wait_names_the_unhealthy_service(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "compose.yaml").write_text(
        "services:\n  sick:\n    image: busybox\n    stop_grace_period: 1s\n"
        '    command: sh -c "echo starting up; echo cannot open the database; exec sleep 300"\n'
        '    healthcheck:\n      test: ["CMD-SHELL", "echo db unreachable; exit 1"]\n'
        "      interval: 1s\n      retries: 2\n"
    )
    d = str(tmp_path)
    try:
        proc = dy("compose", "-p", "sick", "up", "--wait", "--wait-timeout", "30", cwd=d, ok=False)
        assert proc.returncode == 1
        assert "container sick-sick-1 is unhealthy: db unreachable" in proc.stderr
        assert "cannot open the database" in proc.stderr  # its last log lines
    finally:
        dy("compose", "-p", "sick", "down", "-t", "1", cwd=d, ok=False)
