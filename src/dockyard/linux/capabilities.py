"""Capability names (as the OCI spec writes them) and their numbers."""

from __future__ import annotations

__all__ = ["CAPABILITIES", "bounding_set", "cap_last", "cap_number", "mask"]

# Index = capability number (linux/capability.h).
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip

_BY_NAME = {name: i for i, name in enumerate(CAPABILITIES)}


def cap_last() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAPABILITIES) - 1


def bounding_set() -> list[str]:
    """The capabilities this process may still grant (its bounding set), by name: all
    that ``--privileged`` can give where the engine itself runs without some (this
    host's root lacks CAP_SYS_RESOURCE)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    mask = int(line.split()[1], 16)
                    return [
                        c for i, c in enumerate(CAPABILITIES[: cap_last() + 1]) if mask >> i & 1
                    ]
    except OSError:
        pass
    return list(CAPABILITIES[: cap_last() + 1])


def cap_number(name: str) -> int:
    """Number of a capability named as in the OCI spec; ``CAP_`` may be left out."""
    key = name.upper()
    if not key.startswith("CAP_"):
        key = "CAP_" + key
    try:
        return _BY_NAME[key]
    except KeyError:
        raise ValueError(f"unknown capability: {name}") from None


def mask(names: list[str] | None, last: int) -> int:
    """Bit mask of the named capabilities; ones this kernel lacks are left out, as runc does."""
    bits = 0
    for name in names or ():
        n = cap_number(name)
        if n <= last:
            bits |= 1 << n
    return bits
