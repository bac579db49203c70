"""save/load in docker-archive and OCI layout, judged by skopeo and umoci."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from dockyard.image.store import ImageStore

pytestmark = pytest.mark.root

DOCKYARD = os.path.join(os.path.dirname(sys.executable), "dockyard")


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (apt-get install {tool})")
    return path


@pytest.fixture
def dy(tmp_path):  # type: ignore[no-untyped-def]
    root = str(tmp_path / "root")

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [DOCKYARD, "--root", root, *args], capture_output=True, text=True, timeout=120
        )
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc

    run.root = root  # type: ignore[attr-defined]
    run("image", "bootstrap", "busybox")
    return run


def skopeo(*args: str) -> str:
    proc = subprocess.run([need("skopeo"), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_docker_archive_is_read_by_skopeo(dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "busybox.tar"
    dy("save", "-o", str(out), "busybox")
    with tarfile.open(out) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert "repositories" in names
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    info = json.loads(skopeo("inspect", f"docker-archive:{out}"))
    store = ImageStore(dy.root)
    image_id = store.resolve("busybox")
    assert info["Layers"] == [layer.diff_id for layer in store.layers(image_id)]
    raw_config = skopeo("inspect", "--config", "--raw", f"docker-archive:{out}")
    assert "sha256:" + hashlib.sha256(raw_config.encode()).hexdigest() == image_id


def test_oci_layout_is_read_by_skopeo_and_unpacked_by_umoci(dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "busybox-oci.tar"
    dy("save", "--format", "oci", "-o", str(out), "busybox")
    store = ImageStore(dy.root)
    image_id = store.resolve("busybox")
    manifest_digest = store.db.query(
        "SELECT manifest_digest FROM images WHERE id = ?", (image_id,)
    )[0][0]
    info = json.loads(skopeo("inspect", f"oci-archive:{out}"))
    assert info["Digest"] == manifest_digest  # the digest dockyard computed is skopeo's
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(out) as tar:
        # the archive is dockyard's own; Debian's 3.11.2 predates extraction filters
        tar.extractall(layout, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    bundle = tmp_path / "bundle"
    proc = subprocess.run([need("umoci"), "unpack", "--image", f"{layout}:latest", str(bundle)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (bundle / "rootfs" / "bin" / "busybox").stat().st_size == os.stat("/bin/busybox").st_size
    assert os.readlink(bundle / "rootfs" / "bin" / "sh") == "busybox"


@pytest.mark.parametrize("kind", ["docker-archive", "oci-archive"])
def test_loads_what_skopeo_writes(dy, tmp_path, kind: str) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src.tar"
    dy("save", "-o", str(src), "busybox")
    written = tmp_path / f"{kind}.tar"
    skopeo("copy", "-q", f"docker-archive:{src}", f"{kind}:{written}:example.test/copied:v1")
    fresh = tmp_path / "fresh-root"
    proc = subprocess.run([DOCKYARD, "--root", str(fresh), "load", "-i", str(written)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Loaded image: example.test/copied:v1\n"
    store = ImageStore(str(fresh))
    image_id = store.resolve("example.test/copied:v1")
    raw_config = skopeo("inspect", "--config", "--raw", f"{kind}:{written}")
    assert "sha256:" + hashlib.sha256(raw_config.encode()).hexdigest() == image_id
    assert os.path.exists(
        os.path.join(store.snapshots.fs(store.layers(image_id)[0].chain_id), "bin/busybox")
    )


def test_round_trip_keeps_the_image_id(dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    original = dy("images", "--no-trunc", "-q").stdout.strip()
    for fmt in ("docker", "oci"):
        out = tmp_path / f"rt-{fmt}.tar"
        dy("save", "--format", fmt, "-o", str(out), "busybox")
        dy("rmi", "busybox")
        assert dy("load", "-i", str(out)).stdout == "Loaded image: busybox:latest\n"
        assert dy("images", "--no-trunc", "-q").stdout.strip() == original


def test_bad_archives_are_refused_and_leave_nothing(dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "good.tar"
    dy("save", "-o", str(good), "busybox")
    dy("rmi", "busybox")
    # a layer whose content does not match the diff ID in the config
    bad = tmp_path / "bad.tar"
    with tarfile.open(good) as src, tarfile.open(bad, "w") as dst:
        for member in src:
            data = src.extractfile(member) if member.isreg() else None
            if member.name.endswith("layer.tar"):
                import io

                payload = io.BytesIO()
                with tarfile.open(fileobj=payload, mode="w") as inner:
                    info = tarfile.TarInfo("evil")
                    inner.addfile(info, io.BytesIO(b""))
                member.size = len(payload.getvalue())
                payload.seek(0)
                data = payload
            dst.addfile(member, data)
    proc = dy("load", "-i", str(bad), ok=False)
    assert proc.returncode == 1
    assert "has diff ID" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert dy("images", "-q").stdout == ""
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    proc = dy("load", "-i", str(truncated), ok=False)
    assert proc.returncode == 1 and "invalid image archive" in proc.stderr
    assert dy("images", "-q").stdout == ""
    assert not [n for n in os.listdir(dy.root) if n.startswith("load-")]  # scratch removed
    store = ImageStore(dy.root)
    assert list(store.content.digests()) == []  # no orphan blobs
    assert list(store.snapshots.list()) == []  # no orphan layers


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("manifest.json", b'{"Config": "c.json"}', "manifest.json: not a list of images"),
        ("manifest.json", b'["c.json"]', "manifest.json: entry 0 wants Config and Layers names"),
        ("manifest.json", b'[{"Config": 1, "Layers": []}]', "entry 0 wants Config and Layers"),
        ("manifest.json", b"[{", "invalid image archive: manifest.json:"),
        ("index.json", b"[]", "index.json: not an image index"),
        ("index.json", b'{"manifests": [{"size": 1}]}', "index.json: not an image index"),
    ],
)
def test_malformed_archive_metadata_is_one_line(dy, tmp_path, name, content, message) -> None:  # type: ignore[no-untyped-def]
    import io

    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    proc = dy("load", "-i", str(bad), ok=False)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "internal error" not in proc.stderr
    assert dy("system", "check").stdout == "no problems found\n"
