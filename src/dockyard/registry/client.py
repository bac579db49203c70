"""The OCI distribution protocol (v2), client side: manifests, blobs, uploads, auth.

HTTPS with the system's CAs plus, as Docker, ``/etc/docker/certs.d/<host>/`` (or
``$DOCKYARD_CERTS_D/<host>/``): every ``*.crt`` there is a CA to trust for that
registry, every ``*.cert`` with its ``*.key`` a client certificate to present. For
loopback registries and those named in ``DOCKYARD_INSECURE_REGISTRIES``
(comma-separated, as Docker's ``insecure-registries``): HTTPS without certificate
checks, else plain HTTP. ``DOCKYARD_LOOPBACK_ONLY`` (the test suite sets it) refuses
every registry that is not on this host: loopback, or an IP address of one of this
host's interfaces (names other than localhost are not resolved). Each request that
meets a 401 answers the challenge (Basic or a Bearer token for the scope) and is
sent again; tokens are kept per scope for the client's life.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import os
import sys
import urllib.parse

from dockyard import _json as json
from dockyard.errors import DockyardError, NotFound
from dockyard.registry import auth
from dockyard.registry.http11 import Connection, ProtocolError, Response

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from typing import Any, BinaryIO

__all__ = ["MANIFEST_TYPES", "Registry", "RegistryError"]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)


class RegistryError(DockyardError):
    pass


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if not host.endswith("]") else host.strip("[]")
    return name in ("localhost", "::1") or name.startswith("127.")


def _on_this_host(host: str) -> bool:
    """Loopback, or an IP literal this host holds (it can bind to it); never a DNS lookup."""
    if _loopback(host):
        return True
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    import ipaddress
    import socket

    try:
        family = socket.AF_INET6 if ipaddress.ip_address(name).version == 6 else socket.AF_INET
    except ValueError:
        return False
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((name, 0))
        except OSError:
            return False
    return True


def _insecure(host: str) -> bool:
    if _loopback(host):
        return True
    listed = [
        h.strip()
        for h in os.environ.get("DOCKYARD_INSECURE_REGISTRIES", "").split(",")
        if h.strip()
    ]
    return host in listed


def _certs_d() -> str:
    return os.environ.get("DOCKYARD_CERTS_D", "/etc/docker/certs.d")


def _tls_failure(err: ssl.SSLError, method: str, conn: Connection, target: str) -> RegistryError:
    """One line that says what to do: where the registry's CA goes, or that a client
    certificate is wanted (Docker's certs.d layout either way)."""
    import ssl

    where = conn.host if conn.port == 443 else f"{conn.host}:{conn.port}"
    trust = os.path.join(_certs_d(), where)
    if isinstance(err, ssl.SSLCertVerificationError):
        return RegistryError(f"{method} https://{where}{target}: certificate not trusted "
                             f"({err.verify_message}); trust its CA in {trust}/ca.crt")  # fmt: skip
    if "CERTIFICATE" in (err.reason or ""):
        return RegistryError(f"{method} https://{where}{target}: the registry wants a client certificate "
                             f"it trusts ({err.reason}); see {trust}/client.cert and client.key")  # fmt: skip
    return RegistryError(f"{method} https://{where}{target}: {err}")


class Registry:
    def __init__(self, domain: str, credentials: auth.Credentials | None = None) -> None:
        self.domain = domain
        self.host = "registry-1.docker.io" if domain == "docker.io" else domain
        # An insecure registry is tried over HTTPS first without checking its certificate,
        # then over HTTP, as Docker does; the first answer settles it for this client.
        self.insecure = _insecure(self.host)
        self.scheme = "https"
        self.creds = credentials if credentials is not None else auth.load(domain)
        self.tokens: dict[str, str] = {}
        self.basic = False
        self._contexts: dict[str, ssl.SSLContext] = {}

    # -- transport

    def _connection(self, host: str | None = None, scheme: str | None = None) -> Connection:
        host = host or self.host
        if os.environ.get("DOCKYARD_LOOPBACK_ONLY") and not _on_this_host(host):
            # a sandbox's (or a test suite's) promise to send nothing off this host
            raise RegistryError(
                f"{host}: not contacted: DOCKYARD_LOOPBACK_ONLY allows registries on this host only"
            )
        if (scheme or self.scheme) == "http":
            return Connection(host, timeout=60)
        return Connection(host, timeout=60, context=self._tls(host))

    def _tls(self, host: str) -> ssl.SSLContext:
        """The TLS context for ``host``, made once per client: loading the system's CAs
        takes ~30 ms here, and a registry that needs no checks needs no CAs."""
        import ssl

        context = self._contexts.get(host)
        if context is not None:
            return context
        if self.insecure and host == self.host:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context()
        certs = os.path.join(_certs_d(), host)
        for ca in sorted(glob.glob(f"{certs}/*.crt")):
            context.load_verify_locations(ca)
        for cert in sorted(glob.glob(f"{certs}/*.cert")):
            key = cert[: -len(".cert")] + ".key"
            if not os.path.exists(key):
                raise RegistryError(f"{cert}: client certificate without its key {key}")
            context.load_cert_chain(cert, key)
        self._contexts[host] = context
        return context

    def _auth_header(self, scope: str) -> dict[str, str]:
        if scope in self.tokens:
            return {"Authorization": f"Bearer {self.tokens[scope]}"}
        if self.basic and self.creds:
            raw = f"{self.creds.username}:{self.creds.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def request(self, method: str, path: str, scope: str, headers: dict[str, str] | None = None,
                body: Any = None, url: str | None = None) -> tuple[Connection, Response]:  # fmt: skip
        """Send, answering one auth challenge; the caller reads (and closes) the response."""
        for attempt in range(2):
            if url:
                parts = urllib.parse.urlsplit(url)
                conn = self._connection(parts.netloc, parts.scheme)
                target = parts.path + (f"?{parts.query}" if parts.query else "")
            else:
                conn = self._connection()
                target = path
            try:
                conn.request(
                    method,
                    target,
                    body=body,
                    headers={**(headers or {}), **self._auth_header(scope)},
                )
                resp = conn.getresponse()
            except (OSError, ProtocolError) as err:
                conn.close()
                if self.insecure and self.scheme == "https" and not url:
                    self.scheme = "http"  # no TLS there: plain HTTP, allowed for this registry
                    if hasattr(body, "seek"):
                        body.seek(0)
                    return self.request(method, path, scope, headers, body)
                tls = sys.modules.get("ssl")  # only an HTTPS request has loaded it
                if tls is not None and isinstance(err, tls.SSLError):
                    raise _tls_failure(err, method, conn, target) from None
                raise RegistryError(
                    f"{method} {self.scheme}://{self.host}{target}: {err}"
                ) from None
            if resp.status != 401 or attempt == 1:
                return conn, resp
            challenge = resp.getheader("WWW-Authenticate") or ""
            resp.read()
            conn.close()
            self._answer(challenge, scope)
            if hasattr(body, "seek"):
                body.seek(0)
        raise AssertionError("unreachable")

    def _answer(self, challenge: str, scope: str) -> None:
        kind, params = auth.parse_challenge(challenge)
        if kind == "basic":
            if not self.creds:
                raise RegistryError(
                    f"{self.domain}: authentication required (dockyard login {self.domain})"
                )
            self.basic = True
            return
        if kind != "bearer" or "realm" not in params:
            raise RegistryError(
                f"{self.domain}: unsupported authentication challenge: {challenge!r}"
            )
        query = {"service": params.get("service", "")}
        if scope:
            query["scope"] = scope
        realm = urllib.parse.urlsplit(params["realm"])
        conn = self._connection(realm.netloc, realm.scheme)
        headers = {}
        if self.creds and self.creds.username:
            raw = f"{self.creds.username}:{self.creds.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        try:
            conn.request("GET", f"{realm.path}?{urllib.parse.urlencode(query)}", headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, ProtocolError) as err:
            raise RegistryError(f"token from {params['realm']}: {err}") from None
        finally:
            conn.close()
        if resp.status != 200:
            raise RegistryError(
                f"{self.domain}: unauthorized: authentication required (token server said {resp.status})"
            )
        body = json.loads(data)
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"{self.domain}: the token server gave no token")
        self.tokens[scope] = token

    @staticmethod
    def _fail(resp: Response, what: str) -> RegistryError:
        data = resp.read()
        try:
            errors = json.loads(data).get("errors") or []
            detail = "; ".join(
                f"{e.get('code', '').lower()}: {e.get('message', '')}" for e in errors
            )
        except (ValueError, AttributeError):
            detail = data.decode(errors="replace").strip()[:200]
        if resp.status == 401:
            return RegistryError(f"{what}: unauthorized: authentication required")
        if resp.status == 404:
            return NotFound(f"{what}: not found" + (f" ({detail})" if detail else ""))
        return RegistryError(
            f"{what}: {resp.status} {resp.reason}" + (f": {detail}" if detail else "")
        )

    # -- API

    def ping(self) -> None:
        """GET /v2/ with credentials: what ``login`` checks."""
        self.basic = bool(self.creds)
        conn, resp = self.request("GET", "/v2/", scope="")
        try:
            if resp.status == 401 and not self.tokens:
                challenge = resp.getheader("WWW-Authenticate") or ""
                resp.read()
                self._answer(challenge, "")
                conn.close()
                conn, resp = self.request("GET", "/v2/", scope="")
            if resp.status != 200:
                raise self._fail(resp, f"login to {self.domain}")
            resp.read()
        finally:
            conn.close()

    def manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        """(raw bytes, media type, digest) of a manifest or index, by tag or digest."""
        scope = f"repository:{repo}:pull"
        conn, resp = self.request(
            "GET", f"/v2/{repo}/manifests/{ref}", scope, {"Accept": ", ".join(MANIFEST_TYPES)}
        )
        try:
            if resp.status != 200:
                raise self._fail(resp, f"manifest for {self.domain}/{repo}:{ref}" if not ref.startswith("sha256:")
                                 else f"manifest for {self.domain}/{repo}@{ref}")  # fmt: skip
            raw = resp.read()
        finally:
            conn.close()
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if ref.startswith("sha256:") and digest != ref:
            raise RegistryError(
                f"manifest digest mismatch: asked for {ref}, got content hashing to {digest}"
            )
        try:
            media = (
                json.loads(raw).get("mediaType") or resp.getheader("Content-Type", "").split(";")[0]
            )
        except ValueError:
            raise RegistryError(
                f"manifest for {self.domain}/{repo}:{ref} is not valid JSON"
            ) from None
        return raw, media, digest

    def fetch_blob(
        self, repo: str, digest: str, size: int | None, write: Any, offset: int = 0
    ) -> None:
        """Stream a blob into ``write(chunk)`` from ``offset`` (a resumed download uses Range)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        conn, resp = self.request(
            "GET", f"/v2/{repo}/blobs/{digest}", f"repository:{repo}:pull", headers
        )
        try:
            while resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location") or ""
                resp.read()
                conn.close()
                conn, resp = self.request("GET", "", f"repository:{repo}:pull", headers,
                                          url=urllib.parse.urljoin(f"{self.scheme}://{self.host}/", location))  # fmt: skip
            if resp.status not in (200, 206):
                raise self._fail(resp, f"blob {digest}")
            if offset and resp.status == 200:
                raise RegistryError("the registry ignored the range request")
            length = resp.getheader("Content-Length")
            expected = (
                int(length) if length and length.isdigit() else (size - offset if size else None)
            )
            got = 0
            while chunk := resp.read(1 << 20):
                write(chunk)
                got += len(chunk)
            if expected is not None and got < expected:
                # a body cut short reads short, not as an error
                raise RegistryError(
                    f"blob {digest}: connection closed after {offset + got} of {offset + expected} bytes"
                )
        except (OSError, ProtocolError) as err:
            raise RegistryError(f"blob {digest}: {err}") from None
        finally:
            conn.close()

    def has_blob(self, repo: str, digest: str) -> bool:
        conn, resp = self.request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", f"repository:{repo}:pull,push"
        )
        resp.read()
        conn.close()
        return resp.status == 200

    def mount_blob(self, repo: str, digest: str, source_repo: str) -> bool:
        """Cross-repository mount: True if the registry linked the blob without an upload."""
        query = urllib.parse.urlencode({"mount": digest, "from": source_repo})
        conn, resp = self.request("POST", f"/v2/{repo}/blobs/uploads/?{query}",
                                  f"repository:{repo}:pull,push repository:{source_repo}:pull")  # fmt: skip
        resp.read()
        conn.close()
        return resp.status == 201

    def upload_blob(
        self, repo: str, digest: str, source: BinaryIO, size: int, chunk: int = 64 << 20
    ) -> None:
        """POST an upload session; then one PUT of the whole blob with its digest, or for a
        blob bigger than ``chunk``, PATCHes of ``chunk`` bytes and a closing PUT."""
        scope = f"repository:{repo}:pull,push"
        conn, resp = self.request(
            "POST", f"/v2/{repo}/blobs/uploads/", scope, {"Content-Length": "0"}
        )
        try:
            if resp.status != 202:
                raise self._fail(resp, f"upload of {digest}")
            resp.read()
            location = resp.getheader("Location") or ""
        finally:
            conn.close()
        body: Any = source
        length = size
        if size > chunk:
            sent = 0
            while sent < size:
                data = source.read(chunk)
                if not data:
                    raise RegistryError(
                        f"upload of {digest}: the blob ended after {sent} of {size} bytes"
                    )
                url = urllib.parse.urljoin(f"{self.scheme}://{self.host}/", location)
                conn, resp = self.request("PATCH", "", scope, {"Content-Type": "application/octet-stream",
                                                                 "Content-Length": str(len(data)),
                                                                 "Content-Range": f"{sent}-{sent + len(data) - 1}"},
                                          body=data, url=url)  # fmt: skip
                try:
                    if resp.status != 202:
                        raise self._fail(resp, f"upload of {digest}")
                    resp.read()
                    location = resp.getheader("Location") or location
                finally:
                    conn.close()
                sent += len(data)
            body, length = b"", 0
        url = urllib.parse.urljoin(f"{self.scheme}://{self.host}/", location)
        sep = "&" if "?" in url else "?"
        conn, resp = self.request("PUT", "", scope, {"Content-Type": "application/octet-stream",
                                                       "Content-Length": str(length)},
                                  body=body, url=f"{url}{sep}digest={urllib.parse.quote(digest)}")  # fmt: skip
        try:
            if resp.status != 201:
                raise self._fail(resp, f"upload of {digest}")
            resp.read()
        finally:
            conn.close()

    def tags(self, repo: str) -> list[str]:
        conn, resp = self.request("GET", f"/v2/{repo}/tags/list", f"repository:{repo}:pull")
        try:
            if resp.status != 200:
                raise self._fail(resp, f"tags of {self.domain}/{repo}")
            return sorted(json.loads(resp.read()).get("tags") or [])
        finally:
            conn.close()

    def put_manifest(self, repo: str, ref: str, raw: bytes, media_type: str) -> str:
        conn, resp = self.request("PUT", f"/v2/{repo}/manifests/{ref}", f"repository:{repo}:pull,push",
                                  {"Content-Type": media_type}, body=raw)  # fmt: skip
        try:
            if resp.status != 201:
                raise self._fail(resp, f"manifest {repo}:{ref}")
            resp.read()
        finally:
            conn.close()
        return "sha256:" + hashlib.sha256(raw).hexdigest()
