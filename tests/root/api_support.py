"""What the Engine API tests share: the service under test, and a proxy between the real
clients and it that checks every JSON response against the Engine API's own schema.

The schema is Debian's ``golang-github-docker-docker-dev`` copy of moby's
``api/swagger.yaml`` (API 1.41). Go encodes nil maps, slices and pointers as ``null``, and
dockerd's answers are full of them, so a property the schema does not list as required
may be null; everything else (types, required fields, shapes) is checked as written.
"""

from __future__ import annotations

import copy
import os
import re
import socket
import subprocess
import sys
import threading
import time
from typing import Any

SWAGGER = "/usr/share/gocode/src/github.com/docker/docker/api/swagger.yaml"
DOCKYARD = os.path.join(os.path.dirname(sys.executable), "dockyard")
# streams of JSON messages, one per line, and the definition each line must match
_LINE_SCHEMAS = {("GET", "/events"): None, ("POST", "/images/create"): "CreateImageInfo",
                 ("POST", "/build"): "BuildInfo", ("POST", "/images/{name}/push"): "PushImageInfo"}  # fmt: skip


def _nullable(schema: Any) -> Any:
    """A copy of ``schema`` where every property that is not required may also be null."""
    if isinstance(schema, list):
        return [_nullable(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _nullable(v) for k, v in schema.items()}
    props = out.get("properties")
    if isinstance(props, dict):
        required = set(out.get("required") or [])
        for name, prop in props.items():
            if name not in required and isinstance(prop, dict):
                props[name] = {"anyOf": [prop, {"type": "null"}]}
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = {"anyOf": [out["additionalProperties"], {"type": "null"}]}
    if isinstance(out.get("items"), dict):
        out["items"] = {"anyOf": [out["items"], {"type": "null"}]}
    return out


def _deepest(error: Any) -> Any:
    """The innermost cause of a failed anyOf/allOf: the one that names the field, not
    "is not valid under any of the given schemas" (a null alternative always fails too)."""
    while error.context:
        real = [
            e for e in error.context if not (e.validator == "type" and e.validator_value == "null")
        ]
        error = max(real or error.context, key=lambda e: len(e.absolute_path))
    return error


class Swagger:
    """The Engine API's response schemas, by method, path template and status."""

    def __init__(self, path: str = SWAGGER) -> None:
        import yaml

        with open(path) as f:
            doc = yaml.safe_load(f)
        # dockerd itself answers RestartPolicy.Name "no" (the docker CLI sends it), which the
        # 1.41 schema's enum leaves out
        doc["definitions"]["RestartPolicy"]["properties"]["Name"]["enum"].append("no")
        # ... Tags null for a history entry without tags (required in the schema) ...
        doc["paths"]["/images/{name}/history"]["get"]["responses"][200]["schema"]["items"][
            "required"
        ].remove("Tags")
        # ... and HostConfig.Isolation "" on Linux
        doc["definitions"]["HostConfig"]["allOf"][1]["properties"]["Isolation"]["enum"].append("")
        self.definitions = _nullable(doc["definitions"])
        self.routes = []
        for template, methods in doc["paths"].items():
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            if template.startswith("/images/{name}"):
                pattern = pattern.replace("[^/]+", ".+", 1)
            for method, op in methods.items():
                if isinstance(op, dict):
                    self.routes.append((method.upper(), re.compile(f"^{pattern}$"), template, op))

    def find(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for m, pattern, template, op in self.routes:
            if m == method and pattern.match(path):
                return template, op
        return None

    def validator(self, schema: dict[str, Any]) -> Any:
        import jsonschema

        full = {**_nullable(copy.deepcopy(schema)), "definitions": self.definitions}
        return jsonschema.Draft4Validator(full)

    def check(self, method: str, path: str, status: int, body: Any) -> str | None:
        """None if ``body`` fits the schema of that response (or there is none); else why."""
        found = self.find(method, path)
        if found is None:
            return None
        template, op = found
        response = (op.get("responses") or {}).get(status)
        if not response or "schema" not in response:
            return None
        errors = list(self.validator(response["schema"]).iter_errors(body))
        if not errors:
            return None
        cause = _deepest(errors[0])
        where = "/".join(str(p) for p in cause.absolute_path)
        return f"{method} {template} {status}: at {where or '(top)'}: {cause.message[:300]}"

    def check_line(self, method: str, path: str, body: Any) -> str | None:
        found = self.find(method, path)
        if found is None or (method, found[0]) not in _LINE_SCHEMAS:
            return None
        definition = _LINE_SCHEMAS[(method, found[0])]
        # None: the path's own 200 schema is that of one line (events)
        schema = (
            {"$ref": f"#/definitions/{definition}"}
            if definition
            else found[1]["responses"][200]["schema"]
        )
        errors = list(self.validator(schema).iter_errors(body))
        if not errors:
            return None
        cause = _deepest(errors[0])
        where = "/".join(str(p) for p in cause.absolute_path)
        return f"{method} {found[0]} line: at {where or '(top)'}: {cause.message[:300]}"


class _Reader:
    """A socket read by lines and by counts, whose unread bytes can be taken as they are
    (a file object's buffer cannot be emptied without blocking)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def readline(self, limit: int = 65536) -> bytes:
        while b"\n" not in self.buf and len(self.buf) < limit:
            if not self._fill():
                break
        cut = self.buf.find(b"\n") + 1 or len(self.buf)
        line, self.buf = self.buf[:cut], self.buf[cut:]
        return line

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                break
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def take(self) -> bytes:
        data, self.buf = self.buf, b""
        return data


def _read_head(f: Any) -> bytes | None:
    head = b""
    while True:
        line = f.readline(65536)
        if not line:
            return head or None
        head += line
        if line in (b"\r\n", b"\n"):
            return head


def _headers(head: bytes) -> dict[str, str]:
    out = {}
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep:
            out[key.decode().strip().lower()] = value.decode().strip()
    return out


class ValidatingProxy:
    """A Unix socket the clients use; each exchange is passed to the service unchanged
    and every JSON response is checked against the schema (``violations`` collects what
    did not fit). Hijacked connections (attach, exec) are passed through raw."""

    def __init__(self, upstream: str, path: str, swagger: Swagger) -> None:
        self.upstream, self.path, self.swagger = upstream, path, swagger
        self.violations: list[str] = []
        self.checked = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        self._sock.listen(64)
        self._closing = False
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def close(self) -> None:
        """Stop listening, cut every connection still open (a client's pooled ones), and
        wait for the proxy's threads: none outlives the proxy."""
        self._closing = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; close() would not
        except OSError:
            pass
        self._sock.close()
        for sock in list(self._open):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(10)
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._open |= {client, server}
        try:
            server.connect(self.upstream)
            cf, sf = _Reader(client), _Reader(server)
            while True:
                head = _read_head(cf)
                if head is None:
                    return
                method, target = head.split(b" ", 2)[:2]
                path = re.sub(r"^/v\d+\.\d+", "", target.decode().split("?", 1)[0])
                hdrs = _headers(head)
                server.sendall(head)
                self._body(cf, hdrs, server.sendall)
                rhead = _read_head(sf)
                if rhead is None:
                    return
                client.sendall(rhead)
                status = int(rhead.split(b" ", 2)[1])
                rh = _headers(rhead)
                ctype = rh.get("content-type", "")
                if (
                    status == 101
                    or "vnd.docker" in ctype
                    or "upgrade" in rh.get("connection", "").lower()
                ):
                    self._raw(client, server, cf.take(), sf.take())
                    return
                if method == b"HEAD":
                    continue
                chunks: list[bytes] = []
                self._body(sf, rh, client.sendall, chunks)
                if "application/json" in ctype:
                    try:
                        self._check(method.decode(), path, status, b"".join(chunks),
                                    rh.get("transfer-encoding") == "chunked")  # fmt: skip
                    except (
                        Exception
                    ) as err:  # the checker's own failure must not cut the client off
                        self.violations.append(
                            f"checking {method!r} {path}: {type(err).__name__}: {err}"[:400]
                        )
        except OSError:
            pass
        finally:
            self._open -= {client, server}
            client.close()
            server.close()

    def _check(self, method: str, path: str, status: int, data: bytes, streamed: bool) -> None:
        import json

        if not data.strip():
            return
        self.checked += 1
        found = self.swagger.find(method, path)
        if found is not None and (method, found[0]) in _LINE_SCHEMAS:
            for line in (ln for ln in data.splitlines() if ln.strip()):
                try:
                    problem = self.swagger.check_line(method, path, json.loads(line))
                except ValueError:
                    problem = f"{method} {path}: a line that is not JSON: {line[:80]!r}"
                if problem:
                    self.violations.append(problem)
            return
        try:
            whole = json.loads(data)
        except ValueError:
            if not streamed:  # a stream of objects (stats) has no whole to check
                self.violations.append(f"{method} {path} {status}: not JSON: {data[:80]!r}")
            return
        problem = self.swagger.check(method, path, status, whole)
        if problem:
            self.violations.append(problem)

    @staticmethod
    def _body(f: Any, hdrs: dict[str, str], send: Any, keep: list[bytes] | None = None) -> bool:
        """Pass a message body on (as it arrives, for streams); whether there was one."""
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            payload = []
            while True:
                line = f.readline(1024)
                if not line:
                    return True
                size = int(line.split(b";")[0].strip() or b"0", 16)
                data = f.read(size + 2) if size else b""
                send(line + data)
                payload.append(data[:size])
                if size == 0:
                    trailer = f.readline(1024)
                    send(trailer)
                    break
            if keep is not None:
                keep.extend(payload)
            return True
        length = int(hdrs.get("content-length") or 0)
        if length:
            data = f.read(length)
            send(data)
            if keep is not None:
                keep.append(data)
        return bool(length)

    @staticmethod
    def _raw(
        client: socket.socket, server: socket.socket, from_client: bytes, from_server: bytes
    ) -> None:
        """Both ways as they come (what was read ahead first); a half-close passed on as a
        half-close."""
        if from_client:
            server.sendall(from_client)
        if from_server:
            client.sendall(from_server)

        def pipe(src: Any, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        up = threading.Thread(target=pipe, args=(client, server), daemon=True)
        up.start()
        pipe(server, client)
        up.join(60)


class Service:
    """``dockyard system service`` on a socket of a test's own, for an engine root."""

    def __init__(self, root: str, sock: str, extra: list[str] | None = None, idle: int = 0) -> None:
        self.root, self.sock = root, sock
        self.log = open(os.path.join(os.path.dirname(sock), "service.log"), "w")  # noqa: SIM115
        self.proc = subprocess.Popen([DOCKYARD, "--root", root, "system", "service", "--time", str(idle),
                                      *(extra or []), f"unix://{sock}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, "the service did not come up"
            time.sleep(0.02)

    def output(self) -> str:
        with open(self.log.name) as f:
            return f.read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def serving(root: str, base: str) -> Any:
    """A service for ``root`` and a validating proxy before it, under directory ``base``:
    yields (service, proxy, the environment a client needs); stops both after."""
    service = Service(root, os.path.join(base, "engine.sock"))
    proxy = ValidatingProxy(service.sock, os.path.join(base, "docker.sock"), Swagger())
    config = os.path.join(base, "docker-config")
    os.makedirs(config, exist_ok=True)
    env = {**os.environ, "DOCKER_HOST": f"unix://{proxy.path}", "DOCKER_CONFIG": config,
           "DOCKER_BUILDKIT": "0", "DOCKER_CLI_HINTS": "false"}  # fmt: skip
    try:
        yield service, proxy, env
    finally:
        proxy.close()
        service.stop()
