"""Pieces of the runtime that need no privileges: parsing, path resolution, cgroup files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dockyard import _json
from dockyard.linux import capabilities, signals
from dockyard.linux import syscalls as sc
from dockyard.runtime import cgroups, rootfs
from dockyard.runtime.cgroups.v1 import CgroupV1
from dockyard.runtime.cgroups.v2 import CgroupV2, blkio_weight_to_io, shares_to_weight
from dockyard.runtime.cli import UsageError, _parse
from dockyard.runtime.spec import SpecError, default_spec, load_spec


def test_json_matches_the_stdlib() -> None:
    doc = default_spec()
    text = json.dumps(doc)
    assert _json.loads(text) == doc
    assert _json.loads(text.encode()) == doc
    assert _json.dumps(doc) == json.dumps(doc, separators=(",", ":"))
    assert _json.loads(' {"a": [1, 2.5, "\\u00e9", null, true]} ') == {
        "a": [1, 2.5, "é", None, True]
    }
    with pytest.raises(ValueError):
        _json.loads('{"a": 1} trailing')
    with pytest.raises(ValueError):
        _json.loads('{"a": ')


def test_signal_names() -> None:
    assert signals.number("9") == 9
    assert signals.number("KILL") == 9
    assert signals.number("sigterm") == 15
    with pytest.raises(ValueError, match="unknown signal: NOPE"):
        signals.number("NOPE")


def test_capability_masks() -> None:
    assert capabilities.cap_number("CAP_SYS_ADMIN") == 21
    assert capabilities.cap_number("net_raw") == 13
    assert capabilities.mask(["CAP_KILL", "CAP_CHECKPOINT_RESTORE"], last=39) == 1 << 5
    with pytest.raises(ValueError):
        capabilities.cap_number("CAP_FLY")


def test_cli_parser_follows_runc() -> None:
    table = {"--bundle": ("bundle", "str"), "-b": ("bundle", "str"), "-d": ("detach", "bool"),
             "-e": ("env", "list"), "--preserve-fds": ("preserve_fds", "int")}  # fmt: skip
    values, pos = _parse(
        ["-b", "/b", "-d", "-e", "A=1", "--env=B=2", "id", "-x"],
        {**table, "--env": ("env", "list")},
    )
    assert values == {"bundle": "/b", "detach": True, "env": ["A=1", "B=2"]}
    assert pos == ["id", "-x"]  # flags end at the first positional argument
    assert _parse(["--preserve-fds=2", "--", "-id"], table) == ({"preserve_fds": 2}, ["-id"])
    with pytest.raises(UsageError, match="flag provided but not defined: --nope"):
        _parse(["--nope"], table)
    with pytest.raises(UsageError, match="flag needs an argument: -b"):
        _parse(["-b"], table)


def test_mount_options() -> None:
    flags, prop, data = rootfs.parse_mount_options(
        ["nosuid", "ro", "rslave", "mode=755", "size=1m", "rw", "noexec"]
    )
    assert flags == sc.MS_NOSUID | sc.MS_NOEXEC  # rw cleared ro
    assert prop == sc.MS_SLAVE | sc.MS_REC
    assert data == "mode=755,size=1m"


def test_secure_join_stays_inside(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = str(tmp_path)
    os.makedirs(f"{root}/etc")
    os.symlink("/etc/../../../../outside", f"{root}/evil")
    os.symlink("../../..", f"{root}/etc/up")
    os.symlink("sub/x", f"{root}/rel")
    assert rootfs.secure_join(root, "/evil/file") == f"{root}/outside/file"
    assert rootfs.secure_join(root, "/etc/up/proc") == f"{root}/proc"
    assert rootfs.secure_join(root, "../../x") == f"{root}/x"
    assert rootfs.secure_join(root, "/rel") == f"{root}/sub/x"
    os.symlink("loop", f"{root}/loop")
    with pytest.raises(OSError):
        rootfs.secure_join(root, "/loop/x")


def test_spec_validation(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecError, match=r"no config\.json"):
        load_spec(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(SpecError, match="invalid JSON"):
        load_spec(str(tmp_path))
    spec = default_spec()
    spec["linux"]["namespaces"] = [{"type": "pid"}]
    (tmp_path / "config.json").write_text(json.dumps(spec))
    # as runc: a host name without a UTS namespace of the container's would be the host's
    with pytest.raises(SpecError, match="unable to set hostname without a private UTS namespace"):
        load_spec(str(tmp_path))
    del spec["hostname"]
    (tmp_path / "config.json").write_text(json.dumps(spec))
    assert load_spec(str(tmp_path))["linux"]["namespaces"] == [
        {"type": "pid"}
    ]  # the runtime's mount ns


def test_cgroup_path_resolution() -> None:
    assert cgroups.resolve_path("", "abc") == "/abc"
    assert cgroups.resolve_path("/x/y", "abc") == "/x/y"
    assert (
        cgroups.resolve_path("system.slice:docker:abc", "abc", systemd=True)
        == "/system.slice/docker-abc.scope"
    )
    assert (
        cgroups.resolve_path("a-b.slice:p:n", "n", systemd=True) == "/a.slice/a-b.slice/p-n.scope"
    )


def test_v2_conversions_match_runc() -> None:
    assert shares_to_weight(2) == 1
    assert shares_to_weight(1024) == 39
    assert shares_to_weight(262144) == 10000
    assert blkio_weight_to_io(10) == 1
    assert blkio_weight_to_io(1000) == 10000


def _fake_v2(tmp_path, controllers: str):  # type: ignore[no-untyped-def]
    mount = tmp_path / "cg2"
    leaf = mount / "box"
    leaf.mkdir(parents=True)
    (mount / "cgroup.controllers").write_text(controllers)
    (mount / "cgroup.subtree_control").write_text(controllers)
    for name in (
        "memory.max",
        "memory.swap.max",
        "memory.low",
        "cpu.weight",
        "cpu.max",
        "pids.max",
        "io.weight",
    ):
        (leaf / name).write_text("")
    return CgroupV2(str(mount), str(leaf))


def test_v2_resources_land_in_the_right_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cg = _fake_v2(tmp_path, "memory cpu pids io")
    cg.apply({
        "memory": {"limit": 100 << 20, "swap": 150 << 20, "reservation": 50 << 20},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
        "pids": {"limit": 42},
        "blockIO": {"weight": 500},
    })  # fmt: skip
    leaf = tmp_path / "cg2" / "box"
    assert (leaf / "memory.max").read_text() == str(100 << 20)
    assert (leaf / "memory.swap.max").read_text() == str(50 << 20)  # swap counts apart in v2
    assert (leaf / "memory.low").read_text() == str(50 << 20)
    assert (leaf / "cpu.weight").read_text() == "39"
    assert (leaf / "cpu.max").read_text() == "50000 100000"
    assert (leaf / "pids.max").read_text() == "42"
    assert (leaf / "io.weight").read_text() == "default 4950"


def test_v2_missing_controller_is_one_warning(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from dockyard.runtime.cgroups._files import take_warnings

    take_warnings()
    cg = _fake_v2(tmp_path, "cpu")
    cg.apply({"memory": {"limit": 1 << 20}, "pids": {"limit": 5}})
    assert capsys.readouterr().err == ""  # kept for the caller, who shows them (issue 13)
    err = take_warnings()
    assert len(err) == 2
    assert "cgroup controller memory is not available" in err[0]
    assert "cgroup controller pids is not available" in err[1]
    assert (tmp_path / "cg2" / "box" / "memory.max").read_text() == ""


def test_v1_resources_land_in_the_right_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    paths = {}
    for ctrl in ("memory", "cpu", "pids", "cpuset"):
        d = tmp_path / ctrl / "box"
        d.mkdir(parents=True)
        paths[ctrl] = str(d)
    for name in ("memory.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.oom_control"):
        (tmp_path / "memory" / "box" / name).write_text("0")
    for name in ("cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"):
        (tmp_path / "cpu" / "box" / name).write_text("")
    (tmp_path / "pids" / "box" / "pids.max").write_text("")
    (tmp_path / "cpuset" / "box" / "cpuset.cpus").write_text("")
    cg = CgroupV1(paths)
    cg.apply({"memory": {"limit": 64 << 20, "reservation": 32 << 20, "disableOOMKiller": True},
              "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0"},
              "pids": {"limit": -1}})  # fmt: skip
    assert (tmp_path / "memory/box/memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (tmp_path / "memory/box/memory.soft_limit_in_bytes").read_text() == str(32 << 20)
    assert (tmp_path / "memory/box/memory.oom_control").read_text() == "1"
    assert (tmp_path / "cpu/box/cpu.shares").read_text() == "512"
    assert (tmp_path / "cpu/box/cpu.cfs_quota_us").read_text() == "20000"
    assert (tmp_path / "pids/box/pids.max").read_text() == "max"
    assert (tmp_path / "cpuset/box/cpuset.cpus").read_text() == "0"
    assert cg.procs_files() == [
        str(tmp_path / c / "box" / "tasks") for c in ("cpu", "cpuset", "memory", "pids")
    ]


def test_runtime_startup_imports_stay_light() -> None:
    """The runtime's CLI must not pull in modules that cost every container start."""
    code = (
        "import sys; import dockyard.runtime.commands, dockyard.runtime.container, "
        "dockyard.runtime.cgroups.v1; "
        "print(' '.join(m for m in ('re', 'json', 'enum', 'typing', 'argparse', 'click', "
        "'datetime', 'signal', 'subprocess') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_dockerfile_changes_apply_like_docker() -> None:
    from dockyard.image.changes import apply_changes

    cfg = apply_changes({"Env": ["PATH=/bin", "A=1"]}, [
        'CMD ["nginx", "-g", "daemon off;"]', "ENTRYPOINT /entry.sh", "ENV A=2 B=\"x y\"", "ENV C legacy form",
        "EXPOSE 80 53/udp", "LABEL k=v", "VOLUME /data /logs", "USER 1000:1000", "WORKDIR /srv",
        "STOPSIGNAL SIGQUIT", "ONBUILD RUN make",
    ])  # fmt: skip
    assert cfg["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "/entry.sh"]
    assert cfg["Env"] == ["PATH=/bin", "A=2", "B=x y", "C=legacy form"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/data": {}, "/logs": {}}
    assert (cfg["User"], cfg["WorkingDir"], cfg["StopSignal"]) == ("1000:1000", "/srv", "SIGQUIT")
    assert cfg["OnBuild"] == ["RUN make"]
    assert apply_changes({}, ['VOLUME ["/a", "/b"]'])["Volumes"] == {"/a": {}, "/b": {}}


def test_device_rules_reduce_as_the_v1_controller_applies_them() -> None:
    from dockyard.linux.bpf import DeviceException, device_filter, reduce_rules

    deny_all = {"allow": False, "access": "rwm"}
    null = {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
    assert reduce_rules([]) == (True, [])
    assert reduce_rules([deny_all, null]) == (False, [DeviceException("c", 1, 3, 7)])
    # an allow-all after denials starts over; a deny takes access away from an exception
    assert reduce_rules([deny_all, null, {"allow": True, "access": "rwm"}]) == (True, [])
    assert reduce_rules([deny_all, null, {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}]) == (
        False, [DeviceException("c", 1, 3, 3)])  # fmt: skip
    wildcard = {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "rw"}
    assert reduce_rules([deny_all, wildcard])[1] == [DeviceException("c", 136, None, 6)]
    assert reduce_rules([{"allow": False, "type": "b", "major": 8, "minor": 0, "access": "w"}]) == (
        True, [DeviceException("b", 8, 0, 4)])  # fmt: skip
    program = device_filter([deny_all, null, wildcard])
    assert len(program) % 8 == 0 and program[-8:] == bytes([0x95]) + bytes(7)  # ends with exit


def test_runtime_errors_join_the_engine_tree(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The driver is the one seam: the runtime's own exceptions come out as the engine's
    classes (NotRunning, RuntimeFailed carrying the runtime's kind), whatever their text."""
    from dockyard.engine.runtimes import InProcessRuntime, RuntimeFailed
    from dockyard.errors import DockyardError, NotRunning

    runtime = InProcessRuntime(str(tmp_path / "state"))
    for call in (lambda: runtime.kill("nosuch", 9), lambda: runtime.pause("nosuch"),
                 lambda: runtime.resume("nosuch")):  # fmt: skip
        with pytest.raises(NotRunning, match=r"^container nosuch is not running$"):
            call()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text('{"ociVersion": "1.0.2", "process": 7}')
    with pytest.raises(RuntimeFailed) as failed:
        runtime.create("bad", str(bundle))
    assert isinstance(failed.value, DockyardError) and failed.value.__cause__ is not None


def test_cgroup_warnings_are_kept_for_the_caller_not_printed(capfd) -> None:  # type: ignore[no-untyped-def]
    """Library code writes nothing to stderr: a resource the host cannot enforce is a
    warning handed to whoever drives the runtime (the engine prints it as docker does)."""
    from dockyard.runtime.cgroups import manager_for
    from dockyard.runtime.cgroups._files import take_warnings

    take_warnings()
    manager_for("disabled", "/dockyard/none").apply({"memory": {"limit": 1 << 20}})
    assert capfd.readouterr().err == ""
    assert take_warnings() == ["cgroups are disabled; resource limits not applied"]
    assert take_warnings() == []
