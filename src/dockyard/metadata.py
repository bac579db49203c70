"""The one SQLite database (WAL) that holds dockyard's metadata.

Each part owns its tables (images and layers now; containers, volumes,
networks and the build cache as they come). Every change of state is one
transaction (``with db.tx() as c:``), so a crash leaves the old state or the
new one. Schema changes are numbered migrations; ``user_version`` records the
last one applied.
"""

from __future__ import annotations

# The C module the sqlite3 package wraps: the package's dbapi2 imports datetime for
# default adapters dockyard never uses (deprecated since Python 3.12), ~2 ms per command.
import _sqlite3 as sqlite3
import os
import threading
from contextlib import contextmanager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

IntegrityError = sqlite3.IntegrityError

__all__ = ["Database"]

_MIGRATIONS = [
    # 1: images, layers, tags
    """
    CREATE TABLE layers (
        chain_id TEXT PRIMARY KEY,
        diff_id TEXT NOT NULL,
        parent TEXT REFERENCES layers(chain_id),
        size INTEGER NOT NULL CHECK (size >= 0),
        blob_digest TEXT NOT NULL,
        blob_size INTEGER NOT NULL CHECK (blob_size >= 0),
        media_type TEXT NOT NULL
    );
    CREATE TABLE images (
        id TEXT PRIMARY KEY,
        config_size INTEGER NOT NULL,
        manifest_digest TEXT NOT NULL,
        created TEXT NOT NULL,
        size INTEGER NOT NULL,
        parent TEXT,
        added_at REAL NOT NULL
    );
    CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        chain_id TEXT NOT NULL REFERENCES layers(chain_id),
        PRIMARY KEY (image_id, position)
    );
    CREATE INDEX image_layers_chain ON image_layers(chain_id);
    CREATE TABLE tags (
        reference TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE INDEX tags_image ON tags(image_id);
    CREATE TABLE repo_digests (
        reference TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    """,
    # 2: containers (config and state apart, as podman keeps them)
    """
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image_id TEXT NOT NULL,
        image_ref TEXT NOT NULL,
        created TEXT NOT NULL,
        config TEXT NOT NULL,
        host_config TEXT NOT NULL
    );
    CREATE TABLE container_state (
        id TEXT PRIMARY KEY REFERENCES containers(id) ON DELETE CASCADE,
        status TEXT NOT NULL CHECK (status IN
            ('created', 'running', 'paused', 'restarting', 'removing', 'exited', 'dead')),
        pid INTEGER NOT NULL DEFAULT 0,
        monitor_pid INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER NOT NULL DEFAULT 0,
        oom_killed INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        started_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
        finished_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
        restart_count INTEGER NOT NULL DEFAULT 0,
        stopped_by_user INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 3: named volumes, and which container uses which
    """
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL DEFAULT 'local',
        created TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        anonymous INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE container_volumes (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        volume TEXT NOT NULL REFERENCES volumes(name),
        destination TEXT NOT NULL,
        read_only INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (container_id, destination)
    );
    """,
    # 4: health check state (Docker's State.Health as JSON)
    """
    ALTER TABLE container_state ADD COLUMN health TEXT NOT NULL DEFAULT '';
    """,
    # 5: events, as Docker's events API reports them
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time_nano INTEGER NOT NULL,
        type TEXT NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        attributes TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_time ON events(time_nano);
    """,
    # 6: networks, container endpoints on them (an address is unique per network, enforced
    # here so that parallel starts cannot share one), published ports
    """
    CREATE TABLE networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        bridge TEXT NOT NULL DEFAULT '',
        subnet TEXT NOT NULL DEFAULT '',
        gateway TEXT NOT NULL DEFAULT '',
        internal INTEGER NOT NULL DEFAULT 0,
        labels TEXT NOT NULL DEFAULT '{}',
        created TEXT NOT NULL,
        next_ip INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE endpoints (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        network_id TEXT NOT NULL REFERENCES networks(id),
        aliases TEXT NOT NULL DEFAULT '[]',
        requested_ip TEXT NOT NULL DEFAULT '',
        ip TEXT NOT NULL DEFAULT '',
        mac TEXT NOT NULL DEFAULT '',
        host_if TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (container_id, network_id)
    );
    CREATE UNIQUE INDEX endpoints_ip ON endpoints(network_id, ip) WHERE ip != '';
    CREATE TABLE published_ports (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        proto TEXT NOT NULL,
        container_port INTEGER NOT NULL,
        host_ip TEXT NOT NULL,
        host_port INTEGER NOT NULL,
        UNIQUE (proto, host_ip, host_port)
    );
    """,
    # 7: the build cache (a step's key -> the image it made, and what went into the key),
    # and content hashes of build-context files by (path, inode, size, mtime)
    """
    CREATE TABLE build_cache (
        key TEXT PRIMARY KEY,
        image_id TEXT NOT NULL,
        parent TEXT NOT NULL,
        instruction TEXT NOT NULL,
        inputs TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL
    );
    CREATE INDEX build_cache_instruction ON build_cache(instruction, created);
    CREATE TABLE context_hashes (
        path TEXT PRIMARY KEY,
        dev INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        digest TEXT NOT NULL
    );
    """,
    # 8: compressed copies of plain layer blobs, made once for pushes and kept
    """
    CREATE TABLE compressed_blobs (
        source TEXT NOT NULL,
        compression TEXT NOT NULL CHECK (compression IN ('gzip', 'zstd')),
        digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (source, compression)
    );
    """,
    # 9: endpoints carry their own names (the endpoint's, and those its DNS answers to), so
    # networking never reads the containers table; a published port names its holder
    """
    ALTER TABLE endpoints ADD COLUMN name TEXT NOT NULL DEFAULT '';
    ALTER TABLE endpoints ADD COLUMN dns_names TEXT NOT NULL DEFAULT '[]';
    UPDATE endpoints SET name = (SELECT c.name FROM containers c WHERE c.id = endpoints.container_id);
    UPDATE endpoints SET dns_names = json_array(name, substr(container_id, 1, 12));
    ALTER TABLE published_ports ADD COLUMN name TEXT NOT NULL DEFAULT '';
    UPDATE published_ports SET name = (SELECT c.name FROM containers c WHERE c.id = published_ports.container_id);
    """,
    # 10: a Compose project's revisions: the resolved model of each up that changed it, with
    # every image pinned by ID, for ``compose history`` and ``compose rollback``
    """
    CREATE TABLE compose_revisions (
        project TEXT NOT NULL,
        number INTEGER NOT NULL,
        created TEXT NOT NULL,
        model TEXT NOT NULL,
        summary TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (project, number)
    );
    """,
    # 11: pods: a name, what its containers share, and the infra container holding that
    """
    CREATE TABLE pods (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        share TEXT NOT NULL DEFAULT '["net", "ipc", "uts"]',
        infra_id TEXT NOT NULL,
        restart TEXT NOT NULL DEFAULT ''
    );
    """,
]


class Database:
    """A connection per thread to ``<root>/dockyard.db``; safe across processes (WAL + busy timeout)."""

    def __init__(self, root: str) -> None:
        os.makedirs(root, exist_ok=True)
        self.path = os.path.join(root, "dockyard.db")
        self._local = threading.local()
        with self.tx() as c:
            self._migrate(c)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            # Every command is a new process, and the first connection to a database
            # rebuilds the WAL index by reading the whole WAL: checkpointing at 100 pages
            # instead of 1000 keeps that read under half a megabyte (~4 ms -> <1 ms here).
            conn.execute("PRAGMA wal_autocheckpoint=100")
            self._local.conn = conn
        return conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction; IMMEDIATE so concurrent writers queue instead of failing late."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, args).fetchall()

    def _migrate(self, c: sqlite3.Connection) -> None:
        version = c.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    c.execute(statement)
            c.execute(f"PRAGMA user_version = {number}")

    def emit(self, kind: str, action: str, actor: str, **attributes: str) -> None:
        """Record an event (container, image, volume or network) for ``dockyard events``."""
        import time

        from dockyard import _json as json

        with self.tx() as c:
            c.execute("INSERT INTO events (time_nano, type, action, actor, attributes) VALUES (?, ?, ?, ?, ?)",
                      (time.time_ns(), kind, action, actor, json.dumps(attributes)))  # fmt: skip

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
