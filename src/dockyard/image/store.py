"""Images in the local store: layers, configs, manifests, tags; as Docker keeps them.

An image is its config (whose sha256 is the image ID, as in Docker), an OCI
manifest naming the config and layer blobs, and a stack of layers. A layer is
known by its chain ID; its blob sits in the content store and its files are
unpacked once in the snapshotter under that chain ID, whichever images share
it. Metadata lives in the SQLite database, one transaction per change.
"""

from __future__ import annotations

import os
import time
from collections import namedtuple

from dockyard import _json as json
from dockyard.busy import changing
from dockyard.content import ContentStore, check_digest
from dockyard.errors import Conflict, ImageNotFound, InvalidArgument, NotFound
from dockyard.image import reference
from dockyard.metadata import Database
from dockyard.snapshot.apply import decompressed
from dockyard.snapshot.snapshotter import SNAPSHOTTERS, Snapshotter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, BinaryIO

__all__ = ["ImageStore", "Layer", "chain_ids", "du"]

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def chain_ids(diff_ids: list[str]) -> list[str]:
    """Chain IDs of a layer stack (OCI image spec: ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)))."""
    from hashlib import sha256

    out: list[str] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


class Layer(namedtuple("Layer", "chain_id diff_id size blob_digest blob_size media_type")):
    """A layer of the store: its chain ID (snapshot name), diff ID, unpacked size and blob."""

    __slots__ = ()


class _HashingReader:
    """Counts and hashes what passes through, so the diff ID costs no second read. A plain
    tar blob is its own uncompressed layer: its diff ID is its (verified) digest, and
    ``hashing=False`` spares hashing it a second time."""

    def __init__(self, raw: BinaryIO, hashing: bool = True) -> None:
        self.raw = raw
        import hashlib

        self.hash = hashlib.sha256() if hashing else None
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        return self._passed(self.raw.read(n))

    def read1(self, n: int = -1) -> bytes:
        return self._passed(getattr(self.raw, "read1", self.raw.read)(n))

    def _passed(self, data: bytes) -> bytes:
        if self.hash is not None:
            self.hash.update(data)
        self.count += len(data)
        return data

    def diff_id(self, blob_digest: str) -> str:
        return "sha256:" + self.hash.hexdigest() if self.hash is not None else blob_digest

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _media_type_of(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return MEDIA_OCI_LAYER_GZIP
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return MEDIA_OCI_LAYER_ZSTD
    return MEDIA_OCI_LAYER


class ImageStore:
    """The local image store under ``root`` (``DOCKYARD_ROOT``)."""

    def __init__(self, root: str, snapshotter: str = "overlay") -> None:
        self.root = root
        self.db = Database(root)
        self.content = ContentStore(os.path.join(root, "content"))
        if snapshotter not in SNAPSHOTTERS:
            raise InvalidArgument(
                f"unknown snapshotter: {snapshotter} (overlay, fuse-overlayfs or copy)"
            )
        self.snapshotter_name = snapshotter
        # fuse-overlayfs mounts the overlay snapshotter's own layout: one set of snapshots
        layout = "overlay" if snapshotter == "fuse-overlayfs" else snapshotter
        self.snapshots: Snapshotter = SNAPSHOTTERS[snapshotter](
            os.path.join(root, "snapshots", layout)
        )

    # -- layers
    def add_layer(self, parent: Layer | None, blob: BinaryIO, expected: str | None = None) -> Layer:
        """Store a layer blob (plain, gzip or zstd) and unpack it over ``parent``, once.
        If the unpack fails, the blob goes too, unless a layer or a concurrent pull or
        import (``BlobLocks``) holds it."""
        from dockyard.content.store import BlobLocks

        desc = self.content.ingest(blob, expected=expected)
        locks = BlobLocks(self.content.root)
        locks.share([desc.digest])
        try:
            return self.layer_from_blob(parent, desc.digest)
        except BaseException:
            locks.release()
            used = self.db.query("SELECT 1 FROM layers WHERE blob_digest = ?", (desc.digest,))
            if not used and locks.exclusive({desc.digest}):
                self.content.delete(desc.digest)
            raise
        finally:
            locks.release()

    def adopt_layer(self, parent: Layer | None, desc: Any, key: str,
                    staged: tuple[str, int] | None = None) -> Layer:  # fmt: skip
        """Make active snapshot ``key`` itself the committed layer whose blob ``desc`` is stored:
        no second unpacking of what is on disk already. Without ``staged``, the blob is the
        plain tar of the snapshot's changes over ``parent`` (a build step); with it, ``key``
        was unpacked from the blob by ``stage_layer`` (diff ID, size) and is put on ``parent``
        now. ``key`` is gone afterwards (committed, or dropped if the layer existed)."""
        if staged is None:
            diff_id, size, media = desc.digest, desc.size, MEDIA_OCI_LAYER
        else:
            (diff_id, size), media = staged, self._media_of(desc.digest)
            diff_id = diff_id or desc.digest  # a plain tar: its digest, verified by now
        chain = chain_ids([parent.chain_id, diff_id])[1] if parent else diff_id
        if staged is not None and not self.snapshots.exists(chain):
            self.snapshots.reparent(key, parent.chain_id if parent else None)
        self._commit_or_drop(chain, key)
        layer = Layer(chain, diff_id, size, desc.digest, desc.size, media)
        with self.db.tx() as c:
            c.execute("INSERT OR IGNORE INTO layers VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (chain, diff_id, parent.chain_id if parent else None, layer.size, desc.digest,
                       layer.blob_size, layer.media_type))  # fmt: skip
        return layer

    def _commit_or_drop(self, chain: str, key: str) -> None:
        """Commit active ``key`` as layer ``chain``, or drop it where the layer is there
        already (made meanwhile by a concurrent pull, load or build: the same content)."""
        if not self.snapshots.exists(chain):
            try:
                self.snapshots.commit(chain, key)
                return
            except Conflict:
                if not self.snapshots.exists(chain):
                    raise
        self.snapshots.remove(key)

    def _media_of(self, blob_digest: str) -> str:
        with self.content.open(blob_digest) as f:
            return _media_type_of(f.read(4))

    def stage_layer(self, stream: BinaryIO, direct: bool = False) -> tuple[str, str, int]:
        """Unpack a layer blob's bytes (plain, gzip or zstd) as they come, into an active
        snapshot without a parent (overlay snapshotter only); (key, diff ID, size) for
        ``adopt_layer`` once the blob is verified (the diff ID empty for a plain tar: it is
        the blob's digest). On failure nothing is left."""
        import threading

        from dockyard.snapshot.apply import apply_layer, decompressed

        key = f"unpack-{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
        fs = self.snapshots.prepare(key, None)
        try:
            plain = _media_type_of(stream.peek(4)) == MEDIA_OCI_LAYER  # type: ignore[attr-defined]
            reader = _HashingReader(decompressed(stream, verified=True), hashing=not plain)
            apply_layer(reader, fs, mode=self.snapshots.apply_mode, decompress=False, direct=direct)  # type: ignore[arg-type]
            reader.drain()
        except BaseException:
            self.snapshots.remove(key)
            raise
        return key, reader.diff_id(""), reader.count

    def layer_from_blob(self, parent: Layer | None, blob_digest: str) -> Layer:
        media = self._media_of(blob_digest)
        key = f"unpack-{os.getpid()}-{time.monotonic_ns()}"
        fs = self.snapshots.prepare(key, parent.chain_id if parent else None)
        try:
            with self.content.open(blob_digest) as f:
                reader = _HashingReader(decompressed(f, verified=True), hashing=media != MEDIA_OCI_LAYER)  # type: ignore[arg-type]
                from dockyard.snapshot.apply import apply_layer

                apply_layer(reader, fs, mode=self.snapshots.apply_mode, decompress=False)  # type: ignore[arg-type]
                reader.drain()
            diff_id = reader.diff_id(blob_digest)
            chain = chain_ids([parent.chain_id, diff_id])[1] if parent else diff_id
            self._commit_or_drop(chain, key)
        except BaseException:
            if self.snapshots.exists(key):
                self.snapshots.remove(key)
            raise
        layer = Layer(
            chain, diff_id, reader.count, blob_digest, self.content.size(blob_digest), media
        )
        with self.db.tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO layers VALUES (?, ?, ?, ?, ?, ?, ?)",
                (chain, diff_id, parent.chain_id if parent else None, layer.size, blob_digest,
                 layer.blob_size, media),
            )  # fmt: skip
        return layer

    def layer(self, chain_id: str) -> Layer:
        rows = self.db.query("SELECT * FROM layers WHERE chain_id = ?", (chain_id,))
        if not rows:
            raise NotFound(f"no such layer: {chain_id}")
        r = rows[0]
        return Layer(
            r["chain_id"],
            r["diff_id"],
            r["size"],
            r["blob_digest"],
            r["blob_size"],
            r["media_type"],
        )

    # -- images
    def create_image(
        self,
        config: dict[str, Any] | bytes,
        layers: list[Layer],
        parent: str | None = None,
        manifest: bytes | None = None,
    ) -> str:
        """Record an image from its config and its (already stored) layers; return the image ID.

        ``manifest``, if given (an image that came with one, as in an OCI layout),
        is kept byte for byte so its digest stays the one other tools know; it
        must name this config and these layer blobs.
        """
        raw = config if isinstance(config, bytes) else json.dumps(config).encode()
        cfg = json.loads(raw)
        diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
        if diff_ids != [layer.diff_id for layer in layers]:
            raise InvalidArgument("image config's rootfs.diff_ids do not match its layers")
        config_desc = self.content.ingest(raw)
        if manifest is None:
            generated = {
                "schemaVersion": 2,
                "mediaType": MEDIA_OCI_MANIFEST,
                "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": config_desc.digest,
                           "size": config_desc.size},
                "layers": [
                    {"mediaType": layer.media_type, "digest": layer.blob_digest, "size": layer.blob_size}
                    for layer in layers
                ],
            }  # fmt: skip
            manifest = json.dumps(generated).encode()
        else:
            named = json.loads(manifest)
            blobs = [d.get("digest") for d in named.get("layers") or []]
            if (named.get("config") or {}).get("digest") != config_desc.digest or blobs != [
                layer.blob_digest for layer in layers
            ]:
                raise InvalidArgument("manifest does not match the image's config and layers")
        manifest_desc = self.content.ingest(manifest)
        image_id = config_desc.digest
        with self.db.tx() as c:
            if c.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone():
                return image_id
            c.execute("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (image_id, config_desc.size, manifest_desc.digest, cfg.get("created") or "",
                       sum(layer.size for layer in layers), parent, time.time()))  # fmt: skip
            for i, layer in enumerate(layers):
                c.execute(
                    "INSERT INTO image_layers VALUES (?, ?, ?)", (image_id, i, layer.chain_id)
                )
        return image_id

    def config(self, image_id: str) -> dict[str, Any]:
        return json.loads(self.content.read(image_id))

    def manifest(self, image_id: str) -> dict[str, Any]:
        return json.loads(self.manifest_bytes(image_id))

    def manifest_bytes(self, image_id: str) -> bytes:
        """The image's manifest as stored (its digest is the image's repo digest)."""
        return self.content.read(self._image_row(image_id)["manifest_digest"])

    def layers(self, image_id: str) -> list[Layer]:
        rows = self.db.query(
            "SELECT chain_id FROM image_layers WHERE image_id = ? ORDER BY position", (image_id,)
        )
        return [self.layer(r["chain_id"]) for r in rows]

    def _image_row(self, image_id: str) -> Any:
        rows = self.db.query("SELECT * FROM images WHERE id = ?", (image_id,))
        if not rows:
            raise ImageNotFound(f"no such image: {image_id}")
        return rows[0]

    def images(self) -> Iterator[Any]:
        yield from self.db.query("SELECT * FROM images ORDER BY added_at DESC")

    def tags_of(self, image_id: str) -> list[str]:
        rows = self.db.query(
            "SELECT reference FROM tags WHERE image_id = ? ORDER BY reference", (image_id,)
        )
        return [r["reference"] for r in rows]

    def digests_of(self, image_id: str) -> list[str]:
        rows = self.db.query(
            "SELECT reference FROM repo_digests WHERE image_id = ? ORDER BY reference", (image_id,)
        )
        return [r["reference"] for r in rows]

    # -- names
    def tag(self, target: str, ref: str) -> str:
        """Point ``ref`` at the image ``target`` names (moving it if it pointed elsewhere)."""
        image_id = self.resolve(target)
        parsed = reference.parse(ref)
        if parsed.digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {ref}")
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO tags VALUES (?, ?)", (str(parsed), image_id))
        self.db.emit("image", "tag", image_id, name=parsed.familiar())
        return str(parsed)

    def resolve(self, name: str) -> str:
        """The image ID for a full ID, a reference, or a unique ID prefix, tried in that
        order (Docker's rules: a tag named like a hex prefix wins over the prefix)."""
        if not name:
            raise InvalidArgument("empty image name")
        candidate = name if name.startswith("sha256:") else f"sha256:{name}"
        hexpart = candidate[7:]
        is_hex = 0 < len(hexpart) <= 64 and all(ch in "0123456789abcdef" for ch in hexpart)
        if is_hex and len(hexpart) == 64:
            check_digest(candidate)
            if self.db.query("SELECT 1 FROM images WHERE id = ?", (candidate,)):
                return candidate
            raise ImageNotFound(f"no such image: {name}")
        try:
            parsed = reference.parse(name)
        except InvalidArgument:
            parsed = None
        if parsed is not None:
            table = "repo_digests" if parsed.digest else "tags"
            key = f"{parsed.name}@{parsed.digest}" if parsed.digest else str(parsed)
            rows = self.db.query(f"SELECT image_id FROM {table} WHERE reference = ?", (key,))
            if rows:
                return rows[0]["image_id"]
        if is_hex:
            rows = self.db.query("SELECT id FROM images WHERE id LIKE ?", (candidate + "%",))
            if len(rows) == 1:
                return rows[0]["id"]
            if len(rows) > 1:
                raise Conflict(f"image id prefix {name} is ambiguous")
        raise ImageNotFound(f"no such image: {name}")

    def untag(self, ref: str) -> str:
        parsed = reference.parse(ref)
        with self.db.tx() as c:
            if parsed.digest:
                cur = c.execute(
                    "DELETE FROM repo_digests WHERE reference = ?",
                    (f"{parsed.name}@{parsed.digest}",),
                )
            else:
                cur = c.execute("DELETE FROM tags WHERE reference = ?", (str(parsed),))
            if cur.rowcount == 0:
                raise ImageNotFound(f"no such image: {ref}")
        self.db.emit("image", "untag", parsed.familiar(), name=parsed.familiar())
        return parsed.familiar()

    @changing(lambda self, *_: self.root)
    def delete_image(self, image_id: str) -> list[str]:
        """Forget an image with every name it has; free layers no other image uses. Returns chain IDs freed."""
        with self.db.tx() as c:
            chains = [r[0] for r in c.execute(
                "SELECT chain_id FROM image_layers WHERE image_id = ? ORDER BY position DESC", (image_id,))]  # fmt: skip
            c.execute("DELETE FROM images WHERE id = ?", (image_id,))
        self.db.emit("image", "delete", image_id)
        freed = []
        for chain in chains:
            if self.db.query("SELECT 1 FROM image_layers WHERE chain_id = ? LIMIT 1", (chain,)):
                continue
            if self.db.query("SELECT 1 FROM layers WHERE parent = ? LIMIT 1", (chain,)):
                continue
            if self.snapshots.exists(chain):
                try:
                    self.snapshots.remove(chain)
                except Conflict:
                    continue  # a container still runs on it
            with self.db.tx() as c:
                c.execute("DELETE FROM layers WHERE chain_id = ?", (chain,))
            freed.append(chain)
        self.gc_blobs()
        return freed

    def dangling(self) -> list[str]:
        """Images with no tag and no digest that no other image builds on."""
        rows = self.db.query(
            "SELECT id FROM images i WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE t.image_id = i.id) "
            "AND NOT EXISTS (SELECT 1 FROM repo_digests d WHERE d.image_id = i.id) "
            "AND NOT EXISTS (SELECT 1 FROM images c WHERE c.parent = i.id)"
        )
        return [r["id"] for r in rows]

    def disk_usage(self) -> int:
        """Bytes the store takes on disk: blobs and unpacked layers, each inode once."""
        seen: set[tuple[int, int]] = set()
        return du(self.content.root, seen) + du(self.snapshots.root, seen)

    @changing(lambda self, *_: self.root)
    def prune_layers(self, only: set[str] | None = None) -> list[str]:
        """Remove layers no image uses; return their chain IDs.

        ``only`` limits this to the given chain IDs: a failed load cleans up what
        it stored itself, never what a concurrent load is still assembling.
        """
        freed = []
        while True:
            rows = self.db.query(
                "SELECT chain_id FROM layers l WHERE NOT EXISTS "
                "(SELECT 1 FROM image_layers i WHERE i.chain_id = l.chain_id) "
                "AND NOT EXISTS (SELECT 1 FROM layers c WHERE c.parent = l.chain_id)"
            )
            rows = [r for r in rows if only is None or r["chain_id"] in only]
            if not rows:
                break
            for row in rows:
                chain = row["chain_id"]
                if self.snapshots.exists(chain):
                    try:
                        self.snapshots.remove(chain)
                    except Conflict:
                        return freed  # in use by a container: keep it and its parents
                with self.db.tx() as c:
                    blob = c.execute(
                        "SELECT blob_digest FROM layers WHERE chain_id = ?", (chain,)
                    ).fetchone()[0]
                    c.execute("DELETE FROM layers WHERE chain_id = ?", (chain,))
                    still_used = c.execute(
                        "SELECT 1 FROM layers WHERE blob_digest = ?", (blob,)
                    ).fetchone()
                    copies = []
                    if not still_used:
                        copies = [r[0] for r in c.execute(
                            "SELECT digest FROM compressed_blobs WHERE source = ?", (blob,))]  # fmt: skip
                        c.execute("DELETE FROM compressed_blobs WHERE source = ?", (blob,))
                if not still_used:
                    # Only this layer's own blob: a global sweep could take blobs that a
                    # concurrent load has stored but not yet recorded.
                    self.content.delete(blob)
                    for digest in copies:
                        self.content.delete(digest)
                freed.append(chain)
        return freed

    def compressed(self, layer: Layer, compression: str) -> tuple[str, int]:
        """(digest, size) of ``layer``'s plain tar blob compressed with ``compression``: made
        once, kept beside it (so every push and mirror of it has one digest), and gone with it."""
        from dockyard.content.compress import compress

        rows = self.db.query("SELECT digest, size FROM compressed_blobs WHERE source = ? AND compression = ?",
                             (layer.blob_digest, compression))  # fmt: skip
        if rows and self.content.exists(rows[0]["digest"]):
            return rows[0]["digest"], rows[0]["size"]
        with self.content.open(layer.blob_digest) as src, self.content.writer() as w:
            compress(compression, src, w.write)
            desc = w.commit()
        with self.db.tx() as c:
            c.execute("INSERT OR REPLACE INTO compressed_blobs VALUES (?, ?, ?, ?)",
                      (layer.blob_digest, compression, desc.digest, desc.size))  # fmt: skip
        return desc.digest, desc.size

    def gc_blobs(self) -> int:
        """Delete blobs that no image, manifest or layer references."""
        keep = set()
        for row in self.db.query("SELECT id, manifest_digest FROM images"):
            keep.update((row["id"], row["manifest_digest"]))
        for row in self.db.query("SELECT blob_digest FROM layers"):
            keep.add(row["blob_digest"])
        keep |= {r[0] for r in self.db.query("SELECT digest FROM compressed_blobs")}
        return len(self.content.gc(keep))


def du(path: str, seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes allocated under ``path`` (hard links and shared inodes counted once across calls)."""
    seen = set() if seen is None else seen
    total = 0
    for base, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(base, name))
            except FileNotFoundError:
                continue
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                total += st.st_blocks * 512
    return total
