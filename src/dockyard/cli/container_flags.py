"""``create``'s and ``run``'s flags, and the Docker Config/HostConfig/NetworkingConfig
they make (``build_request``): the CLI's share of a create is parsing, as the API's is
reading JSON; both hand the engine the same documents."""

from __future__ import annotations

import os

from dockyard.cli import flags
from dockyard.errors import InvalidArgument
from dockyard.units import duration_ns, ram_in_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["build_request", "create_options", "restart_policy"]


def _env_files(paths: tuple[str, ...]) -> list[str]:
    out = []
    for path in paths:
        try:
            with open(path) as f:
                for line in f:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        out.append(line if "=" in line else f"{line}={os.environ.get(line, '')}")
        except OSError as err:
            raise InvalidArgument(f"open {path}: {err.strerror}") from None
    return out


def restart_policy(text: str) -> dict[str, Any]:
    name, _, count = text.partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise InvalidArgument(f"invalid restart policy '{text}'")
    if count and name != "on-failure":
        raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")
    return {"Name": name, "MaximumRetryCount": int(count) if count else 0}


def create_options(f: Any) -> Any:
    opts = [
        flags.option(
            "-i", "--interactive", is_flag=True, help="Keep STDIN open even if not attached"
        ),
        flags.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY"),
        flags.option("--rm", is_flag=True, help="Automatically remove the container when it exits"),
        flags.option("--name", help="Assign a name to the container"),
        flags.option("--pod", help="Run container in an existing pod"),
        flags.option("--init-ctr", default="", help="With --pod: an init container (always or once)"),
        flags.option("-e", "--env", multiple=True, help="Set environment variables"),
        flags.option("--env-file", multiple=True, help="Read in a file of environment variables"),
        flags.option("-w", "--workdir", help="Working directory inside the container"),
        flags.option("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])"),
        flags.option("--entrypoint", help="Overwrite the default ENTRYPOINT of the image"),
        flags.option("-l", "--label", multiple=True, help="Set meta data on a container"),
        flags.option("-h", "--hostname", help="Container host name"),
        flags.option(
            "-v", "--volume", multiple=True, help="Bind mount a volume (HOST:CONTAINER[:ro])"
        ),
        flags.option("--tmpfs", multiple=True, help="Mount a tmpfs directory (PATH[:OPTIONS])"),
        flags.option(
            "--mount",
            "mounts",
            multiple=True,
            help="Attach a filesystem mount (type=bind|volume|tmpfs,...)",
        ),
        flags.option(
            "--read-only", is_flag=True, help="Mount the container's root filesystem as read only"
        ),
        flags.option("-m", "--memory", help="Memory limit"),
        flags.option(
            "--memory-swap", help="Swap limit equal to memory plus swap: '-1' for unlimited"
        ),
        flags.option("--cpus", type=float, help="Number of CPUs"),
        flags.option("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)"),
        flags.option("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)"),
        flags.option("--pids-limit", type=int, help="Tune container pids limit (-1 for unlimited)"),
        flags.option("--ulimit", multiple=True, help="Ulimit options (name=soft[:hard])"),
        flags.option("--sysctl", multiple=True, help="Sysctl options"),
        flags.option("--cap-add", multiple=True, help="Add Linux capabilities"),
        flags.option("--cap-drop", multiple=True, help="Drop Linux capabilities"),
        flags.option(
            "--privileged", is_flag=True, help="Give extended privileges to this container"
        ),
        flags.option("--security-opt", multiple=True, help="Security options"),
        flags.option(
            "--restart", default="no", help="Restart policy to apply when a container exits"
        ),
        flags.option("--stop-signal", help="Signal to stop the container"),
        flags.option("--stop-timeout", type=int, help="Timeout (in seconds) to stop a container"),
        flags.option("--log-opt", multiple=True, help="Log driver options (max-size=, max-file=)"),
        flags.option("--log-driver", default="json-file", help="Logging driver for the container (json-file, local, none)"),
        flags.option(
            "--runtime", default="dockyard-runtime", help="Runtime to use for this container"
        ),
        flags.option(
            "--init", is_flag=True, help="Run an init inside the container (tini): signals, reaping"
        ),
        flags.option("--health-cmd", help="Command to run to check health"),
        flags.option(
            "--health-interval", help="Time between running the check (ms|s|m|h) (default 30s)"
        ),
        flags.option(
            "--health-timeout",
            help="Maximum time to allow one check to run (ms|s|m|h) (default 30s)",
        ),
        flags.option(
            "--health-retries", type=int, help="Consecutive failures needed to report unhealthy"
        ),
        flags.option(
            "--health-start-period", help="Start period for the container to initialize (ms|s|m|h)"
        ),
        flags.option(
            "--no-healthcheck", is_flag=True, help="Disable any container-specified HEALTHCHECK"
        ),
        flags.option("-p", "--publish", multiple=True,
                     help="Publish a container's port(s) to the host ([IP:][HOSTPORT:]PORT[/PROTO])"),
        flags.option("-P", "--publish-all", is_flag=True, help="Publish all exposed ports to random ports"),
        flags.option("--expose", multiple=True, help="Expose a port or a range of ports"),
        flags.option("--network", "--net", "network", default="default",
                     help="Connect a container to a network (bridge, host, none, container:NAME, or a name)"),
        flags.option("--network-alias", multiple=True, help="Add network-scoped alias for the container"),
        flags.option("--ip", help="IPv4 address (e.g., 172.30.100.104)"),
        flags.option("--add-host", multiple=True, help="Add a custom host-to-IP mapping (host:ip)"),
        flags.option("--dns", multiple=True, help="Set custom DNS servers"),
        flags.option("--dns-search", multiple=True, help="Set custom DNS search domains"),
        flags.option("--pull", default="missing", type=flags.Choice(["always", "missing", "never"]),
                     help='Pull image before running ("always", "missing", "never")'),
        flags.option("--platform", help="Set platform if server is multi-platform capable"),
        flags.option("--device", multiple=True, help="Add a host device to the container (HOST[:CONTAINER[:rwm]])"),
        flags.option("--cidfile", help="Write the container ID to the file"),
        flags.option("--shm-size", help="Size of /dev/shm"),
        flags.option("--ipc", help="IPC mode to use (private, shareable, host, container:NAME)"),
        flags.option("--pid", help="PID namespace to use (host, container:NAME)"),
        flags.option("--uts", help="UTS namespace to use (host)"),
        flags.option("--cgroupns", help="Cgroup namespace to use (host|private)"),
        flags.option("--group-add", multiple=True, help="Add additional groups to join"),
        flags.option("--label-file", multiple=True, help="Read in a line delimited file of labels"),
        flags.option("--memory-reservation", help="Memory soft limit"),
        flags.option("--oom-kill-disable", is_flag=True, help="Disable OOM Killer"),
        flags.option("--domainname", help="Container NIS domain name"),
        flags.argument("image"),
        flags.argument("command", nargs=-1, type=flags.UNPROCESSED),
    ]  # fmt: skip
    for opt in reversed(opts):
        f = opt(f)
    return f


def _label_files(paths: tuple[str, ...]) -> list[str]:
    items = []
    for path in paths:
        try:
            with open(path) as f:
                items += [
                    line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")
                ]
        except OSError as err:
            raise InvalidArgument(f"open {path}: {err.strerror}") from None
    return items


def _devices(specs: tuple[str, ...]) -> list[dict[str, str]]:
    """``--device HOST[:CONTAINER][:PERMISSIONS]`` as Docker's HostConfig.Devices."""
    out = []
    for spec in specs:
        parts = spec.split(":")
        perms = parts.pop() if len(parts) > 1 and set(parts[-1]) <= set("rwm") else "rwm"
        host_path = parts[0]
        out.append({"PathOnHost": host_path, "PathInContainer": parts[1] if len(parts) > 1 else host_path,
                    "CgroupPermissions": perms})  # fmt: skip
    return out


def _log_driver(name: str) -> str:
    # "local" is Docker's compact file format; here it is kept as json-file, read the same way
    if name in ("json-file", "local", "none"):
        return "none" if name == "none" else "json-file"
    raise InvalidArgument(f"logging driver {name} is not supported here (json-file, local, none)")


def _namespace_mode(flag: str, value: str | None, allowed: tuple[str, ...]) -> str:
    joins = "container:" in allowed
    if (
        value
        and value not in allowed
        and not (joins and value.startswith("container:") and value[10:])
    ):
        raise InvalidArgument(
            f"invalid --{flag}: {value} ({', '.join(a + 'NAME' if a.endswith(':') else a for a in allowed)})"
        )
    return value or ""


def _mount(spec: str) -> dict[str, Any]:
    """``--mount type=bind,source=/x,target=/y,readonly`` as Docker's Mount object."""
    fields = dict(item.partition("=")[::2] for item in spec.split(","))
    target = fields.get("target") or fields.get("destination") or fields.get("dst")
    if not target:
        raise InvalidArgument(f'invalid argument "{spec}" for "--mount" flag: target is required')
    mount: dict[str, Any] = {"Type": fields.get("type", "volume"), "Target": target,
                             "Source": fields.get("source") or fields.get("src") or "",
                             "ReadOnly": any(fields.get(k, "false") in ("", "true", "1")
                                             for k in ("readonly", "ro"))}  # fmt: skip
    return mount


def _console_size() -> list[int]:
    """[rows, columns] of this terminal, as the docker CLI sends in HostConfig.ConsoleSize."""
    try:
        cols, rows = os.get_terminal_size(0)
    except OSError:
        return [0, 0]
    return [rows, cols]


def build_request(kw: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any], str | None]:
    labels = dict(
        item.partition("=")[::2] for item in [*_label_files(kw["label_file"]), *kw["label"]]
    )
    config: dict[str, Any] = {
        "Hostname": kw["hostname"] or "",
        "Domainname": kw["domainname"] or "",
        "User": kw["user"] or "",
        "AttachStdin": kw["interactive"],
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": kw["tty"],
        "OpenStdin": kw["interactive"],
        "StdinOnce": kw["interactive"],
        "Env": _env_files(kw["env_file"])
        + [e if "=" in e else f"{e}={os.environ.get(e, '')}" for e in kw["env"]],
        "Cmd": list(kw["command"]) or None,
        "WorkingDir": kw["workdir"] or "",
        "Entrypoint": ([kw["entrypoint"]] if kw["entrypoint"] else [])
        if kw["entrypoint"] is not None
        else None,
        "Labels": labels,
        "StopSignal": kw["stop_signal"] or "",
    }
    if kw["stop_timeout"] is not None:
        config["StopTimeout"] = kw["stop_timeout"]
    if kw["no_healthcheck"]:
        config["Healthcheck"] = {"Test": ["NONE"]}
    elif kw["health_cmd"]:
        config["Healthcheck"] = {
            "Test": ["CMD-SHELL", kw["health_cmd"]],
            "Interval": duration_ns(kw["health_interval"]) if kw["health_interval"] else 0,
            "Timeout": duration_ns(kw["health_timeout"]) if kw["health_timeout"] else 0,
            "Retries": kw["health_retries"] or 0,
            "StartPeriod": duration_ns(kw["health_start_period"])
            if kw["health_start_period"]
            else 0,
        }
    ulimits = []
    for item in kw["ulimit"]:
        name, _, limits = item.partition("=")
        soft, _, hard = limits.partition(":")
        ulimits.append({"Name": name, "Soft": int(soft), "Hard": int(hard or soft)})
    tmpfs = {}
    for item in kw["tmpfs"]:
        path, _, options = item.partition(":")
        tmpfs[path] = options
    log_opts = dict(item.partition("=")[::2] for item in kw["log_opt"])
    memory = ram_in_bytes(kw["memory"]) if kw["memory"] else 0
    swap = (
        -1
        if kw["memory_swap"] == "-1"
        else (ram_in_bytes(kw["memory_swap"]) if kw["memory_swap"] else 0)
    )
    host: dict[str, Any] = {
        "AutoRemove": kw["rm"],
        "RestartPolicy": restart_policy(kw["restart"]),
        "ReadonlyRootfs": kw["read_only"],
        "Memory": memory,
        "MemorySwap": swap,
        "NanoCpus": int(kw["cpus"] * 1e9) if kw["cpus"] else 0,
        "CpuShares": kw["cpu_shares"] or 0,
        "CpusetCpus": kw["cpuset_cpus"] or "",
        "PidsLimit": kw["pids_limit"],
        "Ulimits": ulimits,
        "Sysctls": dict(item.partition("=")[::2] for item in kw["sysctl"]),
        "CapAdd": list(kw["cap_add"]),
        "CapDrop": list(kw["cap_drop"]),
        "Privileged": kw["privileged"],
        "SecurityOpt": list(kw["security_opt"]),
        "Binds": list(kw["volume"]),
        "Mounts": [_mount(spec) for spec in kw["mounts"]],
        "Tmpfs": tmpfs,
        "Runtime": kw["runtime"],
        "Init": kw["init"],
        "LogConfig": {"Type": _log_driver(kw["log_driver"]), "Config": log_opts},
        "Devices": _devices(kw["device"]),
        "ShmSize": ram_in_bytes(kw["shm_size"]) if kw["shm_size"] else 0,
        "IpcMode": _namespace_mode(
            "ipc", kw["ipc"], ("private", "shareable", "host", "none", "container:")
        ),
        "PidMode": _namespace_mode("pid", kw["pid"], ("host", "container:")),
        "UTSMode": _namespace_mode("uts", kw["uts"], ("host",)),
        "CgroupnsMode": _namespace_mode("cgroupns", kw["cgroupns"], ("host", "private")),
        "GroupAdd": list(kw["group_add"]),
        "MemoryReservation": ram_in_bytes(kw["memory_reservation"])
        if kw["memory_reservation"]
        else 0,
        "OomKillDisable": kw["oom_kill_disable"],
        "ConsoleSize": _console_size() if kw["tty"] and kw["interactive"] else [0, 0],
    }
    if kw["rm"] and host["RestartPolicy"]["Name"] != "no":
        raise InvalidArgument("conflicting options: cannot both remove and restart containers")
    from dockyard.network.endpoints import parse_publish

    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in kw["publish"]:
        for port, host_ip, host_port in parse_publish(spec):
            bindings.setdefault(port, []).append({"HostIp": host_ip, "HostPort": host_port})
    exposed = {port: {} for spec in kw["expose"] for port, _ip, _hp in parse_publish(spec)}
    if exposed:
        config["ExposedPorts"] = exposed
    for entry in kw["add_host"]:
        if ":" not in entry:
            raise InvalidArgument(f"bad format for add-host: {entry!r}")
    mode = kw["network"]
    if (mode == "host" or mode.startswith("container:")) and (bindings or kw["publish_all"]):
        raise InvalidArgument(
            f"conflicting options: port publishing and the {mode.split(':')[0]} network mode"
        )
    host.update({"NetworkMode": mode, "PortBindings": bindings, "PublishAllPorts": kw["publish_all"],
                 "ExtraHosts": list(kw["add_host"]) or None, "Dns": list(kw["dns"]),
                 "DnsSearch": list(kw["dns_search"])})  # fmt: skip
    networking = None
    if kw["network_alias"] or kw["ip"]:
        endpoint: dict[str, Any] = {"Aliases": list(kw["network_alias"])}
        if kw["ip"]:
            endpoint["IPAMConfig"] = {"IPv4Address": kw["ip"]}
        networking = {"EndpointsConfig": {mode: endpoint}}
    host["_NetworkingConfig"] = networking
    return kw["image"], config, host, kw["name"]
