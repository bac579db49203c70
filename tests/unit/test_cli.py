"""The ``dockyard`` command's surface: version, help, Docker-style errors."""

from __future__ import annotations

import os
import subprocess
import sys

from dockyard import __version__

DOCKYARD = os.path.join(os.path.dirname(sys.executable), "dockyard")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKYARD, *args], capture_output=True, text=True, timeout=30)


def test_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout == f"dockyard version {__version__}\n"


def test_help_lists_usage() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("Usage:  dockyard [OPTIONS] COMMAND\n")
    assert "--version" in proc.stdout


def test_unknown_command_is_one_line_and_125() -> None:
    proc = run("frobnicate")
    assert proc.returncode == 125
    assert (
        proc.stderr == "dockyard: 'frobnicate' is not a dockyard command, see 'dockyard --help'\n"
    )
    assert "Traceback" not in proc.stderr


def test_unknown_flag_is_one_line_and_125() -> None:
    proc = run("--bogus")
    assert proc.returncode == 125
    assert proc.stderr == "dockyard: unknown flag: --bogus\n"


def test_runtime_version() -> None:
    runtime = os.path.join(os.path.dirname(sys.executable), "dockyard-runtime")
    proc = subprocess.run([runtime, "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"dockyard-runtime version {__version__}\nspec: 1.")


def test_tests_never_reach_registries_off_this_host(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The suite's promise (set in conftest): a missing image is not fetched from Docker Hub."""
    proc = run("--root", str(tmp_path), "pull", "busybox")
    assert proc.returncode == 1
    assert (
        "not contacted: DOCKYARD_LOOPBACK_ONLY allows registries on this host only" in proc.stderr
    )
