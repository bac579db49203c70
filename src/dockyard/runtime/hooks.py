"""OCI hooks: run with the container state on stdin, within their timeout."""

from __future__ import annotations

from dockyard import _json as json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["HookError", "run_hooks"]


class HookError(Exception):
    pass


def run_hooks(spec: dict[str, Any], stage: str, state: dict[str, Any]) -> None:
    """Run every hook of ``stage`` in order; the first failure raises ``HookError``."""
    hooks = (spec.get("hooks") or {}).get(stage) or ()
    if not hooks:
        return
    import subprocess  # only paid for when a spec has hooks

    payload = json.dumps(state).encode()
    for hook in hooks:
        path = hook["path"]
        args = hook.get("args") or [path]
        env = dict(item.split("=", 1) for item in hook.get("env") or () if "=" in item)
        try:
            proc = subprocess.run(
                args,
                executable=path,
                input=payload,
                env=env,
                capture_output=True,
                timeout=hook.get("timeout"),
            )
        except subprocess.TimeoutExpired:
            raise HookError(f"{stage} hook {path} timed out after {hook['timeout']}s") from None
        except OSError as err:
            raise HookError(f"{stage} hook {path}: {err.strerror}") from None
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise HookError(
                f"{stage} hook {path} exited with status {proc.returncode}: {tail[0]}".rstrip(": ")
            )
