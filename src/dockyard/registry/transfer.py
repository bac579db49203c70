"""``pull`` and ``push``: images between the local store and a registry.

Pull: the manifest (for an index or manifest list, the one for this host's
platform or ``--platform``), the config, then the layers the store lacks, in
parallel, each unpacked while it downloads (``registry.streaming``) and kept
only once its digest and diff ID check out; a blob already in the store is not
fetched, and a dropped download resumes with a Range request from what arrived.
The image is recorded only once everything is in, with the registry's manifest
kept byte for byte (so its digest is the registry's), then tagged and given its
repo digest. Concurrent pulls share what they both need: a failing one removes
only blobs and layers no other pull holds a lock on (``content.store.BlobLocks``).

Push: each layer blob unless the registry has it (HEAD), or can mount it from
another repository of the same registry that this store pulled it from; then
the config and the manifest.
"""

from __future__ import annotations

import os
import threading
import time

from dockyard import _json as json
from dockyard.busy import changing
from dockyard.content import Descriptor
from dockyard.content.store import BlobLocks
from dockyard.errors import InvalidArgument, NotFound
from dockyard.image import reference
from dockyard.jsonmessage import discard
from dockyard.linux.malloc import keep_freed_memory
from dockyard.platforms import host_platform
from dockyard.registry.client import INDEX_TYPES, OCI_MANIFEST, Registry, RegistryError
from dockyard.registry.streaming import Pipe, StreamedLayer
from dockyard.threads import Workers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.image.store import ImageStore
    from dockyard.jsonmessage import Progress
    from dockyard.registry.auth import Credentials

__all__ = ["pull", "pull_all", "push"]

_RETRIES = 4
# blobs downloaded at once, as dockerd's max-concurrent-downloads: each is also hashed,
# stored, inflated, hashed again and unpacked while it streams, so on few cores more at once
# only contend (5 gzipped layers of 40 MiB on 2 cores: 3 at once ~610 ms, 8 ~700 ms)
_PARALLEL = 3
_CHUNK = int(os.environ.get("DOCKYARD_UPLOAD_CHUNK", 64 << 20))  # bigger blobs go up in PATCHes


def _pick(index: dict[str, Any], wanted: str) -> str:
    os_, _, rest = wanted.partition("/")
    arch, _, variant = rest.partition("/")
    for m in index.get("manifests") or []:
        p = m.get("platform") or {}
        if (
            p.get("os") == os_
            and p.get("architecture") == arch
            and (not variant or p.get("variant") == variant)
        ):
            return m["digest"]
    found = ", ".join(f"{(m.get('platform') or {}).get('os')}/{(m.get('platform') or {}).get('architecture')}"
                      for m in index.get("manifests") or [])  # fmt: skip
    raise NotFound(
        f"no matching manifest for {wanted} in the manifest list entries (found: {found})"
    )


class _Report:
    """A pull's progress as Docker's JSON messages to ``progress``; also where a failed or
    interrupted pull tells its downloads to stop."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress or discard
        self.cancelled = threading.Event()  # set when the pull fails or is interrupted
        self.silent: set[str] = set()  # the config blob: Docker lists layers only
        self.sizes: dict[str, int | None] = {}
        self.done: dict[str, int] = {}

    def say(self, text: str) -> None:
        self.progress({"status": text})

    def begin(self, digest: str, size: int | None) -> None:
        if digest not in self.silent:
            self.sizes[digest], self.done[digest] = size, 0
            self.progress({"status": "Pulling fs layer", "id": digest[7:19], "progressDetail": {}})

    def advance(self, digest: str, n: int) -> None:
        if self.cancelled.is_set():  # called for every chunk: a download stops here
            raise _Cancelled("pull abandoned")
        if digest in self.done:
            self.done[digest] += n
            detail = {"current": self.done[digest]}
            if self.sizes[digest]:
                detail["total"] = self.sizes[digest]
            self.progress({"status": "Downloading", "id": digest[7:19], "progressDetail": detail})

    def event(self, digest: str, text: str) -> None:
        if digest not in self.silent:
            self.progress({"status": text, "id": digest[7:19]})


class _Cancelled(Exception):
    """The pull this download belongs to failed or was interrupted."""


def _fetch(reg: Registry, store: ImageStore, repo: str, desc: dict[str, Any], report: _Report,
           sink: Pipe | None = None) -> None:  # fmt: skip
    """One blob into the content store, verified; resumed with Range after a dropped connection.
    ``sink`` gets the same bytes as they arrive, then the end (or the failure)."""
    try:
        if report.cancelled.is_set():
            raise _Cancelled("pull abandoned")
        fetched = _fetch_blob(reg, store, repo, desc, report, sink)
    except BaseException as err:
        if sink is not None:
            sink.fail(err)
        raise
    if sink is not None:
        if fetched:
            sink.close()
        else:  # a concurrent pull stored it first: nothing streamed, unpack from the blob
            sink.fail(_Cancelled("blob stored by another pull"))


def _fetch_blob(reg: Registry, store: ImageStore, repo: str, desc: dict[str, Any], report: _Report,
                sink: Pipe | None) -> bool:  # fmt: skip
    """True once downloaded (and streamed to ``sink``), False where the store had it."""
    digest, size = desc["digest"], desc.get("size")
    if store.content.exists(digest):
        report.event(digest, "Already exists")
        return False
    report.begin(digest, size)
    for attempt in range(_RETRIES + 1):
        # unpacked from memory as it comes: the blob itself need not stay in the page cache
        writer = store.content.writer(digest, size, direct=sink is not None)
        try:
            received = 0

            def write(chunk: bytes, w: Any = writer, tee: Pipe | None = sink) -> None:
                nonlocal received
                w.write(chunk)
                if tee is not None:
                    tee.write(chunk)
                received += len(chunk)
                report.advance(digest, len(chunk))

            offset = 0
            while True:
                try:
                    reg.fetch_blob(repo, digest, size, write, offset)
                    break
                except RegistryError as err:
                    if received == offset or attempt >= _RETRIES:
                        raise
                    report.event(
                        digest, f"connection dropped after {received} bytes ({err}); resuming"
                    )
                    offset = received
            writer.commit()
            report.event(digest, "Pull complete")
            return True
        except RegistryError:
            writer.abort()
            if attempt >= _RETRIES:
                raise
            if sink is not None:  # what it got is void: the layer is unpacked from the blob
                sink.fail(RegistryError("download restarted"))
                sink = None
            report.advance(digest, -received)
            time.sleep(min(0.2 * 2**attempt, 2))
        except BaseException:
            writer.abort()
            raise
    raise AssertionError("unreachable: the last attempt returns or raises")


@changing(lambda store, *_: store.root)
def pull(
    store: ImageStore,
    ref_text: str,
    wanted_platform: str | None = None,
    progress: Progress | None = None,
    implicit: bool = False,
    credentials: Credentials | None = None,
) -> str:
    """Pull ``ref_text`` into ``store``; the image ID. Progress goes to ``progress`` as
    Docker's JSON messages. ``implicit``: for run, create or build, which say no "Using
    default tag" (they said "Unable to find image" already). ``credentials``: the
    client's (the API's X-Registry-Auth); else those of the Docker config."""
    return _pull(store, ref_text, wanted_platform, _Report(progress), implicit, credentials)


def _pull(store: ImageStore, ref_text: str, wanted_platform: str | None, report: _Report,
          implicit: bool = False, credentials: Credentials | None = None) -> str:  # fmt: skip
    say = report.say
    keep_freed_memory()
    ref = reference.parse(ref_text)
    if not implicit and ":" not in ref_text.rsplit("/", 1)[-1] and "@" not in ref_text:
        say("Using default tag: latest")
    reg = Registry(ref.domain, credentials)
    repo = ref.path
    wanted = ref.digest or ref.tag or "latest"
    say(f"{ref.tag or ref.digest}: Pulling from {repo}")
    raw, media, digest = reg.manifest(repo, wanted)
    if media in INDEX_TYPES or "manifests" in json.loads(raw):
        chosen = _pick(json.loads(raw), wanted_platform or host_platform())
        raw, media, digest = reg.manifest(repo, chosen)
    manifest = json.loads(raw)
    if manifest.get("schemaVersion") != 2 or "config" not in manifest:
        raise RegistryError(f"unsupported manifest for {ref}: {media or 'unknown media type'}")
    config_desc = manifest["config"]
    layers_desc = manifest.get("layers") or []
    report.silent.add(config_desc["digest"])
    wanted_blobs = [d["digest"] for d in [config_desc, *layers_desc]]
    locks = BlobLocks(store.content.root)
    locks.share(wanted_blobs)  # before looking: what is there now stays while this pull runs
    new_blobs = {d for d in wanted_blobs if not store.content.exists(d)}
    new_layers: set[str] = set()
    # layers unpacked while they download (each blob once: a layer listed twice streams once)
    streams: dict[str, StreamedLayer] = {}
    if store.snapshots.apply_mode == "overlay":
        for d in layers_desc:
            if d["digest"] in new_blobs and d["digest"] not in streams:
                streams[d["digest"]] = StreamedLayer(store)
    try:
        layers = []
        parent = None
        known = {r[0] for r in store.db.query("SELECT chain_id FROM layers")}
        with Workers(_PARALLEL) as pool:
            try:
                sinks = {digest: stream.pipe for digest, stream in streams.items()}
                jobs = [
                    pool.submit(_fetch, reg, store, repo, d, report, sinks.pop(d["digest"], None))
                    for d in [config_desc, *layers_desc]
                ]
                jobs[0].result()
                # layers are committed in order as they come in, while later ones still download
                for d, job in zip(layers_desc, jobs[1:], strict=True):
                    job.result()
                    stream = streams.pop(d["digest"], None)
                    staged = stream.result() if stream is not None else None
                    if staged is not None:
                        key, diff_id, size = staged
                        blob = Descriptor(d["digest"], store.content.size(d["digest"]))
                        parent = store.adopt_layer(parent, blob, key, staged=(diff_id, size))
                    else:
                        parent = store.layer_from_blob(parent, d["digest"])
                    if parent.chain_id not in known:
                        new_layers.add(parent.chain_id)
                    layers.append(parent)
            except BaseException:
                # a failure or ^C: downloads still running stop at their next chunk instead
                # of being waited for to the end
                report.cancelled.set()
                raise
        with store.content.open(config_desc["digest"]) as f:
            config_raw = f.read()
        cfg = json.loads(config_raw)
        if [layer.diff_id for layer in layers] != (cfg.get("rootfs") or {}).get("diff_ids"):
            raise RegistryError(f"{ref}: the layers do not hash to the config's diff_ids")
        existed = bool(
            store.db.query("SELECT 1 FROM images WHERE id = ?", (config_desc["digest"],))
        )
        image_id = store.create_image(config_raw, layers, manifest=raw)
    except BaseException:
        # nothing of a failed pull stays: its layers and the blobs it brought, unless a
        # concurrent pull needs them too (it holds their locks): those are its to keep
        for stream in streams.values():
            stream.discard()
        locks.release()
        mine = locks.exclusive(new_blobs)
        try:
            layer_blobs = dict(store.db.query("SELECT chain_id, blob_digest FROM layers"))
            store.prune_layers(only={c for c in new_layers if layer_blobs.get(c) in mine})
            used = {r[0] for r in store.db.query("SELECT blob_digest FROM layers")}
            for digest in mine - used:
                store.content.delete(digest)
        finally:
            locks.release()
        raise
    locks.release()
    if ref.tag:
        store.tag(image_id, str(ref))
    with store.db.tx() as c:
        c.execute(
            "INSERT OR REPLACE INTO repo_digests VALUES (?, ?)", (f"{ref.name}@{digest}", image_id)
        )
    store.db.emit("image", "pull", image_id, name=ref.familiar())
    say(f"Digest: {digest}")
    shown = ref.familiar()
    say(f"Status: {'Image is up to date' if existed else 'Downloaded newer image'} for {shown}")
    return image_id  # the full name after it is the client's to print (docker pull does)


_PLAIN_LAYERS = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar",
)
_COMPRESSED_MEDIA = {
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("docker", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
}


def _push_plan(
    store: ImageStore, image_id: str, compression: str
) -> tuple[dict[str, Any], list[Any], str]:
    """(the manifest, per layer: its descriptor or the layer to send compressed). Plain tar
    layers (what build, commit and import make) go compressed, made once and kept
    (``compressed``), so that every push of the image, and every mirror of it, has one
    manifest digest; layers that came compressed go as they are."""
    manifest = json.loads(store.manifest_bytes(image_id))
    family = "docker" if "docker" in (manifest.get("mediaType") or "") else "oci"
    media = _COMPRESSED_MEDIA.get((family, compression))
    plan: list[Any] = []
    for layer, desc in zip(store.layers(image_id), manifest.get("layers") or [], strict=True):
        plan.append(layer if desc.get("mediaType") in _PLAIN_LAYERS and media is not None else None)
    return manifest, plan, media or ""


def _push_blob(reg: Registry, store: ImageStore, repo: str, digest: str, size: int, sources: dict[str, bool],
               progress: Progress) -> None:  # fmt: skip
    short = digest[7:19]
    if reg.has_blob(repo, digest):
        progress({"status": "Layer already exists", "id": short})
    elif any(reg.mount_blob(repo, digest, src) for src in sources):
        progress({"status": f"Mounted from {next(iter(sources))}", "id": short})
    else:
        with store.content.open(digest) as f:
            reg.upload_blob(repo, digest, f, size, chunk=_CHUNK)
        progress({"status": "Pushed", "id": short})


@changing(lambda store, *_: store.root)
def push(store: ImageStore, ref_text: str, progress: Progress | None = None, compression: str = "gzip",
         credentials: Credentials | None = None) -> str:  # fmt: skip
    """Push the image ``ref_text`` names; the manifest digest. Progress goes to ``progress``
    as Docker's JSON messages. ``compression`` (gzip or zstd) is how layers stored as plain
    tars travel."""
    out = progress or discard
    keep_freed_memory()
    ref = reference.parse(ref_text)
    if ref.digest:
        raise InvalidArgument("cannot push a digest reference")
    try:
        image_id = store.resolve(str(ref))
    except NotFound:
        raise NotFound(
            f"An image does not exist locally with the tag: {ref.familiar_name}"
        ) from None
    reg = Registry(ref.domain, credentials)
    repo = ref.path
    out({"status": f"The push refers to repository [{ref.name}]"})
    manifest, plan, media = _push_plan(store, image_id, compression)
    sources = {}
    for row in store.db.query("SELECT reference FROM repo_digests"):
        name = row[0].split("@", 1)[0]
        if name.startswith(f"{ref.domain}/") and name != ref.name:
            sources[name[len(ref.domain) + 1 :]] = True
    order = list(reversed(range(len(plan))))
    # layers are compressed one after the other in the background while the ones before
    # them upload: the first push of a built image costs little more than the upload
    with Workers(1) as pool:
        made = {
            i: pool.submit(store.compressed, plan[i], compression)
            for i in order
            if plan[i] is not None
        }
        for i in order:
            desc = manifest["layers"][i]
            if i in made:
                digest, size = made[i].result()
                desc.update({"mediaType": media, "digest": digest, "size": size})
            _push_blob(reg, store, repo, desc["digest"], desc["size"], sources, out)
    manifest_raw = json.dumps(manifest).encode() if made else store.manifest_bytes(image_id)
    config_digest = manifest["config"]["digest"]
    if not reg.has_blob(repo, config_digest):
        with store.content.open(config_digest) as f:
            reg.upload_blob(repo, config_digest, f, manifest["config"]["size"])
    digest = reg.put_manifest(
        repo, ref.tag or "latest", manifest_raw, manifest.get("mediaType") or OCI_MANIFEST
    )
    with store.db.tx() as c:
        c.execute(
            "INSERT OR REPLACE INTO repo_digests VALUES (?, ?)", (f"{ref.name}@{digest}", image_id)
        )
    out({"status": f"{ref.tag or 'latest'}: digest: {digest} size: {len(manifest_raw)}"})
    return digest


@changing(lambda store, *_: store.root)
def pull_all(
    store: ImageStore,
    ref_text: str,
    wanted_platform: str | None = None,
    progress: Progress | None = None,
) -> list[str]:
    """``pull -a``: every tag of the repository; the image IDs."""
    ref = reference.parse(ref_text, default_tag=None)
    if ref.tag or ref.digest:
        raise InvalidArgument("tag can't be used with --all-tags/-a")
    tags = Registry(ref.domain).tags(ref.path)
    return [pull(store, f"{ref.name}:{tag}", wanted_platform, progress) for tag in tags]
