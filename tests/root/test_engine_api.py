"""The engine's Python API, called directly as the API server and compose will call it:
the CLI is one face of these functions, not where their rules live."""

from __future__ import annotations

import os
import time

import pytest

from dockyard.engine import listing
from dockyard.engine.containers import Engine
from dockyard.engine.events import stream
from dockyard.engine.images import prune
from dockyard.errors import InvalidArgument
from dockyard.filters import Filters
from dockyard.image import reference

from .conftest import Dy, engine_for_module

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def dy(tmp_path_factory):  # type: ignore[no-untyped-def]
    yield from engine_for_module(tmp_path_factory, "engine-api")


def _short(tags: list[str]) -> list[str]:
    return sorted(reference.parse(t).familiar() for t in tags)


def _names(recs: list[dict]) -> list[str]:
    return sorted(r["name"] for r in recs)


def test_container_lifecycle_and_filters_through_the_engine(dy: Dy) -> None:
    engine = Engine(dy.root)
    since = time.time() - 1
    ids = {}
    for name, cmd, labels in (("api-ok", "true", {"tier": "front"}), ("api-bad", "exit 3", {"tier": "back"}),
                              ("api-idle", "true", {"tier": "front", "x": "1"})):  # fmt: skip
        ids[name] = engine.create(
            "busybox", {"Cmd": ["sh", "-c", cmd], "Labels": labels}, {}, name=name
        )
    ids["api-up"] = engine.create("busybox", {"Cmd": ["sleep", "60"]}, {}, name="api-up")
    try:
        for name in ("api-ok", "api-bad", "api-up"):
            engine.start(ids[name])
        assert engine.wait(ids["api-ok"]) == 0 and engine.wait(ids["api-bad"]) == 3

        def select(*flt: str, all_: bool = False) -> list[str]:
            recs = listing.containers(engine, all_, Filters.parse(flt))
            return [n for n in _names(recs) if n.startswith("api-")]

        # running only, unless -a or a status filter: moby's rule
        assert select() == ["api-up"]
        assert select("name=api-") == ["api-up"]
        # the same key twice is OR; different keys AND
        assert select("status=exited", "status=created") == ["api-bad", "api-idle", "api-ok"]
        assert select("status=exited", "label=tier=front") == ["api-ok"]
        # labels: all of them must hold
        assert select("label=tier=front", "label=x", all_=True) == ["api-idle"]
        assert select("label!=x", "label=tier", all_=True) == ["api-bad", "api-ok"]
        assert select("exited=3", all_=True) == ["api-bad"]
        assert select("name=^api-(ok|bad)$", all_=True) == ["api-bad", "api-ok"]
        assert select("ancestor=busybox", all_=True) == ["api-bad", "api-idle", "api-ok", "api-up"]
        assert select("id=" + ids["api-up"][:10], all_=True) == ["api-up"]
        assert select("before=api-idle", all_=True) == ["api-bad", "api-ok"]
        assert select("since=api-bad", all_=True) == ["api-idle", "api-up"]
        with pytest.raises(InvalidArgument, match=r"^invalid filter 'bogus'$"):
            select("bogus=1")
        with pytest.raises(InvalidArgument, match=r"^invalid filter 'status=sleeping'$"):
            select("status=sleeping")

        # the CLI shows the same selection
        out = dy(
            "ps", "-f", "status=exited", "-f", "status=created", "--format", "{{.Names}}"
        ).stdout
        assert sorted(n for n in out.split() if n.startswith("api-")) == [
            "api-bad",
            "api-idle",
            "api-ok",
        ]

        # events: the past from ``since``, Docker's message with the legacy fields too
        msgs = list(
            stream(engine.db, since, time.time() + 0.2, Filters.parse(["container=api-bad"]))
        )
        assert [m["Action"] for m in msgs] == ["create", "start", "die"]
        die = msgs[-1]
        assert die["status"] == "die" and die["id"] == ids["api-bad"] and die["from"] == "busybox"
        assert (
            die["Actor"]["Attributes"]["exitCode"] == "3"
            and die["Actor"]["Attributes"]["tier"] == "back"
        )
        assert die["Type"] == "container" and die["scope"] == "local"
        assert die["time"] == die["timeNano"] // 1_000_000_000
        both = list(stream(engine.db, since, time.time() + 0.2,
                           Filters.parse(["container=api-ok", "container=api-bad", "event=die"])))  # fmt: skip
        assert sorted(m["Actor"]["Attributes"]["name"] for m in both) == ["api-bad", "api-ok"]
        with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
            next(stream(engine.db, since, time.time(), Filters.parse(["colour=red"])))
    finally:
        for cid in ids.values():
            engine.remove(cid, force=True)
    assert select("name=api-", all_=True) == []


def test_images_volumes_and_networks_through_the_engine(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = Engine(dy.root)
    (tmp_path / "Dockerfile").write_text("FROM busybox\nLABEL keep=no\nRUN echo one > /one\n")
    dy("build", "-q", "-t", "api-img:1", str(tmp_path))
    dy("tag", "api-img:1", "api-img:2")
    dy("tag", "api-img:1", "other/api:1")
    rows = listing.images(engine.images, Filters.parse(["reference=api-img"]))
    assert [_short(tags) for _, tags in rows] == [["api-img:1", "api-img:2"]]
    rows = listing.images(
        engine.images, Filters.parse(["reference=other/*", "reference=api-img:2"])
    )
    assert [_short(tags) for _, tags in rows] == [["api-img:2", "other/api:1"]]
    assert listing.images(engine.images, Filters.parse(["label=keep=no", "dangling=true"])) == []
    dy("rmi", "api-img:1", "api-img:2", "other/api:1")

    (tmp_path / "Dockerfile").write_text("FROM busybox\nLABEL keep=no\nRUN echo two > /two\n")
    dy("build", "-q", "-t", "api-dangle:1", str(tmp_path))
    dy("build", "-q", "-t", "api-dangle:1", "--build-arg", "X=1", "--no-cache", str(tmp_path))
    dangling = listing.images(engine.images, Filters.parse(["dangling=true", "label=keep=no"]))
    assert len(dangling) == 1 and dangling[0][1] == []
    assert prune(engine.images, False, Filters.parse(["label=keep=yes"]))[0] == []
    lines, _ = prune(engine.images, False, Filters.parse(["label=keep=no"]))
    assert lines == [{"Deleted": dangling[0][0]["id"]}]
    with pytest.raises(InvalidArgument, match="invalid filter 'reference'"):
        prune(engine.images, False, Filters.parse(["reference=x"]))
    dy("rmi", "api-dangle:1")

    engine.volumes.create("api-vol-a", {"k": "1"})
    engine.volumes.create("api-vol-b", {})
    cid = engine.create(
        "busybox", {"Cmd": ["true"]}, {"Binds": ["api-vol-a:/data"]}, name="api-vol-user"
    )
    try:
        vols = [v["name"] for v in listing.volumes(engine, Filters.parse(["name=api-vol"]))]
        assert vols == ["api-vol-a", "api-vol-b"]
        assert [
            v["name"]
            for v in listing.volumes(engine, Filters.parse(["name=api-vol", "dangling=true"]))
        ] == ["api-vol-b"]
        assert [v["name"] for v in listing.volumes(engine, Filters.parse(["label=k=1"]))] == [
            "api-vol-a"
        ]
        assert _names(listing.containers(engine, True, Filters.parse(["volume=api-vol-a"]))) == [
            "api-vol-user"
        ]
    finally:
        engine.remove(cid)
        engine.volumes.remove("api-vol-a")
        engine.volumes.remove("api-vol-b")

    dy("network", "create", "api-net")
    try:
        custom = [n["name"] for n in listing.networks(engine, Filters.parse(["type=custom"]))]
        assert custom == ["api-net"]
        builtin = [
            n["name"]
            for n in listing.networks(engine, Filters.parse(["type=builtin", "driver=bridge"]))
        ]
        assert builtin == ["bridge"]
        assert [n["name"] for n in listing.networks(engine, Filters.parse(["dangling=true"]))] == [
            "api-net"
        ]
    finally:
        dy("network", "rm", "api-net")


def test_logs_are_records_with_tail_since_and_follow(dy: Dy) -> None:
    from dockyard.engine.logs import records

    engine = Engine(dy.root)
    script = "for i in 1 2 3; do echo out$i; echo err$i >&2; done; sleep 0.5; echo late; sleep 0.3"
    cid = engine.create("busybox", {"Cmd": ["sh", "-c", script]}, {}, name="api-logs")
    try:
        engine.start(cid)
        deadline = time.monotonic() + 10
        while len(list(records(engine, cid))) < 6:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        early = list(records(engine, cid))
        # each stream in its order (the two pipes interleave as they are read)
        assert [r["log"] for r in early if r["stream"] == "stdout"][:3] == [
            "out1\n",
            "out2\n",
            "out3\n",
        ]
        assert [r["log"] for r in early if r["stream"] == "stderr"] == [
            "err1\n",
            "err2\n",
            "err3\n",
        ]
        one = list(records(engine, cid, tail=1))
        assert (
            len(one) == 1 and one[0] in list(records(engine, cid))[-2:]
        )  # "late" may come between
        assert list(records(engine, cid, tail=0)) == []
        # follow: what is there, then what comes, and it ends when the container does
        followed = [r["log"] for r in records(engine, cid, follow=True)]
        assert followed[-1] == "late\n" and len(followed) == 7
        assert engine.wait(cid) == 0
        last = records(engine, cid)
        stamps = [r["time"] for r in last]
        assert list(records(engine, cid, until=0.0)) == []
        from dockyard.clock import parse_time

        assert [r["log"] for r in records(engine, cid, since=parse_time(stamps[-1]))] == ["late\n"]
        with pytest.raises(InvalidArgument):
            next(records(engine, cid, tail=-2))
    finally:
        engine.remove(cid, force=True)


def test_containers_start_from_a_threaded_process(dy: Dy) -> None:
    """As an API server will: several threads start containers at once, and the monitors
    are spawned (a fork of a threaded process may inherit a held lock and hang)."""
    from concurrent.futures import ThreadPoolExecutor

    def run_one(i: int) -> tuple[int, str]:
        engine = Engine(dy.root)
        cid = engine.create(
            "busybox", {"Cmd": ["sh", "-c", f"echo hi{i}; exit {i}"]}, {}, name=f"api-thread-{i}"
        )
        try:
            monitor = engine.start(cid)
            assert monitor._popen is not None  # spawned, not forked: threads are running
            code = engine.wait(cid)
            from dockyard.engine.logs import records

            return code, "".join(r["log"] for r in records(engine, cid))
        finally:
            engine.remove(cid, force=True)

    # threads other tests left winding down may be running too: only the pool's matter here
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run_one, range(6)))
    assert results == [(i, f"hi{i}\n") for i in range(6)]


def test_stats_are_dockers_stats_json(dy: Dy) -> None:
    from dockyard.engine import stats

    engine = Engine(dy.root)
    cid = engine.create("busybox", {"Cmd": ["sh", "-c", "while :; do :; done"]},
                        {"NetworkMode": "none", "Memory": 64 << 20}, name="api-stats")  # fmt: skip
    try:
        engine.start(cid)
        (reading,) = list(stats.stream(engine, cid, interval=0.5, follow=False))
        assert reading["id"] == cid and reading["name"] == "/api-stats"
        assert reading["preread"] != "0001-01-01T00:00:00Z" and reading["read"] > reading["preread"]
        assert reading["memory_stats"]["limit"] == 64 << 20
        assert 0 < stats.memory_used(reading) <= reading["memory_stats"]["usage"]
        assert reading["pids_stats"]["current"] >= 1
        assert reading["cpu_stats"]["online_cpus"] == os.cpu_count()
        # a spinning shell: most of one CPU, never more than all of them
        assert 30 < stats.cpu_percent(reading) <= 100 * os.cpu_count() + 1
        assert stats.cpu_percent({**reading, "precpu_stats": {}}) == 0.0
        engine.kill(cid)
        engine.wait(cid)
        stopped = stats.sample(engine, cid)
        assert (
            stopped["pids_stats"]["current"] == 0
            and stopped["cpu_stats"]["cpu_usage"]["total_usage"] == 0
        )
    finally:
        engine.remove(cid, force=True)


def test_image_inspect_history_and_info_through_the_engine(dy: Dy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dockyard.engine.images import history, inspect
    from dockyard.engine.system import info

    engine = Engine(dy.root)
    (tmp_path / "Dockerfile").write_text(
        'FROM busybox\nRUN echo made > /made\nCMD ["cat", "/made"]\n'
    )
    dy("build", "-q", "-t", "api-hist:1", str(tmp_path))
    try:
        image_id = engine.images.resolve("api-hist:1")
        shown = inspect(engine.images, image_id)
        assert shown["Id"] == image_id and shown["RepoTags"] == ["api-hist:1"]
        assert shown["Config"]["Cmd"] == ["cat", "/made"] and shown["Os"] == "linux"
        assert len(shown["RootFS"]["Layers"]) == 2
        items = history(engine.images, image_id)
        assert items[0]["Id"] == image_id and items[0]["Tags"] == ["api-hist:1"]
        assert all(i["Id"] == "<missing>" and i["Tags"] is None for i in items[1:])
        assert items[0]["CreatedBy"].startswith("CMD") and "/made" in items[0]["CreatedBy"]
        run = next(i for i in items if "echo made" in i["CreatedBy"])
        assert (
            run["Size"] > 0 and isinstance(run["Created"], int) and run["Created"] > 1_600_000_000
        )
        assert items[0]["Size"] == 0  # CMD makes no layer
        # the CLI shows the same entries
        ids = dy("history", "-q", "api-hist:1").stdout.split()
        assert ids[0] == image_id[7:19] and set(ids[1:]) == {"<missing>"} and len(ids) == len(items)
        facts = info(engine)
        assert (
            facts["Images"] == sum(1 for _ in engine.images.images()) and facts["OSType"] == "linux"
        )
        assert facts["NCPU"] == os.cpu_count() and facts["DockerRootDir"] == dy.root
    finally:
        dy("rmi", "api-hist:1")


def test_builder_runs_parallel_stages_as_library_calls_in_a_threaded_process(
    dy: Dy, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """From a thread (as a server would call it), the stages build in threads of their own:
    they can only both finish by running at once (each waits for the other's mark)."""
    import io
    import threading

    from dockyard.builder.context import BuildContext
    from dockyard.builder.stages import Builder, BuildError, BuildOptions

    wait = ("touch /sync/{me}; i=0; while [ ! -e /sync/{other} ]; do i=$((i+1)); [ $i -gt 300 ] && exit 9; "
            "sleep 0.1; done; echo {me} > /{me}")  # fmt: skip
    mount = "--mount=type=cache,id=api-rendezvous,target=/sync"
    text = (f"FROM busybox AS left\nRUN {mount} {wait.format(me='left', other='right')}\n"
            f"FROM busybox AS right\nRUN {mount} {wait.format(me='right', other='left')}\n"
            "FROM busybox\nCOPY --from=left /left /\nCOPY --from=right /right /\n")  # fmt: skip
    bad = "FROM busybox AS one\nRUN exit 7\nFROM busybox AS two\nRUN true\nFROM busybox\nCOPY --from=one / /x\nCOPY --from=two / /y\n"
    results: dict[str, object] = {}

    def build(key: str, dockerfile: str, tag: str) -> None:
        engine = Engine(dy.root)
        out = io.StringIO()
        try:
            results[key] = Builder(
                engine, BuildContext(str(tmp_path), engine.db), BuildOptions(tags=[tag]), out=out
            ).build(dockerfile)
        except BuildError as err:
            results[key] = err
        results[key + "-out"] = out.getvalue()

    threads = [threading.Thread(target=build, args=("good", text, "api-par:1")),
               threading.Thread(target=build, args=("bad", bad, "api-bad:1"))]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert isinstance(results["good"], str), results
    assert "building in parallel" in str(results["good-out"])
    assert dy("run", "--rm", "api-par:1", "cat", "/left", "/right").stdout == "left\nright\n"
    assert isinstance(results["bad"], BuildError) and "7" in str(results["bad"]), results["bad"]
    dy("rmi", "api-par:1")


def test_exec_is_an_engine_object_with_an_id(dy: Dy) -> None:
    from dockyard.engine import execs
    from dockyard.errors import CommandNotFound, Conflict, NotFound

    engine = Engine(dy.root)
    cid = engine.create(
        "busybox", {"Cmd": ["sleep", "60"]}, {"NetworkMode": "none"}, name="api-exec"
    )
    try:
        with pytest.raises(Conflict, match="is not running"):
            execs.create(engine, "api-exec", {"Cmd": ["true"]})
        engine.start(cid)
        exec_id = execs.create(
            engine, "api-exec", {"Cmd": ["sh", "-c", "sleep 0.5; exit 3"], "User": "nobody"}
        )
        before = execs.inspect(engine, exec_id)
        assert (before["Running"], before["ExitCode"], before["ContainerID"]) == (False, None, cid)
        assert before["ProcessConfig"] == {"entrypoint": "sh", "arguments": ["-c", "sleep 0.5; exit 3"],
                                           "tty": False, "user": "nobody", "privileged": False}  # fmt: skip
        assert execs.start(engine, exec_id, detach=True) is None
        running = execs.inspect(engine, exec_id)
        assert running["Running"] is True and running["Pid"] > 0
        with pytest.raises(Conflict, match="already running"):
            execs.start(engine, exec_id, detach=True)
        deadline = time.monotonic() + 10
        while execs.inspect(engine, exec_id)["Running"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        done = execs.inspect(engine, exec_id)
        assert (done["Running"], done["ExitCode"]) == (False, 3)
        with pytest.raises(Conflict, match="has already run"):
            execs.start(engine, exec_id)
        # an attached exec returns its status; a missing command is Docker's 127
        assert execs.start(engine, execs.create(engine, cid, {"Cmd": ["true"]})) == 0
        missing = execs.create(engine, cid, {"Cmd": ["no-such-cmd"]})
        with pytest.raises(CommandNotFound):
            execs.start(engine, missing)
        assert execs.inspect(engine, missing)["ExitCode"] == 127
        with pytest.raises(NotFound, match="No such exec instance"):
            execs.inspect(engine, "0" * 64)
    finally:
        engine.remove(cid, force=True)


def test_detached_exec_from_a_threaded_process(dy: Dy) -> None:
    import threading

    from dockyard.engine import execs
    from dockyard.errors import Conflict

    engine = Engine(dy.root)
    cid = engine.create(
        "busybox", {"Cmd": ["sleep", "60"]}, {"NetworkMode": "none"}, name="api-exec-t"
    )
    try:
        engine.start(cid)
        results: dict[str, object] = {}

        def run() -> None:
            own = Engine(dy.root)
            exec_id = execs.create(own, cid, {"Cmd": ["sh", "-c", "exit 5"]})
            results["start"] = execs.start(own, exec_id, detach=True)
            results["id"] = exec_id

        worker = threading.Thread(target=run)
        worker.start()
        worker.join(30)
        deadline = time.monotonic() + 10
        while execs.inspect(engine, str(results["id"]))["Running"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert (
            results["start"] is None and execs.inspect(engine, str(results["id"]))["ExitCode"] == 5
        )
        # two starts of one exec at once: exactly one runs it
        racing = execs.create(engine, cid, {"Cmd": ["true"]})
        outcomes: list[str] = []

        def race() -> None:
            try:
                execs.start(Engine(dy.root), racing, detach=True)
                outcomes.append("started")
            except Conflict:
                outcomes.append("refused")

        racers = [threading.Thread(target=race) for _ in range(4)]
        for t in racers:
            t.start()
        for t in racers:
            t.join(30)
        assert sorted(outcomes) == ["refused", "refused", "refused", "started"]
    finally:
        engine.remove(cid, force=True)


def test_a_stopping_client_records_the_exit_once(dy: Dy) -> None:
    """``stop`` claims the exit on the attach socket and records it itself; a second client
    attached meanwhile is told the code once it is recorded, and does not record it too:
    one die event, the right code, an --rm container removed by the stop."""
    from dockyard.engine.attach import AttachSession

    engine = Engine(dy.root)
    since = time.time()
    trap = ["sh", "-c", "trap 'exit 7' TERM; echo trapped; sleep 300 & wait"]

    def trapping(cid: str) -> None:  # a SIGTERM before the trap is set would be ignored (PID 1)
        from dockyard.engine.logs import records

        deadline = time.monotonic() + 10
        while not any(r["log"] == "trapped\n" for r in records(engine, cid)):
            assert time.monotonic() < deadline, "the trap was never set"
            time.sleep(0.02)

    cid = engine.create("busybox", {"Cmd": trap}, {"NetworkMode": "none"})
    try:
        engine.start(cid)
        trapping(cid)
        watcher = AttachSession(engine, cid)
        engine.stop(cid, 10)
        rec = engine.record(cid)
        assert (rec["status"], rec["exit_code"]) == ("exited", 7)
        assert watcher.wait(10) and watcher.exit_code == 7
        watcher.close()
        deadline = time.monotonic() + 10
        while engine.record(cid)["monitor_pid"]:
            assert time.monotonic() < deadline, "the monitor never went"
            time.sleep(0.05)
        dies = [m for m in stream(engine.db, since, time.time(), Filters.parse((f"container={cid}",)))
                if m["Action"] == "die"]  # fmt: skip
        assert [m["Actor"]["Attributes"]["exitCode"] for m in dies] == ["7"]
    finally:
        engine.remove(cid, force=True)
    cid = engine.create("busybox", {"Cmd": trap}, {"NetworkMode": "none", "AutoRemove": True})
    engine.start(cid)
    trapping(cid)
    engine.stop(cid, 10)
    assert cid not in [r["id"] for r in engine.list(all_=True)]


def test_attach_is_an_engine_session(dy: Dy) -> None:
    """The run path without a terminal: the session gets the monitor's socket, sends stdin,
    reads stdout and stderr apart, and finishes the container (--rm) before it returns."""
    from dockyard.engine.attach import AttachSession, DetachKeys, parse_detach_keys
    from dockyard.engine.stream import STDERR, STDOUT
    from dockyard.errors import CommandNotFound, ContainerNotFound

    engine = Engine(dy.root)
    cid = engine.create(
        "busybox",
        {"Cmd": ["sh", "-c", "read line; echo got $line; echo oops >&2; exit 4"],
         "OpenStdin": True, "StdinOnce": True},
        {"AutoRemove": True},
    )  # fmt: skip
    monitor = engine.start(cid, attach=True)
    seen: dict[int, bytes] = {STDOUT: b"", STDERR: b""}
    with AttachSession(engine, cid, monitor.attach) as session:
        session.send(b"hello\n")
        session.close_stdin()
        code = session.pump(lambda kind, data: seen.__setitem__(kind, seen[kind] + data))
    monitor.wait()
    assert (code, seen[STDOUT], seen[STDERR]) == (4, b"got hello\n", b"oops\n")
    with pytest.raises(ContainerNotFound):
        engine.record(cid)  # AutoRemove: gone when the session ended

    # a second client on a running container: connects to its socket, sees the exit
    cid = engine.create("busybox", {"Cmd": ["sh", "-c", "sleep 0.5; echo late; exit 2"]}, {})
    try:
        engine.start(cid)
        with AttachSession(engine, cid) as session:
            out: list[bytes] = []
            assert session.pump(lambda _k, data: out.append(data)) == 2
        assert b"".join(out) == b"late\n"
        assert engine.record(cid)["status"] == "exited"
    finally:
        engine.remove(cid, force=True)

    # a start error comes back as its class, not as text
    cid = engine.create("busybox", {"Cmd": ["no-such-command"]}, {})
    try:
        monitor = engine.start(cid, attach=True)
        with pytest.raises(CommandNotFound), AttachSession(engine, cid, monitor.attach) as session:
            session.pump(lambda _k, _d: None)
        monitor.wait()
    finally:
        engine.remove(cid, force=True)

    # detach keys: Docker's grammar, a split sequence still seen, what came before passed on
    keys = DetachKeys(parse_detach_keys("ctrl-p,ctrl-q"))
    assert keys.feed(b"ab\x10") == (b"ab", False)
    assert keys.feed(b"\x11rest") == (b"", True)
    assert DetachKeys(parse_detach_keys("ctrl-x")).feed(b"a\x10b") == (b"a\x10b", False)
    with pytest.raises(InvalidArgument, match=r"^invalid detach keys \(ctrl-\) provided$"):
        parse_detach_keys("ctrl-")


def test_state_transitions_follow_one_table(dy: Dy) -> None:
    """Verbs refused in a status say so in dockerd's words, with the class a client maps to a
    status code; a move the table does not allow is refused at the record, naming the status."""
    from dockyard.errors import Conflict, NotRunning

    engine = Engine(dy.root)
    cid = engine.create("busybox", {"Cmd": ["sleep", "60"]}, {}, name="api-states")
    try:
        with pytest.raises(NotRunning, match=f"^Container {cid} is not running$"):
            engine.pause(cid)
        with pytest.raises(NotRunning, match=f"^Container {cid} is not running$"):
            engine.top(cid)
        with pytest.raises(
            NotRunning,
            match=rf"^Cannot kill container: {cid[:12]}: Container {cid} is not running$",
        ):
            engine.kill(cid)
        engine.start(cid)
        top = engine.top(cid)
        assert "PID" in top["Titles"] and any("sleep 60" in row[-1] for row in top["Processes"])
        with pytest.raises(Conflict, match=f"^Container {cid} is not paused$"):
            engine.unpause(cid)
        engine.pause(cid)
        assert engine.record(cid)["status"] == "paused"
        with pytest.raises(Conflict, match=f"^Container {cid} is already paused$"):
            engine.pause(cid)
        with pytest.raises(
            Conflict, match=rf"^You cannot remove a paused container {cid}\. Unpause"
        ):
            engine.remove(cid)
        # paused -> created is no move at all: refused at the record, which stays as it was
        with pytest.raises(
            Conflict, match=f"^container {cid[:12]} cannot become created: it is paused$"
        ):
            engine.set_state(cid, status="created")
        assert engine.record(cid)["status"] == "paused"
        engine.unpause(cid)
        engine.kill(cid)
        assert engine.wait(cid) == 137
        assert engine.record(cid)["status"] == "exited"
    finally:
        engine.remove(cid, force=True)


def test_exec_on_given_descriptors_and_terminal_resize(dy: Dy) -> None:
    """What an API server needs: an attached exec on descriptors it holds (stdout and
    stderr apart), and a tty exec (and a tty container) resized while they run."""
    import socket
    import threading

    from dockyard.engine import execs
    from dockyard.errors import Conflict

    engine = Engine(dy.root)
    cid = engine.create("busybox", {"Cmd": ["sleep", "60"], "Tty": True}, {"NetworkMode": "none"})
    try:
        engine.start(cid)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        exec_id = execs.create(engine, cid, {"Cmd": ["sh", "-c", "echo out; echo err >&2; exit 6"]})
        try:
            assert execs.start(engine, exec_id, stdio=(null, out_w, err_w)) == 6
        finally:
            for fd in (null, out_w, err_w):
                os.close(fd)
        with os.fdopen(out_r) as out, os.fdopen(err_r) as err:
            assert (out.read(), err.read()) == ("out\n", "err\n")

        # a tty exec, attached to one end of a socket pair, waits until its terminal is 33x77
        wait_for_size = ('i=0; while [ "$(stty size)" != "33 77" ] && [ $i -lt 400 ]; do '
                         "sleep 0.05; i=$((i+1)); done; stty size")  # fmt: skip
        ours, theirs = socket.socketpair()
        exec_id = execs.create(engine, cid, {"Cmd": ["sh", "-c", wait_for_size], "Tty": True,
                                             "AttachStdin": True, "AttachStdout": True})  # fmt: skip
        result: dict[str, object] = {}
        fd = theirs.fileno()
        runner = threading.Thread(
            target=lambda: result.update(code=execs.start(engine, exec_id, stdio=(fd, fd, fd)))
        )
        runner.start()
        deadline = time.monotonic() + 20
        while not execs.inspect(engine, exec_id)["Pid"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        execs.resize(engine, exec_id, 33, 77)
        got = b""
        ours.settimeout(30)
        while b"33 77" not in got:
            chunk = ours.recv(4096)
            assert chunk, got
            got += chunk
        runner.join(30)
        theirs.close()
        ours.close()
        assert result["code"] == 0
        with pytest.raises(Conflict, match="is not running"):
            execs.resize(engine, exec_id, 10, 10)

        # the container's own terminal: PID 1's standard input
        engine.resize(cid, 21, 55)
        check = execs.create(engine, cid, {"Cmd": ["sh", "-c", "stty size < /proc/1/fd/0"]})
        out_r, out_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            assert execs.start(engine, check, stdio=(null, out_w, out_w)) == 0
        finally:
            os.close(null)
            os.close(out_w)
        with os.fdopen(out_r) as out:
            assert out.read().strip() == "21 55"
    finally:
        engine.remove(cid, force=True)


def test_a_follow_of_a_container_that_just_ended_has_its_last_lines(dy: Dy) -> None:
    """A follow that begins as its container ends reads the file once more after it sees
    the end: the last lines written just before the exit are not lost (docker-py's run
    returns exactly that follow's output)."""
    from dockyard.engine.logs import records

    engine = Engine(dy.root)
    for n in range(10):
        cid = engine.create(
            "busybox", {"Cmd": ["echo", f"last words {n}"]}, {"NetworkMode": "none"}
        )
        try:
            engine.start(cid)
            got = "".join(r["log"] for r in records(engine, cid, follow=True))
            assert got == f"last words {n}\n"
        finally:
            engine.remove(cid, force=True)


def test_a_follow_keeps_the_lines_of_a_container_removed_at_its_exit(dy: Dy) -> None:
    """docker-py's run removes the container the moment it exits, then reads the follow it
    opened before: the follow holds the log open, so every line still comes, also to a
    reader slower than the container."""
    import threading

    from dockyard.engine.logs import records

    script = "sleep 0.3; i=0; while [ $i -lt 400 ]; do echo line $i; i=$((i+1)); done"
    engine = Engine(dy.root)
    cid = engine.create("busybox", {"Cmd": ["sh", "-c", script]}, {"NetworkMode": "none"})
    engine.start(cid)
    got: list[str] = []
    failed: list[BaseException] = []

    def read() -> None:
        try:
            for r in records(Engine(dy.root), cid, follow=True):
                got.append(r["log"])
                time.sleep(0.002)  # slower than the container: most lines are read after it is gone
        except BaseException as err:  # the follow must end, not fail, when the container goes
            failed.append(err)

    reader = threading.Thread(target=read)
    reader.start()
    assert engine.wait(cid) == 0
    engine.remove(cid, force=True)
    reader.join(30)
    assert not failed, failed
    assert got == [f"line {i}\n" for i in range(400)]


def test_uts_of_another_container(dy: Dy) -> None:
    """``UTSMode: container:NAME`` (engine-level, for a pod's containers; Docker's command
    line refuses it): the donor's UTS namespace and so its host name, which the joiner
    does not change."""
    engine = Engine(dy.root)
    donor = engine.create("busybox", {"Cmd": ["sleep", "300"], "Hostname": "podhost"},
                          {"NetworkMode": "none"}, name="uts-donor")  # fmt: skip
    joiner = engine.create("busybox", {"Cmd": ["sh", "-c", "hostname; readlink /proc/self/ns/uts"],
                                       "Hostname": "other"},
                           {"NetworkMode": "none", "UTSMode": "container:uts-donor"})  # fmt: skip
    try:
        engine.start(donor)
        engine.start(joiner)
        assert engine.wait(joiner) == 0
        from dockyard.engine.logs import records

        name, ns = "".join(r["log"] for r in records(engine, joiner)).split()
        assert name == "podhost" and ns == os.readlink(
            f"/proc/{engine.record(donor)['pid']}/ns/uts"
        )
    finally:
        engine.remove(joiner, force=True)
        engine.remove(donor, force=True)
