"""From Docker's container Config/HostConfig and an image to an OCI runtime config.

The defaults are Docker's: its 14 default capabilities, a writable root, no
rlimits of its own, the hostname set to the short container ID, /etc/hostname,
/etc/hosts and /etc/resolv.conf bind-mounted from the container's directory.
"""

from __future__ import annotations

import os

from dockyard.errors import InvalidArgument
from dockyard.runtime.spec import default_spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DEFAULT_CAPS", "oci_spec", "resolve_user"]

DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]  # fmt: skip
_DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_BINARY = "/usr/bin/tini-static"  # Debian's tini; Docker ships the same as docker-init


def _lookup(rootfs: str, table: str, name: str) -> list[str] | None:
    try:
        with open(os.path.join(rootfs, "etc", table)) as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if fields and fields[0] == name:
                    return fields
    except OSError:
        pass
    return None


def resolve_user(rootfs: str, user: str) -> dict[str, Any]:
    """``user``, ``uid``, ``user:group`` or ``uid:gid`` to uid/gid as Docker resolves them."""
    if not user:
        return {"uid": 0, "gid": 0}
    name, _, group = user.partition(":")
    if name.isdigit():
        uid = int(name)
        entry = _lookup_uid(rootfs, uid)
        gid = int(entry[3]) if entry else 0  # Docker: a uid not in passwd runs with gid 0
    else:
        entry = _lookup(rootfs, "passwd", name)
        if entry is None:
            raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(entry[2]), int(entry[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            gentry = _lookup(rootfs, "group", group)
            if gentry is None:
                raise InvalidArgument(
                    f"unable to find group {group}: no matching entries in group file"
                )
            gid = int(gentry[2])
    return {"uid": uid, "gid": gid}


def _group_id(rootfs: str, group: str) -> int:
    """``--group-add``: a gid, or a group name from the image's /etc/group."""
    if group.isdigit():
        return int(group)
    entry = _lookup(rootfs, "group", group)
    if entry is None:
        raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
    return int(entry[2])


def _device(dev: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--device``: the node to make in the container (type, numbers and mode of the host's)
    and the cgroup rule that lets it be used with the given permissions."""
    import stat

    try:
        st = os.stat(dev["PathOnHost"])
    except OSError as err:
        raise InvalidArgument(f"error gathering device information while adding custom device "
                              f"{dev['PathOnHost']!r}: {err.strerror}") from None  # fmt: skip
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise InvalidArgument(f"{dev['PathOnHost']} is not a device node")
    kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    node = {"path": dev["PathInContainer"], "type": kind, "major": major, "minor": minor,
            "fileMode": stat.S_IMODE(st.st_mode), "uid": 0, "gid": 0}  # fmt: skip
    rule = {
        "allow": True,
        "type": kind,
        "major": major,
        "minor": minor,
        "access": dev["CgroupPermissions"],
    }
    return node, rule


def _lookup_uid(rootfs: str, uid: int) -> list[str] | None:
    try:
        with open(os.path.join(rootfs, "etc", "passwd")) as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) > 3 and fields[2] == str(uid):
                    return fields
    except OSError:
        pass
    return None


_SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM",
              "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64",
              "386": "SCMP_ARCH_X86"}  # fmt: skip


def _kernel_at_least(version: str) -> bool:
    def parts(text: str) -> tuple[int, ...]:
        out = []
        for piece in text.split(".")[:2]:
            digits = "".join(ch for ch in piece if ch.isdigit()) or "0"
            out.append(int(digits))
        return tuple(out)

    return parts(os.uname().release) >= parts(version)


def seccomp_from_docker(profile: dict[str, Any], caps: list[str]) -> dict[str, Any]:
    """A Docker seccomp profile (the built-in one, or ``--security-opt seccomp=FILE``) as an
    OCI ``linux.seccomp``, decided as dockerd decides it for this container: only this
    host's architecture (and its sub-architectures) from ``archMap``; a rule's
    ``includes``/``excludes`` on capabilities, architectures and ``minKernel`` are settled
    here against the container's capabilities and this host."""
    from dockyard.platforms import host_arch

    arch = host_arch()
    archs = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == _SCMP_ARCH.get(arch):
            archs += [entry["architecture"], *(entry.get("subArchitectures") or [])]
    rules = []
    for rule in profile.get("syscalls") or []:
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("caps") and not set(inc["caps"]) <= set(caps):
            continue
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"]):
            continue
        if exc.get("caps") and set(exc["caps"]) & set(caps):
            continue
        if exc.get("arches") and arch in exc["arches"]:
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        out = {"names": names, "action": rule["action"]}
        for key in ("args", "errnoRet"):
            if rule.get(key) is not None:
                out[key] = rule[key]
        rules.append(out)
    seccomp: dict[str, Any] = {"defaultAction": profile.get("defaultAction", "SCMP_ACT_ALLOW"),
                               "architectures": list(dict.fromkeys(archs)), "syscalls": rules}  # fmt: skip
    if profile.get("defaultErrnoRet") is not None:
        seccomp["defaultErrnoRet"] = profile["defaultErrnoRet"]
    return seccomp


_BUILTIN: dict[str, Any] | None = None


def builtin_seccomp() -> dict[str, Any]:
    """Docker's default seccomp profile (``seccomp_default.json``, from moby's
    ``profiles/seccomp/default.json``; see ``scripts/seccomp_profile.py``)."""
    global _BUILTIN
    if _BUILTIN is None:
        from dockyard import _json

        with open(os.path.join(os.path.dirname(__file__), "seccomp_default.json"), "rb") as f:
            _BUILTIN = _json.loads(f.read())
    return _BUILTIN


def seccomp_profile_name(host: dict[str, Any]) -> str:
    """Which seccomp profile a container gets: ``builtin``, ``unconfined`` or a file
    (``--privileged`` runs without one, whatever else is asked, as in Docker)."""
    if host.get("Privileged"):
        return "unconfined"
    for opt in host.get("SecurityOpt") or []:
        key, _, value = opt.partition("=")
        if key == "seccomp" and value:
            return value
    return "builtin"


def oci_spec(cid: str, config: dict[str, Any], host: dict[str, Any], rootfs: str, cdir: str,
             netns: str | None = None, joins: dict[str, str] | None = None,
             shm: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The config.json for container ``cid`` (Docker-shaped ``config``/``host``, mounted
    ``rootfs``); ``netns``: None for a new network namespace, "host" for the host's, or the
    path of one to join; ``joins``: other namespaces to join (type -> path, see
    ``engine.sharing``); ``shm``: a host directory to bind as /dev/shm."""
    spec = default_spec()
    proc = spec["process"]
    args = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
    if not args:
        raise InvalidArgument("no command specified")
    if host.get("Init"):
        if not os.path.exists(INIT_BINARY):
            raise InvalidArgument(f"--init needs {INIT_BINARY} (apt-get install tini)")
        args = ["/sbin/docker-init", "--", *args]  # tini reaps zombies and forwards signals
    proc["args"] = args
    proc["terminal"] = bool(config.get("Tty"))
    size = host.get("ConsoleSize") or [0, 0]
    if proc["terminal"] and isinstance(size, list) and len(size) == 2 and all(size):
        # the client's terminal from the first byte (Docker's HostConfig.ConsoleSize): a
        # resize sent after the start would come after the program read its size
        proc["consoleSize"] = {"height": int(size[0]), "width": int(size[1])}
    env = list(config.get("Env") or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, _DEFAULT_PATH)
    env.append(f"HOSTNAME={config.get('Hostname') or cid[:12]}")
    if config.get("Tty") and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    proc["env"] = env
    proc["cwd"] = config.get("WorkingDir") or "/"
    proc["user"] = resolve_user(rootfs, config.get("User") or "")
    proc.pop("rlimits", None)  # Docker sets none by default
    proc["noNewPrivileges"] = "no-new-privileges" in (host.get("SecurityOpt") or [])
    caps = list(DEFAULT_CAPS)
    if host.get("Privileged"):
        from dockyard.linux.capabilities import bounding_set

        caps = bounding_set()
    for cap in host.get("CapAdd") or []:
        name = cap.upper() if cap.upper().startswith("CAP_") else "CAP_" + cap.upper()
        if name == "CAP_ALL":
            from dockyard.linux.capabilities import CAPABILITIES, cap_last

            caps = list(CAPABILITIES[: cap_last() + 1])
        elif name not in caps:
            caps.append(name)
    for cap in host.get("CapDrop") or []:
        name = cap.upper() if cap.upper().startswith("CAP_") else "CAP_" + cap.upper()
        caps = [] if name == "CAP_ALL" else [c for c in caps if c != name]
    proc["capabilities"] = {k: list(caps) for k in ("bounding", "effective", "permitted")}
    for opt in host.get("SecurityOpt") or []:
        key = opt.partition("=")[0]
        if key not in ("seccomp", "no-new-privileges", "apparmor", "label"):
            raise InvalidArgument(f"invalid --security-opt: {opt}")
    profile_name = seccomp_profile_name(host)
    if profile_name == "builtin":
        spec["linux"]["seccomp"] = seccomp_from_docker(builtin_seccomp(), caps)
    elif profile_name != "unconfined":
        import json

        try:
            with open(profile_name) as f:
                profile = json.load(f)
        except (OSError, ValueError) as err:
            raise InvalidArgument(
                f"opening seccomp profile ({profile_name}) failed: {err}"
            ) from None
        spec["linux"]["seccomp"] = seccomp_from_docker(profile, caps)
    spec["root"] = {"path": rootfs, "readonly": bool(host.get("ReadonlyRootfs"))}
    linux = spec["linux"]
    linux["cgroupsPath"] = f"/dockyard/{cid}"
    shared = {"pid": host.get("PidMode") == "host", "ipc": host.get("IpcMode") == "host",
              "uts": host.get("UTSMode") == "host", "cgroup": host.get("CgroupnsMode") == "host",
              "network": netns == "host"}  # the host's namespace: none of the container's own  # fmt: skip
    linux["namespaces"] = [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")
                           if not shared.get(t)]  # fmt: skip
    paths = {**(joins or {}), **({"network": netns} if netns and netns != "host" else {})}
    linux["namespaces"] = [{"type": ns["type"], "path": paths[ns["type"]]} if ns["type"] in paths else ns
                           for ns in linux["namespaces"]]  # fmt: skip
    if (joins or {}).get("uts"):
        shared["uts"] = True  # the donor's host name, as a pod's containers have
    if not shared["uts"]:
        spec["hostname"] = config.get("Hostname") or cid[:12]
        if config.get("Domainname"):
            spec["domainname"] = config["Domainname"]
    else:  # the host's, or another container's: its names stay as they are
        spec.pop("hostname", None)
        spec.pop("domainname", None)
    if host.get("GroupAdd"):
        proc["user"]["additionalGids"] = [_group_id(rootfs, g) for g in host["GroupAdd"]]
    res: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    memory: dict[str, Any] = {}
    if host.get("Memory"):
        memory["limit"] = host["Memory"]
        if host.get("MemorySwap"):
            memory["swap"] = host["MemorySwap"]
    if host.get("MemoryReservation"):
        memory["reservation"] = host["MemoryReservation"]
    if host.get("OomKillDisable"):
        memory["disableOOMKiller"] = True
    if memory:
        res["memory"] = memory
    for dev in host.get("Devices") or []:
        node, rule = _device(dev)
        linux.setdefault("devices", []).append(node)
        res["devices"].append(rule)
    cpu: dict[str, Any] = {}
    if host.get("CpuShares"):
        cpu["shares"] = host["CpuShares"]
    if host.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = host["NanoCpus"] * 100000 // 1_000_000_000
    if host.get("CpusetCpus"):
        cpu["cpus"] = host["CpusetCpus"]
    if cpu:
        res["cpu"] = cpu
    if host.get("PidsLimit"):
        res["pids"] = {"limit": host["PidsLimit"]}
    if host.get("Privileged"):
        res["devices"] = [{"allow": True, "access": "rwm"}]
        linux.pop("maskedPaths", None)
        linux.pop("readonlyPaths", None)
    linux["resources"] = res
    if host.get("Sysctls"):
        linux["sysctl"] = dict(host["Sysctls"])
    if host.get("Ulimits"):
        proc["rlimits"] = [{"type": f"RLIMIT_{u['Name'].upper()}", "soft": u["Soft"], "hard": u["Hard"]}
                           for u in host["Ulimits"]]  # fmt: skip
    mounts = spec["mounts"]
    if host.get("ShmSize") or shared["ipc"] or shm:
        for m in mounts:
            if m["destination"] == "/dev/shm":
                if shared["ipc"] or shm:  # the IPC namespace's /dev/shm too, as Docker
                    m.update({"type": "bind", "source": shm or "/dev/shm",
                              "options": ["rbind", "nosuid", "nodev", "noexec"]})  # fmt: skip
                else:
                    m["options"] = [o for o in m["options"] if not o.startswith("size=")] + [
                        f"size={host['ShmSize'] // 1024}k"
                    ]
    if host.get("Init"):
        mounts.append({"destination": "/sbin/docker-init", "type": "bind", "source": INIT_BINARY,
                       "options": ["rbind", "ro"]})  # fmt: skip
    for name in ("hostname", "hosts", "resolv.conf"):
        mounts.append({"destination": f"/etc/{name}", "type": "bind", "source": os.path.join(cdir, name),
                       "options": ["rbind", "rprivate"]})  # fmt: skip
    for target, opts in (host.get("Tmpfs") or {}).items():
        mounts.append({"destination": target, "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", *[o for o in opts.split(",") if o]]})  # fmt: skip
    for m in host.get("Mounts") or []:
        options = ["rbind"] + (["ro"] if m.get("ReadOnly") else [])
        if m["Type"] == "tmpfs":
            mounts.append({"destination": m["Target"], "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev"] + (["ro"] if m.get("ReadOnly") else [])})  # fmt: skip
        else:
            mounts.append(
                {
                    "destination": m["Target"],
                    "type": "bind",
                    "source": m["Source"],
                    "options": options,
                }
            )
    if config.get("StopSignal"):
        spec.setdefault("annotations", {})["org.opencontainers.image.stopSignal"] = config[
            "StopSignal"
        ]
    return spec


_LIMITS = ("Memory", "MemorySwap", "MemoryReservation", "KernelMemory", "NanoCpus", "CpuShares",
           "CpuQuota", "CpuPeriod", "CpusetCpus", "CpusetMems", "PidsLimit", "BlkioWeight")  # fmt: skip


def create_warnings(host: dict[str, Any]) -> list[str]:
    """What ``create`` tells the client it will not do, as dockerd's ``Warnings``: resource
    limits where there are no cgroups to enforce them (rootless, without delegation; the
    runtime then runs the container without a cgroup of its own)."""
    from dockyard import rootless

    if not rootless.active():
        return []
    asked = [k for k in _LIMITS if host.get(k) and host.get(k) != -1]
    if not asked:
        return []
    if rootless.cgroups_delegated():  # found, but containers are not put under it yet
        return [
            f"rootless containers do not use the user's delegated cgroups yet: {', '.join(asked)} discarded"
        ]
    return [
        f"this host does not delegate cgroups to this user (rootless): {', '.join(asked)} discarded"
    ]
