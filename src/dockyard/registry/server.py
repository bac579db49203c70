"""``dockyard registry serve``: the OCI distribution API (v2, spec 1.1) from a directory.

Pull and push (monolithic and chunked uploads, cross-repository mounts), tags list
and catalog (paginated with ``n``/``last``), manifest, tag and blob deletion, range
reads of blobs (RFC 9110), sha256 and sha512 digests, and OCI 1.1's referrers API
(``OCI-Subject`` on a pushed manifest that has a subject), so a team can share images
with nothing but dockyard. Storage: ``blobs/<algorithm>/<hex>`` (content-addressed,
written to a temp file and renamed only once the digest matched), and per repository
``repositories/<name>/`` with ``_layers/<algorithm>/<hex>`` (the blobs linked to it: a
blob is in a repository once uploaded or mounted there, and leaves it by DELETE),
``manifests/<digest>`` (+ ``.type``), ``tags/<tag>`` (a digest) and
``_referrers/<subject digest>/<digest>`` (the descriptor of a manifest naming it as its
subject); ``uploads/<uuid>``. ``--htpasswd`` turns on Basic auth (bcrypt or SHA-crypt
entries, as ``htpasswd -B`` writes them); ``--tls-cert``/``--tls-key`` serve HTTPS.
Each request is logged on stderr in the combined log format, as docker-registry does.
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
    rf"^/v2/(?P<name>{_NAME})/(?P<kind>blobs/uploads|blobs|manifests|tags|referrers)(?:/(?P<ref>[^/]*))?$"
)
_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_INDEX = "application/vnd.oci.image.index.v1+json"
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


class _Problem(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class RegistryServer:
    def __init__(self, storage: str, htpasswd: str | None = None) -> None:
        self.root = storage
        for d in ("blobs/sha256", "blobs/sha512", "repositories", "uploads"):
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
        algo, _, hexpart = digest.partition(":")
        return os.path.join(self.root, "blobs", algo, hexpart)

    def link_path(self, name: str, digest: str) -> str:
        algo, _, hexpart = digest.partition(":")
        return os.path.join(self.repo_dir(name), "_layers", algo, hexpart)

    def has_blob(self, name: str, digest: str) -> bool:
        """The blob is stored and linked to repository ``name``."""
        return os.path.exists(self.blob_path(digest)) and os.path.exists(
            self.link_path(name, digest)
        )

    def link(self, name: str, digest: str) -> None:
        path = self.link_path(name, digest)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w"):
            pass

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

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """One line per request on stderr, in the combined log format docker-registry uses."""
        import sys
        import time

        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
        line = (f'{self.client_address[0]} - - [{stamp}] "{self.requestline}" {code} {size} '
                f'"{self.headers.get("Referer", "") if self.headers else ""}" '
                f'"{self.headers.get("User-Agent", "") if self.headers else ""}"\n')  # fmt: skip
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass  # errors of the HTTP layer itself: the request line is logged already

    # -- plumbing

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response_only(status)
        self.log_request(status, len(body))
        self.send_header("Date", self.date_time_string())
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
                page, link = _page(repos, query, "/v2/_catalog")
                self._json(200, {"repositories": page}, link)
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
        reg = self.registry
        path = reg.blob_path(digest)
        if not reg.has_blob(name, digest):
            raise _Problem(404, "BLOB_UNKNOWN", "blob unknown to registry")
        if self.command == "DELETE":
            os.unlink(reg.link_path(name, digest))  # the data stays for other repositories
            self._send(202, headers={"Docker-Content-Digest": digest})
            return
        if self.command not in ("GET", "HEAD"):
            raise _Problem(405, "UNSUPPORTED", f"{self.command} of a blob")
        size = os.path.getsize(path)
        headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream",
                   "Accept-Ranges": "bytes"}  # fmt: skip
        span = _range(self.headers.get("Range", ""), size) if self.command == "GET" else None
        if span == "unsatisfiable":
            self._send(416, headers={**headers, "Content-Range": f"bytes */{size}"})
            return
        start, end = span if span else (0, size - 1)
        if span:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(max(end - start + 1, 0))
        status = 206 if span else 200
        self.send_response_only(status)
        self.log_request(status, headers["Content-Length"])
        self.send_header("Date", self.date_time_string())
        for key, value in {"Docker-Distribution-API-Version": "registry/2.0", **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "GET":
            left = end - start + 1
            with open(path, "rb") as f:
                f.seek(start)
                while left > 0 and (chunk := f.read(min(1 << 20, left))):
                    self.wfile.write(chunk)
                    left -= len(chunk)

    def _blobs_uploads(self, name: str, upload: str, query: dict[str, str]) -> None:
        reg = self.registry
        if self.command == "POST" and not upload:
            mount = query.get("mount", "")
            source = query.get("from", "")
            if (
                _DIGEST.match(mount)
                and os.path.exists(reg.blob_path(mount))
                and (not source or reg.has_blob(source, mount))
            ):
                reg.link(name, mount)
                self._send(201, headers={"Location": f"/v2/{name}/blobs/{mount}",
                                         "Docker-Content-Digest": mount})  # fmt: skip
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
            body = self._body()
            rng = self.headers.get("Content-Range", "")
            if rng and body:
                first = rng.removeprefix("bytes ").split("-")[0]
                if not first.isdigit() or int(first) != os.path.getsize(path):
                    size = os.path.getsize(path)
                    self._send(416, headers={"Location": f"/v2/{name}/blobs/uploads/{upload}",
                                             "Range": f"0-{max(size - 1, 0)}", "Docker-Upload-UUID": upload})  # fmt: skip
                    return
            with open(path, "ab") as f:
                f.write(body)
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
        algo = digest.partition(":")[0]
        h = hashlib.new(algo)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if f"{algo}:{h.hexdigest()}" != digest:
            os.unlink(path)
            raise _Problem(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        os.replace(path, reg.blob_path(digest))
        reg.link(name, digest)
        self._send(
            201, headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}
        )

    # -- manifests and tags

    def _manifests(self, name: str, ref: str, query: dict[str, str]) -> None:
        reg = self.registry
        repo = reg.repo_dir(name)
        if self.command == "PUT":
            self._put_manifest(name, ref)
            return
        digest = reg.resolve_manifest(name, ref)
        path = os.path.join(repo, "manifests", digest)
        if not os.path.exists(path):
            raise _Problem(404, "MANIFEST_UNKNOWN", "manifest unknown")
        if self.command == "DELETE":
            with reg.lock:
                if not _DIGEST.match(ref):  # a tag: only the tag goes (OCI 1.1)
                    os.unlink(os.path.join(repo, "tags", ref))
                    self._send(202)
                    return
                for tag in os.listdir(os.path.join(repo, "tags")):
                    with open(os.path.join(repo, "tags", tag)) as f:
                        if f.read().strip() == digest:
                            os.unlink(os.path.join(repo, "tags", tag))
                with open(path, "rb") as f:
                    subject = (_loads(f.read()).get("subject") or {}).get("digest", "")
                if subject:
                    _unlink_quiet(os.path.join(repo, "_referrers", subject, digest))
                os.unlink(path)
                _unlink_quiet(path + ".type")
            self._send(202)
            return
        with open(path, "rb") as f:
            raw = f.read()
        with open(path + ".type") as f:
            media = f.read()
        self._send(200, raw, {"Content-Type": media, "Docker-Content-Digest": digest})

    def _put_manifest(self, name: str, ref: str) -> None:
        reg = self.registry
        repo = reg.repo_dir(name)
        raw = self._body()
        manifest = _loads(raw)
        if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
            raise _Problem(400, "MANIFEST_INVALID", "manifest invalid: not a schema 2 manifest")
        refs = [manifest.get("config") or {}, *list(manifest.get("layers") or [])]
        for d in refs:
            if not isinstance(d, dict):
                raise _Problem(
                    400, "MANIFEST_INVALID", "manifest invalid: a descriptor is not an object"
                )
            if d.get("digest") and not reg.has_blob(name, d["digest"]):
                raise _Problem(
                    400, "MANIFEST_BLOB_UNKNOWN", f"blob unknown to registry: {d['digest']}"
                )
        for d in manifest.get("manifests") or []:
            if not os.path.exists(os.path.join(repo, "manifests", d.get("digest", ""))):
                raise _Problem(400, "MANIFEST_UNKNOWN", f"manifest unknown: {d.get('digest')}")
        algo = ref.partition(":")[0] if _DIGEST.match(ref) else "sha256"
        digest = f"{algo}:{hashlib.new(algo, raw).hexdigest()}"
        if _DIGEST.match(ref) and ref != digest:
            raise _Problem(400, "DIGEST_INVALID", "manifest digest did not match")
        if not _DIGEST.match(ref) and not _TAG.match(ref):
            raise _Problem(400, "TAG_INVALID", f"invalid tag {ref}")
        media = manifest.get("mediaType") or self.headers.get("Content-Type", "")
        subject = (
            (manifest.get("subject") or {}).get("digest", "")
            if isinstance(manifest.get("subject"), dict)
            else ""
        )
        os.makedirs(os.path.join(repo, "manifests"), exist_ok=True)
        os.makedirs(os.path.join(repo, "tags"), exist_ok=True)
        with reg.lock:
            with open(os.path.join(repo, "manifests", digest), "wb") as f:
                f.write(raw)
            with open(os.path.join(repo, "manifests", digest + ".type"), "w") as f:
                f.write(media)
            if not _DIGEST.match(ref):
                tmp = os.path.join(repo, "tags", f".{ref}.{uuid.uuid4().hex}")
                with open(tmp, "w") as f:
                    f.write(digest)
                os.replace(tmp, os.path.join(repo, "tags", ref))
            if _DIGEST.match(subject):
                desc = {"mediaType": media, "digest": digest, "size": len(raw),
                        "artifactType": manifest.get("artifactType") or (manifest.get("config") or {}).get("mediaType", "")}  # fmt: skip
                if manifest.get("annotations"):
                    desc["annotations"] = manifest["annotations"]
                folder = os.path.join(repo, "_referrers", subject)
                os.makedirs(folder, exist_ok=True)
                with open(os.path.join(folder, digest), "w") as f:
                    json.dump(desc, f)
        headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
        if _DIGEST.match(subject):
            headers["OCI-Subject"] = subject
        self._send(201, headers=headers)

    def _referrers(self, name: str, digest: str, query: dict[str, str]) -> None:
        """OCI 1.1: an image index of the manifests whose subject is ``digest``."""
        if not _DIGEST.match(digest):
            raise _Problem(400, "DIGEST_INVALID", f"invalid digest {digest}")
        folder = os.path.join(self.registry.repo_dir(name), "_referrers", digest)
        found = []
        for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            with open(os.path.join(folder, entry)) as f:
                found.append(json.load(f))
        headers = {"Content-Type": _INDEX}
        wanted = query.get("artifactType")
        if wanted:
            found = [d for d in found if d.get("artifactType") == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        body = {"schemaVersion": 2, "mediaType": _INDEX, "manifests": found}
        self._send(200, json.dumps(body).encode(), headers)

    def _tags(self, name: str, ref: str, query: dict[str, str]) -> None:
        if ref != "list":
            raise _Problem(404, "NAME_UNKNOWN", "no route")
        tags_dir = os.path.join(self.registry.repo_dir(name), "tags")
        if not os.path.isdir(tags_dir):
            raise _Problem(404, "NAME_UNKNOWN", "repository name not known to registry")
        tags = sorted(t for t in os.listdir(tags_dir) if not t.startswith("."))
        page, link = _page(tags, query, f"/v2/{name}/tags/list")
        self._json(200, {"name": name, "tags": page}, link)


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise _Problem(400, "MANIFEST_INVALID", "manifest invalid: not JSON") from None


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _page(items: list[str], query: dict[str, str], path: str) -> tuple[list[str], dict[str, str]]:
    """The distribution spec's pagination: after ``last``, at most ``n``, and a ``Link`` to
    the next page when there is one."""
    if "last" in query:
        items = [i for i in items if i > query["last"]]
    if query.get("n", "").isdigit():
        n = int(query["n"])
        if len(items) > n:
            rest = items[:n]
            return rest, {"Link": f'<{path}?n={n}&last={rest[-1] if rest else ""}>; rel="next"'}
        return items[:n], {}
    return items, {}


def _range(header: str, size: int) -> tuple[int, int] | str | None:
    """RFC 9110 byte range of ``header`` over ``size`` bytes: (first, last), "unsatisfiable",
    or None to send it all (no header, another unit, or several ranges)."""
    if not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[6:].strip().partition("-")
    if (
        not sep
        or not (first.isdigit() or last.isdigit())
        or (first and not first.isdigit())
        or (last and not last.isdigit())
    ):
        return None
    if not first:  # the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(size - n, 0), size - 1
    start = int(first)
    if start >= size:
        return "unsatisfiable"
    end = min(int(last), size - 1) if last else size - 1
    if end < start:
        return None  # invalid: ignored, as RFC 9110 says
    return start, end


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
