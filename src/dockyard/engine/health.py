"""One health check of a container: ``python -m dockyard.engine.health ROOT ID SNAPSHOTTER``.

The monitor's lean loop starts this every interval (only for containers that
have a check), so the loop itself stays small. The check runs in the
container like ``exec``; its result moves the health state as Docker's does:
``starting`` until the first success (failures inside the start period do not
count), ``healthy`` on success, ``unhealthy`` after ``retries`` failures in a
row. The last five results are kept, as Docker keeps them.
"""

from __future__ import annotations

import os
import sys
import time

from dockyard import _json as json
from dockyard.clock import now_rfc3339
from dockyard.engine.containers import Engine

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["LIVENESS_LABEL", "check_once", "health_config"]

_NS = 1_000_000_000


LIVENESS_LABEL = "io.dockyard.kube.liveness"


def health_config(config: dict[str, Any]) -> dict[str, Any] | None:
    """The container's Healthcheck with Docker's defaults filled in; None if it has none."""
    hc = config.get("Healthcheck") or {}
    test = hc.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    return {
        "Test": test,
        "Interval": hc.get("Interval") or 30 * _NS,
        "Timeout": hc.get("Timeout") or 30 * _NS,
        "Retries": hc.get("Retries") or 3,
        "StartPeriod": hc.get("StartPeriod") or 0,
    }


def check_once(engine: Engine, cid: str) -> dict[str, Any]:
    import subprocess

    rec = engine.record(cid)
    hc = health_config(rec["config"])
    if hc is None or rec["status"] != "running":
        return {}
    test = hc["Test"]
    args = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
    runtime = os.path.join(os.path.dirname(sys.executable), "dockyard-runtime")
    start = now_rfc3339()
    try:
        proc = subprocess.run([runtime, "--root", engine.exec_root, "exec", cid, *args], capture_output=True,
                              timeout=hc["Timeout"] / _NS, stdin=subprocess.DEVNULL)  # fmt: skip
        code, output = proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace")[-4096:]
    except subprocess.TimeoutExpired:
        code, output = -1, f"Health check exceeded timeout ({hc['Timeout'] / _NS:g}s)"
    state = json.loads(rec.get("health") or "null") or {
        "Status": "starting",
        "FailingStreak": 0,
        "Log": [],
    }
    state["Log"] = (
        state["Log"] + [{"Start": start, "End": now_rfc3339(), "ExitCode": code, "Output": output}]
    )[-5:]
    started = _seconds(rec["started_at"])
    in_start_period = time.time() - started < hc["StartPeriod"] / _NS
    if code == 0:
        state["Status"], state["FailingStreak"] = "healthy", 0
    elif not (in_start_period and state["Status"] == "starting"):
        state["FailingStreak"] += 1
        if state["FailingStreak"] >= hc["Retries"]:
            state["Status"] = "unhealthy"
    engine.set_state(cid, health=json.dumps(state))
    if (
        state["Status"] == "unhealthy"
        and (rec["config"].get("Labels") or {}).get(LIVENESS_LABEL) == "restart"
    ):
        # a Kubernetes liveness probe: the container is killed, and its restart policy
        # decides what comes next (Docker only marks it unhealthy). Not engine.kill: a kill
        # the user asks for stops the restarts
        engine.emit(cid, "kill", signal="9")
        engine.runtime(cid).kill(cid, 9)
    return state


def _seconds(rfc3339: str) -> float:
    from dockyard.clock import parse_time

    return parse_time(rfc3339)


if __name__ == "__main__":
    try:
        check_once(Engine(sys.argv[1], sys.argv[3]), sys.argv[2])
    finally:
        os._exit(0)
