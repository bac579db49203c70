"""One function per ``dockyard-runtime`` command: flags in, exit status out."""

from __future__ import annotations

import os
import sys

from dockyard import _json
from dockyard.linux import signals
from dockyard.runtime import lifecycle as ct
from dockyard.runtime import state as st
from dockyard.runtime.cli import UsageError, _need_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_CGROUP_MANAGERS = {
    "cgroupfs": "auto",
    "auto": "auto",
    "v1": "v1",
    "v2": "v2",
    "disabled": "disabled",
}


def _opts(g: dict[str, Any]) -> ct.Options:
    manager = g.get("cgroup_manager") or "auto"
    if manager not in _CGROUP_MANAGERS:
        raise UsageError(f"unknown cgroup manager: {manager} (cgroupfs, v1, v2 or disabled)")
    return ct.Options(
        root=g.get("root") or "/run/dockyard-runtime",
        systemd_cgroup=bool(g.get("systemd_cgroup")),
        cgroup_manager=_CGROUP_MANAGERS[manager],
        debug=bool(g.get("debug")),
    )


def _print_json(obj: Any) -> None:
    sys.stdout.write(_json.dumps(obj, indent=2) + "\n")


def cmd_spec(g: dict[str, Any], f: dict[str, Any], pos: list[str]) -> int:
    import json

    from dockyard.runtime.spec import default_spec

    path = os.path.join(f.get("bundle") or ".", "config.json")
    if os.path.exists(path):
        raise ct.ContainerError("File config.json exists. Remove it first.")
    with open(path, "w") as out:
        json.dump(default_spec(rootless=bool(f.get("rootless"))), out, indent="\t")
        out.write("\n")
    return 0


def _create(g: dict[str, Any], f: dict[str, Any], pos: list[str], **extra: Any) -> dict[str, Any]:
    from dockyard.runtime.container import create

    return create(
        _opts(g),
        _need_id(pos, "create"),
        f.get("bundle") or ".",
        pid_file=f.get("pid_file"),
        console_socket=f.get("console_socket"),
        no_pivot=bool(f.get("no_pivot")),
        preserve_fds=f.get("preserve_fds") or 0,
        **extra,
    )


def cmd_create(g: dict[str, Any], f: dict[str, Any], pos: list[str]) -> int:
    _create(g, f, pos)
    return 0


def cmd_start(g: dict[str, Any], f: dict[str, Any], pos: list[str]) -> int:
    ct.start(_opts(g), _need_id(pos, "start"))
    return 0


_FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


def forward_signals(pid: int) -> None:
    """Send the signals this process gets on to ``pid``, as runc run does."""

    def handler(sig: int, _frame: Any) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for name in _FORWARDED:
        signals.set_handler(signals.NAMES[name], handler)


def cmd_run(g: dict[str, Any], f: dict[str, Any], pos: list[str]) -> int:
    from dockyard.linux import syscalls as sc

    opts = _opts(g)
    cid = _need_id(pos, "run")
    detach = bool(f.get("detach"))
    ours = theirs = -1
    if not detach:
        # Init's parent exits during create; as subreaper we inherit it and can wait.
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        spec_terminal = _spec_terminal(f.get("bundle") or ".")
        if spec_terminal and not f.get("console_socket"):
            from dockyard.runtime import console

            ours, theirs = console.socketpair()
    elif _spec_terminal(f.get("bundle") or ".") and not f.get("console_socket"):
        raise ct.ContainerError(
            "cannot allocate tty if runtime is detached without --console-socket"
        )
    try:
        state = _create(g, f, pos, console_fd=theirs)
    finally:
        if theirs >= 0:
            os.close(theirs)
    try:
        if not detach:
            forward_signals(state["pid"])
        ct.start(opts, cid)
    except BaseException:
        ct.delete(opts, cid, force=True)
        raise
    if detach:
        return 0
    if ours >= 0:
        from dockyard.runtime import console

        console.forward(ours)
    code = ct.wait_exit(state["pid"])
    if not f.get("keep"):
        ct.delete(opts, cid, force=True)
    return code


def _spec_terminal(bundle: str) -> bool:
    try:
        with open(os.path.join(bundle, "config.json")) as fh:
            spec = _json.loads(fh.read())
        return bool(spec.get("process", {}).get("terminal"))  # type: ignore[union-attr]
    except (OSError, ValueError, AttributeError):
        return False


def cmd_state(g: dict[str, Any], f: dict[str, Any], pos: list[str]) -> int:
    _print_json(ct.state_json(_opts(g), _need_id(pos, "state")))
    return 0


def cmd_kill(g: dict[str, Any], f: dict[str, Any], pos: list[str]) -> int:
    cid = _need_id(pos, "kill")
    sig = ct.parse_signal(pos[1]) if len(pos) > 1 else signals.SIGTERM
    ct.kill(_opts(g), cid, sig, bool(f.get("all")))
    return 0


def cmd_delete(g: dict[str, Any], f: dict[str, Any], pos: list[str]) -> int:
    ct.delete(_opts(g), _need_id(pos, "delete"), bool(f.get("force")))
    return 0


def cmd_pause(g: dict[str, Any], f: dict[str, Any], pos: list[str]) -> int:
    ct.pause(_opts(g), _need_id(pos, "pause"))
    return 0


def cmd_resume(g: dict[str, Any], f: dict[str, Any], pos: list[str]) -> int:
    ct.resume(_opts(g), _need_id(pos, "resume"))
    return 0


def _exec_process(f: dict[str, Any], pos: list[str], opts: ct.Options) -> dict[str, Any]:
    cid = pos[0]
    if f.get("process"):
        try:
            with open(f["process"]) as fh:
                return _json.loads(fh.read())  # type: ignore[return-value]
        except (OSError, ValueError) as err:
            raise ct.ContainerError(f"reading process spec {f['process']}: {err}") from None
    if len(pos) < 2:
        raise UsageError("exec needs a command to run")
    base = dict(ct._spec_of(st.load(opts.root, cid)).get("process") or {})
    base["args"] = pos[1:]
    base["terminal"] = bool(f.get("tty"))
    base["cwd"] = f.get("cwd") or base.get("cwd") or "/"
    base["env"] = list(base.get("env") or []) + list(f.get("env") or [])
    if f.get("user"):
        uid, _, gid = f["user"].partition(":")
        base["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if f.get("gids"):
        base.setdefault("user", {})["additionalGids"] = [int(x) for x in f["gids"]]
    if f.get("no_new_privs"):
        base["noNewPrivileges"] = True
    if f.get("caps"):
        capsets = dict(base.get("capabilities") or {})
        for key in ("bounding", "effective", "permitted", "ambient"):
            capsets[key] = list(dict.fromkeys(list(capsets.get(key) or []) + f["caps"]))
        base["capabilities"] = capsets
    return base


def cmd_exec(g: dict[str, Any], f: dict[str, Any], pos: list[str]) -> int:
    from dockyard.runtime.exec import exec_process

    opts = _opts(g)
    _need_id(pos, "exec")
    proc = _exec_process(f, pos, opts)
    return exec_process(
        opts,
        pos[0],
        proc,
        detach=bool(f.get("detach")),
        pid_file=f.get("pid_file"),
        console_socket=f.get("console_socket"),
        preserve_fds=f.get("preserve_fds") or 0,
        ignore_paused=bool(f.get("ignore_paused")),
    )


def cmd_list(g: dict[str, Any], f: dict[str, Any], pos: list[str]) -> int:
    opts = _opts(g)
    rows = []
    for cid in st.list_ids(opts.root):
        try:
            rows.append(ct.state_json(opts, cid))
        except st.ContainerNotFound:
            continue  # deleted meanwhile
    if f.get("quiet"):
        sys.stdout.write("".join(r["id"] + "\n" for r in rows))
    elif (f.get("format") or "table") == "json":
        sys.stdout.write(_json.dumps(rows) + "\n")
    else:
        table = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
        for r in rows:
            table.append(
                [
                    r["id"],
                    str(r["pid"]),
                    r["status"],
                    r["bundle"],
                    r["created"],
                    r["owner"] or "root",
                ]
            )
        widths = [max(len(row[i]) for row in table) for i in range(6)]
        for row in table:
            cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
            sys.stdout.write("   ".join(cells).rstrip() + "\n")
    return 0


def cmd_ps(g: dict[str, Any], f: dict[str, Any], pos: list[str]) -> int:
    from dockyard.runtime import cgroups

    opts = _opts(g)
    cid = _need_id(pos, "ps")
    state = st.load(opts.root, cid)
    pids = cgroups.from_state(state.get("cgroup") or {}).pids()
    if not pids and st.status(opts.root, state) != "stopped":
        pids = [state["pid"]]
    if (f.get("format") or "table") == "json":
        sys.stdout.write(_json.dumps(pids) + "\n")
        return 0
    print_ps(pids, pos[1:])
    return 0


def ps_table(pids: list[int], ps_args: list[str]) -> tuple[list[str], list[list[str]]]:
    """``ps`` (``-ef`` unless told otherwise) cut down to ``pids``: (titles, rows), the last
    column holding the rest of the line (a command with spaces), as dockerd splits it."""
    import subprocess

    out = subprocess.run(
        ["ps", *(ps_args or ["-ef"])], capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    if not lines:
        return [], []
    titles = lines[0].split()
    if "PID" not in titles:
        raise ct.ContainerError("couldn't find PID field in ps output")
    col = titles.index("PID")
    wanted = set(pids)
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            rows.append(fields)
    return titles, rows


def print_ps(pids: list[int], ps_args: list[str]) -> None:
    """``ps`` output cut down to ``pids``, header kept (``dockyard-runtime ps``)."""
    titles, rows = ps_table(pids, ps_args)
    for fields in [titles, *rows] if titles else []:
        sys.stdout.write(" ".join(fields) + "\n")
    sys.stdout.flush()


def cmd_events(g: dict[str, Any], f: dict[str, Any], pos: list[str]) -> int:
    from dockyard.runtime import cgroups

    opts = _opts(g)
    cid = _need_id(pos, "events")
    state = st.load(opts.root, cid)
    if not f.get("stats"):
        raise UsageError("only events --stats is supported")
    data = cgroups.from_state(state.get("cgroup") or {}).stats()
    sys.stdout.write(_json.dumps({"type": "stats", "id": cid, "data": data}) + "\n")
    return 0


def cmd_update(g: dict[str, Any], f: dict[str, Any], pos: list[str]) -> int:
    """``runc update``: ``--resources`` (LinuxResources JSON, ``-`` for stdin: how
    containerd's shim calls it) or runc's single-limit flags."""
    cid = _need_id(pos, "update")
    res: dict[str, Any] = {}
    if f.get("resources"):
        try:
            if f["resources"] == "-":
                res = _json.loads(sys.stdin.read())  # type: ignore[assignment]
            else:
                with open(f["resources"]) as fh:
                    res = _json.loads(fh.read())  # type: ignore[assignment]
        except (OSError, ValueError) as err:
            raise ct.ContainerError(f"update {cid}: resources: {err}") from None
        if not isinstance(res, dict):
            raise ct.ContainerError(f"update {cid}: resources must be a JSON object")

    def size(value: str) -> int:
        from dockyard.units import ram_in_bytes

        return -1 if value == "-1" else ram_in_bytes(value)

    for flag, key in (
        ("memory", "limit"),
        ("memory_swap", "swap"),
        ("memory_reservation", "reservation"),
    ):
        if f.get(flag):
            res.setdefault("memory", {})[key] = size(f[flag])
    cpu_flags = {"cpu_period": "period", "cpu_quota": "quota", "cpu_share": "shares",
                 "cpuset_cpus": "cpus", "cpuset_mems": "mems"}  # fmt: skip
    for flag, key in cpu_flags.items():
        if f.get(flag) is not None:
            res.setdefault("cpu", {})[key] = f[flag]
    if f.get("pids_limit") is not None:
        res["pids"] = {"limit": f["pids_limit"]}
    if f.get("blkio_weight") is not None:
        res["blockIO"] = {"weight": f["blkio_weight"]}
    ct.update(_opts(g), cid, res)
    return 0


def cmd_features(g: dict[str, Any], f: dict[str, Any], pos: list[str]) -> int:
    from dockyard.linux.capabilities import CAPABILITIES, cap_last
    from dockyard.linux.seccomp import _ACTIONS_FIXED, _ARCH_NAMES, _FLAG_ATTRS, _OPS
    from dockyard.runtime.namespaces import FLAGS
    from dockyard.runtime.rootfs import _FLAGS, _PROPAGATION

    features = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": st.OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": sorted(list(_FLAGS) + list(_PROPAGATION)),
        "linux": {
            "namespaces": sorted(FLAGS),
            "capabilities": list(CAPABILITIES[: cap_last() + 1]),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {
                "enabled": True,
                "actions": sorted([*_ACTIONS_FIXED, "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"]),
                "operators": sorted(_OPS),
                "archs": sorted(_ARCH_NAMES),
                "supportedFlags": sorted(_FLAG_ATTRS),
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"io.github.dockyard.runtime": "dockyard-runtime"},
    }  # fmt: skip
    _print_json(features)
    return 0
