"""``dockyard build``: the Dockerfile, the resulting image, and Docker's cache rules."""

from __future__ import annotations

import json
import os

import pytest

from .conftest import DOCKYARD, Dy, engine_for_module

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def dy(tmp_path_factory):  # type: ignore[no-untyped-def]
    yield from engine_for_module(tmp_path_factory, "build")


def _write(root: str, files: dict[str, str]) -> None:
    for name, content in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)


def _steps(stderr: str) -> list[tuple[str, str]]:
    """(instruction line, CACHED|DONE) per step of a plain progress log."""
    out = []
    current = None
    for line in stderr.splitlines():
        _head, _, rest = line.partition(" ")
        if rest.startswith("[") and "]" in rest:
            current = rest.split("] ", 1)[1]
        elif (current and rest in ("CACHED",)) or (current and rest.startswith("DONE")):
            out.append((current, "CACHED" if rest == "CACHED" else "DONE"))
            current = None
    return out


def _rebuilt(stderr: str) -> list[str]:
    return [
        step
        for step, state in _steps(stderr)
        if state == "DONE" and not step.startswith(("FROM", "ARG"))
    ]


APP = """FROM busybox
ARG FLAVOR=plain
ENV APP=/app
WORKDIR $APP
COPY first.txt ./
RUN echo "flavor $FLAVOR" > flavor
COPY src/ ./src/
RUN cat src/* > all
CMD ["cat", "all"]
"""


@pytest.fixture
def app(tmp_path) -> str:  # type: ignore[no-untyped-def]
    ctx = str(tmp_path / "ctx")
    _write(ctx, {"Dockerfile": APP, "first.txt": "first\n", "src/a.txt": "a\n", "src/b.txt": "b\n",
                 "notes.log": "ignored\n", ".dockerignore": "**/*.log\n"})  # fmt: skip
    return ctx


def test_build_runs_and_makes_the_image_docker_would(dy: Dy, app: str) -> None:
    proc = dy("build", "-t", "app:one", app)
    assert "#" in proc.stderr and "naming to docker.io/library/app:one done" in proc.stderr
    assert dy("run", "--rm", "app:one").stdout == "a\nb\n"
    cfg = json.loads(dy("image", "inspect", "app:one").stdout)[0]["Config"]
    assert cfg["WorkingDir"] == "/app" and cfg["Cmd"] == ["cat", "all"]
    assert "APP=/app" in cfg["Env"]
    assert not any(e.startswith("FLAVOR=") for e in cfg["Env"])  # build args are not kept
    history = dy("history", "--no-trunc", "app:one").stdout
    assert (
        'CMD ["cat","all"]' in history
        and "RUN |1 FLAVOR=plain /bin/sh -c cat src/* > all" in history
    )
    assert dy("run", "--rm", "app:one", "cat", "flavor").stdout == "flavor plain\n"


def test_cache_touch_keeps_and_one_byte_rebuilds_from_there(dy: Dy, app: str) -> None:
    dy("build", "-t", "app:cache", app)
    os.utime(os.path.join(app, "src/a.txt"))  # touched, not changed
    again = dy("build", "-t", "app:cache", app).stderr
    assert _rebuilt(again) == []
    with open(os.path.join(app, "src/b.txt"), "w") as f:
        f.write("c\n")  # one byte changed
    changed = dy("build", "-t", "app:cache", app).stderr
    assert _rebuilt(changed) == ["COPY src/ ./src/", "RUN cat src/* > all", 'CMD ["cat", "all"]']
    assert dy("run", "--rm", "app:cache").stdout == "a\nc\n"


def test_ignored_file_never_busts_the_cache(dy: Dy, app: str) -> None:
    dy("build", app)
    with open(os.path.join(app, "notes.log"), "w") as f:
        f.write("changed a lot\n")
    _write(app, {"src/debug.log": "also ignored\n"})
    assert _rebuilt(dy("build", app).stderr) == []


def test_build_arg_busts_only_steps_after_its_use(dy: Dy, app: str) -> None:
    dy("build", app)
    out = dy("build", "--build-arg", "FLAVOR=spicy", "-t", "app:spicy", app).stderr
    rebuilt = _rebuilt(out)
    assert rebuilt[0] == 'RUN echo "flavor $FLAVOR" > flavor'
    assert "COPY first.txt ./" not in rebuilt and "WORKDIR $APP" not in rebuilt
    assert dy("run", "--rm", "app:spicy", "cat", "flavor").stdout == "flavor spicy\n"


def test_no_cache_rebuilds_everything(dy: Dy, app: str) -> None:
    dy("build", app)
    rebuilt = _rebuilt(dy("build", "--no-cache", app).stderr)
    assert "COPY first.txt ./" in rebuilt and "RUN cat src/* > all" in rebuilt


def test_explain_cache_names_what_changed(dy: Dy, app: str) -> None:
    dy("build", app)
    with open(os.path.join(app, "first.txt"), "w") as f:
        f.write("second\n")
    out = dy("build", "--explain-cache", "--build-arg", "FLAVOR=x", app).stderr
    assert "cache key sha256:" in out
    file_line = next(line for line in out.splitlines() if "cache miss: file first.txt" in line)
    assert "sha256:" in file_line and "->" in file_line
    assert any("cache miss: parent image changed" in line for line in out.splitlines())


def test_cache_mount_keeps_its_content(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = str(tmp_path / "cm")
    df = "FROM busybox\nRUN --mount=type=cache,target=/cache echo run >> /cache/count && wc -l < /cache/count > /seen\n"
    _write(ctx, {"Dockerfile": df})
    dy("build", "-t", "cm:1", ctx)
    dy("build", "--no-cache", "-t", "cm:2", ctx)
    assert dy("run", "--rm", "cm:2", "cat", "/seen").stdout.strip() == "2"
    inside = dy("run", "--rm", "cm:2", "sh", "-c", "ls -A /cache 2>/dev/null | wc -l").stdout
    assert inside.strip() == "0"  # the cache's content is not part of the image


def test_multi_stage_builds_only_what_the_target_needs(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = str(tmp_path / "ms")
    _write(
        ctx,
        {
            "Dockerfile": """FROM busybox AS builder
RUN echo compiled > /artifact
FROM busybox AS broken
RUN exit 7
FROM busybox AS final
COPY --from=builder /artifact /usr/share/artifact
CMD ["cat", "/usr/share/artifact"]
"""
        },
    )
    out = dy("build", "-t", "ms:1", ctx)
    assert "exit 7" not in out.stderr
    assert dy("run", "--rm", "ms:1").stdout == "compiled\n"
    failed = dy("build", "--target", "broken", "-t", "ms:broken", ctx, ok=False)
    assert failed.returncode != 0 and "exit code: 7" in failed.stderr
    assert dy("image", "inspect", "ms:broken", ok=False).returncode != 0  # nothing half-tagged
    missing = dy("build", "--target", "nope", ctx, ok=False)
    assert "failed to reach build target nope" in missing.stderr


def test_heredocs_and_instructions_in_the_config(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = str(tmp_path / "hd")
    _write(
        ctx,
        {
            "Dockerfile": """# escape=`
FROM busybox
RUN echo one `
    two > /ab
RUN <<EOF
echo from a heredoc > /hd
EOF
COPY <<EOF /etc/motd
welcome
EOF
LABEL a="one two" b=three
EXPOSE 8080 53/udp
USER 1000:1000
ENTRYPOINT ["/bin/cat"]
CMD ["/hd"]
HEALTHCHECK --interval=5s --retries=2 CMD test -f /hd
STOPSIGNAL SIGQUIT
VOLUME /data
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo child
"""
        },
    )
    dy("build", "-t", "hd:1", ctx)
    assert dy("run", "--rm", "hd:1").stdout == "from a heredoc\n"
    assert dy("run", "--rm", "hd:1", "/etc/motd").stdout == "welcome\n"
    assert dy("run", "--rm", "hd:1", "/ab").stdout == "one two\n"  # ` continued the line
    image = json.loads(dy("image", "inspect", "hd:1").stdout)[0]
    cfg = image["Config"]
    assert cfg["Labels"] == {"a": "one two", "b": "three"}
    assert set(cfg["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert cfg["User"] == "1000:1000" and cfg["StopSignal"] == "SIGQUIT"
    assert cfg["Entrypoint"] == ["/bin/cat"] and cfg["Cmd"] == ["/hd"]
    assert cfg["Healthcheck"] == {
        "Test": ["CMD-SHELL", "test -f /hd"],
        "Interval": 5_000_000_000,
        "Retries": 2,
    }
    assert cfg["Volumes"] == {"/data": {}} and cfg["Shell"] == ["/bin/sh", "-ec"]
    assert cfg["OnBuild"] == ["RUN echo child"]
    assert "ONBUILD RUN echo child" in dy("history", "--no-trunc", "hd:1").stdout


def test_bad_input_is_one_clear_error(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cases = {
        "FROM busybox\nFROBNICATE x\n": "Dockerfile:2: unknown instruction: FROBNICATE",
        "FROM busybox\nCOPY missing.txt /\n": '"/missing.txt": not found',
        "FROM busybox\nCOPY --from=nowhere /x /\n": "nowhere",
        "RUN true\n": "no build stage",
        "FROM busybox\nRUN echo out; echo err >&2; exit 3\n": "exit code: 3",
    }
    for n, (text, message) in enumerate(cases.items()):
        ctx = str(tmp_path / f"bad{n}")
        _write(ctx, {"Dockerfile": text})
        proc = dy("build", "-t", f"bad:{n}", ctx, ok=False)
        assert proc.returncode == 1, (text, proc.returncode)
        last = proc.stderr.strip().splitlines()
        assert any(message in line for line in last), (text, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert dy("image", "inspect", f"bad:{n}", ok=False).returncode != 0
    run_fail = dy("build", str(tmp_path / "bad4"), ok=False).stderr
    assert "out" in run_fail and "err" in run_fail  # the failing RUN's output is shown
    assert not dy("ps", "-aq").stdout.strip()  # no build container left behind


def test_context_from_stdin_and_iidfile(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    iid = str(tmp_path / "iid")
    proc = subprocess.run([DOCKYARD, "--root", dy.root, "build", "-q", "--iidfile", iid, "-"],
                          input="FROM busybox\nRUN echo piped > /p\n", capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    image_id = proc.stdout.strip()
    with open(iid) as f:
        assert image_id.startswith("sha256:") and f.read() == image_id
    assert dy("run", "--rm", image_id, "cat", "/p").stdout == "piped\n"


def test_dockerignore_double_star_and_exceptions(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = str(tmp_path / "ig")
    _write(ctx, {"Dockerfile": "FROM busybox\nCOPY . /ctx\n", ".dockerignore": "**/*.tmp\nsecret/\n!keep.tmp\n",
                 "a/b/c.tmp": "x", "keep.tmp": "k", "secret/key": "s", "ok.txt": "o"})  # fmt: skip
    dy("build", "-t", "ig:1", ctx)
    listing = dy("run", "--rm", "ig:1", "find", "/ctx", "-type", "f").stdout.split()
    assert sorted(listing) == [
        "/ctx/.dockerignore",
        "/ctx/Dockerfile",
        "/ctx/keep.tmp",
        "/ctx/ok.txt",
    ]


def test_dockerignore_can_name_the_dockerfile_and_itself(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """As Docker: both files still drive the build, but COPY does not take them."""
    ctx = str(tmp_path / "ig2")
    _write(ctx, {"Dockerfile": "FROM busybox\nCOPY . /ctx\n", ".dockerignore": "Dockerfile\n.dockerignore\n",
                 "ok.txt": "o"})  # fmt: skip
    dy("build", "-t", "ig:2", ctx)
    assert dy("run", "--rm", "ig:2", "find", "/ctx").stdout.split() == ["/ctx", "/ctx/ok.txt"]


def test_builder_prune_forgets_the_cache(dy: Dy, app: str) -> None:
    dy("build", app)
    out = dy("builder", "prune", "-f").stdout
    assert "Total reclaimed space" in out
    assert "COPY first.txt ./" in _rebuilt(dy("build", app).stderr)


def test_layers_on_disk_equal_their_blobs(dy: Dy, app: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Build steps keep their snapshot as the layer instead of unpacking the layer tar again:
    an engine that unpacks the same image from its blobs must see the same files."""
    dy("build", "-t", "app:same", app)
    archive = str(tmp_path / "app.tar")
    dy("save", "-o", archive, "app:same")
    other = Dy(str(tmp_path / "other"))
    other("load", "-i", archive)
    import tarfile

    def files(engine: Dy) -> list[tuple[str, int, int, int, bytes]]:
        cid = engine("create", "app:same").stdout.strip()
        out = str(tmp_path / f"{cid}.tar")
        engine("export", "-o", out, cid)
        engine("rm", cid)
        with tarfile.open(out) as tar:
            return sorted(
                (m.name.rstrip("/"), m.mode, m.uid, m.size, m.linkname.encode()) for m in tar
            )

    mine, theirs = files(dy), files(other)
    assert mine == theirs and any(name.endswith("app/src/a.txt") for name, *_ in mine)


def test_add_unpacks_tars_and_chown_by_name_and_globs(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import tarfile

    ctx = str(tmp_path / "add")
    _write(
        ctx,
        {
            "Dockerfile": """FROM busybox
RUN echo 'app:x:1234:1234::/:/bin/sh' >> /etc/passwd && echo 'app:x:1234:' >> /etc/group
ADD bundle.tar.gz /opt/
COPY --chown=app:app *.cfg /etc/app/
COPY --from=busybox /bin/busybox /copied-from-image
""",
            "a.cfg": "a",
            "b.cfg": "b",
            "c.txt": "c",
        },
    )
    os.makedirs(os.path.join(ctx, "payload/dir"))
    _write(ctx, {"payload/dir/inner.txt": "inside\n"})
    with tarfile.open(os.path.join(ctx, "bundle.tar.gz"), "w:gz") as tar:
        tar.add(os.path.join(ctx, "payload/dir"), arcname="dir")
    dy("build", "-t", "add:1", ctx)
    out = dy("run", "--rm", "add:1", "sh", "-c",
             "cat /opt/dir/inner.txt; ls /etc/app; stat -c '%u:%g' /etc/app/a.cfg; test -x /copied-from-image && echo ok").stdout  # fmt: skip
    assert out.split() == ["inside", "a.cfg", "b.cfg", "1234:1234", "ok"]


def test_tar_context_on_stdin(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io
    import subprocess
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (
            ("Dockerfile", b"FROM busybox\nCOPY hello.txt /\n"),
            ("hello.txt", b"from a tar\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    proc = subprocess.run([DOCKYARD, "--root", dy.root, "build", "-q", "-t", "tarctx:1", "-"], input=buf.getvalue(),
                          capture_output=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert dy("run", "--rm", "tarctx:1", "cat", "/hello.txt").stdout == "from a tar\n"


def test_unchanged_files_are_not_read_again(dy: Dy, app: str) -> None:
    """The context's hashes are remembered by (inode, size, mtime): a file whose bytes change
    behind those (same size, mtime put back) is not re-read, which is what keeps hashing cheap."""
    dy("build", app)
    path = os.path.join(app, "src/a.txt")
    st = os.stat(path)
    with open(path, "w") as f:
        f.write("z\n")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _rebuilt(dy("build", app).stderr) == []
    os.utime(path)  # a new mtime: now it is read, and the change is seen
    assert "COPY src/ ./src/" in _rebuilt(dy("build", app).stderr)


def test_interrupted_build_leaves_the_store_consistent(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal
    import subprocess
    import time

    ctx = str(tmp_path / "int")
    _write(ctx, {"Dockerfile": "FROM busybox\nRUN echo started; sleep 30\n"})
    proc = subprocess.Popen([DOCKYARD, "--root", dy.root, "build", "-t", "int:1", ctx], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)  # fmt: skip
    deadline = time.monotonic() + 20
    assert proc.stderr is not None
    seen = ""
    while "started" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) != 0
    assert dy("image", "inspect", "int:1", ok=False).returncode != 0
    assert not dy("ps", "-aq").stdout.strip()  # the RUN container went with it
    assert dy("system", "check").stdout == "no problems found\n"


def test_independent_stages_build_at_the_same_time(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two stages that each wait for the other's mark in a shared cache mount can only both
    finish if they run at once; built one after the other, the first would give up."""
    wait = ("touch /sync/{me}; i=0; while [ ! -e /sync/{other} ]; do i=$((i+1)); [ $i -gt 300 ] && exit 9; "
            "sleep 0.1; done; echo {me} > /{me}")  # fmt: skip
    mount = "--mount=type=cache,id=rendezvous,target=/sync"
    ctx = str(tmp_path / "par")
    _write(
        ctx,
        {
            "Dockerfile": f"""FROM busybox AS left
RUN {mount} {wait.format(me="left", other="right")}
FROM busybox AS right
RUN {mount} {wait.format(me="right", other="left")}
FROM busybox
COPY --from=left /left /
COPY --from=right /right /
"""
        },
    )
    out = dy("build", "-t", "par:1", ctx)
    assert "building in parallel" in out.stderr
    assert dy("run", "--rm", "par:1", "cat", "/left", "/right").stdout == "left\nright\n"


def test_run_network_modes(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ctx = str(tmp_path / "net")
    _write(ctx, {"Dockerfile": "FROM busybox\nRUN ls /sys/class/net > /nets\n"})
    dy("build", "--network", "none", "-t", "net:none", ctx)
    assert dy("run", "--rm", "net:none", "cat", "/nets").stdout.split() == ["lo"]
    dy("build", "--no-cache", "-t", "net:bridge", ctx)
    assert dy("run", "--rm", "net:bridge", "cat", "/nets").stdout.split() == ["eth0", "lo"]


def test_tty_progress_is_a_live_view(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """On a terminal (auto) or with ``--progress tty``: BuildKit's live view — a header with
    steps done, one ``=>`` line per step with CACHED or its time — not the plain log."""
    from .conftest import DOCKYARD, on_a_terminal

    ctx = tmp_path / "ttyctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nENV A=1\nRUN echo building-it\n")
    code, text = on_a_terminal(
        [DOCKYARD, "--root", dy.root, "build", "--network", "none", "-t", "tty:1", str(ctx)]
    )
    assert code == 0, text
    assert "[+] Building" in text and "(4/4) FINISHED" in text  # with the export, as BuildKit
    assert (
        "=> exporting to image" in text and "=> => naming to docker.io/library/tty:1 done" in text
    )
    assert "=> [2/3] ENV A=1" in text and "=> [3/3] RUN echo building-it" in text
    assert "\n#1 " not in text  # the plain log is not printed
    code, text = on_a_terminal(
        [DOCKYARD, "--root", dy.root, "build", "--progress", "tty", "-t", "tty:1", str(ctx)]
    )
    assert code == 0 and "=> CACHED [3/3] RUN echo building-it" in text
    plain = dy("build", "--progress", "plain", "-t", "tty:1", str(ctx)).stderr
    assert "#3 CACHED" in plain and "[+] Building" not in plain


def test_platform_args_and_flag(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """BuildKit's automatic platform ARGs (global scope, and a stage that declares them);
    ``--platform`` takes this host's platform and refuses others in one line (no emulation)."""
    ctx = str(tmp_path / "plat")
    _write(ctx, {"Dockerfile": "ARG BUILDPLATFORM\nFROM --platform=$BUILDPLATFORM busybox\nARG TARGETARCH\n"
                               "ARG TARGETPLATFORM\nRUN echo \"$TARGETOS|$TARGETARCH|$TARGETPLATFORM\" > /p\n"})  # fmt: skip
    import platform

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    dy("build", "--network", "none", "--platform", f"linux/{arch}", "-t", "plat:1", ctx)
    assert (
        dy("run", "--rm", "--network", "none", "plat:1", "cat", "/p").stdout
        == f"|{arch}|linux/{arch}\n"
    )
    other = "linux/s390x" if arch != "s390x" else "linux/amd64"
    refused = dy("build", "--platform", other, ctx, ok=False)
    assert refused.returncode == 1 and f"building for {other} is not supported" in refused.stderr
