"""This host's platform in the OCI (Go) names images and registries use."""

from __future__ import annotations

import os

__all__ = ["host_arch", "host_platform"]

# uname's machine -> GOARCH, as image configs and index entries name architectures
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
            "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}  # fmt: skip


def host_arch() -> str:
    machine = os.uname().machine
    return _GO_ARCH.get(machine, machine)


def host_platform() -> str:
    """``linux/<arch>``: this host's only platform (nothing here emulates another)."""
    return f"linux/{host_arch()}"
