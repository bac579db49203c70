"""Write dockyard's built-in seccomp profile from Docker's default profile.

The profile is Docker's own data (moby's ``profiles/seccomp/default.json``, Apache-2.0),
which Debian ships in golang-github-docker-docker-dev; dockyard applies it by default with
dockerd's rules (``engine.spec.seccomp_from_docker``). Run after that package changes:

    python3 scripts/seccomp_profile.py [DEFAULT_JSON]
"""

from __future__ import annotations

import json
import os
import sys

SOURCE = "/usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json"
TARGET = os.path.join(os.path.dirname(__file__), "..", "src", "dockyard", "engine", "seccomp_default.json")

if __name__ == "__main__":
    with open(sys.argv[1] if len(sys.argv) > 1 else SOURCE) as f:
        profile = json.load(f)
    for rule in profile["syscalls"]:
        rule.pop("comment", None)
    with open(TARGET, "w") as f:
        json.dump(profile, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")
