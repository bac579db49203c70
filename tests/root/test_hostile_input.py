"""Hostile tars and contexts against the whole engine: a crafted entry never deletes or
reads anything outside what it was given, and the store stays whole."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import pytest

from .conftest import DOCKYARD, Dy, engine_for_module

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def dy(tmp_path_factory):  # type: ignore[no-untyped-def]
    yield from engine_for_module(tmp_path_factory, "hostile")


def _tar(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _state(dy: Dy) -> tuple[str, list[str]]:
    """What must survive: the image list and the root's top-level entries (scratch space
    comes and goes, and must be empty between commands)."""
    tmp = os.path.join(dy.root, "tmp")
    assert not os.path.isdir(tmp) or os.listdir(tmp) == []
    return dy("images", "-q", "--no-trunc").stdout, sorted(set(os.listdir(dy.root)) - {"tmp"})


@pytest.fixture
def volume(dy: Dy):  # type: ignore[no-untyped-def]
    dy("volume", "create", "keep")
    dy("run", "--rm", "-v", "keep:/v", "busybox", "sh", "-c", "echo precious > /v/data")
    yield
    assert dy("run", "--rm", "-v", "keep:/v", "busybox", "cat", "/v/data").stdout == "precious\n"
    dy("volume", "rm", "keep")


WHITEOUTS = [".wh...", ".wh..", "sub/.wh...", ".wh.", "a/../.wh..."]


@pytest.mark.parametrize("name", WHITEOUTS)
def test_whiteout_of_dotdot_in_a_stdin_context(dy: Dy, volume: None, name: str) -> None:
    """``build -`` with a tar holding ``.wh...`` once removed the whole state root."""
    before = _state(dy)
    tar = _tar([("Dockerfile", b"FROM busybox\nCOPY . /ctx/\n"), (name, b"")])
    proc = subprocess.run([DOCKYARD, "--root", dy.root, "build", "-q", "-t", "wh:1", "-"],
                          input=tar, capture_output=True)  # fmt: skip
    if proc.returncode == 0:  # a whiteout name means nothing in a context: an ordinary file
        dy("rmi", "wh:1")
    else:
        assert len(proc.stderr.decode().strip().splitlines()) == 1, proc.stderr
    assert _state(dy) == before
    assert dy("system", "check").stdout == "no problems found\n"


def test_add_of_a_tar_with_hostile_whiteouts(dy: Dy, volume: None, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ADD unpacks an archive as Docker's untar does: whiteout names are plain files."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "evil.tar").write_bytes(_tar([(".wh...", b"dots"), (".wh.etc", b"etc"), ("ok", b"ok")]))
    (ctx / "Dockerfile").write_text("FROM busybox\nADD evil.tar /x/\n")
    before = _state(dy)
    dy("build", "-q", "-t", "evil:1", str(ctx))
    out = dy(
        "run", "--rm", "evil:1", "sh", "-c", "cat /x/.wh... /x/.wh.etc /x/ok; ls /etc/passwd"
    ).stdout
    assert out == "dotsetcok/etc/passwd\n"
    dy("rmi", "evil:1")
    assert _state(dy) == before


def _layer_archive(layer: bytes) -> bytes:
    """A docker-archive of one image with ``layer`` as its only layer."""
    import hashlib

    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()  # fmt: skip
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["hostile:1"],
                            "Layers": ["layer.tar"]}]).encode()  # fmt: skip
    return _tar([("manifest.json", manifest), (config_name, config), ("layer.tar", layer)])


@pytest.mark.parametrize("name", WHITEOUTS[:4])
def test_whiteout_of_dotdot_through_load_and_import(
    dy: Dy, volume: None, tmp_path, name: str
) -> None:  # type: ignore[no-untyped-def]
    before = _state(dy)
    layer = _tar([("etc/hosts", b"x"), (name, b"")])
    for argv in (["load"], ["import", "-", "hostile:2"]):
        data = _layer_archive(layer) if argv == ["load"] else layer
        proc = subprocess.run([DOCKYARD, "--root", dy.root, *argv], input=data, capture_output=True)
        err = proc.stderr.decode()
        assert proc.returncode == 1, err
        assert "whiteout of" in err and len(err.strip().splitlines()) == 1, err
    assert _state(dy) == before
    assert dy("system", "check").stdout == "no problems found\n"


def test_interrupted_build_contexts_are_reported(dy: Dy) -> None:
    """A killed build leaves its context; ``system check`` names it, ``--repair`` removes it,
    and a build still running is left alone."""
    import time

    stale = os.path.join(dy.root, "tmp", "build-ctx-killed")
    os.makedirs(os.path.join(stale, "work"))
    proc = subprocess.Popen([DOCKYARD, "--root", dy.root, "build", "-q", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while len(os.listdir(os.path.join(dy.root, "tmp"))) < 2:  # the live build's context
            assert time.monotonic() < deadline
            time.sleep(0.02)
        out = dy("system", "check", ok=False).stdout
        assert out == f"interrupted build context: {stale}\n"
        assert (
            dy("system", "check", "--repair").stdout
            == f"repaired interrupted build context: {stale}\n"
        )
        assert len(os.listdir(os.path.join(dy.root, "tmp"))) == 1
    finally:
        proc.communicate(b"FROM busybox\n", timeout=60)
    assert proc.returncode == 0
    assert os.listdir(os.path.join(dy.root, "tmp")) == []


# -- cp against a container that races it


RACER = (
    "mkdir -p /w/d && echo in-container > /w/d/secret && "
    "while :; do mv /w/d /w/real; ln -s {host} /w/d; rm /w/d; mv /w/real /w/d; done"
)


def test_cp_never_follows_a_racing_symlink_to_the_host(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """CVE-2018-15664: the container flips /w/d between a directory and a symlink to a host
    directory while we copy out of it and into it; nothing on the host is read or written."""
    from dockyard.engine.containers import Engine
    from dockyard.engine.copy import ContainerFiles
    from dockyard.errors import DockyardError

    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text("host-secret\n")
    cid = dy(
        "run", "-d", "--name", "racer", "busybox", "sh", "-c", RACER.format(host=host)
    ).stdout.strip()
    try:
        files = ContainerFiles(Engine(dy.root), cid, "racer")
        seen: dict[str, int] = {}
        for i in range(1500):
            try:
                _info, chunks = files.get("/w/d/secret")
                data = b"".join(chunks)
                seen["read"] = seen.get("read", 0) + 1
                assert b"host-secret" not in data
            except DockyardError:
                seen["missing"] = seen.get("missing", 0) + 1
            try:
                files.put("/w/d", _tar([(f"p{i}", b"payload")]))
                seen["wrote"] = seen.get("wrote", 0) + 1
            except DockyardError:
                seen["refused"] = seen.get("refused", 0) + 1
        # the race was live: both shapes of /w/d were met, each way
        assert (
            seen.get("read") and seen.get("missing") and seen.get("wrote") and seen.get("refused")
        ), seen
        for i in range(30):  # the CLI the same way
            dy("cp", "racer:/w/d/secret", str(tmp_path / f"out{i}"), ok=False)
            if (tmp_path / f"out{i}").exists():
                assert (tmp_path / f"out{i}").read_text() == "in-container\n"
            (tmp_path / "payload").write_text("payload")
            dy("cp", str(tmp_path / "payload"), f"racer:/w/d/q{i}", ok=False)
        assert sorted(os.listdir(host)) == ["secret"]
        assert (host / "secret").read_text() == "host-secret\n"
    finally:
        dy("rm", "-f", "racer")


def test_cp_goes_through_bind_mounts_and_volumes(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Into a path under a bind mount, the file lands in the mount (running, paused and
    stopped containers alike), as in Docker."""
    bind = tmp_path / "bind"
    bind.mkdir()
    (tmp_path / "f").write_text("via-cp\n")
    dy(
        "run",
        "-d",
        "--name",
        "binder",
        "-v",
        f"{bind}:/mnt/b",
        "-v",
        "cpvol:/vol",
        "busybox",
        "sleep",
        "300",
    )
    try:
        dy("cp", str(tmp_path / "f"), "binder:/mnt/b/running")
        assert (bind / "running").read_text() == "via-cp\n"
        dy("pause", "binder")
        dy("cp", str(tmp_path / "f"), "binder:/mnt/b/paused")
        dy("cp", "binder:/mnt/b/paused", str(tmp_path / "back"))
        assert (tmp_path / "back").read_text() == "via-cp\n"
        dy("unpause", "binder")
        dy("stop", "-t", "0", "binder")
        dy("cp", str(tmp_path / "f"), "binder:/mnt/b/stopped")
        dy("cp", str(tmp_path / "f"), "binder:/vol/stopped")
        assert sorted(os.listdir(bind)) == ["paused", "running", "stopped"]
        dy("start", "binder")
        assert dy("exec", "binder", "cat", "/vol/stopped").stdout == "via-cp\n"
        assert "stopped" not in dy("exec", "binder", "ls", "/mnt").stdout
    finally:
        dy("rm", "-f", "-v", "binder")
        dy("volume", "rm", "cpvol", ok=False)


def test_cp_follows_dockers_rules(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dy("run", "-d", "--name", "rules", "busybox", "sh", "-c",
       "mkdir -p /src/sub && echo a > /src/a && echo b > /src/sub/b && ln -s /src/a /link && "
       "ln -s /nowhere/x /dangling && ln -s /tmp/made /dangling2 && sleep 300")  # fmt: skip
    try:
        for _ in range(100):
            if dy("exec", "rules", "ls", "/dangling2", ok=False).returncode == 0:
                break
        out = tmp_path / "out"
        dy("cp", "rules:/src", str(out))  # missing destination: made, with the contents
        assert sorted(os.listdir(out)) == ["a", "sub"] and (out / "sub" / "b").read_text() == "b\n"
        dy("cp", "rules:/src", str(out))  # an existing directory: the source goes inside
        assert sorted(os.listdir(out)) == ["a", "src", "sub"]
        dy("cp", "rules:/src/.", str(tmp_path / "dot"))
        dy("cp", "rules:/src/.", str(out / "src"))  # contents only, into an existing directory
        assert sorted(os.listdir(out / "src")) == ["a", "sub"]
        proc = dy("cp", "rules:/src/a", str(tmp_path / "nodir") + "/", ok=False)
        assert proc.returncode == 1 and proc.stderr.strip().endswith("no such directory")
        proc = dy("cp", "rules:/src", str(out / "a"), ok=False)
        assert proc.returncode == 1 and "cannot copy directory" in proc.stderr
        proc = dy("cp", "rules:/nosuch", str(tmp_path), ok=False)
        assert proc.returncode == 1
        assert proc.stderr == "dockyard: Could not find the file /nosuch in container rules\n"
        dy("cp", "rules:/link", str(tmp_path / "l"))  # a symlink is copied as one
        assert os.readlink(tmp_path / "l") == "/src/a"
        dy("cp", "-L", "rules:/link", str(tmp_path / "l2"))  # -L: what it points to
        assert (tmp_path / "l2").read_text() == "a\n"
        tar = subprocess.run([DOCKYARD, "--root", dy.root, "cp", "rules:/src/a", "-"], capture_output=True,
                             check=True).stdout  # fmt: skip
        with tarfile.open(fileobj=io.BytesIO(tar)) as got:
            assert got.getnames() == ["a"]
        subprocess.run([DOCKYARD, "--root", dy.root, "cp", "-", "rules:/tmp"], input=_tar([("fromtar", b"t")]),
                       check=True)  # fmt: skip
        assert dy("exec", "rules", "cat", "/tmp/fromtar").stdout == "t"
        (tmp_path / "f").write_text("f\n")
        dy("cp", str(tmp_path / "f"), "rules:/dangling2")  # through a symlink to a missing file
        assert dy("exec", "rules", "cat", "/tmp/made").stdout == "f\n"
        proc = dy("cp", str(tmp_path / "f"), "rules:/dangling", ok=False)
        assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert "/nowhere" in proc.stderr
    finally:
        dy("rm", "-f", "rules")


# -- build contexts with symlinks out of them


@pytest.mark.parametrize(
    ("link", "target", "source"),
    [("hostetc", "/etc", "hostetc/shadow"), ("hostetc", "/etc", "hostetc/passwd"),
     ("r", "/", "r/proc/self/status"), ("up", "../../../../../../etc", "up/hostname")],
)  # fmt: skip
@pytest.mark.parametrize("verb", ["COPY", "ADD"])
def test_context_symlinks_never_reach_the_host(
    dy: Dy, tmp_path, link, target, source, verb
) -> None:  # type: ignore[no-untyped-def]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    os.symlink(target, ctx / link)
    (ctx / "Dockerfile").write_text(f"FROM busybox\n{verb} {source} /x\n")
    proc = dy("build", "-q", str(ctx), ok=False)
    assert proc.returncode == 1
    assert f'"/{source}": not found' in proc.stderr and len(proc.stderr.splitlines()) == 1, (
        proc.stderr
    )


def test_context_symlinks_lead_inside_the_context(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A symlink source is what it points to inside the context (BuildKit's rule), named as
    written; a symlink inside a copied directory stays a symlink."""
    ctx = tmp_path / "ctx"
    (ctx / "etc").mkdir(parents=True)
    (ctx / "etc" / "shadow").write_text("context-shadow\n")
    os.symlink("/etc", ctx / "hostetc")
    os.symlink("etc/shadow", ctx / "alias")
    (ctx / "tree").mkdir()
    os.symlink("/etc/passwd", ctx / "tree" / "pw")
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN mkdir /real && ln -s /real /out && ln -s real /rel\n"
        "COPY hostetc/shadow /out/shadow\nCOPY alias /rel/\nCOPY tree /tree\n"
    )
    dy("build", "-q", "-t", "ctxlinks:1", str(ctx))
    out = dy("run", "--rm", "ctxlinks:1", "sh", "-c",
             "cat /real/shadow /real/alias; readlink /tree/pw; readlink /out").stdout  # fmt: skip
    assert out == "context-shadow\ncontext-shadow\n/etc/passwd\n/real\n"
    dy("rmi", "ctxlinks:1")


# -- system check --repair beside commands that change the store


def _repairs_while(dy: Dy, proc: subprocess.Popen) -> list[str]:  # type: ignore[type-arg]
    """``system check --repair`` again and again while ``proc`` runs; its outcomes."""
    seen = []
    while proc.poll() is None:
        check = dy("system", "check", "--repair", ok=False)
        lines = check.stderr.strip().splitlines()
        assert "internal error" not in check.stderr and len(lines) <= 1, check.stderr
        seen.append("refused" if check.returncode else "ran")
        if check.returncode:
            assert "other dockyard commands are changing the store now" in check.stderr
    return seen


def test_repair_never_disturbs_a_load_or_a_build(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob").write_bytes(os.urandom(96 << 20))
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        tar.add(big / "blob", arcname="blob")
    dy("import", str(layer), "bulky:1")
    archive = tmp_path / "bulky.tar"
    dy("save", "-o", str(archive), "bulky:1")
    dy("rmi", "bulky:1")
    loader = subprocess.Popen([DOCKYARD, "--root", dy.root, "load", "-i", str(archive)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    seen = _repairs_while(dy, loader)
    out, err = loader.communicate()
    assert loader.returncode == 0 and "Loaded image: bulky:1" in out, err
    assert "refused" in seen
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN sleep 2 && echo built > /b\n")
    builder = subprocess.Popen([DOCKYARD, "--root", dy.root, "build", "-q", "-t", "repaired:1", str(ctx)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    seen = _repairs_while(dy, builder)
    out, err = builder.communicate()
    assert builder.returncode == 0, err
    # a repair may run before the build takes the store (its process is still starting) or
    # after it let go; never while it works: between the first refusal and the last, only
    # refusals
    first, last = seen.index("refused"), len(seen) - seen[::-1].index("refused")
    assert set(seen[first:last]) == {"refused"}, seen
    assert dy("run", "--rm", "repaired:1", "cat", "/b").stdout == "built\n"
    assert dy("system", "check").stdout == "no problems found\n"
    dy("rmi", "repaired:1", "bulky:1")
