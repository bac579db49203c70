"""A container's statuses and the moves between them, in one table.

``MOVES`` says what each status may become; ``Engine.set_state`` makes a move only from a
status the table allows (one conditional UPDATE, so two processes cannot both make
conflicting moves) and raises ``Conflict`` naming the current status otherwise. ``VERBS``
says which statuses refuse each user-facing verb, with dockerd's own words, since
clients match on them (``Container <id> is not running``): that is where this table names
the current status the way Docker does, rather than as ``it is exited``.
"""

from __future__ import annotations

from dockyard.errors import Conflict, NotRunning

__all__ = ["LIVE", "MOVES", "STATUSES", "VERBS", "check_verb", "predecessors"]

CREATED, RUNNING, PAUSED, RESTARTING = "created", "running", "paused", "restarting"
REMOVING, EXITED, DEAD = "removing", "exited", "dead"
STATUSES = (CREATED, RESTARTING, RUNNING, REMOVING, PAUSED, EXITED, DEAD)  # Docker's order
# a monitor and a container process exist (or are being brought back, for restarting)
LIVE = frozenset((RUNNING, PAUSED, RESTARTING))

MOVES: dict[str, frozenset[str]] = {
    CREATED: frozenset((RUNNING, EXITED, REMOVING)),
    RUNNING: frozenset((PAUSED, EXITED, RESTARTING, REMOVING, DEAD)),
    PAUSED: frozenset((RUNNING, EXITED, REMOVING, DEAD)),
    RESTARTING: frozenset((RUNNING, EXITED, REMOVING, DEAD)),
    # exited -> exited: the attached client and the monitor's fallback may both record an end
    EXITED: frozenset((RUNNING, RESTARTING, EXITED, REMOVING, DEAD)),
    DEAD: frozenset((RUNNING, REMOVING)),
    REMOVING: frozenset((DEAD,)),
}


def predecessors(status: str) -> tuple[str, ...]:
    """The statuses a container may move to ``status`` from."""
    if status not in MOVES:
        raise ValueError(f"unknown container status {status!r}")
    return tuple(s for s in STATUSES if status in MOVES[s])


# verb -> {status that refuses it: (error class, dockerd's message)}; {id} is the full ID,
# {short} the 12-character one
_NOT_RUNNING = (NotRunning, "Container {id} is not running")
_RESTARTING = (Conflict, "Container {id} is restarting, wait until the container is running")
VERBS: dict[str, dict[str, tuple[type[Conflict], str]]] = {
    "pause": {CREATED: _NOT_RUNNING, EXITED: _NOT_RUNNING, DEAD: _NOT_RUNNING,
              REMOVING: _NOT_RUNNING, RESTARTING: _RESTARTING,
              PAUSED: (Conflict, "Container {id} is already paused")},
    "unpause": {s: (Conflict, "Container {id} is not paused") for s in STATUSES if s != PAUSED},
    "kill": {s: (NotRunning, "Cannot kill container: {short}: Container {id} is not running")
             for s in STATUSES if s not in LIVE},
    "start": {REMOVING: (Conflict, "container {short} is marked for removal and cannot be started"),
              DEAD: (Conflict, "container {short} is marked for removal and cannot be started")},
    "remove": {
        RUNNING: (Conflict, "You cannot remove a running container {id}. Stop the container before "
                            "attempting removal or force remove"),
        PAUSED: (Conflict, "You cannot remove a paused container {id}. Unpause and then stop the "
                           "container before attempting removal or force remove"),
        RESTARTING: (Conflict, "You cannot remove a restarting container {id}. Stop the container "
                               "before attempting removal or force remove"),
    },
    "resize": {CREATED: _NOT_RUNNING, EXITED: _NOT_RUNNING, DEAD: _NOT_RUNNING,
               REMOVING: _NOT_RUNNING, RESTARTING: _RESTARTING},
    "top": {CREATED: _NOT_RUNNING, EXITED: _NOT_RUNNING, DEAD: _NOT_RUNNING,
            REMOVING: _NOT_RUNNING, RESTARTING: _RESTARTING},
    "exec": {CREATED: _NOT_RUNNING, EXITED: _NOT_RUNNING, DEAD: _NOT_RUNNING,
             REMOVING: _NOT_RUNNING, RESTARTING: _RESTARTING,
             PAUSED: (Conflict, "Container {id} is paused, unpause the container before exec")},
}  # fmt: skip


def check_verb(verb: str, cid: str, status: str) -> None:
    """Raise the error dockerd gives for ``verb`` on a container in ``status``, if any."""
    refused = VERBS[verb].get(status)
    if refused is not None:
        cls, message = refused
        raise cls(message.format(id=cid, short=cid[:12]))
