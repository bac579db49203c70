"""``save`` and ``load``: docker-archive and OCI image layout tars.

docker-archive is what ``docker save`` wrote before Docker 25: ``manifest.json``
(Config, RepoTags, Layers), ``repositories``, the config as ``<id>.json`` and
each layer as ``<diff id>/layer.tar`` (uncompressed). The OCI layout is
``oci-layout``, ``index.json`` and ``blobs/sha256/*``, with the manifests and
blobs exactly as stored, so their digests survive the trip.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from typing import Any, BinaryIO

from dockyard.busy import changing
from dockyard.errors import InvalidArgument
from dockyard.image import reference
from dockyard.image.store import MEDIA_OCI_MANIFEST, ImageStore, Layer
from dockyard.snapshot.apply import decompressed

__all__ = ["load", "save"]

_MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_MTIME = 0  # archive entries carry no time of their own: same image, same bytes


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = _MTIME
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = _MTIME
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, src: BinaryIO, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = _MTIME
    info.mode = 0o644
    tar.addfile(info, src)


def _resolve_all(store: ImageStore, names: list[str]) -> list[tuple[str, list[str]]]:
    """[(image id, [full references to record])] in the order given, duplicates merged."""
    out: dict[str, list[str]] = {}
    for name in names:
        image_id = store.resolve(name)
        refs = out.setdefault(image_id, [])
        is_id = name.removeprefix("sha256:") and all(
            c in "0123456789abcdef" for c in name.removeprefix("sha256:")
        )
        if is_id:
            continue
        parsed = reference.parse(name)
        if parsed.tag and str(parsed) not in refs:
            refs.append(str(parsed))
    return list(out.items())


def save(store: ImageStore, names: list[str], out: BinaryIO, fmt: str = "docker") -> None:
    """Write the named images to ``out`` as a docker-archive (``docker``) or OCI layout (``oci``)."""
    if fmt not in ("docker", "oci"):
        raise InvalidArgument(f"unknown archive format: {fmt} (docker or oci)")
    images = _resolve_all(store, names)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        if fmt == "docker":
            _save_docker(store, images, tar)
        else:
            _save_oci(store, images, tar)


def _save_docker(
    store: ImageStore, images: list[tuple[str, list[str]]], tar: tarfile.TarFile
) -> None:
    manifest, repositories = [], {}
    written: set[str] = set()
    for image_id, refs in images:
        layers = store.layers(image_id)
        paths = []
        for layer in layers:
            hexid = layer.diff_id[7:]
            path = f"{hexid}/layer.tar"
            paths.append(path)
            if hexid in written:
                continue
            written.add(hexid)
            _add_dir(tar, hexid)
            _add_bytes(tar, f"{hexid}/VERSION", b"1.0")
            _add_bytes(tar, f"{hexid}/json", json.dumps({"id": hexid}).encode())
            _add_layer_tar(store, tar, layer, path)
        config_name = f"{image_id[7:]}.json"
        _add_bytes(tar, config_name, store.content.read(image_id))
        familiar = [reference.parse(r).familiar() for r in refs]
        manifest.append({"Config": config_name, "RepoTags": familiar or None, "Layers": paths})
        for r in refs:
            parsed = reference.parse(r)
            repositories.setdefault(parsed.familiar_name, {})[parsed.tag] = image_id[7:]
    _add_bytes(tar, "manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
    if repositories:
        _add_bytes(tar, "repositories", json.dumps(repositories, separators=(",", ":")).encode())


def _add_layer_tar(store: ImageStore, tar: tarfile.TarFile, layer: Layer, path: str) -> None:
    if layer.blob_digest == layer.diff_id:
        with store.content.open(layer.blob_digest) as f:
            _add_file(tar, path, f, layer.blob_size)
        return
    # A compressed blob: docker-archive layers are plain tars, so decompress (size from the DB).
    with store.content.open(layer.blob_digest) as f:
        _add_file(tar, path, decompressed(f), layer.size)  # type: ignore[arg-type]


def _save_oci(store: ImageStore, images: list[tuple[str, list[str]]], tar: tarfile.TarFile) -> None:
    _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": _MEDIA_INDEX, "manifests": []}
    written: set[str] = set()
    _add_dir(tar, "blobs")
    _add_dir(tar, "blobs/sha256")

    def blob(digest: str) -> None:
        if digest in written:
            return
        written.add(digest)
        with store.content.open(digest) as f:
            _add_file(tar, f"blobs/sha256/{digest[7:]}", f, store.content.size(digest))

    for image_id, refs in images:
        row = store.db.query("SELECT manifest_digest FROM images WHERE id = ?", (image_id,))[0]
        manifest_digest = row["manifest_digest"]
        for layer in store.layers(image_id):
            blob(layer.blob_digest)
        blob(image_id)
        blob(manifest_digest)
        desc = {"mediaType": MEDIA_OCI_MANIFEST, "digest": manifest_digest,
                "size": store.content.size(manifest_digest)}  # fmt: skip
        for r in refs or [None]:
            entry = dict(desc)
            if r:
                parsed = reference.parse(r)
                entry["annotations"] = {"io.containerd.image.name": str(parsed),
                                        "org.opencontainers.image.ref.name": parsed.tag}  # fmt: skip
            index["manifests"].append(entry)
    _add_bytes(tar, "index.json", json.dumps(index, separators=(",", ":")).encode())


class _Archive:
    """The archive's files, each streamed once straight into the content store.

    Layers and configs land where they will stay, so a load writes each byte
    once (no scratch copy); the archive's own bookkeeping files that no image
    refers to are removed afterwards.
    """

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self.files: dict[str, str] = {}  # name in the archive -> digest
        self.added: set[str] = set()  # digests this load brought into the store

    def read(self, src: BinaryIO) -> None:
        from dockyard.snapshot.apply import normalise_name

        links: list[tuple[str, str]] = []
        try:
            with tarfile.open(fileobj=decompressed(src), mode="r|") as tar:
                for member in tar:
                    rel = normalise_name(member.name)
                    if member.isreg():
                        f = tar.extractfile(member)
                        assert f is not None
                        with self.store.content.writer(size=member.size) as w:
                            while chunk := f.read(1 << 20):
                                w.write(chunk)
                            digest = w.commit().digest
                        if not w.existed:
                            self.added.add(digest)
                        self.files[rel] = digest
                    elif member.issym():
                        # docker save links identical layers; resolved inside the archive only
                        target = os.path.normpath(
                            os.path.join(os.path.dirname(rel), member.linkname)
                        )
                        links.append((rel, normalise_name(target)))
        except (tarfile.TarError, EOFError) as err:
            raise InvalidArgument(f"invalid image archive: {err}") from None
        for rel, target in links:
            if target in self.files:
                self.files[rel] = self.files[target]

    def has(self, name: str) -> bool:
        return name in self.files

    def digest(self, name: str) -> str:
        from dockyard.snapshot.apply import normalise_name

        try:
            return self.files[normalise_name(name)]
        except KeyError:
            raise InvalidArgument(f"invalid image archive: {name} is missing") from None

    def bytes(self, name: str) -> bytes:
        return self.store.content.read(self.digest(name))

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.bytes(name))
        except ValueError as err:
            raise InvalidArgument(f"invalid image archive: {name}: {err}") from None

    def discard_unreferenced(self) -> None:
        keep = set()
        for row in self.store.db.query("SELECT id, manifest_digest FROM images"):
            keep.update((row["id"], row["manifest_digest"]))
        keep |= {r["blob_digest"] for r in self.store.db.query("SELECT blob_digest FROM layers")}
        for digest in self.added - keep:
            self.store.content.delete(digest)


@changing(lambda store, *_: store.root)
def load(store: ImageStore, src: BinaryIO) -> list[str]:
    """Load every image in a docker-archive or OCI layout tar; return lines as ``docker load`` prints."""
    before = {r["chain_id"] for r in store.db.query("SELECT chain_id FROM layers")}
    archive = _Archive(store)
    try:
        archive.read(src)
        # Docker 25+ writes both layouts in one tar; manifest.json carries the tags.
        if archive.has("manifest.json"):
            return _load_docker(store, archive)
        if archive.has("index.json"):
            return _load_oci(store, archive)
        raise InvalidArgument("not an image archive: no manifest.json or index.json")
    except BaseException:
        after = {r["chain_id"] for r in store.db.query("SELECT chain_id FROM layers")}
        store.prune_layers(only=after - before)  # what this load stored before it failed
        raise
    finally:
        archive.discard_unreferenced()


def _layers_for(store: ImageStore, config: dict[str, Any], blobs: list[str]) -> list[Layer]:
    """Layers from blob digests already in the store, checked against the config's diff IDs."""
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(blobs):
        raise InvalidArgument(
            f"invalid image archive: {len(blobs)} layers for {len(diff_ids)} diff_ids"
        )
    layers: list[Layer] = []
    for want, blob in zip(diff_ids, blobs, strict=True):
        layer = store.layer_from_blob(layers[-1] if layers else None, blob)
        if layer.diff_id != want:
            raise InvalidArgument(
                f"layer {blob} has diff ID {layer.diff_id}, the config says {want}"
            )
        layers.append(layer)
    return layers


def _docker_entries(data: Any) -> list[dict[str, Any]]:
    """manifest.json's entries, each checked for the fields a load reads."""
    if not isinstance(data, list):
        raise InvalidArgument("invalid image archive: manifest.json: not a list of images")
    for n, entry in enumerate(data):
        if not (isinstance(entry, dict) and isinstance(entry.get("Config"), str)
                and isinstance(entry.get("Layers"), list) and all(isinstance(x, str) for x in entry["Layers"])
                and isinstance(entry.get("RepoTags") or [], list)):  # fmt: skip
            raise InvalidArgument(
                f"invalid image archive: manifest.json: entry {n} wants Config and Layers names"
            )
    return data


def _load_docker(store: ImageStore, archive: _Archive) -> list[str]:
    lines = []
    for entry in _docker_entries(archive.json("manifest.json")):
        config_bytes = archive.bytes(entry["Config"])
        try:
            config = json.loads(config_bytes)
        except ValueError as err:
            raise InvalidArgument(f"invalid image archive: {entry['Config']}: {err}") from None
        if not isinstance(config, dict):
            raise InvalidArgument(f"invalid image archive: {entry['Config']}: not an image config")
        layers = _layers_for(store, config, [archive.digest(p) for p in entry["Layers"]])
        image_id = store.create_image(config_bytes, layers)
        tags = entry.get("RepoTags") or []
        for t in tags:
            store.tag(image_id, t)
            lines.append(f"Loaded image: {reference.parse(t).familiar()}")
        if not tags:
            lines.append(f"Loaded image ID: {image_id}")
    return lines


def _load_oci(store: ImageStore, archive: _Archive) -> list[str]:
    lines = []

    def blob(digest: str) -> str:
        """The store digest of blob ``digest``, which must be what its name says."""
        algo, _, hexpart = digest.partition(":")
        found = archive.digest(f"blobs/{algo}/{hexpart}")
        if found != digest:
            raise InvalidArgument(f"blob {digest} does not match its content ({found})")
        return found

    def manifests(index: dict[str, Any]) -> list[tuple[dict[str, Any], bytes]]:
        found = []
        entries = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(entries, list) or not all(isinstance(d, dict) and isinstance(d.get("digest"), str)
                                                    for d in entries):  # fmt: skip
            raise InvalidArgument("invalid image archive: index.json: not an image index")
        for desc in entries:
            raw = store.content.read(blob(desc["digest"]))
            if desc.get("mediaType") in (_MEDIA_INDEX, _DOCKER_LIST):
                found += manifests(json.loads(raw))
            else:
                found.append((desc, raw))
        return found

    for desc, manifest_bytes in manifests(archive.json("index.json")):
        manifest = json.loads(manifest_bytes)
        config_bytes = store.content.read(blob(manifest["config"]["digest"]))
        layers = _layers_for(store, json.loads(config_bytes),
                             [blob(layer["digest"]) for layer in manifest.get("layers") or []])  # fmt: skip
        image_id = store.create_image(config_bytes, layers, manifest=manifest_bytes)
        annotations = desc.get("annotations") or {}
        name = annotations.get("io.containerd.image.name")
        ref_name = annotations.get("org.opencontainers.image.ref.name")
        if not name and ref_name and (":" in ref_name or "/" in ref_name):
            name = ref_name
        if name:
            store.tag(image_id, name)
            lines.append(f"Loaded image: {reference.parse(name).familiar()}")
        else:
            lines.append(f"Loaded image ID: {image_id}")
    return lines
