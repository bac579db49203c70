"""Named volumes: directories under ``<root>/volumes/<name>/_data``, as Docker's local driver.

A volume is filled from the image's content at its mount point the first time
a container mounts it while it is still empty, as Docker does.
"""

from __future__ import annotations

import os

from dockyard import _json as json
from dockyard.clock import now_rfc3339
from dockyard.errors import Conflict, InvalidArgument, VolumeNotFound
from dockyard.fsutil import remove_tree
from dockyard.metadata import Database

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["VolumeStore"]


class VolumeStore:
    def __init__(self, root: str, db: Database) -> None:
        self.root = os.path.join(root, "volumes")
        self.db = db
        os.makedirs(self.root, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.root, name, "_data")

    def create(
        self, name: str | None = None, labels: dict[str, str] | None = None, anonymous: bool = False
    ) -> str:
        name = name or os.urandom(32).hex()
        if not name[0].isalnum() or not all(c.isalnum() or c in "_.-" for c in name):
            raise InvalidArgument(f'"{name}" includes invalid characters for a local volume name, only '
                                  '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')  # fmt: skip
        if self.db.query("SELECT 1 FROM volumes WHERE name = ?", (name,)):
            return name  # docker volume create of an existing name is a no-op
        os.makedirs(self.path(name), exist_ok=True)
        self.db.emit("volume", "create", name, driver="local")
        with self.db.tx() as c:
            c.execute("INSERT OR IGNORE INTO volumes VALUES (?, 'local', ?, ?, ?)",
                      (name, now_rfc3339(), json.dumps(labels or {}), int(anonymous)))  # fmt: skip
        return name

    def get(self, name: str) -> dict[str, Any]:
        rows = self.db.query("SELECT * FROM volumes WHERE name = ?", (name,))
        if not rows:
            raise VolumeNotFound(f"get {name}: no such volume")
        return dict(rows[0])

    def users(self, name: str) -> list[str]:
        return [
            r[0]
            for r in self.db.query(
                "SELECT container_id FROM container_volumes WHERE volume = ?", (name,)
            )
        ]

    def list(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.query("SELECT * FROM volumes ORDER BY name")]

    def inspect(self, name: str) -> dict[str, Any]:
        v = self.get(name)
        return {"CreatedAt": v["created"], "Driver": v["driver"], "Labels": json.loads(v["labels"]),
                "Mountpoint": self.path(name), "Name": name, "Options": {}, "Scope": "local"}  # fmt: skip

    def prune(self, all_: bool = False) -> tuple[list[str], int]:
        """Remove volumes no container uses (anonymous ones only, unless ``all_``); the names
        removed and the bytes freed, as ``docker volume prune``."""
        from dockyard.image.store import du

        gone, freed = [], 0
        for r in self.list():
            if self.users(r["name"]) or not (all_ or r["anonymous"]):
                continue
            freed += du(os.path.dirname(self.path(r["name"])))
            self.remove(r["name"])
            gone.append(r["name"])
        return gone, freed

    def remove(self, name: str, force: bool = False) -> None:
        self.get(name)
        users = self.users(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        remove_tree(os.path.join(self.root, name), ignore_errors=True)
        with self.db.tx() as c:
            c.execute("DELETE FROM volumes WHERE name = ?", (name,))
        self.db.emit("volume", "destroy", name, driver="local")

    def fill_from(self, name: str, image_dir: str) -> None:
        """Copy the image's content at the mount point into a volume that is still empty."""
        data = self.path(name)
        if os.listdir(data) or not os.path.isdir(image_dir) or not os.listdir(image_dir):
            return
        import subprocess

        subprocess.run(["cp", "-a", f"{image_dir}/.", data], check=True)
