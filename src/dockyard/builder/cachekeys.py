"""The build cache as the builder's steps see it: a step's key (parent image, canonical
instruction, inputs), the image cached under it, what is remembered after a step ran, and
``--explain-cache``'s account of a miss (which input changed since the same instruction was
last built)."""

from __future__ import annotations

import hashlib
import time

from dockyard import _json as json
from dockyard.errors import NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.builder.options import BuildOptions, StageState
    from dockyard.image.store import ImageStore
    from dockyard.metadata import Database

__all__ = ["CacheSteps"]


class CacheSteps:
    """Mixed into ``Builder``: needs ``db``, ``store``, ``opts``, ``step_no`` and ``_say``."""

    db: Database
    store: ImageStore
    opts: BuildOptions
    step_no: int

    def _say(self, text: str) -> None:
        raise NotImplementedError

    def _key(self, state: StageState, canonical: str, inputs: dict[str, Any]) -> str:
        raw = json.dumps([state.image_id, canonical, inputs], sort_keys=True)
        return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()

    def _lookup(
        self, state: StageState, canonical: str, inputs: dict[str, Any]
    ) -> tuple[str, str | None]:
        """The step's cache key and the image cached under it (None: a miss, or --no-cache)."""
        key = self._key(state, canonical, inputs)
        hit = self._cached(key)
        self._explain(key, state, canonical, inputs, hit is not None)
        return key, hit

    def _cached(self, key: str) -> str | None:
        if self.opts.no_cache:
            return None
        rows = self.db.query("SELECT image_id FROM build_cache WHERE key = ?", (key,))
        if rows:
            try:
                self.store.config(rows[0]["image_id"])
                return rows[0]["image_id"]
            except (NotFound, OSError):
                return None
        return None

    def _remember(
        self, key: str, image_id: str, parent: str, canonical: str, inputs: dict[str, Any]
    ) -> None:
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO build_cache VALUES (?, ?, ?, ?, ?, ?)",
                      (key, image_id, parent, canonical, json.dumps(inputs), time.time()))  # fmt: skip

    def _explain(
        self, key: str, state: StageState, canonical: str, inputs: dict[str, Any], hit: bool
    ) -> None:
        if not self.opts.explain_cache:
            return
        self._say(f"#{self.step_no} cache key {key}")
        if hit:
            return
        rows = self.db.query("SELECT parent, inputs FROM build_cache WHERE instruction = ? AND key != ? "
                             "ORDER BY created DESC LIMIT 1", (canonical, key))  # fmt: skip
        if not rows:
            self._say(f"#{self.step_no} cache miss: this instruction was never built before")
            return
        old_parent, old_inputs = rows[0]["parent"], json.loads(rows[0]["inputs"])
        if old_parent != state.image_id:
            self._say(
                f"#{self.step_no} cache miss: parent image changed: {old_parent[:19]} -> {state.image_id[:19]}"
            )
        for name in sorted(set(old_inputs.get("args", {})) | set(inputs.get("args", {}))):
            old, new = old_inputs.get("args", {}).get(name), inputs.get("args", {}).get(name)
            if old != new:
                self._say(f"#{self.step_no} cache miss: build arg {name}: {old!r} -> {new!r}")
        old_files, new_files = old_inputs.get("files", {}), inputs.get("files", {})
        for path in sorted(set(old_files) | set(new_files)):
            old, new = old_files.get(path), new_files.get(path)
            if old != new:
                self._say(
                    f"#{self.step_no} cache miss: file {path}: {_short(old)} -> {_short(new)}"
                )


def _short(value: str | None) -> str:
    if value is None:
        return "(absent)"
    return value.split()[-1][:19] if "sha256:" in value else value
