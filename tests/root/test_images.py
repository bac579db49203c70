"""The image store through the ``dockyard`` command: bootstrap, images, tag, rmi, history, inspect."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from dockyard.image.store import ImageStore, chain_ids

pytestmark = pytest.mark.root

DOCKYARD = os.path.join(os.path.dirname(sys.executable), "dockyard")


@pytest.fixture(params=["overlay", "copy"])
def dy(request, tmp_path):  # type: ignore[no-untyped-def]
    root = str(tmp_path / "root")

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([DOCKYARD, "--root", root, "--snapshotter", request.param, *args],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc

    run.root = root  # type: ignore[attr-defined]
    run.snapshotter = request.param  # type: ignore[attr-defined]
    return run


def test_bootstrap_is_deterministic_and_listed(dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    image_id = dy("image", "bootstrap", "busybox").stdout.strip()
    other = ImageStore(str(tmp_path / "elsewhere"))
    from dockyard.image.bootstrap import bootstrap_busybox

    assert bootstrap_busybox(other) == image_id  # same busybox binary, same image ID
    lines = dy("images").stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert lines[1].split()[:3] == ["busybox", "latest", image_id[7:19]]
    assert dy("images", "-q").stdout == image_id[7:19] + "\n"
    assert dy("images", "--no-trunc", "-q").stdout == image_id + "\n"


def test_inspect_has_dockers_fields_and_true_digests(dy) -> None:  # type: ignore[no-untyped-def]
    dy("image", "bootstrap", "busybox")
    info = json.loads(dy("image", "inspect", "busybox").stdout)[0]
    for key in ("Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Author", "Config",
                "Architecture", "Os", "Size", "RootFS"):  # fmt: skip
        assert key in info
    assert info["RepoTags"] == ["busybox:latest"]
    assert info["Config"]["Cmd"] == ["sh"]
    store = ImageStore(dy.root, dy.snapshotter)
    config_bytes = store.content.read(info["Id"])
    assert "sha256:" + hashlib.sha256(config_bytes).hexdigest() == info["Id"]  # ID = config digest
    [layer] = store.layers(info["Id"])
    with store.content.open(layer.blob_digest) as f:
        assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == info["RootFS"]["Layers"][0]
    missing = dy("image", "inspect", "nope", ok=False)
    assert missing.returncode == 1 and missing.stderr == "dockyard: Error: No such image: nope\n"


def test_tag_and_rmi_untag_before_delete(dy) -> None:  # type: ignore[no-untyped-def]
    image_id = dy("image", "bootstrap", "busybox").stdout.strip()
    dy("tag", "busybox", "localhost:5000/team/box:v1")
    assert "localhost:5000/team/box" in dy("images").stdout
    refused = dy("rmi", image_id[7:19], ok=False)
    assert refused.returncode == 1
    assert "image is referenced in multiple repositories" in refused.stderr
    assert (
        dy("rmi", "localhost:5000/team/box:v1").stdout == "Untagged: localhost:5000/team/box:v1\n"
    )
    assert (
        dy("images", "-q").stdout.strip() == image_id[7:19]
    )  # still there: busybox:latest names it
    out = dy("rmi", "busybox").stdout.splitlines()
    assert out == ["Untagged: busybox:latest", f"Deleted: {image_id}"]
    assert dy("images", "-q").stdout == ""
    store = ImageStore(dy.root, dy.snapshotter)
    assert list(store.content.digests()) == []  # blobs freed
    assert [i for i in store.snapshots.list()] == []  # unpacked layer freed
    assert dy("rmi", "busybox", ok=False).stderr == "dockyard: no such image: busybox\n"


def test_a_name_wins_over_an_id_prefix(dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """As Docker: a full ID, then a reference, then an ID prefix (`build -t b` then `run b`)."""
    busybox = dy("image", "bootstrap", "busybox").stdout.strip()
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        tar.addfile(tarfile.TarInfo("empty"))
    other = dy("import", str(rootfs)).stdout.strip()
    short = busybox[7:9]
    dy("tag", other, short)

    def resolved(name: str) -> str:
        return json.loads(dy("image", "inspect", name).stdout)[0]["Id"]

    assert resolved(short) == other
    assert resolved(busybox[7:19]) == busybox
    assert resolved(busybox[7:]) == busybox
    assert resolved(other) == other


def test_history_rows_include_empty_layers(dy) -> None:  # type: ignore[no-untyped-def]
    image_id = dy("image", "bootstrap", "busybox").stdout.strip()
    lines = dy("history", "busybox").stdout.splitlines()
    assert lines[0].split()[:3] == ["IMAGE", "CREATED", "CREATED"]
    assert (
        lines[1].startswith(image_id[7:19])
        and 'CMD ["sh"]' in lines[1]
        and lines[1].rstrip().endswith("0B")
    )
    assert lines[2].startswith("<missing>") and "MB" in lines[2]
    assert dy("history", "-q", "busybox").stdout.split() == [image_id[7:19], "<missing>"]


def _layer(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_ten_images_on_one_50mb_base_store_it_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = ImageStore(str(tmp_path / "root"))
    base = store.add_layer(None, _layer({"big": os.urandom(50 << 20)}))
    one_base = store.disk_usage()  # the blob and its unpacked files
    ids = []
    for i in range(10):
        top = store.add_layer(base, _layer({f"app{i}": b"x" * 1000}))
        config = {"architecture": "amd64", "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": [base.diff_id, top.diff_id]},
                  "history": [{"created_by": "base"}, {"created_by": f"app {i}"}]}  # fmt: skip
        ids.append(store.create_image(config, [base, top]))
        store.tag(ids[-1], f"app{i}:latest")
    assert len(set(ids)) == 10
    assert (
        len([i for i in store.snapshots.list() if i.kind == "committed"]) == 11
    )  # one base + ten tops
    # ten images cost the base once plus ten small layers, not ten bases
    assert store.disk_usage() - one_base < 2 << 20
    assert (
        chain_ids([base.diff_id, store.layers(ids[0])[1].diff_id])[1]
        == store.layers(ids[0])[1].chain_id
    )


def test_filters(dy) -> None:  # type: ignore[no-untyped-def]
    dy("image", "bootstrap", "busybox")
    dy("tag", "busybox", "other/thing:2")
    assert [
        line.split()[0]
        for line in dy("images", "--filter", "reference=other/*").stdout.splitlines()[1:]
    ] == ["other/thing"]
    assert dy("images", "--filter", "dangling=true", "-q").stdout == ""
    bad = dy("images", "--filter", "bogus=1", ok=False)
    assert bad.returncode == 1 and "invalid filter 'bogus'" in bad.stderr


def test_prune_dangling_then_all(dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    kept = dy("image", "bootstrap", "busybox").stdout.strip()
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        info = tarfile.TarInfo("f")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    dangling = dy("import", str(rootfs)).stdout.strip()
    out = dy("image", "prune", "-f").stdout
    assert f"deleted: {dangling}" in out and kept not in out
    assert out.rstrip().splitlines()[-1].startswith("Total reclaimed space: ")
    assert dy("images", "-q", "--no-trunc").stdout.strip() == kept
    assert dy("image", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    out = dy("image", "prune", "-a", "-f").stdout
    assert "untagged: busybox:latest" in out and f"deleted: {kept}" in out
    assert dy("images", "-q").stdout == ""


def test_system_df_measures_the_disk(dy) -> None:  # type: ignore[no-untyped-def]
    dy("image", "bootstrap", "busybox")
    dy("tag", "busybox", "copy:1")  # a second name takes no space
    lines = dy("system", "df").stdout.splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    images = lines[1].split()
    assert images[:3] == ["Images", "1", "0"]
    from dockyard.engine.containers import Engine

    measured = Engine(dy.root, dy.snapshotter).disk_usage()["Images"]["size"]
    du_out = subprocess.run(["du", "-s", "-B1", "-c", os.path.join(dy.root, "content"),
                             os.path.join(dy.root, "snapshots")], capture_output=True, text=True).stdout  # fmt: skip
    total = int(du_out.strip().splitlines()[-1].split()[0])
    assert abs(total - measured) <= 64 * 1024  # du counts directories' blocks a little differently
    from dockyard.cli.format import human_size

    assert images[3] == human_size(measured)


def test_system_check_finds_and_repairs_crash_leftovers(dy) -> None:  # type: ignore[no-untyped-def]
    image_id = dy("image", "bootstrap", "busybox").stdout.strip()
    assert dy("system", "check").stdout == "no problems found\n"
    store = ImageStore(dy.root, dy.snapshotter)
    w = store.content.writer()
    w.write(b"half")  # a writer that "died"
    os.mkdir(os.path.join(dy.root, "load-crashed"))
    store.snapshots.prepare("unpack-crashed", None)
    orphan = store.content.ingest(b"nobody refers to me").digest
    os.makedirs(os.path.join(store.snapshots.root, "committed", "abc.tmp-1234"))
    proc = dy("system", "check", ok=False)
    assert proc.returncode == 1
    kinds = {line.split(":")[0] for line in proc.stdout.splitlines()}
    assert kinds == {"interrupted write", "interrupted load", "interrupted unpack", "unreferenced blob",
                     "half-made snapshot"}  # fmt: skip
    assert orphan in proc.stdout
    repaired = dy("system", "check", "--repair").stdout
    assert repaired.count("repaired ") == 5
    assert dy("system", "check", "--verify").stdout == "no problems found\n"
    assert dy("images", "-q", "--no-trunc").stdout.strip() == image_id  # the good image survived


def test_verify_compares_layers_with_their_blobs_and_repair_unpacks_again(dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Layer directories are not fsynced: after a power loss a file may be short or gone while
    the blob is whole. ``--verify`` finds it (the path, what is wrong); with the overlay
    snapshotter ``--repair`` unpacks the layer again from its blob; a corrupt blob cannot be
    repaired and says so."""
    dy("image", "bootstrap", "busybox")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    payload = os.urandom(100_000)
    (ctx / "f").write_bytes(payload)
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nCOPY f /app/f\nRUN ln /app/f /app/g && rm /bin/true\n"
    )
    dy("build", "-q", "--network", "none", "-t", "v:1", str(ctx))
    assert dy("system", "check", "--verify").stdout == "no problems found\n"
    store = ImageStore(dy.root, dy.snapshotter)
    copied = store.layers(store.resolve("v:1"))[-2]
    with open(os.path.join(store.snapshots.fs(copied.chain_id), "app/f"), "r+b") as f:
        f.truncate(10)  # what a crash before write-back can leave
    found = dy("system", "check", "--verify", ok=False)
    assert found.returncode == 1
    assert found.stdout == (f"layer differs from its blob: {copied.chain_id}: /app/f does not hold what "
                            "the layer's blob says (10 of 100000 bytes)\n")  # fmt: skip
    assert "system check --verify --repair" in found.stderr
    if dy.snapshotter == "overlay":
        assert dy("system", "check", "--verify", "--repair").stdout.startswith(
            "repaired layer differs"
        )
        assert dy("system", "check", "--verify").stdout == "no problems found\n"
        out = dy(
            "run",
            "--rm",
            "--network",
            "none",
            "v:1",
            "sh",
            "-c",
            "md5sum /app/g; ls /bin/true || echo gone",
        ).stdout
        assert out.split()[0] == hashlib.md5(payload).hexdigest() and out.endswith("gone\n")
    else:
        refused = dy("system", "check", "--verify", "--repair", ok=False)
        assert refused.returncode == 1 and refused.stdout.startswith("cannot repair layer differs")
        return
    with open(store.content.path(copied.blob_digest), "r+b") as f:
        f.seek(512)
        f.write(b"rot")
    refused = dy("system", "check", "--verify", "--repair", ok=False)
    assert refused.returncode == 1
    assert (
        f"cannot repair corrupt blob (pull or load its image again): {copied.blob_digest}"
        in refused.stdout
    )
