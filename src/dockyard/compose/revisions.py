"""A project's revisions, and why each service is kept, created or recreated.

Every ``up`` that changes a project records a revision: the resolved model (services,
networks, volumes) with each service's image pinned by ID, so ``rollback`` can bring the
project back to it through the same ``up`` even after a tag has moved. ``plan`` compares
what runs with what ``up`` would make and says, per service, what will happen and why
(``web: recreate — image app:2 replaces app:1``), which ``up --dry-run`` prints.
"""

from __future__ import annotations

from dockyard import _json as json
from dockyard.clock import now_rfc3339
from dockyard.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.compose.model import Project
    from dockyard.engine.containers import Engine

__all__ = ["differences", "history", "latest", "load_revision", "record"]

# keys whose change the explanation names by their Compose spelling
_NAMED = ("command", "entrypoint", "environment", "ports", "volumes", "networks", "healthcheck",
          "labels", "user", "working_dir", "restart", "replicas", "build", "configs", "secrets",
          "ulimits")  # fmt: skip


def _model(project: Project, images: dict[str, str]) -> dict[str, Any]:
    return {"name": project.name, "workdir": project.workdir, "files": project.files,
            "services": project.services, "networks": project.networks, "volumes": project.volumes,
            "configs": project.configs, "secrets": project.secrets, "images": images}  # fmt: skip


def latest(engine: Engine, name: str) -> dict[str, Any] | None:
    rows = engine.db.query("SELECT number, model FROM compose_revisions WHERE project = ? "
                           "ORDER BY number DESC LIMIT 1", (name,))  # fmt: skip
    return {"number": rows[0]["number"], **json.loads(rows[0]["model"])} if rows else None


def differences(before: dict[str, Any] | None, project: Project, images: dict[str, str],
                shown: dict[str, str]) -> dict[str, list[str]]:  # fmt: skip
    """Per service, the reasons it changed since ``before`` (empty: unchanged); a service
    new since then has the reason "new". ``shown``: the image names as the file gives them."""
    out: dict[str, list[str]] = {}
    old_services = (before or {}).get("services") or {}
    old_images = (before or {}).get("images") or {}
    for name, svc in project.services.items():
        old = old_services.get(name)
        if old is None:
            out[name] = ["new"]
            continue
        reasons = []
        if old_images.get(name) != images.get(name):
            was = (old.get("image") or name) + f" ({str(old_images.get(name, ''))[7:19]})"
            now = (shown.get(name) or name) + f" ({images.get(name, '')[7:19]})"
            reasons.append(f"image {now} replaces {was}")
        for key in _NAMED:
            if old.get(key) != svc.get(key):
                reasons.append(f"{key} changed")
        rest = {k for k in set(old) | set(svc) if k not in _NAMED and k != "image"}
        if not reasons and any(old.get(k) != svc.get(k) for k in rest):
            reasons.append(
                "configuration changed: "
                + ", ".join(sorted(k for k in rest if old.get(k) != svc.get(k)))
            )
        out[name] = reasons
    return out


def record(engine: Engine, project: Project, images: dict[str, str], summary: str) -> int:
    """A new revision of the model ``up`` just made real; its number."""
    with engine.db.tx() as c:
        row = c.execute(
            "SELECT MAX(number) FROM compose_revisions WHERE project = ?", (project.name,)
        ).fetchone()
        number = (row[0] or 0) + 1
        c.execute("INSERT INTO compose_revisions VALUES (?, ?, ?, ?, ?)",
                  (project.name, number, now_rfc3339(), json.dumps(_model(project, images)), summary))  # fmt: skip
    return number


def history(engine: Engine, name: str) -> list[dict[str, Any]]:
    return [dict(r) for r in engine.db.query(
        "SELECT number, created, summary FROM compose_revisions WHERE project = ? ORDER BY number", (name,))]  # fmt: skip


def load_revision(
    engine: Engine, name: str, number: int | None
) -> tuple[Project, dict[str, str], int]:
    """(the project as revision ``number`` had it — the one before the latest when None —,
    its pinned image IDs, the number)."""
    from dockyard.compose.model import Project

    rows = engine.db.query("SELECT number, model FROM compose_revisions WHERE project = ? ORDER BY number DESC",
                           (name,))  # fmt: skip
    if not rows:
        raise InvalidArgument(f"project {name} has no revisions")
    if number is None:
        if len(rows) < 2:
            raise InvalidArgument(f"project {name} has no revision before {rows[0]['number']}")
        row = rows[1]
    else:
        found = [r for r in rows if r["number"] == number]
        if not found:
            raise InvalidArgument(f"project {name} has no revision {number}")
        row = found[0]
    model = json.loads(row["model"])
    project = Project(model["name"], model["workdir"], model["files"], model["services"], model["networks"],
                      model["volumes"], configs=model.get("configs") or {},
                      secrets=model.get("secrets") or {})  # fmt: skip
    return project, model["images"], row["number"]
