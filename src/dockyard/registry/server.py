"""``dockyard registry serve``: the distribution API (v2) from a directory of its own.

Pull and push (monolithic and chunked uploads, cross-repository mounts), tags
list, catalog and manifest deletion, so a team can share images with nothing
but dockyard. Storage: ``blobs/sha256/<hex>`` (content-addressed, written to a
temp file and renamed only once the digest matched), ``repositories/<name>/``
with ``manifests/<digest>`` (+ ``.type``) and ``tags/<tag>`` (a digest), and
``uploads/<uuid>``. ``--htpasswd`` turns on Basic auth (bcrypt or SHA-crypt
entries, as ``htpasswd -B`` writes them); ``--tls-cert``/``--tls-key`` serve HTTPS.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["RegistryServer", "serve"]

_NAME = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
_ROUTE = re.compile(
    rf"^/v2/(?P<name>{_NAME})/(?P<kind>blobs/uploads|blobs|manifests|tags)(?:/(?P<ref>[^/]*))?$"
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


class _Problem(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class RegistryServer:
    def __init__(self, storage: str, htpasswd: str | None = None) -> None:
        self.root = storage
        for d in ("blobs/sha256", "repositories", "uploads"):
            os.makedirs(os.path.join(storage, d), exist_ok=True)
        self.users: dict[str, str] = {}
        if htpasswd:
            with open(htpasswd) as f:
                for line in f:
                    user, _, hashed = line.strip().partition(":")
                    if user:
                        self.users[user] = hashed
        self.lock = threading.Lock()

    # -- storage

    def blob_path(self, digest: str) -> str:
        return os.path.join(self.root, "blobs", "sha256", digest[7:])

    def repo_dir(self, name: str) -> str:
        return os.path.join(self.root, "repositories", name)

    def check_password(self, user: str, password: str) -> bool:
        hashed = self.users.get(user)
        if not hashed:
            return False
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt

        try:
            return crypt.crypt(password, hashed) == hashed
        except (OSError, ValueError):
            return False

    def resolve_manifest(self, name: str, ref: str) -> str:
        if _DIGEST.match(ref):
            return ref
        try:
            with open(os.path.join(self.repo_dir(name), "tags", ref)) as f:
                return f.read().strip()
        except FileNotFoundError:
            raise _Problem(404, "MANIFEST_UNKNOWN", "manifest unknown") from None


class _Handler(BaseHTTPRequestHandler):
    server_version = "dockyard-registry"
    protocol_version = "HTTP/1.1"
    registry: RegistryServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {"Docker-Distribution-API-Version": "registry/2.0", **(headers or {})}
        if "Content-Length" not in headers:
            headers["Content-Length"] = str(len(body))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(
            status,
            json.dumps(obj).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(length) if length else b""

    def _authorized(self) -> bool:
        reg = self.registry
        if not reg.users:
            return True
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            import base64

            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return reg.check_password(user, password)
        return False

    def _dispatch(self) -> None:
        try:
            if not self._authorized():
                self._body()
                raise _Problem(401, "UNAUTHORIZED", "authentication required")
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if url.path in ("/v2", "/v2/"):
                self._json(200, {})
                return
            if url.path == "/v2/_catalog":
                base = os.path.join(self.registry.root, "repositories")
                repos = sorted(
                    os.path.relpath(d, base) for d, dirs, _f in os.walk(base) if "tags" in dirs
                )
                self._json(200, {"repositories": repos})
                return
            m = _ROUTE.match(url.path)
            if not m:
                raise _Problem(404, "NAME_UNKNOWN", f"no route for {url.path}")
            getattr(self, "_" + m["kind"].replace("/", "_"))(m["name"], m["ref"] or "", query)
        except _Problem as p:
            extra = {"WWW-Authenticate": 'Basic realm="dockyard"'} if p.status == 401 else {}
            self._json(p.status, {"errors": [{"code": p.code, "message": p.message}]}, extra)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _dispatch

    # -- blobs

    def _blobs(self, name: str, digest: str, query: dict[str, str]) -> None:
        if not _DIGEST.match(digest):
            raise _Problem(400, "DIGEST_INVALID", f"invalid digest {digest}")
        path = self.registry.blob_path(digest)
        if self.command == "DELETE":
            raise _Problem(405, "UNSUPPORTED", "blob deletion is not supported")
        if not os.path.exists(path):
            raise _Problem(404, "BLOB_UNKNOWN", "blob unknown to registry")
        size = os.path.getsize(path)
        headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream",
                   "Accept-Ranges": "bytes"}  # fmt: skip
        start = 0
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes=") and self.command == "GET":
            start = int(rng[6:].split("-")[0] or 0)
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        headers["Content-Length"] = str(size - start)
        self.send_response(206 if start else 200)
        for key, value in {"Docker-Distribution-API-Version": "registry/2.0", **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "GET":
            with open(path, "rb") as f:
                f.seek(start)
                while chunk := f.read(1 << 20):
                    self.wfile.write(chunk)

    def _blobs_uploads(self, name: str, upload: str, query: dict[str, str]) -> None:
        reg = self.registry
        if self.command == "POST" and not upload:
            if "mount" in query and os.path.exists(reg.blob_path(query["mount"])):
                self._send(201, headers={"Location": f"/v2/{name}/blobs/{query['mount']}",
                                         "Docker-Content-Digest": query["mount"]})  # fmt: skip
                return
            upload = uuid.uuid4().hex
            path = os.path.join(reg.root, "uploads", upload)
            with open(path, "wb") as f:
                f.write(self._body())
            if "digest" in query:
                self._finish(name, upload, query["digest"])
                return
            self._send(202, headers={"Location": f"/v2/{name}/blobs/uploads/{upload}", "Range": "0-0",
                                     "Docker-Upload-UUID": upload})  # fmt: skip
            return
        if not re.fullmatch(r"[0-9a-f]{32}", upload):
            raise _Problem(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        path = os.path.join(reg.root, "uploads", upload)
        if not os.path.exists(path):
            raise _Problem(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        if self.command == "DELETE":
            os.unlink(path)
            self._send(204)
            return
        if self.command in ("PATCH", "PUT"):
            with open(path, "ab") as f:
                f.write(self._body())
        size = os.path.getsize(path)
        if self.command == "PUT":
            self._finish(name, upload, query.get("digest", ""))
            return
        self._send(202 if self.command == "PATCH" else 204,
                   headers={"Location": f"/v2/{name}/blobs/uploads/{upload}", "Range": f"0-{max(size - 1, 0)}",
                            "Docker-Upload-UUID": upload})  # fmt: skip

    def _finish(self, name: str, upload: str, digest: str) -> None:
        reg = self.registry
        path = os.path.join(reg.root, "uploads", upload)
        if not _DIGEST.match(digest):
            raise _Problem(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if "sha256:" + h.hexdigest() != digest:
            os.unlink(path)
            raise _Problem(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        os.replace(path, reg.blob_path(digest))
        self._send(
            201, headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}
        )

    # -- manifests and tags

    def _manifests(self, name: str, ref: str, query: dict[str, str]) -> None:
        reg = self.registry
        repo = reg.repo_dir(name)
        if self.command == "PUT":
            raw = self._body()
            try:
                manifest = json.loads(raw)
            except ValueError:
                raise _Problem(400, "MANIFEST_INVALID", "manifest invalid: not JSON") from None
            refs = [manifest.get("config") or {}, *list(manifest.get("layers") or [])]
            for d in refs:
                if d.get("digest") and not os.path.exists(reg.blob_path(d["digest"])):
                    raise _Problem(
                        400, "MANIFEST_BLOB_UNKNOWN", f"blob unknown to registry: {d['digest']}"
                    )
            for d in manifest.get("manifests") or []:
                if not os.path.exists(os.path.join(repo, "manifests", d.get("digest", ""))):
                    raise _Problem(400, "MANIFEST_UNKNOWN", f"manifest unknown: {d.get('digest')}")
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            if _DIGEST.match(ref) and ref != digest:
                raise _Problem(400, "DIGEST_INVALID", "manifest digest did not match")
            media = manifest.get("mediaType") or self.headers.get("Content-Type", "")
            os.makedirs(os.path.join(repo, "manifests"), exist_ok=True)
            os.makedirs(os.path.join(repo, "tags"), exist_ok=True)
            with reg.lock:
                with open(os.path.join(repo, "manifests", digest), "wb") as f:
                    f.write(raw)
                with open(os.path.join(repo, "manifests", digest + ".type"), "w") as f:
                    f.write(media)
                if not _DIGEST.match(ref):
                    if not _TAG.match(ref):
                        raise _Problem(400, "TAG_INVALID", f"invalid tag {ref}")
                    tmp = os.path.join(repo, "tags", f".{ref}.{uuid.uuid4().hex}")
                    with open(tmp, "w") as f:
                        f.write(digest)
                    os.replace(tmp, os.path.join(repo, "tags", ref))
            self._send(
                201,
                headers={
                    "Location": f"/v2/{name}/manifests/{digest}",
                    "Docker-Content-Digest": digest,
                },
            )
            return
        digest = reg.resolve_manifest(name, ref)
        path = os.path.join(repo, "manifests", digest)
        if not os.path.exists(path):
            raise _Problem(404, "MANIFEST_UNKNOWN", "manifest unknown")
        if self.command == "DELETE":
            if not _DIGEST.match(ref):
                raise _Problem(400, "UNSUPPORTED", "delete by digest")
            with reg.lock:
                for tag in os.listdir(os.path.join(repo, "tags")):
                    with open(os.path.join(repo, "tags", tag)) as f:
                        if f.read().strip() == digest:
                            os.unlink(os.path.join(repo, "tags", tag))
                os.unlink(path)
            self._send(202)
            return
        with open(path, "rb") as f:
            raw = f.read()
        with open(path + ".type") as f:
            media = f.read()
        self._send(200, raw, {"Content-Type": media, "Docker-Content-Digest": digest})

    def _tags(self, name: str, ref: str, query: dict[str, str]) -> None:
        if ref != "list":
            raise _Problem(404, "NAME_UNKNOWN", "no route")
        tags_dir = os.path.join(self.registry.repo_dir(name), "tags")
        if not os.path.isdir(tags_dir):
            raise _Problem(404, "NAME_UNKNOWN", "repository name not known to registry")
        self._json(
            200,
            {
                "name": name,
                "tags": sorted(t for t in os.listdir(tags_dir) if not t.startswith(".")),
            },
        )


def serve(storage: str, addr: str = "127.0.0.1:5000", htpasswd: str | None = None,
          tls_cert: str | None = None, tls_key: str | None = None, ready: Any = None) -> None:  # fmt: skip
    host, _, port = addr.rpartition(":")
    registry = RegistryServer(storage, htpasswd)
    handler = type("Handler", (_Handler,), {"registry": registry})
    httpd = ThreadingHTTPServer((host or "127.0.0.1", int(port)), handler)
    httpd.daemon_threads = True
    if tls_cert:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_cert, tls_key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    if ready is not None:
        ready(httpd.server_address)
    httpd.serve_forever()
