"""Imports point down the layer order of docs/ARCHITECTURE.md, at module level or inside
functions alike: a module may import only from its own package or from a lower layer."""

from __future__ import annotations

import ast
import os

import dockyard

SRC = os.path.dirname(dockyard.__file__)

# lowest first; a package may import from any package of a lower rank
RANKS = {
    "errors": 0, "_json": 0, "__version__": 0, "digest": 0, "threads": 0,
    "clock": 1, "units": 1, "filters": 1, "jsonmessage": 1, "linux": 1, "fsutil": 1, "metadata": 1, "busy": 1,
    "platforms": 1,
    "inroot": 2, "runtime.cgroups": 2, "content": 2, "rootless": 2,
    "runtime": 3, "snapshot": 3,
    "image": 4,
    "network": 5, "registry": 5, "testing": 5,
    "engine": 6,
    "builder": 7,
    "cli": 10,
    "api": 8,
    "compose": 8,
    "kube": 9,
}  # fmt: skip


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "dockyard" or len(parts) == 1:
        return None
    if parts[1:3] == ["runtime", "cgroups"]:
        return "runtime.cgroups"
    return parts[1]


def _imports(path: str) -> list[tuple[str, int]]:
    with open(path) as f:
        tree = ast.parse(f.read())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "dockyard":
                out += [(f"dockyard.{a.name}", node.lineno) for a in node.names]
            elif node.module == "dockyard.runtime":
                out += [(f"dockyard.runtime.{a.name}", node.lineno) for a in node.names]
            else:
                out.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
    return out


def test_every_package_has_a_rank() -> None:
    packages = set()
    for name in os.listdir(SRC):
        if name.endswith(".py") and name != "__init__.py":
            packages.add(name[:-3])
        elif os.path.isdir(os.path.join(SRC, name)) and not name.startswith("__"):
            packages.add(name)
    assert packages - set(RANKS) == set(), (
        "give each new package a place in RANKS and ARCHITECTURE.md"
    )


def test_imports_point_down_the_layers() -> None:
    upward = []
    for dirpath, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, SRC)
            module = "dockyard." + rel[:-3].replace(os.sep, ".").removesuffix(".__init__")
            own = _package(module)
            if own is None:
                continue
            for target, line in _imports(path):
                theirs = _package(target)
                if (
                    theirs is None
                    or theirs == own
                    or (own, theirs) == ("runtime", "runtime.cgroups")
                ):
                    continue
                if RANKS[theirs] >= RANKS[own]:
                    upward.append(f"{rel}:{line}: {own} imports {target} ({theirs})")
    assert upward == []


def test_networking_reads_no_container_records() -> None:
    """network/ works on explicit values: no SQL of its touches the containers table."""
    import re

    found = []
    for base, _dirs, names in os.walk(os.path.join(SRC, "network")):
        for name in names:
            if name.endswith(".py"):
                with open(os.path.join(base, name)) as f:
                    for n, line in enumerate(f, 1):
                        if re.search(r"(FROM|JOIN|INTO|UPDATE)\s+containers\b", line):
                            found.append(f"{name}:{n}: {line.strip()}")
    assert not found, "\n".join(found)
