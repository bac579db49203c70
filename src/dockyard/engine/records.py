"""The engine's records as types: a container's row (``Engine.record``), and the Docker
documents it keeps (Config, HostConfig), with Docker's own field names so that the CLI,
the API server and compose fill them the same way.

Imported for type checking only (``if TYPE_CHECKING:``): the records are plain dicts at
run time, and the start-up path loads no ``typing``.
"""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = ["ContainerConfig", "ContainerRecord", "HostConfig", "RestartPolicy"]


class ContainerConfig(TypedDict, total=False):
    """Docker's container Config (``POST /containers/create``'s body, ``inspect``'s Config)."""

    Hostname: str
    Domainname: str
    User: str
    AttachStdin: bool
    AttachStdout: bool
    AttachStderr: bool
    ExposedPorts: dict[str, dict[str, Any]]
    Tty: bool
    OpenStdin: bool
    StdinOnce: bool
    Env: list[str]
    Cmd: list[str] | None
    Healthcheck: dict[str, Any]
    Image: str
    Volumes: dict[str, dict[str, Any]]
    WorkingDir: str
    Entrypoint: list[str] | None
    Labels: dict[str, str]
    StopSignal: str
    StopTimeout: int


class RestartPolicy(TypedDict, total=False):
    Name: str
    MaximumRetryCount: int


class HostConfig(TypedDict, total=False):
    """Docker's HostConfig, as far as the engine reads it; ``Mounts`` holds the resolved
    mounts (binds, volumes, tmpfs) and ``Volatile`` is dockyard's own (build steps)."""

    Binds: list[str]
    Mounts: list[dict[str, Any]]
    Tmpfs: dict[str, str]
    NetworkMode: str
    PortBindings: dict[str, list[dict[str, str]] | None]
    PublishAllPorts: bool
    RestartPolicy: RestartPolicy
    AutoRemove: bool
    CapAdd: list[str]
    CapDrop: list[str]
    Dns: list[str]
    DnsSearch: list[str]
    ExtraHosts: list[str]
    Privileged: bool
    SecurityOpt: list[str]
    Init: bool
    Runtime: str
    LogConfig: dict[str, Any]
    Memory: int
    MemorySwap: int
    NanoCpus: int
    CpuShares: int
    PidsLimit: int
    Devices: list[dict[str, str]]
    Volatile: bool


class ContainerRecord(TypedDict):
    """One container: its ``containers`` row joined with its ``container_state`` row."""

    id: str
    name: str
    image_id: str
    image_ref: str
    created: str
    config: ContainerConfig
    host_config: HostConfig
    status: str  # one of engine.states.STATUSES
    pid: int
    monitor_pid: int
    exit_code: int
    oom_killed: int
    error: str
    started_at: str
    finished_at: str
    restart_count: int
    stopped_by_user: int
    health: str
