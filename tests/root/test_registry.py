"""Pull, push and login against Debian's docker-registry (distribution 2.8) on 127.0.0.1,
with htpasswd auth; skopeo as the independent judge of what was pushed."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import Dy, engine_for_module

pytestmark = pytest.mark.root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):  # type: ignore[no-untyped-def]
    if not shutil.which("docker-registry") or not shutil.which("htpasswd"):
        pytest.fail(
            "docker-registry and apache2-utils are not installed (scripts/install.sh --test)"
        )
    work = tmp_path_factory.mktemp("registry")
    subprocess.run(
        ["htpasswd", "-Bbc", str(work / "htpasswd"), "alice", "s3cret"],
        check=True,
        capture_output=True,
    )
    proc, host = _docker_registry(
        work, "auth", f"auth:\n  htpasswd:\n    realm: test\n    path: {work}/htpasswd\n"
    )
    yield {"host": host, "data": str(work / "authdata")}
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def dy(tmp_path_factory, registry):  # type: ignore[no-untyped-def]
    os.environ["DOCKER_CONFIG"] = str(tmp_path_factory.mktemp("dockercfg"))
    yield from engine_for_module(tmp_path_factory, "regengine")
    del os.environ["DOCKER_CONFIG"]


@pytest.fixture
def other(tmp_path):  # type: ignore[no-untyped-def]
    """A second, empty engine: what a pull really brings."""
    d = Dy(str(tmp_path / "other"))
    yield d
    d("network", "prune", "-f")


def _login(dy: Dy, host: str, password: str = "s3cret") -> subprocess.CompletedProcess[str]:
    return dy("login", "-u", "alice", "--password-stdin", host, input=password + "\n", ok=False)


def test_login_push_pull_round_trip(dy: Dy, registry, other: Dy) -> None:  # type: ignore[no-untyped-def]
    host = registry["host"]
    ref = f"{host}/team/box:1"
    dy("tag", "busybox", ref)
    denied = dy("push", ref, ok=False)
    assert denied.returncode == 1 and "authentication required" in denied.stderr
    wrong = _login(dy, host, "nope")
    assert (
        wrong.returncode == 1
        and "unauthorized" in wrong.stderr
        and len(wrong.stderr.splitlines()) == 1
    )
    ok = _login(dy, host)
    assert ok.returncode == 0 and "Login Succeeded" in ok.stdout
    with open(os.path.join(os.environ["DOCKER_CONFIG"], "config.json")) as f:
        assert host in json.load(f)["auths"]
    pushed = dy("push", ref).stdout
    digest = pushed.strip().splitlines()[-1].split("digest: ")[1].split()[0]
    judged = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", "alice:s3cret", f"docker://{ref}"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(judged.stdout)["Digest"] == digest
    out = other("pull", ref).stdout
    assert f"Digest: {digest}" in out and "Downloaded newer image" in out
    assert other("run", "--rm", "--network", "none", ref, "echo", "pulled").stdout == "pulled\n"
    assert digest in other("images", "--digests").stdout
    by_digest = other("pull", f"{host}/team/box@{digest}").stdout
    assert "Image is up to date" in by_digest
    again = dy("push", ref).stdout
    assert "Layer already exists" in again  # nothing uploaded twice


def test_present_layers_are_not_fetched_again(dy: Dy, registry, other: Dy) -> None:  # type: ignore[no-untyped-def]
    host = registry["host"]
    _login(dy, host)
    dy("tag", "busybox", f"{host}/team/same:1")
    dy("tag", "busybox", f"{host}/team/same:2")
    dy("push", f"{host}/team/same:1")
    dy("push", f"{host}/team/same:2")
    other("pull", f"{host}/team/same:1")
    # take the layer blobs away from the registry: a pull that fetched them would fail now
    layer_dirs = []
    blobs = os.path.join(registry["data"], "docker/registry/v2/blobs/sha256")
    manifest = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", "alice:s3cret",
                                          f"docker://{host}/team/same:2"], capture_output=True, check=True).stdout)  # fmt: skip
    for layer in manifest["layers"]:
        hexdigest = layer["digest"][7:]
        path = os.path.join(blobs, hexdigest[:2], hexdigest, "data")
        os.rename(path, path + ".away")
        layer_dirs.append(path)
    try:
        out = other("pull", f"{host}/team/same:2").stdout
        assert "Pull complete" not in out  # only the manifest came
        layer = manifest["layers"][0]["digest"][7:19]
        config = manifest["config"]["digest"][7:19]
        assert f"{layer}: Already exists" in out and config not in out  # layers only, as Docker
        assert (
            other("run", "--rm", "--network", "none", f"{host}/team/same:2", "true").returncode == 0
        )
    finally:
        for path in layer_dirs:
            os.rename(path + ".away", path)


def test_corrupt_blob_is_refused_and_nothing_stays(dy: Dy, registry, other: Dy) -> None:  # type: ignore[no-untyped-def]
    host = registry["host"]
    _login(dy, host)
    ctx = os.path.join(os.path.dirname(other.root), "ctx")
    os.makedirs(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM busybox\nRUN echo unique-$RANDOM-$$ > /marker\n")
    dy("build", "--network", "none", "-t", f"{host}/team/bad:1", ctx)
    dy("push", f"{host}/team/bad:1")
    manifest = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", "alice:s3cret",
                                          f"docker://{host}/team/bad:1"], capture_output=True, check=True).stdout)  # fmt: skip
    hexdigest = manifest["layers"][-1]["digest"][7:]
    path = os.path.join(
        registry["data"], "docker/registry/v2/blobs/sha256", hexdigest[:2], hexdigest, "data"
    )
    with open(path, "rb") as f:
        original = f.read()
    middle = len(original) // 2  # pushed layers are gzipped: a small one is a few hundred bytes
    with open(path, "wb") as f:
        f.write(
            original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1 :]
        )  # same size
    try:
        proc = other("pull", f"{host}/team/bad:1", ok=False)
        assert proc.returncode == 1 and "digest" in proc.stderr.lower()
        assert len(proc.stderr.strip().splitlines()) == 1
        assert other("image", "inspect", f"{host}/team/bad:1", ok=False).returncode != 0
        assert other("system", "check").stdout == "no problems found\n"
    finally:
        with open(path, "wb") as f:
            f.write(original)
    assert (
        "Pull complete" in other("pull", f"{host}/team/bad:1").stdout
    )  # fine once the blob is whole


def test_cross_repository_mount_and_skopeo_copy(dy: Dy, registry, other: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    host = registry["host"]
    _login(dy, host)
    dy("tag", "busybox", f"{host}/team/src:1")
    dy("push", f"{host}/team/src:1")
    other_ref = f"{host}/team/dst:1"
    _login(other, host)
    other("pull", f"{host}/team/src:1")
    other("tag", f"{host}/team/src:1", other_ref)
    assert "Mounted from team/src" in other("push", other_ref).stdout
    # skopeo puts an image there; dockyard pulls it
    archive = str(tmp_path / "box.tar")
    dy("save", "-o", archive, "busybox")
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", "alice:s3cret",
                    f"docker-archive:{archive}", f"docker://{host}/team/viaskopeo:1"], check=True, capture_output=True)  # fmt: skip
    assert (
        other("run", "--rm", "--network", "none", f"{host}/team/viaskopeo:1", "echo", "ok").stdout
        == "ok\n"
    )


def test_removing_the_last_tag_of_a_pulled_image_deletes_it(dy: Dy, registry, other: Dy) -> None:  # type: ignore[no-untyped-def]
    """As Docker: the repo digest a pull records goes with its repository's last tag, and
    the image with it; a second tag in another repository keeps it."""
    host = registry["host"]
    _login(dy, host)
    ref = f"{host}/team/lasttag:1"
    dy("tag", "busybox", ref)
    dy("push", ref)
    _login(other, host)
    other("pull", ref)
    image_id = json.loads(other("image", "inspect", ref).stdout)[0]["Id"]
    digest = json.loads(other("image", "inspect", ref).stdout)[0]["RepoDigests"][0]
    other("tag", ref, "keeper:1")
    assert other("rmi", ref).stdout == f"Untagged: {ref}\nUntagged: {digest}\n"
    assert other("images", "-q").stdout.strip() == image_id[7:19]  # keeper:1 holds it
    other("pull", ref)
    out = other("rmi", "-f", ref).stdout
    assert out == f"Untagged: {ref}\nUntagged: {digest}\n"
    out = other("rmi", "-f", "keeper:1").stdout
    assert out == f"Untagged: keeper:1\nDeleted: {image_id}\n"
    assert (
        other("images", "-aq").stdout == ""
        and other("images", "--filter", "dangling=true", "-q").stdout == ""
    )
    assert "Pull complete" in other("pull", ref).stdout  # pulled again, not "up to date"


def _raw_manifest(ref: str) -> dict:  # type: ignore[type-arg]
    return json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", "alice:s3cret",
                                      f"docker://{ref}"], capture_output=True, check=True).stdout)  # fmt: skip


def _digest(ref: str) -> str:
    return json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", "alice:s3cret",
                                      f"docker://{ref}"], capture_output=True, check=True).stdout)["Digest"]  # fmt: skip


def test_pushed_layers_are_compressed_once_and_keep_one_digest(
    dy: Dy, registry, other: Dy, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Layers made here (stored as plain tars) travel gzipped, compressed once and kept: a
    second push and a skopeo mirror of it keep the manifest digest; zstd on request."""
    host = registry["host"]
    _login(dy, host)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "data.txt").write_text("compressible line\n" * 20000)
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY data.txt /data.txt\n")
    dy("build", "-q", "-t", f"{host}/team/packed:1", str(ctx))
    local = json.loads(dy("image", "inspect", f"{host}/team/packed:1").stdout)[0]
    first = (
        dy("push", f"{host}/team/packed:1").stdout.splitlines()[-1].split("digest: ")[1].split()[0]
    )
    manifest = _raw_manifest(f"{host}/team/packed:1")
    assert {d["mediaType"] for d in manifest["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    }
    assert manifest["layers"][-1]["size"] < 20000  # 360 kB of text, gzipped
    dy("tag", f"{host}/team/packed:1", f"{host}/team/packed:2")
    second = dy("push", f"{host}/team/packed:2").stdout
    assert f"digest: {first}" in second and "Layer already exists" in second
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", "alice:s3cret",
                    "--dest-creds", "alice:s3cret", f"docker://{host}/team/packed:1", f"docker://{host}/mirror/packed:1"],
                   check=True, capture_output=True)  # fmt: skip
    assert _digest(f"{host}/mirror/packed:1") == first  # mirrored without recompressing
    _login(other, host)
    assert (
        other(
            "run", "--rm", "--network", "none", f"{host}/team/packed:1", "wc", "-l", "/data.txt"
        ).stdout.split()[0]
        == "20000"
    )
    assert (
        json.loads(other("image", "inspect", f"{host}/team/packed:1").stdout)[0]["Id"]
        == local["Id"]
    )
    out = dy("push", "--compression", "zstd", f"{host}/team/packed:1").stdout
    zstd_manifest = _raw_manifest(f"{host}/team/packed:1")
    assert {d["mediaType"] for d in zstd_manifest["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    }
    assert first not in out
    other("rmi", f"{host}/team/packed:1")
    assert (
        other(
            "run", "--rm", "--network", "none", f"{host}/team/packed:1", "wc", "-l", "/data.txt"
        ).stdout.split()[0]
        == "20000"
    )
    dy("rmi", f"{host}/team/packed:1", f"{host}/team/packed:2")
    assert dy("system", "check").stdout == "no problems found\n"  # the compressed copies went too


def test_implicit_pull_on_run_and_build_and_logout(dy: Dy, registry, other: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    host = registry["host"]
    _login(dy, host)
    dy("tag", "busybox", f"{host}/team/implicit:1")
    dy("push", f"{host}/team/implicit:1")
    proc = other("run", "--rm", "--network", "none", f"{host}/team/implicit:1", "echo", "ran")
    assert (
        proc.stdout == "ran\n"
        and "Unable to find image" in proc.stderr
        and "Pull complete" in proc.stderr
    )
    assert "Using default tag" not in proc.stderr
    config = json.loads(other("image", "inspect", f"{host}/team/implicit:1").stdout)[0]["Id"][7:19]
    assert f"{config}: Pull complete" not in proc.stderr  # the config blob is no layer
    never = other("run", "--rm", "--pull", "never", f"{host}/team/implicit:2", "true", ok=False)
    assert never.returncode == 125 and "Unable to find image" in never.stderr
    ctx = str(tmp_path / "ctx")
    os.makedirs(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(f"FROM {host}/team/implicit:1\nRUN echo on-top > /top\n")
    fresh = Dy(str(tmp_path / "fresh"))
    try:
        out = fresh("build", "--network", "none", "-t", "ontop", ctx).stderr
        assert "Pull complete" in out
    finally:
        fresh("network", "prune", "-f")
    assert "Removing login credentials" in dy("logout", host).stdout
    assert dy("push", f"{host}/team/implicit:1", ok=False).returncode == 1


@pytest.fixture
def own_registry(tmp_path):  # type: ignore[no-untyped-def]
    """``dockyard registry serve`` on a free loopback port, with htpasswd auth."""
    from .conftest import DOCKYARD

    port = _free_port()
    subprocess.run(
        ["htpasswd", "-Bbc", str(tmp_path / "htpasswd"), "bob", "pw"],
        check=True,
        capture_output=True,
    )
    log = open(tmp_path / "registry.log", "w")  # noqa: SIM115 - the server's, closed below
    proc = subprocess.Popen([DOCKYARD, "--root", str(tmp_path / "srvroot"), "registry", "serve", "--addr",
                             f"127.0.0.1:{port}", "--htpasswd", str(tmp_path / "htpasswd")],
                            stdout=subprocess.PIPE, stderr=log, text=True)  # fmt: skip
    log.close()
    assert proc.stdout is not None
    assert "listening on http://127.0.0.1" in proc.stdout.readline()
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)


def _api(host: str, path: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:  # fmt: skip
    import base64

    req = urllib.request.Request(f"http://{host}{path}", data=body, method=method, headers={
        "Authorization": "Basic " + base64.b64encode(b"bob:pw").decode(), **(headers or {})})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_own_registry_serves_dockyard_and_skopeo(
    dy: Dy, own_registry: str, other: Dy, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    host = own_registry
    assert _login(dy, host, "wrong").returncode == 1
    assert dy("login", "-u", "bob", "--password-stdin", host, input="pw\n").returncode == 0
    dy("tag", "busybox", f"{host}/team/app:1")
    digest = (
        dy("push", f"{host}/team/app:1")
        .stdout.strip()
        .splitlines()[-1]
        .split("digest: ")[1]
        .split()[0]
    )
    judged = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", "bob:pw", f"docker://{host}/team/app:1"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(judged.stdout)["Digest"] == digest
    # skopeo copies within it (chunked uploads, mounts) and into it from an archive
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", "bob:pw",
                    "--dest-creds", "bob:pw", f"docker://{host}/team/app:1", f"docker://{host}/team/copy:2"],
                   check=True, capture_output=True)  # fmt: skip
    archive = str(tmp_path / "box.tar")
    dy("save", "-o", archive, "busybox")
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", "bob:pw", f"docker-archive:{archive}",
                    f"docker://{host}/team/archived:3"], check=True, capture_output=True)  # fmt: skip
    for ref in (f"{host}/team/copy:2", f"{host}/team/archived:3"):
        assert other("run", "--rm", "--network", "none", ref, "echo", "ok").stdout == "ok\n"
    status, body = _api(host, "/v2/_catalog")
    assert status == 200 and json.loads(body)["repositories"] == [
        "team/app",
        "team/archived",
        "team/copy",
    ]
    assert json.loads(_api(host, "/v2/team/app/tags/list")[1]) == {
        "name": "team/app",
        "tags": ["1"],
    }
    assert _api(host, "/v2/_catalog", headers={"Authorization": "Basic Ym9iOm5v"})[0] == 401
    # bad input: a manifest that is not JSON, a blob whose digest lies
    status, body = _api(host, "/v2/team/app/manifests/bad", "PUT", b"{not json",
                        {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})  # fmt: skip
    assert status == 400 and b"MANIFEST_INVALID" in body
    wrong = "sha256:" + "0" * 64
    status, body = _api(host, f"/v2/team/app/blobs/uploads/?digest={wrong}", "POST", b"hello")
    assert status == 400 and b"DIGEST_INVALID" in body
    assert _api(host, f"/v2/team/app/manifests/{digest}", "DELETE")[0] == 202
    assert _api(host, "/v2/team/app/manifests/1")[0] == 404


def _call(host: str, path: str, method: str = "GET", body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """(status, headers, body) of one request to the test's own registry (as bob)."""
    import base64
    import http.client

    conn = http.client.HTTPConnection(host, timeout=10)
    conn.request(method, path, body=body, headers={
        "Authorization": "Basic " + base64.b64encode(b"bob:pw").decode(), **(headers or {})})  # fmt: skip
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def test_own_registry_follows_the_distribution_spec(own_registry: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What the OCI distribution-spec conformance suite found (issue 12): blob DELETE,
    sha512, RFC 9110 ranges, referrers and OCI-Subject, pagination, tag deletion, and a
    log line per request."""
    import hashlib

    host = own_registry
    blob = os.urandom(2048)
    d256 = "sha256:" + hashlib.sha256(blob).hexdigest()
    d512 = "sha512:" + hashlib.sha512(blob).hexdigest()
    for digest in (d256, d512):
        assert _call(host, f"/v2/conf/a/blobs/uploads/?digest={digest}", "POST", blob)[0] == 201
        status, headers, _ = _call(host, f"/v2/conf/a/blobs/{digest}", "HEAD")
        assert (
            status == 200
            and headers["content-length"] == "2048"
            and headers["docker-content-digest"] == digest
        )
    assert _call(host, f"/v2/conf/a/blobs/{d512}")[2] == blob
    missing = "sha512:" + "0" * 128
    status, _, body = _call(host, f"/v2/conf/a/blobs/{missing}")
    assert status == 404 and b"BLOB_UNKNOWN" in body
    assert _call(host, "/v2/conf/a/blobs/sha256:zz")[0] == 400
    # ranges, RFC 9110
    for rng, status, want, content_range in (
        ("bytes=5-9", 206, blob[5:10], "bytes 5-9/2048"), ("bytes=2040-", 206, blob[2040:], "bytes 2040-2047/2048"),
        ("bytes=-10", 206, blob[-10:], "bytes 2038-2047/2048"), ("bytes=1000-99999", 206, blob[1000:], "bytes 1000-2047/2048"),
        ("bytes=5000-10000", 416, b"", "bytes */2048"), ("bytes=9-5", 200, blob, None),
    ):  # fmt: skip
        got, headers, body = _call(host, f"/v2/conf/a/blobs/{d256}", headers={"Range": rng})
        assert (got, body, headers.get("content-range")) == (status, want, content_range), rng
        assert int(headers["content-length"]) == len(want)
    # mounts: only from a repository that has the blob; deletion unlinks it from one repository
    status, headers, _ = _call(
        host, f"/v2/conf/b/blobs/uploads/?mount={d256}&from=conf/nothing", "POST"
    )
    assert status == 202  # not there: an upload session instead, as the spec says
    assert _call(host, f"/v2/conf/b/blobs/uploads/?mount={d256}&from=conf/a", "POST")[0] == 201
    assert _call(host, f"/v2/conf/a/blobs/{d256}", "DELETE")[0] == 202
    assert _call(host, f"/v2/conf/a/blobs/{d256}", "HEAD")[0] == 404
    assert _call(host, f"/v2/conf/b/blobs/{d256}", "HEAD")[0] == 200
    # a chunk that does not follow what came before
    status, headers, _ = _call(host, "/v2/conf/a/blobs/uploads/", "POST", b"")
    location = headers["location"]
    assert (
        _call(
            host,
            location,
            "PATCH",
            b"abc",
            {"Content-Range": "0-2", "Content-Type": "application/octet-stream"},
        )[0]
        == 202
    )
    status, headers, _ = _call(host, location, "PATCH", b"xyz", {"Content-Range": "5-7"})
    assert status == 416 and headers["range"] == "0-2"
    # manifests with a subject, the referrers API, pagination, tag deletion
    config = b"{}"
    dcfg = "sha256:" + hashlib.sha256(config).hexdigest()
    assert _call(host, f"/v2/conf/b/blobs/uploads/?digest={dcfg}", "POST", config)[0] == 201
    image = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": dcfg, "size": 2},
                        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d256,
                                    "size": 2048}]}).encode()  # fmt: skip
    mtype = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    status, headers, _ = _call(host, "/v2/conf/b/manifests/v1", "PUT", image, mtype)
    assert status == 201 and "oci-subject" not in headers
    subject = headers["docker-content-digest"]
    for tag in ("v2", "v3"):
        assert _call(host, f"/v2/conf/b/manifests/{tag}", "PUT", image, mtype)[0] == 201
    sbom = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "artifactType": "application/spdx+json",
                       "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": dcfg, "size": 2},
                       "layers": [], "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                 "digest": subject, "size": len(image)}}).encode()  # fmt: skip
    sbom_digest = "sha256:" + hashlib.sha256(sbom).hexdigest()
    status, headers, _ = _call(host, f"/v2/conf/b/manifests/{sbom_digest}", "PUT", sbom, mtype)
    assert status == 201 and headers["oci-subject"] == subject
    status, headers, body = _call(host, f"/v2/conf/b/referrers/{subject}")
    index = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/vnd.oci.image.index.v1+json"
    assert [(m["digest"], m["artifactType"]) for m in index["manifests"]] == [
        (sbom_digest, "application/spdx+json")
    ]
    status, headers, body = _call(host, f"/v2/conf/b/referrers/{subject}?artifactType=text/plain")
    assert json.loads(body)["manifests"] == [] and headers["oci-filters-applied"] == "artifactType"
    status, headers, body = _call(host, "/v2/conf/b/tags/list?n=2")
    assert json.loads(body)["tags"] == ["v1", "v2"] and 'rel="next"' in headers["link"]
    assert json.loads(_call(host, "/v2/conf/b/tags/list?n=2&last=v2")[2])["tags"] == ["v3"]
    assert _call(host, "/v2/conf/b/manifests/v3", "DELETE")[0] == 202
    assert json.loads(_call(host, "/v2/conf/b/tags/list")[2])["tags"] == ["v1", "v2"]
    assert (
        _call(host, f"/v2/conf/b/manifests/{subject}", "HEAD")[0] == 200
    )  # the tag went, not the manifest
    assert _call(host, f"/v2/conf/b/manifests/{sbom_digest}", "DELETE")[0] == 202
    assert json.loads(_call(host, f"/v2/conf/b/referrers/{subject}")[2])["manifests"] == []
    log = (tmp_path / "registry.log").read_text().splitlines()
    assert any(f'"DELETE /v2/conf/b/manifests/{sbom_digest} HTTP/1.1" 202' in line for line in log)
    assert all(line.startswith("127.0.0.1 - - [") for line in log)


class _FaultyProxy:
    """A real HTTP proxy in front of a registry that misbehaves on purpose: ``drop-once`` cuts
    the first download of each big blob halfway (then behaves), ``short`` never sends a blob
    past its first half under a Content-Length that promises all of it, ``bad-manifest``
    answers manifests with broken JSON, ``slow`` trickles big blobs out."""

    def __init__(self, upstream: str, mode: str) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        proxy = self
        self.mode, self.ranges, self.cut = mode, [], set()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                if "Range" in self.headers:
                    proxy.ranges.append(self.headers["Range"])
                conn = http.client.HTTPConnection(upstream, timeout=30)
                conn.request("GET", self.path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                if (
                    proxy.mode == "bad-manifest"
                    and "/manifests/" in self.path
                    and resp.status == 200
                ):
                    body = b"{not json"
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                big = "/blobs/" in self.path and len(body) > 1 << 20
                if big and proxy.mode == "drop-once" and self.path not in proxy.cut:
                    proxy.cut.add(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if big and proxy.mode == "slow":  # 16 KiB every 50 ms: minutes for a big blob
                    try:
                        for at in range(0, len(body), 16 << 10):
                            self.wfile.write(body[at : at + (16 << 10)])
                            self.wfile.flush()
                            time.sleep(0.05)
                    except OSError:
                        pass  # the client went away
                    self.close_connection = True
                    return
                if "/blobs/" in self.path and proxy.mode == "short" and resp.status in (200, 206):
                    # a blob never gets past its first half, however it is asked for
                    start = int(self.headers.get("Range", "bytes=0-")[6:].split("-")[0] or 0)
                    self.wfile.write(body[: max((start + len(body)) // 2 - start, 0)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            do_HEAD = do_GET

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _big_image(dy: Dy, host: str, tmp_path) -> str:  # type: ignore[no-untyped-def]
    ctx = str(tmp_path / "big")
    os.makedirs(ctx)
    with open(os.path.join(ctx, "blob"), "wb") as f:
        f.write(os.urandom(8 << 20))
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM busybox\nCOPY blob /blob\n")
    ref = f"{host}/team/big:1"
    dy("build", "--network", "none", "-t", ref, ctx)
    _login(dy, host)
    dy("push", ref)
    return "team/big:1"


def _docker_registry(tmp_path, name: str = "open", auth: str = "") -> tuple[subprocess.Popen, str]:  # type: ignore[no-untyped-def,type-arg]
    """Debian's docker-registry on a free loopback port, with its own storage and ``auth``
    (a YAML block, empty for none); (process, host:port) once it answers."""
    port = _free_port()
    (tmp_path / f"{name}.yml").write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                                          f"    rootdirectory: {tmp_path}/{name}data\n  delete:\n    enabled: true\n"
                                          f"http:\n  addr: 127.0.0.1:{port}\n{auth}")  # fmt: skip
    proc = subprocess.Popen(["docker-registry", "serve", str(tmp_path / f"{name}.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            return proc, f"127.0.0.1:{port}"
        except urllib.error.HTTPError:
            return proc, f"127.0.0.1:{port}"  # 401: it answers
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)


def _unauthenticated_registry(tmp_path) -> tuple[subprocess.Popen, str]:  # type: ignore[no-untyped-def,type-arg]
    return _docker_registry(tmp_path)


@pytest.mark.parametrize("mode", ["drop-once", "short", "bad-manifest"])
def test_faults_give_clear_errors_or_resume(dy: Dy, other: Dy, tmp_path, mode: str) -> None:  # type: ignore[no-untyped-def]
    proc, host = _unauthenticated_registry(tmp_path)
    proxy = None
    try:
        path = _big_image(dy, host, tmp_path)
        proxy = _FaultyProxy(host, mode)
        pulled = other("pull", f"{proxy.host}/{path}", ok=False)
        if mode == "drop-once":
            assert pulled.returncode == 0, pulled.stderr
            assert "resuming" in pulled.stdout and proxy.ranges  # went on with a Range request
            assert (
                other("run", "--rm", "--network", "none", f"{proxy.host}/{path}", "true").returncode
                == 0
            )
        else:
            assert pulled.returncode == 1 and len(pulled.stderr.strip().splitlines()) == 1
            assert ("not valid JSON" if mode == "bad-manifest" else "blob") in pulled.stderr
            assert other("image", "inspect", f"{proxy.host}/{path}", ok=False).returncode != 0
        assert other("system", "check").stdout == "no problems found\n"
    finally:
        if proxy:
            proxy.close()
        proc.terminate()
        proc.wait(timeout=20)


def test_interrupted_pull_stops_at_once_and_leaves_nothing(dy: Dy, other: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """^C while layers trickle in: the downloads stop (they are not waited for: the blob would
    take ~25 s through this proxy), and nothing of the pull stays."""
    import signal

    from .conftest import DOCKYARD

    proc, host = _unauthenticated_registry(tmp_path)
    proxy = puller = None
    try:
        path = _big_image(dy, host, tmp_path)
        proxy = _FaultyProxy(host, "slow")
        puller = subprocess.Popen([DOCKYARD, "--root", other.root, "pull", f"{proxy.host}/{path}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert puller.stdout is not None
        while "Pulling from" not in (line := puller.stdout.readline()):
            assert line, f"the pull ended early: {puller.stderr.read() if puller.stderr else ''}"
        time.sleep(1)  # well into the big blob
        puller.send_signal(signal.SIGINT)
        assert puller.wait(timeout=15) == 130
        assert other("image", "inspect", f"{proxy.host}/{path}", ok=False).returncode != 0
        assert other("system", "check").stdout == "no problems found\n"
    finally:
        if puller is not None and puller.poll() is None:
            puller.kill()
            puller.wait()
        if proxy:
            proxy.close()
        proc.terminate()
        proc.wait(timeout=20)


def test_concurrent_pulls_of_one_image_all_succeed(dy: Dy, other: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Six pulls of the same image into one store at once: each succeeds, the store is whole
    (a layer committed by one is taken as it is by the others; no pull removes what another
    still needs), and the image runs."""
    from .conftest import DOCKYARD

    proc, host = _unauthenticated_registry(tmp_path)
    try:
        ctx = tmp_path / "layers"
        ctx.mkdir()
        for i in range(3):
            (ctx / f"b{i}").write_bytes(os.urandom(8 << 20))
        (ctx / "Dockerfile").write_text(
            "FROM busybox\n" + "".join(f"COPY b{i} /b{i}\n" for i in range(3))
        )
        path = "team/layers:1"
        dy("build", "-q", "--network", "none", "-t", f"{host}/{path}", str(ctx))
        dy("push", f"{host}/{path}")
        pullers = [subprocess.Popen([DOCKYARD, "--root", other.root, "pull", f"{host}/{path}"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(6)]  # fmt: skip
        results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in pullers]
        for p in pullers:
            for stream in (p.stdout, p.stderr):
                if stream:
                    stream.close()
        assert [code for code, _ in results] == [0] * 6, results
        assert other("system", "check", "--verify").stdout == "no problems found\n"
        assert other("run", "--rm", "--network", "none", f"{host}/{path}", "true").returncode == 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_registry_killed_mid_pull_leaves_nothing(dy: Dy, other: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from .conftest import DOCKYARD

    proc, host = _unauthenticated_registry(tmp_path)
    path = _big_image(dy, host, tmp_path)

    puller = subprocess.Popen([DOCKYARD, "--root", other.root, "pull", f"{host}/{path}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    proc.kill()  # at once: the pull meets a registry that is gone, mid-way or from the start
    proc.wait()
    _out, err = puller.communicate(timeout=120)
    assert puller.returncode == 1 and len(err.strip().splitlines()) == 1
    assert other("image", "inspect", f"{host}/{path}", ok=False).returncode != 0
    assert other("system", "check").stdout == "no problems found\n"


def test_tls_registry_serve_and_pull(dy: Dy, other: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``registry serve`` over HTTPS; a loopback registry is tried over HTTPS first, as Docker's
    insecure registries are, so the client speaks TLS to it."""
    from .conftest import DOCKYARD

    key, cert = str(tmp_path / "key.pem"), str(tmp_path / "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)  # fmt: skip
    port = _free_port()
    server = subprocess.Popen([DOCKYARD, "--root", str(tmp_path / "tlsroot"), "registry", "serve", "--addr",
                               f"127.0.0.1:{port}", "--tls-cert", cert, "--tls-key", key],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        assert f"https://127.0.0.1:{port}" in server.stdout.readline()
        ref = f"127.0.0.1:{port}/secure/box:1"
        dy("tag", "busybox", ref)
        dy("push", ref)
        judged = subprocess.run(["skopeo", "inspect", "--cert-dir", str(tmp_path), "--tls-verify=false", f"docker://{ref}"],
                                capture_output=True, text=True)  # fmt: skip
        assert judged.returncode == 0, judged.stderr
        assert (
            other("run", "--rm", "--network", "none", ref, "echo", "over-tls").stdout
            == "over-tls\n"
        )
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_chunked_upload_and_pull_all_tags(dy: Dy, other: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc, host = _unauthenticated_registry(tmp_path)
    try:
        ctx = str(tmp_path / "chunky")
        os.makedirs(ctx)
        with open(os.path.join(ctx, "blob"), "wb") as f:
            f.write(os.urandom(5 << 20))
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write("FROM busybox\nCOPY blob /blob\n")
        dy("build", "--network", "none", "-t", f"{host}/team/chunky:1", ctx)
        dy("tag", f"{host}/team/chunky:1", f"{host}/team/chunky:2")
        env = {**os.environ, "DOCKYARD_UPLOAD_CHUNK": str(1 << 20)}  # 1 MiB PATCHes
        dy("push", f"{host}/team/chunky:1", env=env)
        dy("push", f"{host}/team/chunky:2", env=env)
        out = other("pull", "-a", f"{host}/team/chunky").stdout
        assert out.count("Digest:") == 2
        tags = other("images", f"{host}/team/chunky").stdout
        assert " 1 " in tags and " 2 " in tags
        assert (
            other(
                "run",
                "--rm",
                "--network",
                "none",
                f"{host}/team/chunky:2",
                "stat",
                "-c",
                "%s",
                "/blob",
            ).stdout
            == f"{5 << 20}\n"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_pull_on_a_terminal_shows_a_bar_per_layer(dy: Dy, other: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from .conftest import DOCKYARD, on_a_terminal

    proc, host = _unauthenticated_registry(tmp_path)
    try:
        path = _big_image(dy, host, tmp_path)
        code, text = on_a_terminal(
            [DOCKYARD, "--root", other.root, "pull", f"{host}/{path}"], columns=100
        )
        assert code == 0
        assert "━" in text and "Pull complete" in text and "MB" in text  # rich's bar, status, sizes
    finally:
        proc.terminate()
        proc.wait(timeout=20)


class _TokenServer:
    """A token server as distribution's token auth expects: RS256 JWTs with the signing
    certificate in ``x5c``, signed by ``openssl``; it grants what is asked to alice:s3cret."""

    def __init__(self, work) -> None:  # type: ignore[no-untyped-def]
        import base64
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.key, self.cert = str(work / "token.key"), str(work / "token.crt")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out",
                        self.cert, "-days", "1", "-subj", "/CN=token"], check=True, capture_output=True)  # fmt: skip
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"], check=True,
                             capture_output=True).stdout  # fmt: skip
        x5c = base64.b64encode(der).decode()
        server = self
        self.issued = 0

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                from urllib.parse import parse_qs, urlsplit

                query = parse_qs(urlsplit(self.path).query)
                auth = self.headers.get("Authorization", "")
                if auth != "Basic " + base64.b64encode(b"alice:s3cret").decode():
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                access = []
                for scope in " ".join(query.get("scope", [])).split():
                    kind, name, actions = scope.split(":")
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
                now = int(time.time())
                claims = {"iss": "test-issuer", "sub": "alice", "aud": query["service"][0], "exp": now + 300,
                          "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}  # fmt: skip
                head = b64(json.dumps({"typ": "JWT", "alg": "RS256", "x5c": [x5c]}).encode())
                signing = f"{head}.{b64(json.dumps(claims).encode())}"
                sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", server.key], input=signing.encode(),
                                     capture_output=True, check=True).stdout  # fmt: skip
                body = json.dumps({"token": f"{signing}.{b64(sig)}"}).encode()
                server.issued += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_bearer_token_auth(dy: Dy, other: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tokens = _TokenServer(tmp_path)
    auth = (f"auth:\n  token:\n    realm: {tokens.realm}\n    service: test-registry\n    issuer: test-issuer\n"
            f"    rootcertbundle: {tokens.cert}\n")  # fmt: skip
    proc, host = _docker_registry(tmp_path, "tok", auth)
    try:
        assert _login(dy, host, "nope").returncode == 1
        assert _login(dy, host).returncode == 0
        dy("tag", "busybox", f"{host}/team/tok:1")
        dy("push", f"{host}/team/tok:1")
        assert (
            other(
                "run", "--rm", "--network", "none", f"{host}/team/tok:1", "echo", "token-ok"
            ).stdout
            == "token-ok\n"
        )
        assert tokens.issued >= 2
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        tokens.close()


def test_compressed_layers_and_platform_index(dy: Dy, other: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Layers skopeo pushed gzip- and zstd-compressed, and an index naming two platforms."""
    proc, host = _unauthenticated_registry(tmp_path)
    try:
        archive = str(tmp_path / "box.tar")
        dy("save", "-o", archive, "busybox")
        for fmt in ("gzip", "zstd"):
            subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-compress-format", fmt,
                            "--dest-compress", f"docker-archive:{archive}", f"docker://{host}/team/{fmt}:1"],
                           check=True, capture_output=True)  # fmt: skip
            assert (
                other(
                    "run", "--rm", "--network", "none", f"{host}/team/{fmt}:1", "echo", fmt
                ).stdout
                == f"{fmt}\n"
            )
        manifest = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/team/gzip:1"],
                                  check=True, capture_output=True).stdout  # fmt: skip
        import hashlib

        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        media = (
            json.loads(manifest).get("mediaType") or "application/vnd.oci.image.manifest.v1+json"
        )
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            {"mediaType": media, "digest": digest, "size": len(manifest), "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": media, "digest": digest, "size": len(manifest), "platform": {"os": "linux", "architecture": "amd64"}},
        ]}  # fmt: skip
        req = urllib.request.Request(f"http://{host}/v2/team/gzip/manifests/multi", data=json.dumps(index).encode(),
                                     method="PUT", headers={"Content-Type": index["mediaType"]})  # fmt: skip
        urllib.request.urlopen(req, timeout=10)
        assert "Digest:" in other("pull", f"{host}/team/gzip:multi").stdout  # this host's platform
        missing = other("pull", "--platform", "linux/s390x", f"{host}/team/gzip:multi", ok=False)
        assert missing.returncode == 1 and "no matching manifest for linux/s390x" in missing.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_credential_helper_keeps_the_login(dy: Dy, registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``credsStore`` names a docker-credential-* program: login stores through it, pull reads
    through it, and config.json holds no password."""
    host = registry["host"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    store = tmp_path / "helper-store.json"
    helper = bin_dir / "docker-credential-filestore"
    helper.write_text(f"""#!{sys.executable}
import json, sys
path = {str(store)!r}
try:
    data = json.load(open(path))
except FileNotFoundError:
    data = {{}}
action = sys.argv[1]
if action == "store":
    entry = json.load(sys.stdin)
    data[entry["ServerURL"]] = entry
    json.dump(data, open(path, "w"))
elif action == "get":
    server = sys.stdin.read().strip()
    if server not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": server, "Username": data[server]["Username"], "Secret": data[server]["Secret"]}}))
elif action == "erase":
    data.pop(sys.stdin.read().strip(), None)
    json.dump(data, open(path, "w"))
""")
    helper.chmod(0o755)
    config_dir = tmp_path / "cfg"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps({"credsStore": "filestore"}))
    env = {
        **os.environ,
        "DOCKER_CONFIG": str(config_dir),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    assert (
        dy("login", "-u", "alice", "--password-stdin", host, input="s3cret\n", env=env).returncode
        == 0
    )
    assert "s3cret" not in (config_dir / "config.json").read_text()
    assert json.loads(store.read_text())[host]["Secret"] == "s3cret"
    dy("tag", "busybox", f"{host}/team/helper:1")
    dy("push", f"{host}/team/helper:1", env=env)
    dy("logout", host, env=env)
    assert host not in json.loads(store.read_text())


@pytest.fixture
def off_loopback():  # type: ignore[no-untyped-def]
    """An address that is not loopback, on a veth pair this test makes (TEST-NET-1, never
    routed anywhere): a registry there is secure by default, as any remote one."""
    name = f"dyca{os.urandom(3).hex()}"
    address = "192.0.2.57"
    subprocess.run(
        ["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"], check=True
    )
    try:
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", name], check=True)
        for link in (name, name + "p"):
            subprocess.run(["ip", "link", "set", link, "up"], check=True)
        yield address
    finally:
        subprocess.run(["ip", "link", "del", name], check=True)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ca(tmp_path, name: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    key, cert = str(tmp_path / f"{name}.key"), str(tmp_path / f"{name}.pem")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    return key, cert


def _signed(tmp_path, ca: tuple[str, str], name: str, ext: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    key, csr, cert = (str(tmp_path / f"{name}.{s}") for s in ("key", "csr", "pem"))
    (tmp_path / f"{name}.ext").write_text(ext + "\n")
    _openssl(
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        csr,
        "-subj",
        f"/CN={name}",
    )
    _openssl("x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0], "-CAcreateserial", "-out", cert,
             "-days", "1", "-extfile", str(tmp_path / f"{name}.ext"))  # fmt: skip
    return key, cert


def test_certificates_verified_through_certs_d(
    dy: Dy, other: Dy, tmp_path, off_loopback: str
) -> None:  # type: ignore[no-untyped-def]
    """A registry off loopback is verified against the system CAs plus certs.d/<host>/*.crt;
    untrusted, it is refused in one line that says where its CA goes; listed as insecure, it
    is used unverified. Traffic stays on this host (the test's own veth address)."""
    from .conftest import DOCKYARD

    ca = _ca(tmp_path, "team-ca")
    server_key, server_cert = _signed(tmp_path, ca, "registry", f"subjectAltName=IP:{off_loopback}")
    port = _free_port()
    host = f"{off_loopback}:{port}"
    server = subprocess.Popen([DOCKYARD, "--root", str(tmp_path / "tlsroot"), "registry", "serve", "--addr", host,
                               "--tls-cert", server_cert, "--tls-key", server_key],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    certs = tmp_path / "certs.d"
    trusting = {**os.environ, "DOCKYARD_CERTS_D": str(certs)}
    try:
        assert server.stdout is not None
        assert f"https://{host}" in server.stdout.readline()
        ref = f"{host}/secure/box:1"
        dy("tag", "busybox", ref)
        refused = dy("push", ref, ok=False, env=trusting)
        assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1
        assert "certificate not trusted (unable to get local issuer certificate)" in refused.stderr
        assert f"{certs}/{host}/ca.crt" in refused.stderr
        (certs / host).mkdir(parents=True)
        shutil.copy(_ca(tmp_path, "stranger")[1], certs / host / "ca.crt")
        assert "certificate not trusted" in dy("push", ref, ok=False, env=trusting).stderr
        shutil.copy(ca[1], certs / host / "ca.crt")
        dy("push", ref, env=trusting)
        out = other(
            "run", "--rm", "--network", "none", ref, "echo", "verified", env=trusting
        ).stdout
        assert out == "verified\n"
        insecure = {**os.environ, "DOCKYARD_INSECURE_REGISTRIES": host}
        other("rmi", ref)
        other("pull", ref, env=insecure)
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_client_certificates_from_certs_d(dy: Dy, other: Dy, tmp_path, off_loopback: str) -> None:  # type: ignore[no-untyped-def]
    """docker-registry demanding client certificates (``clientcas``): refused without one,
    served with ``client.cert``/``client.key`` in certs.d, as Docker reads them."""
    ca = _ca(tmp_path, "team-ca")
    server_key, server_cert = _signed(tmp_path, ca, "registry", f"subjectAltName=IP:{off_loopback}")
    port = _free_port()
    host = f"{off_loopback}:{port}"
    (tmp_path / "tls.yml").write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                                      f"    rootdirectory: {tmp_path}/tlsdata\nhttp:\n  addr: {host}\n  tls:\n"
                                      f"    certificate: {server_cert}\n    key: {server_key}\n"
                                      f"    clientcas:\n      - {ca[1]}\n")  # fmt: skip
    proc = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "tls.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    certs = tmp_path / "certs.d"
    (certs / host).mkdir(parents=True)
    shutil.copy(ca[1], certs / host / "ca.crt")
    env = {**os.environ, "DOCKYARD_CERTS_D": str(certs)}
    try:
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex((off_loopback, port)) != 0:
            assert time.monotonic() < deadline, "docker-registry did not start"
            time.sleep(0.05)
        ref = f"{host}/mtls/box:1"
        dy("tag", "busybox", ref)
        refused = dy("push", ref, ok=False, env=env)
        assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1
        assert "the registry wants a client certificate it trusts" in refused.stderr
        client_key, client_cert = _signed(tmp_path, ca, "client", "extendedKeyUsage=clientAuth")
        shutil.copy(client_cert, certs / host / "client.cert")
        shutil.copy(client_key, certs / host / "client.key")
        dy("push", ref, env=env)
        assert (
            other("run", "--rm", "--network", "none", ref, "echo", "mutual", env=env).stdout
            == "mutual\n"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_pull_and_push_report_dockers_json_messages(dy: Dy, registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Through the library, as the API server will stream them: nothing written to stdio."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from dockyard.image.store import ImageStore
    from dockyard.jsonmessage import TextRenderer
    from dockyard.registry.transfer import pull, push

    host = registry["host"]
    _login(dy, host)
    ref = f"{host}/team/messages:1"
    dy("tag", "busybox", ref)
    pushed: list[dict] = []
    pulled: list[dict] = []
    quiet_out, quiet_err = io.StringIO(), io.StringIO()
    with redirect_stdout(quiet_out), redirect_stderr(quiet_err):
        digest = push(ImageStore(dy.root), ref, pushed.append)
        pull(ImageStore(str(tmp_path / "fresh")), ref, progress=pulled.append)
    assert quiet_out.getvalue() == quiet_err.getvalue() == ""
    assert pushed[0] == {"status": f"The push refers to repository [{host}/team/messages]"}
    assert pushed[-1]["status"].startswith(f"1: digest: {digest} size: ")
    assert all(m.get("id") and len(m["id"]) == 12 for m in pushed[1:-1])
    layer = next(m["id"] for m in pulled if m.get("status") == "Pulling fs layer")
    moves = [m for m in pulled if m.get("id") == layer and m["status"] == "Downloading"]
    assert moves and moves[-1]["progressDetail"]["current"] == moves[-1]["progressDetail"]["total"]
    assert {"status": "Pull complete", "id": layer} in pulled
    # dockerd's stream ends here: the full name after it is the docker CLI's own line
    assert pulled[-1] == {"status": f"Status: Downloaded newer image for {ref}"}
    # the CLI's text face of the same messages: events as lines, bar moves not
    out = io.StringIO()
    renderer = TextRenderer(out)
    for message in pulled:
        renderer(message)
    lines = out.getvalue().splitlines()
    assert f"{layer}: Pull complete" in lines and not any("Downloading" in line for line in lines)
